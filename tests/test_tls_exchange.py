"""TLS end to end: the embedded exchange serves https and wss with a certificate made for the
test (trustme), and the bot's REST client (its aiohttp requests and its order lane), market
stream and user stream work over it - and refuse it without the test CA, so TLS is real."""

from __future__ import annotations

import asyncio
import ssl

import pytest
import trustme

from active_quoting.exchange.engine import FeeSchedule, Market
from active_quoting.exchange.server import Exchange, ExchangeConfig
from active_quoting.venue.errors import VenueError
from active_quoting.venue.market_data import MarketData
from active_quoting.venue.orders import BUY, build_order
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner
from active_quoting.venue.ws import Backoff, MarketStream, UserStream

MAKER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # throwaway
UP, DOWN, CID = "3001", "3002", "0x" + "cd" * 32
SH = 1_000_000


class Rec:
    def __init__(self) -> None:
        self.orders: list[object] = []
        self.states: list[bool] = []

    def on_order(self, update: object) -> None:
        self.orders.append(update)

    def on_fill(self, update: object) -> None:
        pass

    def on_user_read(self) -> None:
        pass

    def on_user_state(self, connected: bool) -> None:
        self.states.append(connected)

    def on_reconcile_needed(self) -> None:
        pass


async def wait_for(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def contexts(ca: trustme.CA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


@pytest.mark.asyncio
async def test_rest_lane_market_and_user_streams_over_tls(ca):
    server_ctx, client_ctx = contexts(ca)
    ex = await Exchange(ExchangeConfig(ssl_context=server_ctx, settle_delays_ms=(50, 100))).start()
    ex.add_market(Market(CID, UP, DOWN, fees=FeeSchedule()))
    maker = OrderSigner(MAKER_KEY)
    rest = RestClient(ex.clob_url, maker, ssl=client_ctx)
    rec, md = Rec(), MarketData()
    user = market = None
    try:
        assert ex.clob_url.startswith("https://127.0.0.1:") and ex.ws_url.startswith("wss://127.0.0.1:")
        creds = await rest.create_or_derive_api_key()  # L1 over https
        assert await rest.server_time() > 1_700_000_000
        assert (await rest.book(UP))["asset_id"] == UP

        market = MarketStream(ex.ws_url + "/ws/market", md, rest=rest, backoff=lambda: Backoff(0.02, 0.1),
                              ssl_context=client_ctx)  # fmt: skip
        market.subscribe([UP, DOWN])
        user = UserStream(ex.ws_url + "/ws/user", creds, rec, [CID], backoff=Backoff(0.02, 0.1), ssl_context=client_ctx)
        await market.start()
        await user.start()
        # First messages over wss: both books' snapshots on the market channel...
        await wait_for(lambda: market.is_readable(UP) and market.is_readable(DOWN) and bool(ex.user_sockets))
        assert market.shards[0].frames >= 1 and user.conn.connects == 1

        (placed,) = await rest.post_orders([build_order(maker, UP, BUY, 4800, 10 * SH, 100)])  # over the lane
        assert placed.accepted and placed.status == "live"
        if rest.lane is not None:
            assert rest.lane.started
        # ...and our order's PLACEMENT on the user channel, its level on the market channel.
        await wait_for(lambda: len(rec.orders) >= 1 and md.books.get(UP).best_bid() == 4800)
        assert rec.orders[0].order_id == placed.order_hash  # type: ignore[attr-defined]
        assert [o["id"] for o in await rest.open_orders()] == [placed.order_hash]
        cancel = await rest.cancel_orders([placed.order_hash])
        assert cancel.canceled == (placed.order_hash,)
        assert await rest.heartbeat()
    finally:
        if market is not None:
            await market.stop()
        if user is not None:
            await user.stop()
        await rest.close()
        await ex.stop()


@pytest.mark.asyncio
async def test_a_client_without_the_test_ca_is_refused(ca):
    server_ctx, _ = contexts(ca)
    ex = await Exchange(ExchangeConfig(ssl_context=server_ctx)).start()
    untrusting = RestClient(ex.clob_url, order_lane=False)  # the system's verified default context
    plain = RestClient(ex.clob_url.replace("https://", "http://"), order_lane=False)
    try:
        with pytest.raises(VenueError) as err:
            await untrusting.server_time()
        assert err.value.kind == "network" and "certificate" in str(err.value).lower()
        with pytest.raises(VenueError) as err2:
            await plain.server_time()  # plain http to a TLS port
        assert err2.value.kind in ("network", "timeout", "bad_request")
        assert untrusting.counts["network"] == 1
    finally:
        await untrusting.close()
        await plain.close()
        await ex.stop()
