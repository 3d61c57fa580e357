"""Cancel and replace without an extra round trip (issue 11 item 5), against the embedded exchange
through a recording proxy on 127.0.0.1 (a real peer: every byte goes to and comes from the
exchange). The proxy logs each order and cancel request as it arrives and as it is answered, and
can hold the answers back: by default a requote's cancel and its new order both reach the venue
before either is answered, while the order being cancelled still counts in ``pending()`` (and so
in every limit) until the venue's answer; cancels-first stays an option; a pass that only
cancels sends the cancel before any idle work."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from fractions import Fraction

import aiohttp
import pytest
from aiohttp import web

from active_quoting import core
from active_quoting.clock import ManualClock
from active_quoting.exchange.server import serve_app
from active_quoting.execution.order_manager import MarketRef, OrderManager
from active_quoting.model import BID, BUY, OrderIntent, up_terms
from active_quoting.strategy.config import OrdersConfig
from active_quoting.strategy.inventory import InventoryManager
from active_quoting.strategy.quoting import MarketDecision, SideDecision
from active_quoting.venue.lane import LANE_ENDPOINTS
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner
from exchange_peer import CID, DOWN, MAKER_KEY, SH, UP, derive

KEEP = SideDecision(core.NO_PRICE, 0, core.KEEP)
CANCEL = SideDecision(core.NO_PRICE, 0, core.CANCEL)
_SKIP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


class RecordingProxy:
    """Forwards every request to the exchange; logs ("in"/"out", method, path) for order and
    cancel requests. While ``gate`` is clear, those requests wait before being forwarded (at most
    ``hold_s``, then they go anyway and ``timed_out`` counts it)."""

    def __init__(self, upstream: str, hold_s: float = 1.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.hold_s = hold_s
        self.log: list[tuple[str, str, str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.timed_out = 0
        self.on_arrival: Callable[[str, str], None] = lambda method, path: None
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession()
        self._runner, url = await serve_app(app)
        return url

    async def stop(self) -> None:
        self.gate.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def arrived(self) -> list[tuple[str, str]]:
        return [(m, p) for kind, m, p in self.log if kind == "in"]

    async def _handle(self, request: web.Request) -> web.Response:
        key = (request.method, request.path)
        body = await request.read()
        lane = key in LANE_ENDPOINTS
        if lane:
            self.log.append(("in", *key))
            self.on_arrival(*key)
            if not self.gate.is_set():
                try:
                    await asyncio.wait_for(self.gate.wait(), self.hold_s)
                except asyncio.TimeoutError:
                    self.timed_out += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIP_HEADERS}
        assert self._session is not None
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body or None, headers=headers
        ) as r:
            payload, status = await r.read(), r.status
        if lane:
            self.log.append(("out", *key))
        return web.Response(status=status, body=payload, headers={"Content-Type": "application/json"})


@contextlib.asynccontextmanager
async def _manager(ex, **kw: object) -> AsyncIterator[tuple[OrderManager, RecordingProxy, ManualClock, str]]:
    proxy = RecordingProxy(ex.clob_url)
    url = await proxy.start()
    clock = ManualClock()
    signer = OrderSigner(MAKER_KEY)
    rest = RestClient(url, signer, await derive(ex, MAKER_KEY))
    await rest.start()
    om = OrderManager(rest, signer, min_refresh_ms=0, global_cap_per_sec=1000, clock=clock, **kw)  # type: ignore[arg-type]
    om.add_market(MarketRef(CID, UP, DOWN, 100))
    try:
        yield om, proxy, clock, signer.address
    finally:
        await rest.close()
        await proxy.stop()


def _bid(price: int, action: int) -> tuple[MarketDecision, list[OrderIntent]]:
    quote, quote_price = up_terms(True, BUY, price)
    intent = OrderIntent(CID, UP, BUY, price, 10 * SH, quote, quote_price)
    return MarketDecision(CID, SideDecision(price, 10 * SH, action), KEEP, False, 100), [intent]


async def _until(cond: Callable[[], bool], what: str, timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def test_concurrent_replace_is_the_default() -> None:
    assert OrdersConfig().concurrent_replace is True


@pytest.mark.asyncio
async def test_a_replace_sends_the_cancel_and_the_new_order_before_either_answer_and_limits_hold(ex):
    async with _manager(ex) as (om, proxy, clock, me):  # the default configuration
        assert om.stage(*_bid(4700, core.PLACE), clock.time())
        await om.flush()
        (old,) = om.live(CID)
        inventory = InventoryManager()
        inventory.register_market(CID, UP, DOWN)
        one_order = inventory.liability(CID, om.pending()[CID])
        assert one_order == Fraction(47, 10)  # 10 shares bought at 0.47 could all be lost
        proxy.log.clear()
        proxy.gate.clear()  # answers wait until both requests are in (or 1 s)
        clock.advance(1)
        assert om.stage(*_bid(4800, core.REPLACE), clock.time())
        flushing = asyncio.ensure_future(om.flush())
        await _until(lambda: len(proxy.arrived()) == 2, "the cancel and the new order to reach the venue")
        assert proxy.log == [("in", "DELETE", "/orders"), ("in", "POST", "/order")]  # the cancel first
        # In flight: the venue has answered neither; the old order still counts in every limit.
        assert old.status == "CANCELING" and old.cancel_requested
        mine = sorted(p[2] for p in om.pending()[CID])
        assert mine == [4700, 4800]
        assert inventory.liability(CID, om.pending()[CID]) == Fraction(47, 10) + Fraction(48, 10)
        assert {o.price for o in ex.engine.live_orders(account=me)} == {4700}  # the venue still holds it
        proxy.gate.set()
        await flushing
        assert proxy.timed_out == 0 and [e[0] for e in proxy.log] == ["in", "in", "out", "out"]
        assert old.status == "CANCELED" and [p[2] for p in om.pending()[CID]] == [4800]
        assert {o.price for o in ex.engine.live_orders(account=me)} == {4800}


@pytest.mark.asyncio
async def test_cancels_first_stays_an_option(ex):
    async with _manager(ex, concurrent_replace=False) as (om, proxy, clock, me):
        assert om.stage(*_bid(4700, core.PLACE), clock.time())
        await om.flush()
        proxy.log.clear()
        proxy.gate.clear()
        proxy.hold_s = 0.2
        clock.advance(1)
        assert om.stage(*_bid(4800, core.REPLACE), clock.time())
        await om.flush()
        # The new order left only after the cancel's answer (which waited out the gate).
        assert proxy.log[:3] == [("in", "DELETE", "/orders"), ("out", "DELETE", "/orders"), ("in", "POST", "/order")]
        assert proxy.timed_out >= 1 and {o.price for o in ex.engine.live_orders(account=me)} == {4800}


@pytest.mark.asyncio
async def test_a_cancel_only_pass_sends_the_cancel_before_any_idle_signing(ex):
    async with _manager(ex) as (om, proxy, clock, me):
        lad = om.enable_presign(depth=2, max_age_s=5.0, budget=64)
        assert om.stage(*_bid(4700, core.PLACE), clock.time())
        await om.flush()
        await asyncio.sleep(0)
        assert lad.entries(CID) == 5
        clock.advance(3)  # the whole ladder is due for re-signing
        signed_at_arrival: list[int] = []
        proxy.on_arrival = lambda method, path: signed_at_arrival.append(lad.counts["signed"])
        signed = lad.counts["signed"]
        proxy.log.clear()
        decision = MarketDecision(CID, CANCEL, KEEP, False, 100)
        assert om.stage(decision, [], clock.time())
        assert om.presign() == 0  # staged cancels go first
        await om.flush()
        await asyncio.sleep(0)
        assert proxy.arrived() == [("DELETE", "/orders")] and signed_at_arrival == [signed]
        assert lad.counts["signed"] == signed + 5  # the idle work came after the cancel
        assert om.live(CID) == [] and ex.engine.live_orders(account=me) == []
        assert om.resting(CID, BID).size == 0
