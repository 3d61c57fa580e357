"""Reading the Up book without our own orders: the signals and the quotes must see the market,
not themselves (a BUY of Down at q rests in the Up book as an ask at 1 - q)."""

from __future__ import annotations

from collections.abc import Mapping

from active_quoting import core

BOOK_BID: int = core.BID  # type: ignore[attr-defined]
BOOK_ASK: int = core.ASK  # type: ignore[attr-defined]
OwnLevels = tuple[Mapping[int, int], Mapping[int, int]]  # our remaining size per Up-terms price: (bids, asks)
NO_OWN: OwnLevels = ({}, {})


def touch_without(book, side: int, own: Mapping[int, int]) -> int:  # type: ignore[no-untyped-def]
    """The best price of one side of the Up book (core.BID or core.ASK, 0 or 1) with our own resting
    sizes taken out: the first level where someone else rests. Quoting against a touch that is
    our own order would keep a quote where the market has left it (and improve on ourselves).
    NO_PRICE when only we rest on that side."""
    if not own:
        return book.best_bid() if side == BOOK_BID else book.best_ask()
    # At most len(own) levels can be ours entirely, so the market's touch is among these.
    for price, size in book.top_levels(side, len(own) + 1):
        if size > own.get(price, 0):
            return price
    return core.NO_PRICE
