from typing import Any

from typing_extensions import disjoint_base

NONE: int
KEEP: int
PLACE: int
REPLACE: int
CANCEL: int
UP: int
DOWN: int
BUY: int
SELL: int
SIZE_LOT: int
MAX_AMOUNT: int
MAX_USDC: int
MAX_POSITION: int
MAX_SKEW_PPM: int

def floor_to_tick(price: int, tick: int) -> int:
    """The highest grid price at or below ``price``."""

def ceil_to_tick(price: int, tick: int) -> int:
    """The lowest grid price at or above ``price``."""

def skew_ticks(coef_ppm: int, position: int) -> int:
    """``coefficient x inventory`` in whole ticks, truncated toward zero (either sign)."""

def venue_leg(is_ask: Any, price: int, size: int, held: int) -> tuple[int, int, int, int]:
    """The venue order for one Up-terms side: (token, side, price, size)."""

@disjoint_base
class QuoteEngine:
    """Target quotes for one market from its book top, inventory, momentum and limits."""

    @property
    def offset_ticks(self) -> int: ...
    @property
    def improve_when_spread_ticks(self) -> int: ...
    @property
    def max_spread_ticks(self) -> int: ...
    @property
    def refresh_threshold_ticks(self) -> int: ...
    @property
    def skew_coef_ppm(self) -> int: ...
    @property
    def order_size_usdc(self) -> int: ...
    @property
    def widen_on_momentum(self) -> bool: ...
    @property
    def max_fair_band(self) -> int: ...
    def __init__(
        self,
        offset_ticks: Any = ...,
        improve_when_spread_ticks: Any = ...,
        max_spread_ticks: Any = ...,
        refresh_threshold_ticks: Any = ...,
        skew_coef_ppm: Any = ...,
        order_size_usdc: Any = ...,
        widen_on_momentum: Any = ...,
        max_fair_band: int = ...,
    ) -> None: ...
    def targets(self, best_bid: int, best_ask: int, tick: int, position: int, momentum: Any) -> tuple[int, int]: ...
    def size_for(self, price: int, liability_price: int, min_size: int, room: int, room_usdc: int) -> int: ...
    def action(self, resting_price: int, resting_size: int, target_price: int, target_size: int, tick: int) -> int: ...
    def decide(
        self,
        best_bid: int,
        best_ask: int,
        tick: int,
        min_size: int,
        position: int,
        momentum: Any,
        resting_bid_price: int,
        resting_bid_size: int,
        resting_ask_price: int,
        resting_ask_size: int,
        bid_room: int,
        ask_room: int,
        bid_room_usdc: int,
        ask_room_usdc: int,
        fair: int = ...,
        fair_margin: int = ...,
        fair_band: int = ...,
    ) -> tuple[int, int, int, int, int, int]: ...
