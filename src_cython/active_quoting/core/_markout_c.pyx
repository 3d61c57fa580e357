# cython: language_level=3
"""Fill markouts in fixed point, compiled. The behaviour is defined by _markout_py.py.

Fills live in growable C arrays; each horizon keeps a cursor to its first unresolved fill.
Fills are time-ordered, so a horizon's deadlines are too, and every fill is resolved once per
horizon: O(1) amortized per fill and per mid update.
"""

cimport cython
from cpython.mem cimport PyMem_Realloc, PyMem_Free

cimport active_quoting.core.ticks as t
from active_quoting.core.ticks cimport int64_t
from active_quoting.core._units_c cimport _check_int as _check

from active_quoting.errors import UnitsError
import active_quoting.errors as _errors

PENDING = -(1 << 62)
UNAVAILABLE = PENDING + 1
MAX_HORIZONS = 8

cdef int64_t _PENDING = -(1 << 62)
cdef int64_t _UNAVAILABLE = -(1 << 62) + 1
cdef int64_t _MAX_TIME = 1 << 53
cdef int64_t _MAX_SIZE = 10 ** 15
cdef int _NH = 8


@cython.auto_pickle(False)
cdef class MarkoutTracker:
    """Markouts of one token's fills at fixed horizons (milliseconds)."""

    cdef int64_t _h[8]
    cdef int _nh
    cdef tuple _horizons
    cdef Py_ssize_t _n, _cap
    cdef int64_t* _times
    cdef int64_t* _prices
    cdef int64_t* _sides
    cdef int64_t* _sizes
    cdef int64_t* _at_fill
    cdef int64_t* _marks       # _n rows of _nh
    cdef Py_ssize_t _cursor[8]
    cdef int64_t _mid_x2
    cdef int64_t _last_time
    cdef object _sum           # Python ints: sums of size x markout can exceed int64
    cdef int64_t _resolved[8]
    cdef object _resolved_size
    cdef int64_t _unavailable[8]

    def __init__(self, horizons_ms):
        hs = list(horizons_ms)
        if not 1 <= len(hs) <= MAX_HORIZONS:
            raise UnitsError("horizons_ms", horizons_ms, _errors.OUT_OF_RANGE)
        for h in hs:
            _check(h, 1, _MAX_TIME, "horizons_ms")
        if hs != sorted(set(hs)):
            raise UnitsError("horizons_ms", horizons_ms, "must be strictly increasing")
        self._horizons = tuple(hs)
        self._nh = len(hs)
        for i in range(self._nh):
            self._h[i] = hs[i]
            self._cursor[i] = 0
            self._resolved[i] = 0
            self._unavailable[i] = 0
        self._sum = [0] * self._nh
        self._resolved_size = [0] * self._nh
        self._mid_x2 = t.NO_PRICE
        self._last_time = 0

    def __dealloc__(self):
        PyMem_Free(self._times)
        PyMem_Free(self._prices)
        PyMem_Free(self._sides)
        PyMem_Free(self._sizes)
        PyMem_Free(self._at_fill)
        PyMem_Free(self._marks)

    cdef int _grow(self) except -1:
        cdef Py_ssize_t cap = self._cap * 2 if self._cap else 64
        cdef void* p
        p = PyMem_Realloc(self._times, cap * sizeof(int64_t))
        if p == NULL:
            raise MemoryError()
        self._times = <int64_t*>p
        p = PyMem_Realloc(self._prices, cap * sizeof(int64_t))
        if p == NULL:
            raise MemoryError()
        self._prices = <int64_t*>p
        p = PyMem_Realloc(self._sides, cap * sizeof(int64_t))
        if p == NULL:
            raise MemoryError()
        self._sides = <int64_t*>p
        p = PyMem_Realloc(self._sizes, cap * sizeof(int64_t))
        if p == NULL:
            raise MemoryError()
        self._sizes = <int64_t*>p
        p = PyMem_Realloc(self._at_fill, cap * sizeof(int64_t))
        if p == NULL:
            raise MemoryError()
        self._at_fill = <int64_t*>p
        p = PyMem_Realloc(self._marks, cap * _NH * sizeof(int64_t))
        if p == NULL:
            raise MemoryError()
        self._marks = <int64_t*>p
        self._cap = cap
        return 0

    @property
    def horizons_ms(self):
        return self._horizons

    @property
    def fill_count(self):
        return self._n

    @property
    def mid_x2(self):
        """The current mark (twice the mid, price units), NO_PRICE before any two-sided book."""
        return self._mid_x2

    cdef inline int64_t _signed(self, Py_ssize_t i, int64_t mid_x2) noexcept:
        cdef int64_t diff = mid_x2 - 2 * self._prices[i]
        return diff if self._sides[i] == 0 else -diff

    def add_fill(self, t_ms, side, price, size):
        """Record a fill (side 0 = BUY, 1 = SELL); returns its index."""
        cdef int64_t tm = max(_check(t_ms, 0, _MAX_TIME, "t_ms"), self._last_time)
        cdef int64_t sd = _check(side, 0, 1, "side")
        cdef int64_t px = _check(price, 0, t.MAX_PRICE, "price")
        cdef int64_t sz = _check(size, 1, _MAX_SIZE, "size")
        cdef Py_ssize_t i = self._n
        cdef int h
        if i == self._cap:
            self._grow()
        self._last_time = tm
        self._times[i] = tm
        self._prices[i] = px
        self._sides[i] = sd
        self._sizes[i] = sz
        self._n = i + 1
        self._at_fill[i] = _UNAVAILABLE if self._mid_x2 == t.NO_PRICE else self._signed(i, self._mid_x2)
        for h in range(self._nh):
            self._marks[i * _NH + h] = _PENDING
        return i

    cdef void _resolve_before(self, int64_t tm, bint inclusive):
        cdef int h
        cdef Py_ssize_t i
        cdef int64_t deadline, m
        for h in range(self._nh):
            i = self._cursor[h]
            while i < self._n:
                deadline = self._times[i] + self._h[h]
                if not (deadline < tm or (inclusive and deadline == tm)):
                    break
                if self._mid_x2 == t.NO_PRICE:
                    self._marks[i * _NH + h] = _UNAVAILABLE
                    self._unavailable[h] += 1
                else:
                    m = self._signed(i, self._mid_x2)
                    self._marks[i * _NH + h] = m
                    self._sum[h] += m * <object>self._sizes[i]  # may exceed int64
                    self._resolved[h] += 1
                    self._resolved_size[h] += self._sizes[i]
                i += 1
            self._cursor[h] = i

    def on_mid(self, t_ms, mid_x2):
        """A new mark at ``t_ms``; NO_PRICE (a side of the book is empty) is ignored."""
        cdef int64_t tm = max(_check(t_ms, 0, _MAX_TIME, "t_ms"), self._last_time)
        cdef int64_t mid = _check(mid_x2, t.NO_PRICE, 2 * t.MAX_PRICE, "mid_x2")
        if mid == t.NO_PRICE:
            return
        self._last_time = tm
        self._resolve_before(tm, False)
        self._mid_x2 = mid

    def flush(self, t_ms):
        """Resolve every horizon at or before ``t_ms`` with the current mark."""
        cdef int64_t tm = max(_check(t_ms, 0, _MAX_TIME, "t_ms"), self._last_time)
        self._last_time = tm
        self._resolve_before(tm, True)

    def markout(self, index, horizon):
        """One fill's markout at one horizon (index into horizons_ms), or PENDING/UNAVAILABLE."""
        cdef int64_t h = _check(horizon, 0, self._nh - 1, "horizon")
        return self._marks[_check(index, 0, self._n - 1, "index") * _NH + h]

    def at_fill(self, index):
        """The edge captured against the mid at the moment of the fill (or UNAVAILABLE)."""
        return self._at_fill[_check(index, 0, self._n - 1, "index")]

    def size_of(self, index):
        """The size of one fill (micro-shares)."""
        return self._sizes[_check(index, 0, self._n - 1, "index")]

    def resolved(self, horizon):
        return self._resolved[_check(horizon, 0, self._nh - 1, "horizon")]

    def unavailable(self, horizon):
        return self._unavailable[_check(horizon, 0, self._nh - 1, "horizon")]

    def weighted_sum(self, horizon):
        """Sum of markout x size over resolved fills (half price units x micro-shares)."""
        return self._sum[_check(horizon, 0, self._nh - 1, "horizon")]

    def resolved_size(self, horizon):
        return self._resolved_size[_check(horizon, 0, self._nh - 1, "horizon")]

    def toxic_count(self, horizon, threshold):
        """Resolved fills whose markout is worse than ``-threshold`` (price units)."""
        cdef int64_t lim = -2 * _check(threshold, 0, t.MAX_PRICE, "threshold")
        cdef int64_t h = _check(horizon, 0, self._nh - 1, "horizon")
        cdef Py_ssize_t i, count = 0
        cdef int64_t m
        for i in range(self._n):
            m = self._marks[i * _NH + h]
            if m != _PENDING and m != _UNAVAILABLE and m < lim:
                count += 1
        return count
