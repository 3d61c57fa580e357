"""Venue REST records the shell needs, parsed once here into typed values (the venue's JSON
is read only in ``venue/``): open orders from ``/data/orders`` and market records from
``/markets/{condition_id}``."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from active_quoting import core
from active_quoting.discovery import WindowInfo


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """One of our open orders as the venue lists it (token terms)."""

    order_id: str
    market: str
    token: str
    side: str
    price: int
    size: int
    matched: int


def open_order(o: dict[str, Any]) -> VenueOrder:
    """A ``/data/orders`` row; raises UnitsError/KeyError on a malformed one."""
    return VenueOrder(
        str(o["id"]), str(o.get("market", "")), str(o["asset_id"]), str(o["side"]).upper(),
        core.parse_price(str(o["price"]), "price"), core.parse_size(str(o["original_size"]), "original_size"),
        core.parse_size(str(o.get("size_matched") or "0"), "size_matched"),
    )  # fmt: skip


def market_winner(record: dict[str, Any]) -> str | None:
    """The winning token of a resolved market record, None while unresolved."""
    winners = [str(t["token_id"]) for t in record.get("tokens") or [] if t.get("winner")]
    return winners[0] if winners else None


def window_from_market_record(record: dict[str, Any], now: float) -> WindowInfo | None:
    """A window we no longer knew, from the venue's ``GET /markets/{condition_id}``: enough to
    account its fills and learn its winner (it is never quoted)."""
    tokens = record.get("tokens") or []
    by_outcome = {str(t.get("outcome", "")).lower(): str(t.get("token_id", "")) for t in tokens}
    if not by_outcome.get("up") or not by_outcome.get("down"):
        tokens_ids = [str(t.get("token_id", "")) for t in tokens]
        if len(tokens_ids) != 2 or not all(tokens_ids):
            return None
        by_outcome = {"up": tokens_ids[0], "down": tokens_ids[1]}
    cid = str(record.get("condition_id", ""))
    slug = str(record.get("market_slug") or cid[:18])
    return WindowInfo(
        asset=slug.split("-", 1)[0], slug=slug, condition_id=cid, up=by_outcome["up"], down=by_outcome["down"],
        start=int(now), end=int(now), tick=core.DEFAULT_TICK, min_size=5_000_000, fee_rate=Fraction(0),
        fee_exponent=1, rebate_share=Fraction(0), closed=True,
    )  # fmt: skip
