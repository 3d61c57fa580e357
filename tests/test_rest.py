"""REST client against a loopback venue: L2 auth, batches, pagination, heartbeat chaining,
and every error class (425, 503 post-only mode, 429, 5xx, timeout, crossing, version mismatch)."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio

from active_quoting.venue.errors import VenueError, classify
from active_quoting.venue.orders import build_order
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import ApiCredentials, OrderSigner, wire_order_hash
from loopback_venue import API_KEY, PASSPHRASE, SECRET, LoopbackVenue

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # throwaway test key
TOKEN = "71321045679252212594626385532706912750332728571942532289631379312455583992563"
SH = 1_000_000


@pytest_asyncio.fixture
async def venue():
    v = LoopbackVenue()
    await v.start()
    yield v
    await v.stop()


@pytest.fixture
def signer():
    return OrderSigner(KEY, 137)


@pytest_asyncio.fixture
async def client(venue, signer):
    sleeps = []

    async def fake_sleep(s):
        sleeps.append(s)

    c = RestClient(venue.url, signer, ApiCredentials(API_KEY, SECRET, PASSPHRASE), timeout=0.5, sleep=fake_sleep)
    c.sleeps = sleeps
    await c.start()
    yield c
    await c.close()


def orders(signer, n, version=2, start_price=4000):
    return [build_order(signer, TOKEN, 0, start_price + 10 * i, 10 * SH, 10, version=version, fee_rate_bps=0 if version == 1 else None)
            for i in range(n)]  # fmt: skip


@pytest.mark.asyncio
async def test_public_endpoints(client, venue):
    assert await client.version() == 2
    assert await client.tick_size(TOKEN) == 10
    assert await client.neg_risk(TOKEN) is False
    assert (await client.book(TOKEN))["hash"] == "abc"
    info = await client.clob_market("0xabc")
    assert (info.min_tick, info.min_size, info.fee_rate, info.fee_exponent) == (100, 5 * SH, "0.072", 1)
    assert info.tokens == (("111", "Up"), ("222", "Down"))


@pytest.mark.asyncio
async def test_fee_rate_cached_with_ttl(venue, signer):
    now = [1000.0]
    c = RestClient(venue.url, clock=lambda: now[0], fee_ttl=300)
    try:
        assert await c.fee_rate(TOKEN) == 1000 and await c.fee_rate(TOKEN) == 1000
        assert venue.fee_calls == 1
        now[0] += 301
        await c.fee_rate(TOKEN)
        assert venue.fee_calls == 2
    finally:
        await c.close()


@pytest.mark.asyncio
async def test_batches_of_fifteen_with_local_hashes(client, venue, signer):
    batch = orders(signer, 20)
    results = await client.post_orders(batch)
    assert [m for m, p, _ in venue.requests] == ["POST", "POST"] and [p for _, p, _ in venue.requests] == [
        "/orders",
        "/orders",
    ]
    assert all(r.accepted and r.status == "live" for r in results)
    assert [r.order_hash for r in results] == [o.order_hash for o in batch]
    assert all(wire_order_hash(o.wire) == o.order_hash for o in batch)
    assert b'"postOnly":true' in venue.requests[0][2]


@pytest.mark.asyncio
async def test_single_order_uses_post_order(client, venue, signer):
    (r,) = await client.post_orders(orders(signer, 1))
    assert r.accepted and venue.requests[-1][1] == "/order"


@pytest.mark.asyncio
async def test_per_leg_rejections_are_reported_per_order(client, venue, signer):
    venue.leg_errors = {
        1: "not enough balance / allowance: the balance is not enough",
        2: "invalid post-only order: order crosses book",
    }
    results = await client.post_orders(orders(signer, 3))
    assert [r.accepted for r in results] == [True, False, False]
    assert [r.error_kind for r in results[1:]] == ["balance", "post_only_reject"]
    assert results[1].order_hash and results[1].status == "rejected"


@pytest.mark.asyncio
async def test_bad_credentials_are_401(venue, signer):
    c = RestClient(venue.url, signer, ApiCredentials(API_KEY, SECRET, "wrong"))
    try:
        with pytest.raises(VenueError) as err:
            await c.cancel_all()
        assert err.value.kind == "auth" and err.value.status == 401
        assert "wrong" not in str(err.value) and SECRET not in repr(c.creds)
    finally:
        await c.close()


@pytest.mark.asyncio
async def test_engine_restart_backs_off_and_keeps_going(client, venue, signer):
    for _ in range(3):
        venue.faults.append((425, {"error": "Too Early"}, {}))
    results = await client.post_orders(orders(signer, 2))
    assert all(r.accepted for r in results)
    assert client.sleeps == [1.0, 2.0, 4.0] and client.counts["engine_restart"] == 3


@pytest.mark.asyncio
async def test_post_only_mode_blocks_other_orders_until_retry_after(client, venue, signer):
    body = {
        "error": "post-only mode: only post-only orders and cancels are allowed",
        "code": "post_only_mode",
        "retry_after_seconds": 79,
    }
    venue.faults.append((503, body, {"Retry-After": "79"}))
    (r,) = await client.post_orders(orders(signer, 1))
    assert (r.accepted, r.status, r.error_kind) == (False, "rejected", "post_only_mode")
    with pytest.raises(VenueError, match="post-only mode"):
        await client.post_orders(orders(signer, 1), post_only=False)
    (r,) = await client.post_orders(orders(signer, 1), post_only=True)
    assert r.accepted


@pytest.mark.asyncio
async def test_rate_limit_waits_retry_after_once(client, venue, signer):
    venue.faults.append((429, {"error": "Too Many Requests"}, {"Retry-After": "2"}))
    assert await client.cancel_all()
    assert client.sleeps == [2.0]
    venue.faults.extend([(429, {"error": "slow down"}, {"Retry-After": "1"})] * 2)
    with pytest.raises(VenueError) as err:
        await client.cancel_all()
    assert err.value.kind == "rate_limited" and err.value.retry_after == 1.0


@pytest.mark.asyncio
async def test_server_error_and_timeout_are_unknown_outcomes_with_hashes(client, venue, signer):
    venue.faults.append((500, {"error": "could not run the execution"}, {}))
    batch = orders(signer, 2)
    results = await client.post_orders(batch)
    assert [r.status for r in results] == ["unknown", "unknown"] and results[0].error_kind == "server_error"
    assert [r.order_hash for r in results] == [o.order_hash for o in batch]
    venue.hang_next = 1
    (r,) = await client.post_orders(orders(signer, 1))
    assert r.unknown and r.error_kind == "timeout"


@pytest.mark.asyncio
async def test_crossing_single_order_is_a_counted_rejection(client, venue, signer):
    venue.faults.append((400, {"error": "order 0xabc crosses the book"}, {}))
    (r,) = await client.post_orders(orders(signer, 1))
    assert (r.status, r.error_kind) == ("rejected", "post_only_reject") and client.counts["post_only_reject"] == 1


@pytest.mark.asyncio
async def test_version_mismatch_rereads_version_and_resigns_once(client, venue, signer):
    venue.version = 1
    built = []

    def build(version):
        built.append(version)
        return orders(signer, 2, version=version)

    results = await client.submit(build)
    assert built == [2, 1] and client.order_version == 1
    assert all(r.accepted for r in results)


@pytest.mark.asyncio
async def test_cancels_and_pagination(client, venue, signer):
    batch = orders(signer, 5)
    await client.post_orders(batch)
    assert len(await client.open_orders()) == 5  # three pages: MA== ... LTE=
    r = await client.cancel_order(batch[0].order_hash)
    assert r.canceled == (batch[0].order_hash,)
    r = await client.cancel_orders([batch[1].order_hash, batch[0].order_hash])
    assert r.canceled == (batch[1].order_hash,) and r.not_canceled == {
        batch[0].order_hash: "already canceled or matched"
    }
    r = await client.cancel_market_orders(asset_id="999")
    assert r.canceled == ()
    r = await client.cancel_market_orders(market="0x1", asset_id=TOKEN)
    assert len(r.canceled) == 3 and await client.open_orders() == []
    assert [t["id"] for t in await client.trades(market="0x1")] == ["t1", "t2"]


@pytest.mark.asyncio
async def test_heartbeat_chains_and_adopts_on_400(client, venue):
    assert await client.heartbeat() == "hb-2"
    assert await client.heartbeat() == "hb-3"
    client.heartbeat_id = "stale"
    assert await client.heartbeat() == "hb-4"  # 400 carried hb-3; adopted and re-sent


@pytest.mark.asyncio
async def test_server_time_used_when_skewed(client, venue):
    import time as _t

    venue.server_time = int(_t.time()) + 3600
    assert abs(await client.sync_clock() - 3600) <= 2 and client.clock_offset != 0
    assert await client.heartbeat()  # signed with the server's clock: the venue checks only the HMAC here
    venue.server_time = int(_t.time())
    await client.sync_clock()
    assert client.clock_offset == 0


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [(425, {}, "engine_restart"), (503, {"error": "Trading is currently cancel-only."}, "trading_disabled"),
     (500, {"error": "could not insert order"}, "server_error"), (400, {"error": "order_version_mismatch"}, "version_mismatch"),
     (400, {"error": "order is invalid. Price breaks minimum tick size rules"}, "invalid_tick"),
     (400, {"error": "Size lower than the minimum"}, "min_size"), (404, "not here", "not_found"),
     (400, {"error": "Invalid order payload"}, "bad_request")],
)  # fmt: skip
def test_classification(status, body, kind):
    assert classify(status, body).kind == kind


def test_a_submit_that_could_not_connect_was_never_sent(signer):
    """Nothing listens: the request was never written, so nothing can have been placed - a
    rejection, not an unknown outcome to reconcile (a connection lost after the write is
    unknown: tests/test_lane.py)."""

    async def go():
        c = RestClient("http://127.0.0.1:9", signer, ApiCredentials(API_KEY, SECRET, PASSPHRASE), timeout=1.0)
        try:
            return await c.post_orders(orders(signer, 1))
        finally:
            await c.close()

    (r,) = asyncio.run(go())
    assert not r.unknown and (r.status, r.error_kind) == ("rejected", "not_sent")
