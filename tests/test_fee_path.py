"""The design's fee path (issue 12 item 6): an order signed as version 1 carries the market's
fee rate from ``GET /fee-rate`` (cached for the design's 300 s TTL), never 0; a version-2 order
has no fee field and needs no lookup. Against the embedded exchange over loopback, through a
recording proxy that sees the exact bytes sent."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from fractions import Fraction

import aiohttp
import orjson
import pytest
from aiohttp import web

from active_quoting import core
from active_quoting.clock import ManualClock
from active_quoting.exchange.engine import FeeSchedule, Market
from active_quoting.exchange.server import Exchange, ExchangeConfig, serve_app
from active_quoting.execution.order_manager import MarketRef, OrderManager
from active_quoting.model import BID, BUY, OrderIntent
from active_quoting.strategy.quoting import MarketDecision, SideDecision
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner
from exchange_peer import CID, DOWN, MAKER_KEY, SH, UP, derive

NONE = SideDecision(core.NO_PRICE, 0, core.KEEP)


class RecordingProxy:
    """Forwards every request to the exchange and keeps what was asked (method, path, body)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: Counter[tuple[str, str]] = Counter()
        self.bodies: list[tuple[str, bytes]] = []
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession()
        self._runner, self.url = await serve_app(app)

    async def stop(self) -> None:
        await self._runner.cleanup()
        await self._session.close()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen[(request.method, request.path)] += 1
        self.bodies.append((request.path, body))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as resp:
            return web.Response(status=resp.status, body=await resp.read(), content_type=resp.content_type)

    def orders_sent(self) -> list[dict[str, object]]:
        out = []
        for path, body in self.bodies:
            if path in ("/order", "/orders"):
                entries = orjson.loads(body)
                out += entries if isinstance(entries, list) else [entries]
        return out


@contextlib.asynccontextmanager
async def manager(order_version: int) -> AsyncIterator[tuple[Exchange, RecordingProxy, OrderManager, ManualClock]]:
    clock = ManualClock(1_780_000_000.0)
    ex = Exchange(ExchangeConfig(order_version=order_version), clock=clock)
    await ex.start()
    ex.add_market(Market(CID, UP, DOWN, fees=FeeSchedule(rate=Fraction(7, 100))), {
        "id": "1000001", "slug": "btc-updown-15m-1780000000", "conditionId": CID, "question": "BTC Up or Down",
        "clobTokenIds": json.dumps([UP, DOWN]), "outcomes": json.dumps(["Up", "Down"]),
        "eventStartTime": "2026-05-28T00:00:00Z", "startDate": "2026-05-27T23:45:00Z",
        "endDate": "2026-05-28T00:15:00Z", "orderPriceMinTickSize": 0.01, "orderMinSize": 5, "closed": False})  # fmt: skip
    proxy = RecordingProxy(ex.clob_url)
    await proxy.start()
    signer = OrderSigner(MAKER_KEY)
    rest = RestClient(proxy.url, signer, await derive(ex, MAKER_KEY), clock=clock.time, sleep=clock.sleep)
    await rest.version()  # what the bot does at startup
    om = OrderManager(rest, signer, min_refresh_ms=0, global_cap_per_sec=1000, clock=clock)
    om.add_market(MarketRef(CID, UP, DOWN, 100))
    try:
        yield ex, proxy, om, clock
    finally:
        await rest.close()
        await proxy.stop()
        await ex.stop()


async def place(om: OrderManager, token: str, price: int, now: float) -> None:
    """A bid: BUY ``token`` (Up) at ``price``, staged and flushed as a quote pass does."""
    decision = MarketDecision(CID, SideDecision(price, 10 * SH, core.PLACE), NONE, False, 100)
    assert om.stage(decision, [OrderIntent(CID, token, BUY, price, 10 * SH, BID, price)], now)
    await om.flush()


async def venue_fee_rate(ex: Exchange, token: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(ex.clob_url + "/fee-rate", params={"token_id": token}) as resp:
        return int((await resp.json())["base_fee"])


@pytest.mark.asyncio
async def test_a_v1_order_signs_the_markets_fee_rate_looked_up_once_per_ttl():
    async with manager(order_version=1) as (ex, proxy, om, clock):
        await place(om, UP, 4800, 0.0)
        (sent,) = proxy.orders_sent()
        wire = sent["order"]
        assert isinstance(wire, dict) and "timestamp" not in wire  # a version-1 order
        rate = await venue_fee_rate(ex, UP)
        assert rate == 1000 and int(wire["feeRateBps"]) == rate  # the market's rate, not 0
        assert ex.signature_checks.get("verified_v1") == 1  # the venue verified what was signed
        assert [o.price for o in ex.engine.live_orders(account=om.signer.address)] == [4800]
        assert proxy.seen[("GET", "/fee-rate")] == 1
        clock.advance(299.0)  # within the TTL: no second lookup
        await place(om, UP, 4700, 1.0)
        assert proxy.seen[("GET", "/fee-rate")] == 1
        clock.advance(2.0)  # the TTL (300 s) has passed: looked up again
        await place(om, UP, 4600, 2.0)
        assert proxy.seen[("GET", "/fee-rate")] == 2
        assert [int(o["order"]["feeRateBps"]) for o in proxy.orders_sent()] == [1000] * 3  # type: ignore[index]
        assert om.counts["placed"] == 3


@pytest.mark.asyncio
async def test_a_v2_order_carries_no_fee_field_and_needs_no_lookup():
    async with manager(order_version=2) as (ex, proxy, om, clock):
        await place(om, UP, 4800, 0.0)
        (sent,) = proxy.orders_sent()
        wire = sent["order"]
        assert isinstance(wire, dict) and "timestamp" in wire and "feeRateBps" not in wire
        assert proxy.seen[("GET", "/fee-rate")] == 0 and om.counts["placed"] == 1
        assert ex.signature_checks.get("verified_v2") == 1
