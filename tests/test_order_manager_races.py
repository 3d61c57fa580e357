"""Holes through which the order manager could lose track of an order, each reproduced against
the embedded exchange over real sockets: a reconciliation answer older than an order's
acceptance, a cancel that failed, re-signing after a version change, a refused signature,
a shutdown cancel that reached past our own orders, a post-only reject loop.

Some need a request held or the venue changed at an exact moment between two requests; a
pass-through proxy on 127.0.0.1 in front of the exchange does that (a real peer, not a mock:
every byte still goes to and comes from the exchange). These tests use only what the order
manager offered before the typed-intent split (``_place`` of trackers), so they run unchanged
against the old manager and show it failing."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from active_quoting.exchange.server import serve_app
from active_quoting.execution.order_manager import MarketRef, OrderManager, Tracked
from active_quoting.store.sqlite import Store
from active_quoting.venue.orders import build_order
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner
from exchange_peer import CID, DOWN, MAKER_KEY, SH, TAKER_KEY, UP, derive

_SKIP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


class HoldingProxy:
    """Forwards every request to the exchange. ``hold(method, path)`` makes the next answer to
    that request wait (already computed by the exchange) until :meth:`release`; ``after(method,
    path, fn)`` runs ``fn`` once, right after the exchange answered that request."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: Counter[tuple[str, str]] = Counter()
        self.held = 0
        self._hold: set[tuple[str, str]] = set()
        self._holding = asyncio.Event()
        self._release = asyncio.Event()
        self._after: dict[tuple[str, str], Callable[[], None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession()
        self._runner, self.url = await serve_app(app)
        return self.url

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def hold(self, method: str, path: str) -> None:
        self._hold.add((method, path))

    async def holding(self) -> None:
        await asyncio.wait_for(self._holding.wait(), 5)

    def release(self) -> None:
        self._release.set()

    def after(self, method: str, path: str, fn: Callable[[], None]) -> None:
        self._after[(method, path)] = fn

    async def _handle(self, request: web.Request) -> web.Response:
        key = (request.method, request.path)
        self.seen[key] += 1
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIP_HEADERS}
        assert self._session is not None
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body or None, headers=headers
        ) as r:
            payload, status, ctype = await r.read(), r.status, r.headers.get("Content-Type", "application/json")
        fn = self._after.pop(key, None)
        if fn is not None:
            fn()
        if key in self._hold:
            self._hold.discard(key)
            self.held += 1
            self._holding.set()
            await self._release.wait()
        return web.Response(status=status, body=payload, headers={"Content-Type": ctype})


@contextlib.asynccontextmanager
async def _manager(ex, store: Store | None = None) -> AsyncIterator[tuple[OrderManager, HoldingProxy, str]]:
    """An order manager for the exchange's market, talking to it through a proxy."""
    proxy = HoldingProxy(ex.clob_url)
    url = await proxy.start()
    signer = OrderSigner(MAKER_KEY)
    rest = RestClient(url, signer, await derive(ex, MAKER_KEY))
    om = OrderManager(rest, signer, store, min_refresh_ms=0, global_cap_per_sec=1000)
    om.add_market(MarketRef(CID, UP, DOWN, 100))
    try:
        yield om, proxy, signer.address
    finally:
        await rest.close()
        await proxy.stop()


def _bid(price: int) -> Tracked:
    """A BUY of Up at ``price``: a bid in Up terms, not yet sent."""
    return Tracked("", CID, UP, "BUY", price, 10 * SH, "bid", price)


@pytest.mark.asyncio
async def test_an_order_accepted_while_the_open_orders_request_is_in_flight_is_not_concluded_gone(ex):
    async with _manager(ex) as (om, proxy, me):
        proxy.hold("GET", "/data/orders")
        reconciling = asyncio.ensure_future(om.reconcile())
        await proxy.holding()  # the exchange answered: no orders (ours is not placed yet)
        t = _bid(4800)
        await om._place([t], 0.0)  # placed and accepted while that answer is on its way
        assert t.status == "LIVE"
        proxy.release()
        await reconciling
        assert proxy.held == 1  # the stale answer really was the one reconciled
        (venue,) = ex.engine.live_orders(account=me)
        assert venue.id == t.order_id
        assert t.status == "LIVE" and om.live() == [t] and om.counts["gone"] == 0
        assert om.resting(CID, "bid").price == 4800  # the quote engine still sees it
        await om.reconcile()  # a fresh answer holds it too
        assert t.status == "LIVE" and om.counts["adopted"] == 0


@pytest.mark.asyncio
async def test_what_reconciliation_concludes_gone_is_done_and_may_have_been_filled(ex):
    async with _manager(ex) as (om, proxy, me):
        t = _bid(4800)
        await om._place([t], 0.0)
        ex.invalidate_orders(me)  # the venue drops it; we never hear (no user channel here)
        await om.reconcile()
        assert t.status == "DONE" and om.counts["gone"] == 1 and om.live() == []


@pytest.mark.asyncio
async def test_a_cancel_that_failed_is_sent_again_until_the_venue_confirms_it(ex):
    async with _manager(ex) as (om, proxy, me):
        om.cancel_retry_s = 0.0  # retry on the next reconciliation (the backoff has its own test)
        t = _bid(4800)
        await om._place([t], 0.0)
        om.cancel_off_grid(CID, 1000)  # the venue moved to 0.1: 0.48 must go
        ex.faults.http_status_queue.append((500, {"error": "could not run the execution"}, {}))
        await om.send_cancels()
        assert not ex.faults.http_status_queue and om.rest.counts["server_error"] == 1  # the 5xx happened
        assert t.status == "CANCELING" and len(ex.engine.live_orders(account=me)) == 1
        assert om.pending()[CID] == [(UP, "BUY", 4800, 10 * SH)]  # still counts against limits
        await om.reconcile()
        assert ex.engine.live_orders(account=me) == []
        assert t.status == "CANCELED" and om.live() == []


@pytest.mark.asyncio
async def test_resigning_after_a_version_change_rekeys_only_the_refused_orders(ex, tmp_path):
    store = Store(tmp_path / "orders.db")
    try:
        async with _manager(ex, store) as (om, proxy, me):
            # The first 15 go out in one POST /orders under version 2; then the venue moves to
            # version 1, so the 16th (a single POST /order) is refused and re-signed.
            proxy.after("POST", "/orders", lambda: setattr(ex.cfg, "order_version", 1))
            trackers = [_bid(3000 + 100 * i) for i in range(16)]
            await om._place(trackers, 0.0)
            assert proxy.seen[("POST", "/orders")] == 1 and proxy.seen[("POST", "/order")] == 2
            assert om.rest.order_version == 1 and om.counts["placed"] == 16
            held = {o.id for o in ex.engine.live_orders(account=me)}
            assert len(held) == 16
            assert {t.order_id for t in trackers} == held  # every tracker under the hash the venue holds
            assert set(om.orders) == held and {t.order_id for t in om.live()} == held
            store.flush()
            rows = {r["order_id"]: r["status"] for r in store.open_orders()}
            assert rows == dict.fromkeys(held, "LIVE")  # no phantom SENT row for a hash never accepted
    finally:
        store.close()


@pytest.mark.asyncio
async def test_a_version_the_signer_cannot_build_is_a_counted_refusal_not_an_exception(ex):
    errors: list[str] = []
    async with _manager(ex) as (om, proxy, me):
        om.on_error = errors.append
        ex.cfg.order_version = 9  # a version this signer knows nothing of
        t = _bid(4800)
        await om._place([t], 0.0)  # must not raise
        assert proxy.seen[("GET", "/version")] == 1  # the mismatch was seen and the version re-read
        assert om.counts["signing_refused"] == 1 and errors == ["signing_refused"]
        assert t.status == "REJECTED" and om.live() == [] and ex.engine.live_orders(account=me) == []
        t2 = _bid(4700)  # now the manager itself is on version 3: refused before anything is sent
        await om._place([t2], 0.0)
        assert om.counts["signing_refused"] == 2 and t2.status == "REJECTED" and proxy.seen[("POST", "/order")] == 1


@pytest.mark.asyncio
async def test_cancel_all_cancels_only_the_orders_this_bot_manages(ex):
    """Another tool on the same API key (or another account) keeps its orders: the bot cancels
    by id what it placed or adopted. An order of our key that the bot never adopted (another
    tool's, in a market the bot does not reconcile) is not the bot's to cancel; in a market it
    trades, reconciliation adopts it, and from then on cancel_all covers it."""
    async with _manager(ex) as (om, proxy, me):
        mine = _bid(4800)
        await om._place([mine], 0.0)
        (other_tool,) = await om.rest.post_orders([build_order(om.signer, UP, 0, 4500, 10 * SH, 100)])
        taker_signer = OrderSigner(TAKER_KEY)
        async with RestClient(ex.clob_url, taker_signer, await derive(ex, TAKER_KEY)) as taker:
            (second_bot,) = await taker.post_orders([build_order(taker_signer, UP, 0, 4400, 10 * SH, 100)])
        assert other_tool.accepted and second_bot.accepted
        await om.cancel_all()
        assert proxy.seen[("DELETE", "/cancel-all")] == 0 and proxy.seen[("DELETE", "/orders")] == 1
        assert mine.status == "CANCELED" and om.live() == []
        assert {o.id for o in ex.engine.live_orders()} == {other_tool.order_hash, second_bot.order_hash}
        await om.reconcile()  # the same key's order in our market becomes ours
        await om.cancel_all()
        assert {o.id for o in ex.engine.live_orders()} == {second_bot.order_hash}


@pytest.mark.asyncio
async def test_a_post_only_refusal_backs_the_side_off_instead_of_a_reject_loop(ex):
    async with _manager(ex) as (om, proxy, me):
        taker_signer = OrderSigner(TAKER_KEY)
        async with RestClient(ex.clob_url, taker_signer, await derive(ex, TAKER_KEY)) as taker:
            # A BUY of Down at 0.52 rests as an Up ask at 0.48: a BUY of Up at 0.50 crosses it.
            (ask,) = await taker.post_orders([build_order(taker_signer, DOWN, 0, 5200, 10 * SH, 100)])
        assert ask.accepted
        for _ in range(5):  # what only50 does on every pass
            await om._place([_bid(5000)], 0.0)
        assert om.counts["post_only_rejects"] == 1 and om.counts["post_only_backoff"] == 4
        assert proxy.seen[("POST", "/order")] == 1  # one refusal reached the venue, not five
        t = _bid(4700)  # a bid that no longer reaches the refused price goes out
        await om._place([t], 0.0)
        assert t.status == "LIVE" and [o.id for o in ex.engine.live_orders(account=me)] == [t.order_id]
