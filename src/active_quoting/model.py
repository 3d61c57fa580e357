"""Domain values shared by the venue layer, the strategy and analytics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

BUY, SELL = "BUY", "SELL"

# Settlement states of a trade (the user channel's trade ``status``).
MATCHED, MINED, CONFIRMED, RETRYING, FAILED = "MATCHED", "MINED", "CONFIRMED", "RETRYING", "FAILED"
STATUSES = (MATCHED, MINED, CONFIRMED, RETRYING, FAILED)
FINAL_STATUSES = (CONFIRMED, FAILED)


@dataclass(frozen=True)
class Fill:
    """One of our fills, in fixed point (price units of 1e-4, micro-shares).

    ``order_id`` is our order's hash; ``token`` the token that order traded (which may be the
    complement of the trade's top-level asset when we were a maker in a mint or merge).
    """

    trade_id: str
    order_id: str
    market: str
    token: str
    side: str
    price: int
    size: int
    status: str
    t_ms: int = 0
    maker: bool = True

    @property
    def key(self) -> tuple[str, str]:
        return (self.trade_id, self.order_id)


# Venue error kinds that are part of normal venue life, not errors for the risk manager's count:
# a matching-engine restart (425), a post-only order refused for crossing, and a rate limit (429:
# its answer is obeyed, Retry-After waited out and the refresh cap slowed; halting on a burst of
# them would cancel everything, which only sends more requests into the limit).
NOT_ERRORS = frozenset({"engine_restart", "post_only_reject", "rate_limited"})


# The Up-terms quote an order expresses. A binary market is quoted in Up terms; an order on the
# venue is a BUY or SELL of one of the two tokens. A BUY of Up or a SELL of Down is a bid; a SELL
# of Up or a BUY of Down is an ask; a price on Down is 1 - p in Up terms.
BID, ASK = "bid", "ask"
PRICE_ONE = 10_000  # 1.0 in price units (1e-4); equals core.MAX_PRICE


def up_terms(token_is_up: bool, side: str, price: int) -> tuple[str, int]:
    """The Up-terms quote (BID/ASK, price) of an order on a token: the one complement mapping."""
    quote = BID if token_is_up == (side == BUY) else ASK
    return quote, price if token_is_up else PRICE_ONE - price


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """One order strategy asks execution to place: what goes to the venue (token, side, price,
    size, in token terms) and the Up-terms quote it expresses (``quote``, ``quote_price``)."""

    market: str
    token: str
    side: str  # BUY / SELL of ``token``
    price: int  # token terms, price units
    size: int  # micro-shares
    quote: str  # BID / ASK
    quote_price: int  # Up terms


class PendingOrder(NamedTuple):
    """One of our live orders as the limits see it (token terms): what it still commits."""

    token: str
    side: str  # BUY / SELL
    price: int
    remaining: int  # micro-shares


Pending = dict[str, list[PendingOrder]]  # market -> our live orders there
