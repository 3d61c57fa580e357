"""Fill markouts in fixed point: the executable specification (twin of ``_markout_c``).

A :class:`MarkoutTracker` follows one token. Each fill is marked against that token's mid at
fixed horizons after it; the mid at time T is the last two-sided mid observed at or before T,
so a horizon resolves when the first mid update after it arrives (or on :meth:`flush`, when
time has passed with no update). A one-sided or empty book gives no mid: it neither moves the
mark nor resolves anything, so it can never produce a fake markout.

Values are in half price units per share (twice the price difference, exact for a mid that
falls between ticks), signed so that positive is good for us: BUY -> mid - price,
SELL -> price - mid.
"""

from active_quoting.core._units_py import MAX_PRICE, NO_PRICE
from active_quoting.core._units_py import check_int as _check
from active_quoting.errors import OUT_OF_RANGE, UnitsError

PENDING = -(1 << 62)  # horizon not reached yet
UNAVAILABLE = PENDING + 1  # no mid was known at the horizon
MAX_HORIZONS = 8
_MAX_TIME = 1 << 53
_MAX_SIZE = 10**15


class MarkoutTracker:
    """Markouts of one token's fills at fixed horizons (milliseconds)."""

    def __init__(self, horizons_ms: tuple[int, ...] | list[int]) -> None:
        hs = list(horizons_ms)
        if not 1 <= len(hs) <= MAX_HORIZONS:
            raise UnitsError("horizons_ms", horizons_ms, OUT_OF_RANGE)
        for h in hs:
            _check(h, 1, _MAX_TIME, "horizons_ms")
        if hs != sorted(set(hs)):
            raise UnitsError("horizons_ms", horizons_ms, "must be strictly increasing")
        self._horizons = tuple(hs)
        self._times: list[int] = []
        self._prices: list[int] = []
        self._sides: list[int] = []
        self._sizes: list[int] = []
        self._at_fill: list[int] = []
        self._marks: list[list[int]] = [[] for _ in hs]
        self._cursor = [0] * len(hs)
        self._mid_x2 = NO_PRICE
        self._last_time = 0
        self._sum = [0] * len(hs)
        self._resolved = [0] * len(hs)
        self._resolved_size = [0] * len(hs)
        self._unavailable = [0] * len(hs)

    @property
    def horizons_ms(self) -> tuple[int, ...]:
        return self._horizons

    @property
    def fill_count(self) -> int:
        return len(self._times)

    @property
    def mid_x2(self) -> int:
        """The current mark (twice the mid, price units), NO_PRICE before any two-sided book."""
        return self._mid_x2

    def _signed(self, i: int, mid_x2: int) -> int:
        diff = mid_x2 - 2 * self._prices[i]
        return diff if self._sides[i] == 0 else -diff

    def add_fill(self, t_ms: int, side: int, price: int, size: int) -> int:
        """Record a fill (side 0 = BUY, 1 = SELL); returns its index. Times never go back:
        a fill stamped before the previous event is taken at that event's time."""
        t = max(_check(t_ms, 0, _MAX_TIME, "t_ms"), self._last_time)
        _check(side, 0, 1, "side")
        _check(price, 0, MAX_PRICE, "price")
        _check(size, 1, _MAX_SIZE, "size")
        self._last_time = t
        self._times.append(t)
        self._prices.append(price)
        self._sides.append(side)
        self._sizes.append(size)
        i = len(self._times) - 1
        self._at_fill.append(UNAVAILABLE if self._mid_x2 == NO_PRICE else self._signed(i, self._mid_x2))
        for marks in self._marks:
            marks.append(PENDING)
        return i

    def _resolve_before(self, t: int, inclusive: bool) -> None:
        for h, horizon in enumerate(self._horizons):
            marks = self._marks[h]
            i = self._cursor[h]
            while i < len(self._times) and (
                self._times[i] + horizon < t or (inclusive and self._times[i] + horizon == t)
            ):
                if self._mid_x2 == NO_PRICE:
                    marks[i] = UNAVAILABLE
                    self._unavailable[h] += 1
                else:
                    m = self._signed(i, self._mid_x2)
                    marks[i] = m
                    self._sum[h] += m * self._sizes[i]
                    self._resolved[h] += 1
                    self._resolved_size[h] += self._sizes[i]
                i += 1
            self._cursor[h] = i

    def on_mid(self, t_ms: int, mid_x2: int) -> None:
        """A new mark at ``t_ms``; NO_PRICE (a side of the book is empty) is ignored."""
        t = max(_check(t_ms, 0, _MAX_TIME, "t_ms"), self._last_time)
        _check(mid_x2, NO_PRICE, 2 * MAX_PRICE, "mid_x2")
        if mid_x2 == NO_PRICE:
            return
        self._last_time = t
        self._resolve_before(t, inclusive=False)
        self._mid_x2 = mid_x2

    def flush(self, t_ms: int) -> None:
        """Resolve every horizon at or before ``t_ms`` with the current mark."""
        t = max(_check(t_ms, 0, _MAX_TIME, "t_ms"), self._last_time)
        self._last_time = t
        self._resolve_before(t, inclusive=True)

    def markout(self, index: int, horizon: int) -> int:
        """One fill's markout at one horizon (index into horizons_ms), or PENDING/UNAVAILABLE."""
        _check(horizon, 0, len(self._horizons) - 1, "horizon")
        return self._marks[horizon][_check(index, 0, len(self._times) - 1, "index")]

    def at_fill(self, index: int) -> int:
        """The edge captured against the mid at the moment of the fill (or UNAVAILABLE)."""
        return self._at_fill[_check(index, 0, len(self._times) - 1, "index")]

    def size_of(self, index: int) -> int:
        """The size of one fill (micro-shares)."""
        return self._sizes[_check(index, 0, len(self._times) - 1, "index")]

    def resolved(self, horizon: int) -> int:
        return self._resolved[_check(horizon, 0, len(self._horizons) - 1, "horizon")]

    def unavailable(self, horizon: int) -> int:
        return self._unavailable[_check(horizon, 0, len(self._horizons) - 1, "horizon")]

    def weighted_sum(self, horizon: int) -> int:
        """Sum of markout x size over resolved fills (half price units x micro-shares)."""
        return self._sum[_check(horizon, 0, len(self._horizons) - 1, "horizon")]

    def resolved_size(self, horizon: int) -> int:
        return self._resolved_size[_check(horizon, 0, len(self._horizons) - 1, "horizon")]

    def toxic_count(self, horizon: int, threshold: int) -> int:
        """Resolved fills whose markout is worse than ``-threshold`` (price units)."""
        _check(threshold, 0, MAX_PRICE, "threshold")
        marks = self._marks[_check(horizon, 0, len(self._horizons) - 1, "horizon")]
        limit = -2 * threshold
        return sum(1 for m in marks if m != PENDING and m != UNAVAILABLE and m < limit)
