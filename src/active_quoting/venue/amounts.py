"""makerAmount / takerAmount of a limit order, exact, under the venue's rounding rules.

The official clients compute these with floats (``round_down(size, 2)`` on a binary float,
then ``size * price``) and lose a hundredth of a share on sizes such as 4.35, 1.13, 8.7 or
19.99. Here everything is integers: the price is in units of 1e-4 and must be on the market's
tick grid inside [tick, 1 - tick]; the size is in micro-shares and is rounded down to the
venue's 0.01-share precision (as the SDK's ROUNDING_CONFIG does for every tick size, 0.005 and
0.0025 included). A 0.01-share size times a 1e-4 price is a whole number of micro-USDC, so the
collateral amount is exact and always within the SDK's ``amount`` decimals for the tick.
"""

from __future__ import annotations

from active_quoting import core
from active_quoting.errors import UnitsError

SIZE_LOT = 10_000  # 0.01 share in micro-shares
# The venue's tick sizes (price units): 0.1, 0.01, 0.005, 0.001, 0.0025, 0.0001.
TICKS = (1000, 100, 50, 10, 25, 1)
BUY, SELL = 0, 1


def order_amounts(side: int, price: int, size: int, tick: int) -> tuple[int, int, int]:
    """(maker_amount, taker_amount, size_used) in 6-decimal token units.

    BUY: pays collateral (maker) for shares (taker); SELL: gives shares for collateral.
    ``size_used`` is ``size`` rounded down to 0.01 share.
    """
    if tick not in TICKS:
        raise UnitsError("tick_size", tick, f"not a venue tick (units: {TICKS})")
    core.check_int(price, tick, core.MAX_PRICE - tick, "price")
    if price % tick:
        raise UnitsError("price", price, f"not on the {core.format_price(tick)} tick grid")
    core.check_int(size, 1, core.MAX_SIZE, "size")
    shares = size // SIZE_LOT * SIZE_LOT
    if shares == 0:
        raise UnitsError("size", size, "below the venue's 0.01 share precision")
    collateral = shares * price // core.PRICE_SCALE  # exact: shares is a multiple of 1e4 micro
    if side == BUY:
        return collateral, shares, shares
    if side == SELL:
        return shares, collateral, shares
    raise UnitsError("side", side, "expected 0 (BUY) or 1 (SELL)")
