"""Domain values shared by the venue layer, the strategy and analytics."""

from __future__ import annotations

from dataclasses import dataclass

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
# a matching-engine restart (425) and a post-only order refused for crossing.
NOT_ERRORS = frozenset({"engine_restart", "post_only_reject"})
