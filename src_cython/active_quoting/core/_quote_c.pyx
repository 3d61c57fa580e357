# cython: language_level=3
"""Quote decisions in fixed point, compiled. The behaviour is defined by _quote_py.py.

All arithmetic is on int64 with Python's floor semantics for // (cdivision stays off); the
twin's input bounds keep every product in range, so both compute the same integers.
"""

cimport cython

cimport active_quoting.core.ticks as t
from active_quoting.core.ticks cimport int64_t
from active_quoting.core._units_c cimport _check_int as _check


NONE = 0
KEEP = 1
PLACE = 2
REPLACE = 3
CANCEL = 4
UP = 0
DOWN = 1
BUY = 0
SELL = 1
SIZE_LOT = 10000
MAX_AMOUNT = 10 ** 15
MAX_USDC = 10 ** 14
MAX_POSITION = 9 * 10 ** 11
MAX_SKEW_PPM = 10000000

cdef int64_t _LOT = 10000
cdef int64_t _C_MAX_AMOUNT = 10 ** 15
cdef int64_t _C_MAX_USDC = 10 ** 14
cdef int64_t _C_MAX_POSITION = 9 * 10 ** 11
cdef int64_t _PPM_SHARES = 10 ** 12


cdef inline int64_t _floor_tick(int64_t price, int64_t tick) noexcept:
    return price // tick * tick


cdef inline int64_t _ceil_tick(int64_t price, int64_t tick) noexcept:
    return -((-price) // tick) * tick


cdef inline int64_t _skew(int64_t coef_ppm, int64_t position) noexcept:
    cdef int64_t magnitude = coef_ppm * (position if position >= 0 else -position) // _PPM_SHARES
    return magnitude if position >= 0 else -magnitude


def floor_to_tick(price, tick):
    """The highest grid price at or below ``price``."""
    return price // tick * tick


def ceil_to_tick(price, tick):
    """The lowest grid price at or above ``price``."""
    return -(-price // tick) * tick


def skew_ticks(coef_ppm, position):
    """``coefficient x inventory`` in whole ticks, truncated toward zero (either sign)."""
    return _skew(_check(coef_ppm, 0, MAX_SKEW_PPM, "skew_coef_ppm"),
                 _check(position, -_C_MAX_POSITION, _C_MAX_POSITION, "position"))


def venue_leg(is_ask, price, size, held):
    """The venue order for one Up-terms side: (token, side, price, size)."""
    cdef int64_t p = _check(price, 1, t.MAX_PRICE - 1, "price")
    cdef int64_t q = _check(size, 1, _C_MAX_AMOUNT, "size")
    cdef int64_t h = _check(held, 0, _C_MAX_AMOUNT, "held")
    if is_ask:
        if h >= q:
            return (UP, SELL, p, q)
        return (DOWN, BUY, t.MAX_PRICE - p, q)
    if h >= q:
        return (DOWN, SELL, t.MAX_PRICE - p, q)
    return (UP, BUY, p, q)


@cython.auto_pickle(False)
cdef class QuoteEngine:
    """Target quotes for one market from its book top, inventory, momentum and limits."""

    cdef readonly int64_t offset_ticks
    cdef readonly int64_t improve_when_spread_ticks
    cdef readonly int64_t max_spread_ticks
    cdef readonly int64_t refresh_threshold_ticks
    cdef readonly int64_t skew_coef_ppm
    cdef readonly int64_t order_size_usdc
    cdef readonly bint widen_on_momentum
    cdef readonly int64_t max_fair_band

    def __init__(self, offset_ticks=0, improve_when_spread_ticks=4, max_spread_ticks=10,
                 refresh_threshold_ticks=2, skew_coef_ppm=100000, order_size_usdc=10000000,
                 widen_on_momentum=False, max_fair_band=0):
        self.offset_ticks = _check(offset_ticks, 0, 100, "offset_ticks")
        self.improve_when_spread_ticks = _check(improve_when_spread_ticks, 1, t.MAX_PRICE, "improve_when_spread_ticks")
        self.max_spread_ticks = _check(max_spread_ticks, 1, t.MAX_PRICE, "max_spread_ticks")
        self.refresh_threshold_ticks = _check(refresh_threshold_ticks, 1, t.MAX_PRICE, "refresh_threshold_ticks")
        self.skew_coef_ppm = _check(skew_coef_ppm, 0, MAX_SKEW_PPM, "skew_coef_ppm")
        self.order_size_usdc = _check(order_size_usdc, 1, _C_MAX_USDC, "order_size_usdc")
        self.widen_on_momentum = bool(widen_on_momentum)
        self.max_fair_band = _check(max_fair_band, 0, t.MAX_PRICE, "max_fair_band")

    cdef void _targets(self, int64_t best_bid, int64_t best_ask, int64_t tick, int64_t position,
                       bint momentum, int64_t* out_bid, int64_t* out_ask) noexcept:
        cdef int64_t bid, ask, skew, need, mid2
        out_bid[0] = t.NO_PRICE
        out_ask[0] = t.NO_PRICE
        if best_bid == t.NO_PRICE or best_ask == t.NO_PRICE or best_bid >= best_ask:
            return
        if momentum and not self.widen_on_momentum:
            return
        bid = best_bid - self.offset_ticks * tick
        ask = best_ask + self.offset_ticks * tick
        if best_ask - best_bid >= self.improve_when_spread_ticks * tick and ask - bid > 2 * tick:
            bid += tick
            ask -= tick
        if bid >= best_ask:
            bid = best_bid
        if ask <= best_bid:
            ask = best_ask
        skew = _skew(self.skew_coef_ppm, position)
        bid -= skew * tick
        ask -= skew * tick
        if momentum:
            need = self.max_spread_ticks * tick
            if ask - bid < need:
                mid2 = best_bid + best_ask
                bid = min(bid, _floor_tick((mid2 - need) // 2, tick))
                ask = max(ask, _ceil_tick(-((-(mid2 + need)) // 2), tick))
        bid = min(max(_floor_tick(bid, tick), tick), _ceil_tick(best_ask, tick) - tick)
        ask = max(min(_ceil_tick(ask, tick), t.MAX_PRICE - tick), _floor_tick(best_bid, tick) + tick)
        if bid < tick:
            bid = t.NO_PRICE
        if ask > t.MAX_PRICE - tick:
            ask = t.NO_PRICE
        if bid != t.NO_PRICE and ask != t.NO_PRICE and bid >= ask:
            bid = t.NO_PRICE
        out_bid[0] = bid
        out_ask[0] = ask

    cdef int64_t _size(self, int64_t price, int64_t liability_price, int64_t min_size, int64_t room,
                       int64_t room_usdc) noexcept:
        cdef int64_t size, min_lots, per_share
        if price == t.NO_PRICE:
            return 0
        min_lots = _ceil_tick(min_size, _LOT)
        # ORDER_SIZE is the collateral one side risks: shares = USDC / (worst-case loss per share).
        per_share = liability_price if liability_price > 0 else price
        size = self.order_size_usdc * t.PRICE_SCALE // per_share // _LOT * _LOT
        size = max(size, min_lots)
        size = min(size, room)
        if liability_price > 0:
            size = min(size, room_usdc * t.PRICE_SCALE // liability_price)
        size = size // _LOT * _LOT
        if size <= 0 or size < min_lots:
            return 0
        return size

    cdef int _action(self, int64_t resting_price, int64_t resting_size, int64_t target_price,
                     int64_t target_size, int64_t tick) noexcept:
        cdef int64_t diff
        if resting_price == t.NO_PRICE:
            return PLACE if target_price != t.NO_PRICE else NONE
        if target_price == t.NO_PRICE:
            return CANCEL
        diff = resting_price - target_price
        if (diff if diff >= 0 else -diff) >= self.refresh_threshold_ticks * tick:
            return REPLACE
        if resting_size > target_size:
            return REPLACE
        return KEEP

    def targets(self, best_bid, best_ask, tick, position, momentum):
        """Target bid and ask prices (NO_PRICE = no quote on that side)."""
        cdef int64_t bid, ask
        self._targets(
            _check(best_bid, t.NO_PRICE, t.MAX_PRICE, "best_bid"),
            _check(best_ask, t.NO_PRICE, t.MAX_PRICE, "best_ask"),
            _check(tick, 1, 1000, "tick"),
            _check(position, -_C_MAX_POSITION, _C_MAX_POSITION, "position"),
            momentum, &bid, &ask,
        )
        return bid, ask

    def size_for(self, price, liability_price, min_size, room, room_usdc):
        """Order size in micro-shares (see the twin)."""
        if price == t.NO_PRICE:
            return 0
        return self._size(
            _check(price, 1, t.MAX_PRICE, "price"),
            _check(liability_price, 0, t.MAX_PRICE, "liability_price"),
            _check(min_size, 0, _C_MAX_AMOUNT, "min_size"),
            _check(room, 0, _C_MAX_AMOUNT, "room"),
            _check(room_usdc, 0, _C_MAX_USDC, "room_usdc"),
        )

    def action(self, resting_price, resting_size, target_price, target_size, tick):
        """Keep, place, replace or cancel one side (hysteresis on price, never oversized)."""
        return self._action(
            _check(resting_price, t.NO_PRICE, t.MAX_PRICE, "resting_price"),
            _check(resting_size, 0, _C_MAX_AMOUNT, "resting_size"),
            target_price, target_size, tick,
        )

    def decide(self, best_bid, best_ask, tick, min_size, position, momentum,
               resting_bid_price, resting_bid_size, resting_ask_price, resting_ask_size,
               bid_room, ask_room, bid_room_usdc, ask_room_usdc, fair=t.NO_PRICE, fair_margin=0, fair_band=0):
        """One decision: (bid_price, bid_size, bid_action, ask_price, ask_size, ask_action)."""
        cdef int64_t bid, ask, bid_size, ask_size, tk, fv, fm, fb
        cdef int64_t mn = _check(min_size, 0, _C_MAX_AMOUNT, "min_size")
        cdef int64_t rbp, rbs, rap, ras, br, ar, bru, aru
        tk = _check(tick, 1, 1000, "tick")
        self._targets(
            _check(best_bid, t.NO_PRICE, t.MAX_PRICE, "best_bid"),
            _check(best_ask, t.NO_PRICE, t.MAX_PRICE, "best_ask"),
            tk,
            _check(position, -_C_MAX_POSITION, _C_MAX_POSITION, "position"),
            momentum, &bid, &ask,
        )
        br = _check(bid_room, 0, _C_MAX_AMOUNT, "room")
        ar = _check(ask_room, 0, _C_MAX_AMOUNT, "room")
        bru = _check(bid_room_usdc, 0, _C_MAX_USDC, "room_usdc")
        aru = _check(ask_room_usdc, 0, _C_MAX_USDC, "room_usdc")
        rbp = _check(resting_bid_price, t.NO_PRICE, t.MAX_PRICE, "resting_price")
        rbs = _check(resting_bid_size, 0, _C_MAX_AMOUNT, "resting_size")
        rap = _check(resting_ask_price, t.NO_PRICE, t.MAX_PRICE, "resting_price")
        ras = _check(resting_ask_size, 0, _C_MAX_AMOUNT, "resting_size")
        fv = _check(fair, t.NO_PRICE, t.MAX_PRICE, "fair")
        fm = _check(fair_margin, 0, t.MAX_PRICE, "fair_margin")
        fb = _check(fair_band, 0, t.MAX_PRICE, "fair_band")
        if self.max_fair_band > 0 and fb > self.max_fair_band:
            bid = t.NO_PRICE
            ask = t.NO_PRICE
        elif fv != t.NO_PRICE:
            # fair - margin may be negative: _floor_tick floors (Python //), so such a bid drops out.
            if bid != t.NO_PRICE:
                bid = min(bid, _floor_tick(fv - fm, tk))
                if bid < tk:
                    bid = t.NO_PRICE
            if ask != t.NO_PRICE:
                ask = max(ask, _ceil_tick(fv + fm, tk))
                if ask > t.MAX_PRICE - tk:
                    ask = t.NO_PRICE
        bid_size = self._size(bid, bid, mn, br, bru)
        ask_size = self._size(ask, t.MAX_PRICE - ask if ask != t.NO_PRICE else 0, mn, ar, aru)
        if bid_size == 0:
            bid = t.NO_PRICE
        if ask_size == 0:
            ask = t.NO_PRICE
        bid_action = self._action(rbp, rbs, bid, bid_size, tk)
        ask_action = self._action(rap, ras, ask, ask_size, tk)
        if fv != t.NO_PRICE:
            # A resting quote beyond the fair bound is exposed: cancelled now (a cancel is never
            # held back), its replacement placed by a later pass; kept ones too (the twin says why).
            if (bid_action == KEEP or bid_action == REPLACE) and rbp > _floor_tick(fv - fm, tk):
                bid_action = CANCEL
            if (ask_action == KEEP or ask_action == REPLACE) and rap != t.NO_PRICE and rap < _ceil_tick(fv + fm, tk):
                ask_action = CANCEL
        return (bid, bid_size, bid_action, ask, ask_size, ask_action)
