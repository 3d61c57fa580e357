"""The order manager: the one submit path, from desired quotes to orders on the venue.

Desired quotes (per market, per Up-terms side) are diffed against our live orders; cancels go
first (one ``DELETE /orders``), then new orders in post-only batches of at most 15 across
markets. A per-market minimum refresh interval and a global refresh cap (token bucket) bound
the churn. The user channel is authoritative for order state; every order is tracked from
before it is sent (its hash is known) until the venue confirms it gone, and reconciliation
against ``/data/orders`` resolves unknown outcomes after timeouts, 5xx and reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from active_quoting import core
from active_quoting.model import BUY, SELL
from active_quoting.observability.metrics import Metrics
from active_quoting.store.journal import Journal
from active_quoting.store.sqlite import Store
from active_quoting.strategy.quoting import MarketDecision, Resting
from active_quoting.venue.errors import VenueError
from active_quoting.venue.orders import build_order, encode, order_body
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner
from active_quoting.venue.user_codec import CANCELED, INVALID, MATCHED_ORDER, OrderUpdate

_log = logging.getLogger(__name__)

LIVE_STATES = ("SENT", "LIVE", "UNKNOWN", "CANCELING")


@dataclass
class Tracked:
    order_id: str
    market: str
    token: str
    side: str  # BUY / SELL (token terms)
    price: int  # token terms
    size: int
    up_side: str  # "bid" / "ask": which quote it expresses
    up_price: int
    status: str = "SENT"
    matched: int = 0
    cancel_requested: bool = False
    sent_ms: int = 0

    @property
    def remaining(self) -> int:
        return self.size - self.matched


@dataclass(frozen=True)
class MarketRef:
    condition_id: str
    up: str
    down: str
    tick: int


class RefreshLimiter:
    """Global token bucket for cancel/replace cycles per second."""

    def __init__(self, per_sec: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_sec
        self.tokens = per_sec
        self.clock = clock
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class OrderManager:
    def __init__(
        self,
        rest: RestClient,
        signer: OrderSigner,
        store: Store | None = None,
        *,
        min_refresh_ms: int = 500,
        global_cap_per_sec: int = 10,
        on_error: Callable[[str], None] = lambda kind: None,
        on_success: Callable[[], None] = lambda: None,
        metrics: Metrics | None = None,
        dry_run: bool = False,
        concurrent_replace: bool = False,
        may_place: Callable[[str], bool] = lambda market: True,
    ) -> None:
        self.dry_run = dry_run
        self.concurrent_replace = concurrent_replace
        self.adopted: list[str] = []  # live orders found on the venue that neither memory nor store knew
        self.metrics = metrics or Metrics()
        self._staged_at = 0.0
        self.journal: Journal | None = None
        self.rest = rest
        self.signer = signer
        self.store = store
        self.min_refresh_ms = min_refresh_ms
        self.limiter = RefreshLimiter(global_cap_per_sec)
        self.on_error = on_error
        self.on_success = on_success
        self.may_place = may_place
        self.markets: dict[str, MarketRef] = {}
        self.orders: dict[str, Tracked] = {}
        self.last_refresh: dict[str, float] = {}
        self._cancels: list[str] = []
        self._places: list[Tracked] = []
        # Every key the status shows from the start; others (dry_run, off_grid_cancels, ...)
        # appear when first counted.
        self.counts: Counter[str] = Counter(
            placed=0, rejected=0, post_only_rejects=0, canceled=0, unsolicited_cancels=0, cancel_refused=0, unknown=0,
            adopted=0,
        )  # fmt: skip

    def add_market(self, ref: MarketRef) -> None:
        self.markets[ref.condition_id] = ref

    # -- views for the strategy ---------------------------------------------------------

    def live(self, market: str | None = None) -> list[Tracked]:
        return [o for o in self.orders.values() if o.status in LIVE_STATES and (market is None or o.market == market)]

    def resting(self, market: str, up_side: str) -> Resting:
        mine = [o for o in self.live(market) if o.up_side == up_side and not o.cancel_requested]
        if not mine:
            return Resting()
        o = mine[0]
        return Resting(o.up_price, sum(x.remaining for x in mine))

    def pending(self) -> dict[str, list[tuple[str, str, int, int]]]:
        out: dict[str, list[tuple[str, str, int, int]]] = {}
        for o in self.live():
            out.setdefault(o.market, []).append((o.token, o.side, o.price, o.remaining))
        return out

    # -- decisions -> orders ------------------------------------------------------------

    def stage(self, decision: MarketDecision, venue_orders: list[tuple[int, int, int, int]], now_s: float) -> bool:
        """Queue the cancels and places one market decision asks for. Returns False when the
        refresh limits hold it back (a cancel-only change is never held back)."""
        sides = {"bid": decision.bid, "ask": decision.ask}
        touching = {s for s, d in sides.items() if d.action in (core.REPLACE, core.CANCEL, core.PLACE)}
        if not touching:
            return True
        only_cancels = all(sides[s].action == core.CANCEL for s in touching)
        if not only_cancels:
            last = self.last_refresh.get(decision.market, 0.0)
            if (now_s - last) * 1000 < self.min_refresh_ms or not self.limiter.take():
                return False
        self.last_refresh[decision.market] = now_s
        if not self._staged_at:
            self._staged_at = time.perf_counter()
        for s in touching:
            if sides[s].action in (core.REPLACE, core.CANCEL):
                for o in self.live(decision.market):
                    if o.up_side == s and not o.cancel_requested:
                        o.cancel_requested = True
                        o.status = "CANCELING"
                        self._cancels.append(o.order_id)
        ref = self.markets[decision.market]
        legs = iter(venue_orders)
        for s in ("bid", "ask"):
            if sides[s].action in (core.PLACE, core.REPLACE):
                self._places.append(self._tracked(ref, s, sides[s].price, next(legs)))
        return True

    def _tracked(self, ref: MarketRef, up_side: str, up_price: int, leg: tuple[int, int, int, int]) -> Tracked:
        token_index, side, price, size = leg
        token = ref.up if token_index == core.UP else ref.down
        return Tracked("", ref.condition_id, token, BUY if side == core.BUY else SELL, price, size, up_side, up_price)

    async def flush(self) -> None:
        """Send what was staged: cancels first (one ``DELETE /orders``), then the new orders in
        post-only batches of at most 15. With ``concurrent_replace`` both go out together, the
        new orders first, saving a round trip: still within every limit, because an order being
        cancelled counts as pending until the venue confirms it gone."""
        cancels, self._cancels = self._cancels, []
        places, self._places = self._places, []
        staged_at, self._staged_at = self._staged_at, 0.0
        if cancels and places and self.concurrent_replace:
            await asyncio.gather(self._place(places, staged_at), self._cancel(cancels))
        elif cancels and places:
            await self._cancel(cancels)
            await self._place(places, staged_at)
        elif cancels:
            await self._cancel(cancels)
        elif places:
            await self._place(places, staged_at)

    async def _place(self, trackers: list[Tracked], staged_at: float) -> None:
        # Between the decision and this send (the cancels go first) the world can change:
        # a halt (risk says the market may not be quoted: nothing new goes out, whatever was
        # decided) or a tick change (the market's tick follows every snapshot and
        # tick_size_change; an order off the grid the venue now enforces would be refused).
        # Such orders are not sent; the next quote pass decides again.
        sendable = []
        for t in trackers:
            if not self.may_place(t.market):
                self.counts["held_by_risk"] += 1
            elif t.price % self.markets[t.market].tick:
                self.counts["off_grid_dropped"] += 1
            else:
                sendable.append(t)
        trackers = sendable
        if not trackers:
            return

        def build(version: int):  # type: ignore[no-untyped-def]
            out = []
            for t in trackers:
                out.append(
                    build_order(
                        self.signer,
                        t.token,
                        0 if t.side == BUY else 1,
                        t.price,
                        t.size,
                        self.markets[t.market].tick,
                        version=version,
                        fee_rate_bps=0,
                    )
                )
            for t, o in zip(trackers, out, strict=True):
                if self.journal is not None:
                    self.journal.order(encode(order_body(o, self.rest.creds.api_key if self.rest.creds else "")))
                t.order_id = o.order_hash
                t.sent_ms = int(time.time() * 1000)
                self.orders[o.order_hash] = t
                if self.store:
                    self.store.order_sent(o.order_hash, t.market, t.token, t.side, t.price, t.size, "SENT")
            if staged_at:
                self.metrics.observe("decision_to_wire", time.perf_counter() - staged_at)
            return out

        if self.dry_run:
            # Signed, journaled, counted; never sent. Nothing rests, so nothing is cancelled.
            build(self.rest.order_version)
            for t in trackers:
                self._set(t, "DRY_RUN")
            self.counts["dry_run"] += len(trackers)
            return
        started = time.perf_counter()
        try:
            results = await self.rest.submit(build)
        except VenueError as err:
            self.on_error(err.kind)
            for t in trackers:
                self._set(t, "CANCELED" if not err.unknown_outcome else "UNKNOWN", reason=err.kind)
            return
        self.metrics.observe("submit_round_trip", time.perf_counter() - started)
        for t, r in zip(trackers, results, strict=True):
            if r.accepted:
                self.counts["placed"] += 1
                if t.status == "SENT":
                    self._set(t, "LIVE" if r.status in ("live", "delayed") else t.status)
                self.on_success()
            elif r.unknown:
                self.counts["unknown"] += 1
                self._set(t, "UNKNOWN", reason=r.error_kind)
                self.on_error(r.error_kind)
            else:
                self.counts["post_only_rejects" if r.error_kind == "post_only_reject" else "rejected"] += 1
                self._set(t, "REJECTED", reason=r.error or r.error_kind)
                self.on_error(r.error_kind)

    async def _cancel(self, ids: list[str]) -> None:
        if self.dry_run:
            return
        started = time.perf_counter()
        try:
            result = await self.rest.cancel_orders(ids)
        except VenueError as err:
            self.on_error(err.kind)
            return  # they stay CANCELING; reconciliation settles them
        self.metrics.observe("cancel_round_trip", time.perf_counter() - started)
        self.on_success()
        for oid in result.canceled:
            t = self.orders.get(oid)
            if t is not None:
                self.counts["canceled"] += 1
                self._set(t, "CANCELED")
        for oid, reason in result.not_canceled.items():
            t = self.orders.get(oid)
            self.counts["cancel_refused"] += 1
            if t is not None:
                # "already canceled or matched" is terminal: never retried in a loop.
                self._set(t, "DONE", reason=reason)

    def cancel_off_grid(self, market: str, tick: int) -> int:
        """After a tick size change: stage the cancel of our live orders whose price is not on
        the new grid (the venue would refuse them if sent now; the next quote replaces them)."""
        ref = self.markets.get(market)
        if ref is not None:
            self.markets[market] = MarketRef(ref.condition_id, ref.up, ref.down, tick)
        staged = 0
        for o in self.live(market):
            if o.price % tick and not o.cancel_requested:
                o.cancel_requested = True
                o.status = "CANCELING"
                self._cancels.append(o.order_id)
                staged += 1
        self.counts["off_grid_cancels"] += staged
        return staged

    async def send_cancels(self) -> None:
        """Send the staged cancels now, without waiting for a quote pass: a pass can be held up
        by a slow answer to its submit, and a cancel is always safe to send."""
        cancels, self._cancels = self._cancels, []
        if cancels:
            await self._cancel(cancels)

    async def cancel_all(self) -> None:
        if self.dry_run:
            return
        # Marked before the request: the venue's CANCELLATION events can arrive on the user
        # channel before the HTTP answer, and they are ours, not unsolicited.
        marked = [t for t in self.live() if not t.cancel_requested]
        for t in marked:
            t.cancel_requested = True
        try:
            result = await self.rest.cancel_all()
        except VenueError as err:
            for t in marked:  # still ours to manage: the next pass cancels them again
                t.cancel_requested = False
            self.on_error(err.kind)
            return
        for oid in result.canceled:
            t = self.orders.get(oid)
            if t is not None:
                self._set(t, "CANCELED", reason="cancel-all")
        canceled = set(result.canceled)
        for t in marked:
            if t.status in LIVE_STATES and t.order_id not in canceled:
                # The venue did not hold it when the cancel-all ran (a submit still in flight
                # lands after it): no cancel is outstanding, so the next pass cancels it.
                t.cancel_requested = False

    def _set(self, t: Tracked, status: str, matched: int | None = None, reason: str = "") -> None:
        t.status = status
        if matched is not None:
            t.matched = matched
        if self.store and t.order_id:
            self.store.order_state(t.order_id, status, matched, reason)

    # -- the venue's word ---------------------------------------------------------------

    def is_ours(self, order_id: str) -> bool:
        return order_id in self.orders

    def on_order(self, u: OrderUpdate) -> None:
        t = self.orders.get(u.order_id)
        if t is None:
            return
        if u.status in (CANCELED, INVALID):
            if not t.cancel_requested:
                self.counts["unsolicited_cancels"] += 1
                _log.warning("order %s… cancelled by the venue (%s %s)", u.order_id[:10], u.status, u.reason)
            self._set(t, "CANCELED", u.size_matched, u.reason or u.status)
        elif u.status == MATCHED_ORDER:
            self._set(t, "MATCHED", u.size_matched)
        else:
            self._set(t, "CANCELING" if t.cancel_requested else "LIVE", u.size_matched)

    def restore(self, rows: list[dict[str, object]]) -> None:
        """Orders a previous run left open in the store, tracked as UNKNOWN until the next
        reconciliation says whether the venue still holds them."""
        for r in rows:
            m = self.markets.get(str(r["market"]))
            if m is None or r["order_id"] in self.orders:
                continue
            self.orders[str(r["order_id"])] = _venue_order(
                m, str(r["order_id"]), str(r["token"]), str(r["side"]), int(r["price"]),  # type: ignore[call-overload]
                int(r["size"]), "UNKNOWN", int(r["matched"]),  # type: ignore[call-overload]
            )  # fmt: skip

    async def reconcile(self) -> None:
        """Compare with ``/data/orders``: our orders the venue does not hold are finished; live
        orders we do not know are adopted (they are ours: same API key)."""
        try:
            venue = {o["id"]: o for o in await self.rest.open_orders()}
        except VenueError as err:
            self.on_error(err.kind)
            return
        for t in self.live():
            if t.order_id in venue:
                if t.status in ("UNKNOWN", "SENT"):
                    self._set(t, "LIVE")
            elif t.status != "SENT" or time.time() * 1000 - t.sent_ms > 5000:
                self._set(t, "DONE", reason="not on the venue")
                self.counts["gone"] += 1
        for oid, o in venue.items():
            if oid not in self.orders:
                m = self.markets.get(o.get("market", ""))
                if m is None:
                    continue
                self.orders[oid] = _venue_order(
                    m, oid, o["asset_id"], o["side"], core.parse_price(o["price"]),
                    core.parse_size(o["original_size"]), "LIVE", core.parse_size(o.get("size_matched") or "0"),
                )  # fmt: skip
                self.counts["adopted"] += 1


def _venue_order(
    m: MarketRef, order_id: str, token: str, side: str, price: int, size: int, status: str, matched: int
) -> Tracked:
    """An order known from the venue or the store (token terms) tracked with the quote it
    expresses in Up terms: a BUY of Up or a SELL of Down is a bid, at 1 - p on Down."""
    up_side = "bid" if (token == m.up) == (side == BUY) else "ask"
    up_price = price if token == m.up else core.MAX_PRICE - price
    return Tracked(order_id, m.condition_id, token, side, price, size, up_side, up_price, status, matched)
