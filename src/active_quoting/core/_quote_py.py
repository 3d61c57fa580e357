"""Quote decisions in fixed point: the executable specification (twin of ``_quote_c``).

The engine reasons per market in Up-terms: a bid is a BUY of Up at p, an ask is a SELL of Up
at p. :func:`venue_leg` turns a side into the order the venue can take (an ask without Up
inventory becomes a BUY of Down at 1 - p: the same exposure, paid in collateral).

Units: prices in 1e-4 (``tick`` too), sizes and rooms in micro-shares, money in micro-USDC,
the skew coefficient in ticks per share scaled by 1e6 (ppm). The input bounds below keep every
intermediate product inside int64, so the compiled twin computes exactly the same integers.
"""

from active_quoting.core._units_py import MAX_PRICE, NO_PRICE, PRICE_SCALE
from active_quoting.core._units_py import check_int as _check

# Per-side actions for the order manager.
NONE = 0  # no order wanted, none resting
KEEP = 1  # resting order is close enough to the target (hysteresis): leave it
PLACE = 2  # no resting order: place the target
REPLACE = 3  # resting order is off target (or larger than now allowed): cancel and place
CANCEL = 4  # an order rests but none is wanted

UP = 0
DOWN = 1
BUY = 0
SELL = 1

SIZE_LOT = 10_000  # the venue's size precision: 0.01 share
MAX_AMOUNT = 10**15  # sizes and share rooms (micro-shares)
MAX_USDC = 10**14  # order size and liability rooms (micro-USDC); x PRICE_SCALE fits int64
MAX_POSITION = 9 * 10**11  # |position| (micro-shares); x the largest coefficient fits int64
MAX_SKEW_PPM = 10_000_000  # 10 ticks per share
_PPM_SHARES = 10**12  # ppm coefficient x micro-shares -> whole ticks


def floor_to_tick(price: int, tick: int) -> int:
    """The highest grid price at or below ``price``."""
    return price // tick * tick


def ceil_to_tick(price: int, tick: int) -> int:
    """The lowest grid price at or above ``price``."""
    return -(-price // tick) * tick


def skew_ticks(coef_ppm: int, position: int) -> int:
    """``coefficient x inventory`` in whole ticks, truncated toward zero (either sign)."""
    _check(coef_ppm, 0, MAX_SKEW_PPM, "skew_coef_ppm")
    _check(position, -MAX_POSITION, MAX_POSITION, "position")
    magnitude = coef_ppm * abs(position) // _PPM_SHARES
    return magnitude if position >= 0 else -magnitude


def venue_leg(is_ask: bool, price: int, size: int, held: int) -> tuple[int, int, int, int]:
    """The venue order for one Up-terms side: (token, side, price, size).

    A bid is a BUY of Up at p, or a SELL of held Down at 1 - p when ``held`` (Down shares)
    covers it. An ask is a SELL of held Up at p when ``held`` (Up shares) covers it,
    otherwise a BUY of Down at 1 - p.
    """
    _check(price, 1, MAX_PRICE - 1, "price")
    _check(size, 1, MAX_AMOUNT, "size")
    _check(held, 0, MAX_AMOUNT, "held")
    if is_ask:
        if held >= size:
            return (UP, SELL, price, size)
        return (DOWN, BUY, MAX_PRICE - price, size)
    if held >= size:
        return (DOWN, SELL, MAX_PRICE - price, size)
    return (UP, BUY, price, size)


class QuoteEngine:
    """Target quotes for one market from its book top, inventory, momentum and limits."""

    def __init__(
        self,
        offset_ticks: int = 0,
        improve_when_spread_ticks: int = 4,
        max_spread_ticks: int = 10,
        refresh_threshold_ticks: int = 2,
        skew_coef_ppm: int = 100_000,
        order_size_usdc: int = 10_000_000,
        widen_on_momentum: bool = False,
        max_fair_band: int = 0,
    ) -> None:
        self._offset_ticks = _check(offset_ticks, 0, 100, "offset_ticks")
        self._improve_when_spread_ticks = _check(improve_when_spread_ticks, 1, MAX_PRICE, "improve_when_spread_ticks")
        self._max_spread_ticks = _check(max_spread_ticks, 1, MAX_PRICE, "max_spread_ticks")
        self._refresh_threshold_ticks = _check(refresh_threshold_ticks, 1, MAX_PRICE, "refresh_threshold_ticks")
        self._skew_coef_ppm = _check(skew_coef_ppm, 0, MAX_SKEW_PPM, "skew_coef_ppm")
        self._order_size_usdc = _check(order_size_usdc, 1, MAX_USDC, "order_size_usdc")
        self._widen_on_momentum = bool(widen_on_momentum)
        self._max_fair_band = _check(max_fair_band, 0, MAX_PRICE, "max_fair_band")

    @property
    def offset_ticks(self) -> int:
        return self._offset_ticks

    @property
    def improve_when_spread_ticks(self) -> int:
        return self._improve_when_spread_ticks

    @property
    def max_spread_ticks(self) -> int:
        return self._max_spread_ticks

    @property
    def refresh_threshold_ticks(self) -> int:
        return self._refresh_threshold_ticks

    @property
    def skew_coef_ppm(self) -> int:
        return self._skew_coef_ppm

    @property
    def order_size_usdc(self) -> int:
        return self._order_size_usdc

    @property
    def widen_on_momentum(self) -> bool:
        return self._widen_on_momentum

    @property
    def max_fair_band(self) -> int:
        """Pull both sides when the fair value's half-band exceeds this (0 = never)."""
        return self._max_fair_band

    def targets(self, best_bid: int, best_ask: int, tick: int, position: int, momentum: bool) -> tuple[int, int]:
        """Target bid and ask prices (NO_PRICE = no quote on that side)."""
        _check(best_bid, NO_PRICE, MAX_PRICE, "best_bid")
        _check(best_ask, NO_PRICE, MAX_PRICE, "best_ask")
        _check(tick, 1, 1000, "tick")
        _check(position, -MAX_POSITION, MAX_POSITION, "position")
        # No two-sided reference, or a crossed/locked book: nothing sane to quote against.
        if best_bid == NO_PRICE or best_ask == NO_PRICE or best_bid >= best_ask:
            return NO_PRICE, NO_PRICE
        if momentum and not self._widen_on_momentum:
            return NO_PRICE, NO_PRICE
        bid = best_bid - self._offset_ticks * tick
        ask = best_ask + self._offset_ticks * tick
        # Improve by a tick only when the spread is wide, and only if the two sides still
        # leave a tick between them.
        if best_ask - best_bid >= self._improve_when_spread_ticks * tick and ask - bid > 2 * tick:
            bid += tick
            ask -= tick
        if bid >= best_ask:
            bid = best_bid
        if ask <= best_bid:
            ask = best_ask
        skew = skew_ticks(self._skew_coef_ppm, position)
        bid -= skew * tick
        ask -= skew * tick
        if momentum:
            need = self._max_spread_ticks * tick
            if ask - bid < need:
                mid2 = best_bid + best_ask
                bid = min(bid, floor_to_tick((mid2 - need) // 2, tick))
                ask = max(ask, ceil_to_tick(-(-(mid2 + need) // 2), tick))
        # On the grid (after a tick change the book itself may be off it), inside (0, 1),
        # and never crossing the book: post-only would reject it.
        bid = min(max(floor_to_tick(bid, tick), tick), ceil_to_tick(best_ask, tick) - tick)
        ask = max(min(ceil_to_tick(ask, tick), MAX_PRICE - tick), floor_to_tick(best_bid, tick) + tick)
        if bid < tick:
            bid = NO_PRICE
        if ask > MAX_PRICE - tick:
            ask = NO_PRICE
        if bid != NO_PRICE and ask != NO_PRICE and bid >= ask:
            bid = NO_PRICE
        return bid, ask

    def size_for(self, price: int, liability_price: int, min_size: int, room: int, room_usdc: int) -> int:
        """Order size in micro-shares: ORDER_SIZE of risk at ``liability_price`` (this side's
        worst-case loss per share), on the venue's 0.01 lot, at least ``min_size``, cut to the
        share and liability rooms; 0 when that leaves less than ``min_size``."""
        if price == NO_PRICE:
            return 0
        _check(price, 1, MAX_PRICE, "price")
        _check(liability_price, 0, MAX_PRICE, "liability_price")
        _check(min_size, 0, MAX_AMOUNT, "min_size")
        _check(room, 0, MAX_AMOUNT, "room")
        _check(room_usdc, 0, MAX_USDC, "room_usdc")
        min_lots = ceil_to_tick(min_size, SIZE_LOT)
        # ORDER_SIZE is the collateral one side risks: shares = USDC / (worst-case loss per share).
        per_share = liability_price if liability_price > 0 else price
        size = self._order_size_usdc * PRICE_SCALE // per_share // SIZE_LOT * SIZE_LOT
        size = max(size, min_lots)
        size = min(size, room)
        if liability_price > 0:
            size = min(size, room_usdc * PRICE_SCALE // liability_price)
        size = size // SIZE_LOT * SIZE_LOT
        if size <= 0 or size < min_lots:
            return 0
        return size

    def action(self, resting_price: int, resting_size: int, target_price: int, target_size: int, tick: int) -> int:
        """Keep, place, replace or cancel one side (hysteresis on price, never oversized)."""
        _check(resting_price, NO_PRICE, MAX_PRICE, "resting_price")
        _check(resting_size, 0, MAX_AMOUNT, "resting_size")
        if resting_price == NO_PRICE:
            return PLACE if target_price != NO_PRICE else NONE
        if target_price == NO_PRICE:
            return CANCEL
        if abs(resting_price - target_price) >= self._refresh_threshold_ticks * tick:
            return REPLACE
        if resting_size > target_size:
            return REPLACE
        return KEEP

    def decide(
        self,
        best_bid: int,
        best_ask: int,
        tick: int,
        min_size: int,
        position: int,
        momentum: bool,
        resting_bid_price: int,
        resting_bid_size: int,
        resting_ask_price: int,
        resting_ask_size: int,
        bid_room: int,
        ask_room: int,
        bid_room_usdc: int,
        ask_room_usdc: int,
        fair: int = NO_PRICE,
        fair_margin: int = 0,
        fair_band: int = 0,
    ) -> tuple[int, int, int, int, int, int]:
        """One decision: (bid_price, bid_size, bid_action, ask_price, ask_size, ask_action).

        Prices are Up-terms targets (NO_PRICE and size 0 when a side is not quoted). The
        bid's worst-case loss per share is its price; the ask's (short Up) is 1 - price.

        ``fair`` (Up's fair value in price units, NO_PRICE = none) bounds the book-made
        targets: the bid is at most ``floor_to_tick(fair - fair_margin)``, the ask at least
        ``ceil_to_tick(fair + fair_margin)``; a bid pushed below one tick or an ask above
        1 - tick is not quoted. When ``max_fair_band`` > 0 and ``fair_band`` (the fair value's
        half-band) exceeds it, both sides are pulled (CANCEL what rests), with or without
        ``fair``. A resting quote beyond that bound, kept or replaced by the book-made
        decision, is cancelled instead (exposed: out now; the replacement follows on a later
        pass). Without these arguments the
        decision is exactly the book-only one.
        """
        # Validated up front, in the compiled twin's order, so both refuse the same input alike.
        _check(min_size, 0, MAX_AMOUNT, "min_size")
        _check(tick, 1, 1000, "tick")
        bid, ask = self.targets(best_bid, best_ask, tick, position, momentum)
        for room in (bid_room, ask_room):
            _check(room, 0, MAX_AMOUNT, "room")
        for room in (bid_room_usdc, ask_room_usdc):
            _check(room, 0, MAX_USDC, "room_usdc")
        for price, size in ((resting_bid_price, resting_bid_size), (resting_ask_price, resting_ask_size)):
            _check(price, NO_PRICE, MAX_PRICE, "resting_price")
            _check(size, 0, MAX_AMOUNT, "resting_size")
        _check(fair, NO_PRICE, MAX_PRICE, "fair")
        _check(fair_margin, 0, MAX_PRICE, "fair_margin")
        _check(fair_band, 0, MAX_PRICE, "fair_band")
        if self._max_fair_band > 0 and fair_band > self._max_fair_band:
            bid = ask = NO_PRICE
        elif fair != NO_PRICE:
            if bid != NO_PRICE:
                bid = min(bid, floor_to_tick(fair - fair_margin, tick))
                if bid < tick:
                    bid = NO_PRICE
            if ask != NO_PRICE:
                ask = max(ask, ceil_to_tick(fair + fair_margin, tick))
                if ask > MAX_PRICE - tick:
                    ask = NO_PRICE
        bid_size = self.size_for(bid, bid, min_size, bid_room, bid_room_usdc)
        ask_size = self.size_for(ask, MAX_PRICE - ask if ask != NO_PRICE else 0, min_size, ask_room, ask_room_usdc)
        if bid_size == 0:
            bid = NO_PRICE
        if ask_size == 0:
            ask = NO_PRICE
        bid_action = self.action(resting_bid_price, resting_bid_size, bid, bid_size, tick)
        ask_action = self.action(resting_ask_price, resting_ask_size, ask, ask_size, tick)
        if fair != NO_PRICE:
            # A resting quote beyond the fair bound is exposed: cancelled now (a cancel is never
            # held back), its replacement placed by a later pass. Kept ones too: the refresh
            # hysteresis must not leave a quote up to threshold - 1 ticks beyond the bound.
            if bid_action in (KEEP, REPLACE) and resting_bid_price > floor_to_tick(fair - fair_margin, tick):
                bid_action = CANCEL
            if (
                ask_action in (KEEP, REPLACE)
                and resting_ask_price != NO_PRICE
                and resting_ask_price < ceil_to_tick(fair + fair_margin, tick)
            ):
                ask_action = CANCEL
        return (bid, bid_size, bid_action, ask, ask_size, ask_action)
