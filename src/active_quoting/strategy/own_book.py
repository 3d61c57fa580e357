"""Reading the Up book without our own orders: the signals and the quotes must see the market,
not themselves (a BUY of Down at q rests in the Up book as an ask at 1 - q)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from active_quoting import core

BOOK_BID: int = core.BID  # type: ignore[attr-defined]
BOOK_ASK: int = core.ASK  # type: ignore[attr-defined]
OwnLevels = tuple[Mapping[int, int], Mapping[int, int]]  # our remaining size per Up-terms price: (bids, asks)
NO_OWN: OwnLevels = (MappingProxyType({}), MappingProxyType({}))


def touch_without(book, side: int, own: Mapping[int, int], exact: bool = False) -> int:  # type: ignore[no-untyped-def]
    """The best price of one side of the Up book (BOOK_BID or BOOK_ASK) with our own resting
    sizes (``own``, as our tracker knows them) taken out: the first level where someone else
    rests. NO_PRICE when only we rest on that side.

    Our tracker and the book do not learn of our changes at the same moment (an order sent and
    not shown yet, a cancel out and the order already dropped, a fill the user channel has not
    reported). ``exact=False`` (the signals, which bound that timing themselves) reads a level
    as ours alone when it holds no more than our size; ``exact=True`` (the quotes) only when it
    holds exactly our size: a level holding less does not show all of ours, so who rests there
    is unknown and it stays the market's (quoting against a touch that is our own order would
    keep a quote where the market left it; skipping a level others hold would move it away)."""
    best = book.best_bid() if side == BOOK_BID else book.best_ask()
    mine = own.get(best, 0) if own else 0
    if not mine:
        return best
    size = book.size_at(side, best)
    if size > mine or (exact and size < mine):
        return best
    # At most len(own) levels can be ours entirely, so the market's touch is among these.
    for price, size in book.top_levels(side, len(own) + 1):
        mine = own.get(price, 0)
        if size > mine or (exact and size < mine):
            return price
    return core.NO_PRICE
