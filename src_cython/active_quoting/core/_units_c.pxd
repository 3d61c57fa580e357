from active_quoting.core.ticks cimport int64_t

# Error codes of _parse_fixed (returned through *err; 0 = ok).
cdef enum:
    E_OK = 0
    E_NOT_STR = 1
    E_NOT_DECIMAL = 2
    E_NEGATIVE = 3
    E_TOO_MANY_DECIMALS = 4
    E_OUT_OF_RANGE = 5

cdef int64_t _parse_fixed(object s, int decimals, int64_t max_units, int* err) noexcept
cdef int64_t _parse_price(object s, str field) except -1
cdef int64_t _parse_size(object s, str field) except -1
cdef int _raise_units(int err, str field, object s) except -1
cdef int64_t _check_int(object value, int64_t low, int64_t high, str field) except? -1
