"""Pre-signed order ladders: the likely next orders of each market side, signed in idle time.

Signing (EIP-712 hashing and a secp256k1 signature, ~20 us) is most of what a requote costs
between the decision and the bytes on the wire, and between two requotes of a side only the
price (and the salt) usually changes. So after a pass's sends are out, the order manager signs a
small ladder around each side's last order: the same token, side and size at its price and a few
ticks either side, on the market's current tick grid, for the order version its market needs now.
A requote whose order matches a ready entry exactly takes it; anything else is signed fresh.

What keeps a ladder entry from ever going out wrong:

* An entry is found only by its full :class:`LadderKey` (token, side, price, size, tick, order
  version, neg-risk, fee rate): a tick, size, version or fee change is a different key, and the
  next :meth:`Ladders.fill` evicts entries that no longer fit.
* Before an entry is handed out, the order fields in its serialized body (the exact bytes that
  are sent) are decoded and compared with what the decision asks for: amounts for that price,
  size and tick, token, side, maker, signer, signature type, expiration, fee rate, version. Any
  difference is counted (``mismatch``) and the order is signed fresh instead.
* Age: the V2 ``timestamp`` is the order's creation time, not an expiry, so entries are kept
  fresh: :meth:`Ladders.fill` re-signs entries older than half of ``max_age_s`` and
  :meth:`Ladders.take` refuses entries older than ``max_age_s`` (``stale``).
* An entry is used once (each carries its own salt) and is removed when taken.

Memory is bounded: at most ``2 * depth + 1`` entries per market side, and :meth:`Ladders.forget`
drops a market's ladders (the bot calls it when the market stops quoting; the order manager when
it forgets the market). Salts come from the order manager's salt source, which the simulator
seeds: runs stay reproducible.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from active_quoting import core
from active_quoting.errors import ActiveQuotingError
from active_quoting.model import ASK, BID
from active_quoting.venue.amounts import BUY, order_amounts
from active_quoting.venue.orders import build_order
from active_quoting.venue.signing import OrderSigner, SignedOrder

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LadderKey:
    """Everything that decides an order's signed fields, apart from salt and timestamp."""

    token: str
    side: int  # venue side: 0 BUY, 1 SELL
    price: int  # token terms, price units
    size: int  # micro-shares
    tick: int
    version: int  # order version (1, 2, 3)
    neg_risk: bool = False
    fee_rate_bps: int | None = None  # version 1 only (signed); None for versions 2 and 3


@dataclass(slots=True)
class _Entry:
    order: SignedOrder
    made_ms: int  # the order's timestamp: when it was signed (wall ms)


def ladder_offsets(depth: int) -> list[int]:
    """Tick offsets from the basis price, most likely first: +1, -1, +2, -2, ..., then 0."""
    out = []
    for k in range(1, depth + 1):
        out += [k, -k]
    return out + [0]


class Ladders:
    """Pre-signed orders per (market, quote side). ``salts`` is the order manager's salt source."""

    def __init__(
        self,
        signer: OrderSigner,
        salts: Callable[[], int],
        *,
        depth: int = 2,
        max_age_s: float = 5.0,
        budget: int = 8,
    ) -> None:
        if depth < 0:
            raise ValueError("presign depth must not be negative")
        if max_age_s <= 0:
            raise ValueError("presign max age must be positive")
        self.signer = signer
        self.salts = salts
        self.depth = depth
        self.offsets = ladder_offsets(depth)
        self.cap = len(self.offsets)  # entries per market side, at most
        self.max_age_ms = int(max_age_s * 1000)
        self.refresh_ms = self.max_age_ms // 2
        self.budget = budget  # signatures per idle call, so one call never holds the loop long
        self._ladders: dict[tuple[str, str], dict[LadderKey, _Entry]] = {}
        # Sides whose ladder is complete for a basis: (basis, oldest entry's ms). fill() returns
        # at once for them until the basis changes, an entry is taken or the oldest is due.
        self._complete: dict[tuple[str, str], tuple[LadderKey, int]] = {}
        self.counts: Counter[str] = Counter(hits=0, misses=0, stale=0, mismatch=0, evicted=0, signed=0, failed=0)

    # -- use -----------------------------------------------------------------------------

    def take(self, market: str, quote: str, key: LadderKey, now_ms: int) -> SignedOrder | None:
        """The ready order for exactly ``key`` on this market side, removed from the ladder; None
        (a miss) when there is none, it is too old, or its signed fields are not ``key``'s."""
        ladder = self._ladders.get((market, quote))
        entry = ladder.pop(key, None) if ladder is not None else None
        if entry is not None:
            self._complete.pop((market, quote), None)
        if entry is None:
            self.counts["misses"] += 1
            return None
        age = now_ms - entry.made_ms
        if age > self.max_age_ms or age < 0:
            self.counts["stale"] += 1
            self.counts["misses"] += 1
            return None
        why = self.mismatch(entry.order, key)
        if why:
            self.counts["mismatch"] += 1
            self.counts["misses"] += 1
            _log.error("pre-signed order %s does not match the order asked for (%s): signed afresh", entry.order, why)
            return None
        self.counts["hits"] += 1
        return entry.order

    def mismatch(self, order: SignedOrder, key: LadderKey) -> str:
        """'' when the order's serialized fields are exactly ``key``'s order (for this signer);
        else the first field that differs."""
        try:
            maker_amount, taker_amount, _ = order_amounts(key.side, key.price, key.size, key.tick)
        except ActiveQuotingError as err:
            return f"amounts: {err}"
        wire = orjson.loads(order.wire_json)
        s = self.signer
        want: dict[str, object] = {
            "tokenId": str(key.token),
            "makerAmount": str(maker_amount),
            "takerAmount": str(taker_amount),
            "side": "BUY" if key.side == BUY else "SELL",
            "maker": s.maker,
            "signer": s.order_signer if key.version != 1 else s.address,
            "signatureType": s.signature_type,
            "expiration": "0",
        }
        if key.version == 1:
            want["feeRateBps"] = str(key.fee_rate_bps)
        for field, value in want.items():
            if wire.get(field) != value:
                return f"{field}: {wire.get(field)!r} != {value!r}"
        if order.version != key.version:
            return f"version: {order.version} != {key.version}"
        if (key.version == 1) == ("timestamp" in wire):
            return "wire shape: not the order version's"
        return ""

    # -- idle time -----------------------------------------------------------------------

    def fill(
        self,
        market: str,
        quote: str,
        basis: LadderKey,
        now_ms: int,
        budget: int,
        size_at: Callable[[int], int] | None = None,
    ) -> int:
        """Bring this side's ladder to the keys around ``basis`` (its price and ``depth`` ticks
        either side, same everything else): entries that no longer fit or are past half their
        age are evicted, missing ones signed, at most ``budget``. Returns how many were signed.
        ``size_at(price)``: the size the quotes would have at each price (a fixed notional buys
        fewer shares higher up); without it, every rung has the basis's size."""
        side = (market, quote)
        done = self._complete.get(side)
        if done is not None and done[0] == basis and now_ms - done[1] <= self.refresh_ms:
            return 0
        wanted = []
        for k in self.offsets:
            price = basis.price + k * basis.tick
            if basis.tick <= price <= core.MAX_PRICE - basis.tick and price % basis.tick == 0:
                size = size_at(price) if size_at is not None else basis.size
                if size > 0:
                    wanted.append(LadderKey(basis.token, basis.side, price, size, basis.tick, basis.version,
                                            basis.neg_risk, basis.fee_rate_bps))  # fmt: skip
        ladder = self._ladders.setdefault(side, {})
        keep = set(wanted)
        for key in [k for k, e in ladder.items() if k not in keep or now_ms - e.made_ms > self.refresh_ms]:
            del ladder[key]
            self.counts["evicted"] += 1
        signed = 0
        for key in wanted:
            if signed >= budget:
                break
            if key in ladder:
                continue
            try:
                order = build_order(
                    self.signer, key.token, key.side, key.price, key.size, key.tick, version=key.version,
                    neg_risk=key.neg_risk, salt=self.salts(), timestamp_ms=now_ms, fee_rate_bps=key.fee_rate_bps,
                )  # fmt: skip
            except ActiveQuotingError as err:
                self.counts["failed"] += 1
                _log.warning("cannot pre-sign %s: %s", key, err)
                break
            order.wire_json  # noqa: B018 - serialized once, here in idle time, not on the send path
            ladder[key] = _Entry(order, now_ms)
            signed += 1
        self.counts["signed"] += signed
        if len(ladder) == len(wanted) and ladder:
            self._complete[side] = (basis, min(e.made_ms for e in ladder.values()))
        else:
            self._complete.pop(side, None)
        if not ladder:
            del self._ladders[side]
        return signed

    # -- lifecycle -----------------------------------------------------------------------

    def drop(self, market: str, quote: str) -> int:
        """Drop one side's ladder; returns how many entries went."""
        ladder = self._ladders.pop((market, quote), None)
        self._complete.pop((market, quote), None)
        n = len(ladder) if ladder else 0
        self.counts["evicted"] += n
        return n

    def forget(self, market: str) -> int:
        """Drop a market's ladders (it stopped quoting, or is forgotten); returns the entries dropped."""
        return self.drop(market, BID) + self.drop(market, ASK)

    def entries(self, market: str | None = None) -> int:
        """Ready entries (of one market, or of all)."""
        return sum(len(v) for (m, _), v in self._ladders.items() if market is None or m == market)

    def ready(self, market: str, quote: str) -> dict[LadderKey, SignedOrder]:
        """The ready orders of one market side, by key (a copy, for status and tests)."""
        return {k: e.order for k, e in self._ladders.get((market, quote), {}).items()}

    def markets(self) -> set[str]:
        return {m for m, _ in self._ladders}


__all__ = ["Ladders", "LadderKey", "ladder_offsets"]
