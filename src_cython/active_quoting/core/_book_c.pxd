from cpython.object cimport PyObject
from active_quoting.core.ticks cimport int64_t, uint64_t, price_t, qty_t, N_PRICES, N_WORDS


cdef class Book:
    cdef readonly str asset_id
    cdef str _hash
    cdef qty_t _size[2][N_PRICES]
    cdef uint64_t _bits[2][N_WORDS]
    cdef price_t _best[2]
    cdef int64_t _count[2]
    cdef int64_t _tick
    cdef int64_t _threshold
    cdef int64_t _streak
    cdef int64_t _disagreements
    cdef bint _desynced
    cdef int64_t _updates
    cdef int64_t _snapshots
    # Scratch state of the BookSet batch being applied (see BookSet.apply_price_change).
    cdef int64_t _mark
    cdef price_t _stated_bid
    cdef price_t _stated_ask

    cdef void _set(self, int side, price_t price, qty_t size) noexcept
    cdef void _clear(self) noexcept
    cdef bint _check_top(self, price_t bid, price_t ask) noexcept
    cpdef price_t best_bid(self) noexcept
    cpdef price_t best_ask(self) noexcept
    cpdef qty_t best_bid_size(self) noexcept
    cpdef qty_t best_ask_size(self) noexcept
    cpdef price_t spread(self) noexcept
    cpdef price_t mid_x2(self) noexcept
    cpdef bint is_crossed(self) noexcept
    cpdef bint is_locked(self) noexcept


cdef class BookSet:
    cdef dict _books
    cdef int64_t _threshold
    cdef int64_t _orphans
    cdef int64_t _desync_marks
    cdef int64_t _epoch
    cdef int64_t* _buf
    cdef PyObject** _rowbook
    cdef Py_ssize_t _cap

    cdef int _reserve(self, Py_ssize_t rows) except -1
