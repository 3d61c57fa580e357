# cython: language_level=3
"""Fixed-point units, compiled. The behaviour is defined by _units_py.py."""

from cpython.unicode cimport PyUnicode_GET_LENGTH, PyUnicode_KIND, PyUnicode_1BYTE_KIND, PyUnicode_1BYTE_DATA

cimport active_quoting.core.ticks as t
from active_quoting.core.ticks cimport int64_t

from active_quoting.errors import UnitsError
import active_quoting.errors as _errors

PRICE_DECIMALS = t.PRICE_DECIMALS
SIZE_DECIMALS = t.SIZE_DECIMALS
PRICE_SCALE = t.PRICE_SCALE
SIZE_SCALE = t.SIZE_SCALE
MAX_PRICE = t.MAX_PRICE
MAX_SIZE = t.MAX_SIZE
NO_PRICE = t.NO_PRICE
BID = t.BID
ASK = t.ASK

# Longest accepted text; longer input is refused before any work is done on it.
cdef Py_ssize_t _MAX_LEN = 32

cdef int64_t _POW10[7]
_POW10[:] = [1, 10, 100, 1000, 10000, 100000, 1000000]

cdef object _REASONS = {
    E_NOT_STR: _errors.NOT_STR,
    E_NOT_DECIMAL: _errors.NOT_DECIMAL,
    E_NEGATIVE: _errors.NEGATIVE,
    E_TOO_MANY_DECIMALS: _errors.TOO_MANY_DECIMALS,
    E_OUT_OF_RANGE: _errors.OUT_OF_RANGE,
}


cdef int64_t _parse_fixed(object s, int decimals, int64_t max_units, int* err) noexcept:
    # Same checks in the same order as _units_py._parse_fixed: type, length, syntax,
    # sign, excess decimals, range. Digits accumulate with an early range exit, so no
    # int64 overflow is possible (max_units < 10**15 and at most 32 chars are read).
    cdef Py_ssize_t n, i, start = 0
    cdef const unsigned char* c
    cdef bint negative = False, seen_dot = False
    cdef int nwhole = 0, nfrac = 0
    cdef int64_t whole = 0, frac = 0
    cdef bint big = False, excess = False
    cdef unsigned char ch
    err[0] = E_OK
    if type(s) is not str:
        err[0] = E_NOT_STR
        return 0
    n = PyUnicode_GET_LENGTH(s)
    if n > _MAX_LEN:
        err[0] = E_OUT_OF_RANGE
        return 0
    if PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND:
        err[0] = E_NOT_DECIMAL
        return 0
    c = PyUnicode_1BYTE_DATA(s)
    if n > 0 and c[0] == 45:  # '-'
        negative = True
        start = 1
    for i in range(start, n):
        ch = c[i]
        if ch == 46:  # '.'
            if seen_dot:
                err[0] = E_NOT_DECIMAL
                return 0
            seen_dot = True
        elif 48 <= ch <= 57:
            if seen_dot:
                nfrac += 1
                if nfrac <= decimals:
                    frac = frac * 10 + (ch - 48)
                elif ch != 48:
                    excess = True
            else:
                nwhole += 1
                if not big:
                    whole = whole * 10 + (ch - 48)
                    if whole > 1000000000000000:
                        big = True
        else:
            err[0] = E_NOT_DECIMAL
            return 0
    if (nwhole == 0 and nfrac == 0) or (seen_dot and nfrac == 0):
        err[0] = E_NOT_DECIMAL
        return 0
    if negative:
        err[0] = E_NEGATIVE
        return 0
    if excess:
        err[0] = E_TOO_MANY_DECIMALS
        return 0
    if big or whole > max_units // _POW10[decimals]:
        err[0] = E_OUT_OF_RANGE
        return 0
    if nfrac < decimals:
        frac = frac * _POW10[decimals - nfrac]
    whole = whole * _POW10[decimals] + frac
    if whole > max_units:
        err[0] = E_OUT_OF_RANGE
        return 0
    return whole


cdef int64_t _check_int(object value, int64_t low, int64_t high, str field) except? -1:
    if type(value) is not int:
        raise UnitsError(field, value, _errors.NOT_INT)
    if value < low or value > high:
        raise UnitsError(field, value, _errors.OUT_OF_RANGE)
    return value


def check_int(value, low, high, str field):
    """``value`` if it is an int in [low, high]; otherwise a UnitsError naming ``field``."""
    return _check_int(value, low, high, field)


cdef int _raise_units(int err, str field, object s) except -1:
    raise UnitsError(field, s, _REASONS[err])


cdef int64_t _parse_price(object s, str field) except -1:
    cdef int err
    cdef int64_t v = _parse_fixed(s, t.PRICE_DECIMALS, t.MAX_PRICE, &err)
    if err:
        _raise_units(err, field, s)
    return v


cdef int64_t _parse_size(object s, str field) except -1:
    cdef int err
    cdef int64_t v = _parse_fixed(s, t.SIZE_DECIMALS, t.MAX_SIZE, &err)
    if err:
        _raise_units(err, field, s)
    return v


def parse_price(s, str field="price"):
    """Parse a venue price string ("0.5", ".48", "1") to units of 1e-4, in [0, 10000]."""
    return _parse_price(s, field)


def parse_size(s, str field="size"):
    """Parse a venue size string ("1016.87", "219.217767") to micro-shares, in [0, MAX_SIZE]."""
    return _parse_size(s, field)


cdef str _format_fixed(object value, int decimals, int64_t max_units, str field):
    cdef int64_t v, scale, whole, frac
    if type(value) is not int:
        raise UnitsError(field, value, _errors.NOT_INT)
    if value < 0:
        raise UnitsError(field, value, _errors.NEGATIVE)
    if value > max_units:
        raise UnitsError(field, value, _errors.OUT_OF_RANGE)
    v = value
    scale = _POW10[decimals]
    whole = v // scale
    frac = v - whole * scale
    if frac == 0:
        return str(whole)
    return f"{whole}.{frac:0{decimals}d}".rstrip("0")


def format_price(units, str field="price"):
    """Format price units as the venue writes them: "0.5", "0.951", "1", "0"."""
    return _format_fixed(units, t.PRICE_DECIMALS, t.MAX_PRICE, field)


def format_size(micro, str field="size"):
    """Format micro-shares as the venue writes them: "1016.87", "40", "219.217767"."""
    return _format_fixed(micro, t.SIZE_DECIMALS, t.MAX_SIZE, field)
