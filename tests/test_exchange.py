"""The embedded exchange over real sockets: the official client, our venue layer, the channels,
auth, the heartbeat dead-man switch, settlement (incl. ghost fills), Gamma discovery, faults."""

from __future__ import annotations

import asyncio
import contextlib
import json
from fractions import Fraction

import aiohttp
import orjson
import pytest
from py_clob_client_v2.client import ClobClient
from py_clob_client_v2.clob_types import (
    OpenOrderParams,
    OrderArgsV2,
    OrderPayload,
    PartialCreateOrderOptions,
    PostOrdersV2Args,
)

from active_quoting.exchange import server as server_mod
from active_quoting.exchange.engine import FeeSchedule
from active_quoting.exchange.faults import load_scenario
from active_quoting.exchange.server import Exchange
from active_quoting.venue.market_data import MarketData
from active_quoting.venue.orders import build_order
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import ApiCredentials, OrderSigner
from active_quoting.venue.ws import Backoff, MarketStream, UserStream
from exchange_peer import CID, DOWN, MAKER_KEY, SH, TAKER_KEY, UP, derive
from loopback_ws import wait_for


class Rec:
    def __init__(self):
        self.orders, self.fills, self.states, self.reconciles = [], [], [], 0

    def on_order(self, u):
        self.orders.append(u)

    def on_fill(self, u):
        self.fills.append(u)

    def on_user_read(self):
        pass

    def on_user_state(self, c):
        self.states.append(c)

    def on_reconcile_needed(self):
        self.reconciles += 1


@pytest.mark.asyncio
async def test_official_client_conformance(ex):
    def flow():
        c = ClobClient(ex.clob_url, chain_id=137, key=MAKER_KEY)
        c.set_api_creds(c.create_or_derive_api_key())
        opts = PartialCreateOrderOptions(tick_size="0.01", neg_risk=False)
        posted = c.create_and_post_order(
            OrderArgsV2(token_id=UP, price=0.45, size=10, side="BUY"), options=opts, post_only=True
        )
        batch = c.post_orders([PostOrdersV2Args(order=c.create_order(OrderArgsV2(token_id=DOWN, price=p, size=5, side="BUY"), opts),
                                              orderType="GTC") for p in (0.40, 0.41)], post_only=True)  # fmt: skip
        open_orders = c.get_open_orders(OpenOrderParams())
        book = c.get_order_book(UP)
        hb = c.post_heartbeat("")
        canceled = c.cancel_order(OrderPayload(orderID=posted["orderID"]))
        return posted, batch, open_orders, book, hb, canceled

    posted, batch, open_orders, book, hb, canceled = await asyncio.to_thread(flow)
    assert posted["success"] and posted["status"] == "live" and posted["orderID"].startswith("0x")
    assert [b["success"] and bool(b["orderID"]) for b in batch] == [True, True]
    assert {o["id"] for o in open_orders} == {posted["orderID"]} | {b["orderID"] for b in batch}
    assert book["bids"][-1] == {"price": "0.45", "size": "10"} and book["asks"][-1] == {"price": "0.59", "size": "5"}
    assert hb["heartbeat_id"]
    assert canceled == {"canceled": [posted["orderID"]], "not_canceled": {}}


@contextlib.asynccontextmanager
async def maker_and_taker(ex, tokens, user_markets):
    """Maker and taker signers with REST clients, and the maker's user stream (on
    ``user_markets``) and market stream (on ``tokens``, resyncing from REST) started; all
    stopped after. Yields (maker, taker, rest, trest, rec, md, market, user)."""
    maker, taker = OrderSigner(MAKER_KEY), OrderSigner(TAKER_KEY)
    mcreds, tcreds = await derive(ex, MAKER_KEY), await derive(ex, TAKER_KEY)
    rest, trest = RestClient(ex.clob_url, maker, mcreds), RestClient(ex.clob_url, taker, tcreds)
    rec = Rec()
    user = UserStream(ex.ws_url + "/ws/user", mcreds, rec, user_markets, backoff=Backoff(0.02, 0.1))
    md = MarketData()
    market = MarketStream(ex.ws_url + "/ws/market", md, rest=rest, backoff=lambda: Backoff(0.02, 0.1))
    market.subscribe(tokens)
    await user.start()
    await market.start()
    try:
        yield maker, taker, rest, trest, rec, md, market, user
    finally:
        await market.stop()
        await user.stop()
        await rest.close()
        await trest.close()


@pytest.mark.asyncio
async def test_venue_layer_round_trip_with_fills_and_settlement(ex):
    async with maker_and_taker(ex, [UP, DOWN], [CID]) as (maker, taker, rest, trest, rec, md, market, _):
        await wait_for(lambda: market.is_readable(UP) and market.is_readable(DOWN) and ex.user_sockets)
        (ours,) = await rest.post_orders([build_order(maker, UP, 1 - 1, 4800, 20 * SH, 100)])  # BUY Up 20 @ 0.48
        assert ours.accepted and ours.status == "live"
        await wait_for(lambda: md.books.get(UP).best_bid() == 4800 and md.books.get(DOWN).best_ask() == 5200)
        # A taker sells Up into our bid by buying Down at 0.53 (a mint against our BUY Up).
        (t,) = await trest.post_orders(
            [build_order(taker, DOWN, 0, 5300, 8 * SH, 100)], order_type="GTC", post_only=False
        )
        assert t.accepted and t.status == "matched"
        await wait_for(lambda: [f.fill.status for f in rec.fills] == ["MATCHED", "MINED", "CONFIRMED"])
        fill = rec.fills[0].fill
        assert (fill.order_id, fill.token, fill.side, fill.price, fill.size) == (
            ours.order_hash,
            UP,
            "BUY",
            4800,
            8 * SH,
        )
        assert [o.kind for o in rec.orders][:2] == ["PLACEMENT", "UPDATE"]
        await wait_for(lambda: md.books.get(UP).best_bid_size() == 12 * SH)
        rest_book = await rest.book(UP)
        assert rest_book["bids"][-1] == {"price": "0.48", "size": "12"}
        assert md.books.get(UP).disagreements == 0 and md.errors == 0
        assert ex.engine.accounts[maker.address].tokens[UP] == 8 * SH
        open_orders = await rest.open_orders()
        assert [o["id"] for o in open_orders] == [ours.order_hash] and open_orders[0]["size_matched"] == "8"
        trades = await rest.trades()
        assert len(trades) == 1 and trades[0]["maker_orders"][0]["order_id"] == ours.order_hash


@pytest.mark.asyncio
async def test_paged_reads_return_every_row_once_in_order(ex):
    """/data/orders, /data/trades and /markets one row a page: the client follows the cursors to
    the end and gets every row once, in the venue's order (each page's rows built from its own
    items)."""
    ex.cfg.page_size = 1
    async with maker_and_taker(ex, [UP, DOWN], [CID]) as (maker, taker, rest, trest, rec, md, market, _):
        prices = (4800, 4700, 4600)
        posted = await rest.post_orders([build_order(maker, UP, 1 - 1, p, 10 * SH, 100) for p in prices])
        assert all(o.accepted for o in posted)
        assert sorted(o["id"] for o in await rest.open_orders()) == sorted(o.order_hash for o in posted)
        for p in prices:  # one taker order per level: three trades of ours
            (t,) = await trest.post_orders(
                [build_order(taker, DOWN, 0, 10_000 - p, 10 * SH, 100)], order_type="FAK", post_only=False
            )
            assert t.accepted and t.status == "matched"
        trades = await rest.trades()
        assert [tr["maker_orders"][0]["order_id"] for tr in trades] == [o.order_hash for o in posted]
        assert await rest.open_orders() == []
        async with aiohttp.ClientSession() as http:
            first = await (await http.get(ex.clob_url + "/markets")).json()
            assert first["count"] == 1 and first["next_cursor"] == server_mod.END_CURSOR
            done = await http.get(ex.clob_url + "/markets", params={"next_cursor": server_mod.END_CURSOR})
            assert done.status == 400


@pytest.mark.asyncio
async def test_auth_and_signature_checks(ex):
    maker, taker = OrderSigner(MAKER_KEY), OrderSigner(TAKER_KEY)
    mcreds = await derive(ex, MAKER_KEY)
    bad = RestClient(ex.clob_url, maker, ApiCredentials(mcreds.api_key, mcreds.secret, "nope"))
    with pytest.raises(Exception) as err:
        await bad.cancel_all()
    assert getattr(err.value, "kind", "") == "auth"
    await bad.close()
    rest = RestClient(ex.clob_url, maker, mcreds)
    (r,) = await rest.post_orders([build_order(taker, UP, 0, 4800, 10 * SH, 100)])  # signed by someone else
    assert r.status == "rejected" and "signer" in r.error
    (r,) = await rest.post_orders([build_order(maker, UP, 0, 4850, 10 * SH, 10)])  # our grid is 0.001, the market 0.01
    assert r.error_kind == "invalid_tick"
    (r,) = await rest.post_orders([build_order(maker, UP, 0, 4800, 2 * SH, 100)])
    assert r.error_kind == "min_size"
    (r,) = await rest.post_orders([build_order(maker, UP, 1, 4800, 10 * SH, 100)])  # SELL without tokens
    assert r.error_kind == "balance"
    await rest.close()


@pytest.mark.asyncio
async def test_heartbeat_dead_man_switch(ex, monkeypatch):
    monkeypatch.setattr(server_mod, "HEARTBEAT_TIMEOUT_S", 0.6)
    maker = OrderSigner(MAKER_KEY)
    rest = RestClient(ex.clob_url, maker, await derive(ex, MAKER_KEY))
    await rest.post_orders([build_order(maker, UP, 0, 4000, 10 * SH, 100)])
    await rest.heartbeat()
    await asyncio.sleep(0.3)
    await rest.heartbeat()  # chained: still alive
    assert len(ex.engine.live_orders(maker.address)) == 1
    await wait_for(lambda: not ex.engine.live_orders(maker.address), timeout=3)
    await rest.close()


@pytest.mark.asyncio
async def test_faults_restart_post_only_rate_limit_errors_and_held_answers(ex):
    maker = OrderSigner(MAKER_KEY)
    slept = []

    async def fast_sleep(s):
        slept.append(s)
        await asyncio.sleep(s / 10)

    rest = RestClient(ex.clob_url, maker, await derive(ex, MAKER_KEY), timeout=0.5, sleep=fast_sleep)
    ex.faults.start_restart(ex.clock.monotonic(), restart_s=0.2, post_only_s=30)
    (r,) = await rest.post_orders([build_order(maker, UP, 0, 4000, 10 * SH, 100)])
    assert r.accepted and slept  # 425s backed off, then accepted (post-only is allowed)
    (r,) = await rest.post_orders([build_order(maker, UP, 0, 4100, 10 * SH, 100)], post_only=False)
    assert r.error_kind == "post_only_mode" and rest.post_only_until > 0
    ex.faults.restart_until = ex.faults.post_only_until = 0
    ex.faults.rate_limit_next = 2
    with pytest.raises(Exception) as err:
        await rest.cancel_all()
    assert getattr(err.value, "kind", "") == "rate_limited"
    ex.faults.server_error_share = 1.0
    (r,) = await rest.post_orders([build_order(maker, UP, 0, 4200, 10 * SH, 100)])
    assert r.unknown and r.error_kind == "server_error"
    ex.faults.server_error_share = 0.0
    ex.faults.timeout_after_place, ex.faults.hold_seconds = 1, 1.0
    order = build_order(maker, UP, 0, 4300, 10 * SH, 100)
    (r,) = await rest.post_orders([order])
    assert r.unknown and r.error_kind == "timeout"
    assert order.order_hash in {o["id"] for o in await rest.open_orders()}  # placed after all: reconcilable by hash
    await rest.close()


@pytest.mark.asyncio
async def test_ghost_fill_duplicates_invalidation_and_malformed_frames(ex):
    ex.cfg.ghost_share = 1.0
    ex.faults.duplicate_user_trades = True
    async with maker_and_taker(ex, [UP], []) as (maker, taker, rest, trest, rec, md, market, user):
        await wait_for(lambda: ex.user_sockets and market.is_readable(UP))
        before = ex.engine.accounts[maker.address].collateral
        await rest.post_orders([build_order(maker, UP, 0, 4800, 10 * SH, 100)])
        await trest.post_orders([build_order(taker, DOWN, 0, 5200, 10 * SH, 100)], post_only=False)
        await wait_for(lambda: [f.kind for f in rec.fills] == ["fill", "status", "reversal"])
        assert [f.fill.status for f in rec.fills] == ["MATCHED", "RETRYING", "FAILED"]  # duplicates dropped
        assert user.fills.duplicates >= 2
        assert ex.engine.accounts[maker.address].collateral == before  # rolled back
        assert ex.engine.accounts[maker.address].tokens.get(UP, 0) == 0
        await rest.post_orders([build_order(maker, UP, 0, 4500, 10 * SH, 100)])
        ex.invalidate_orders(maker.address)
        await wait_for(lambda: rec.orders and rec.orders[-1].status == "INVALID")
        ex.send_raw_market(b"{not json")
        await wait_for(lambda: md.errors == 1)
        assert market.is_readable(UP)  # the feed survives a malformed frame


@pytest.mark.asyncio
async def test_gamma_discovery(ex):
    async with aiohttp.ClientSession() as s:
        async with s.get(ex.gamma_url + "/events/slug/btc-updown-15m-1780000000") as r:
            event = await r.json()
        async with s.get(ex.gamma_url + "/markets", params={"slug": "btc-updown-15m-1780000000"}) as r:
            (m,) = await r.json()
        async with s.get(ex.clob_url + "/markets/" + CID) as r:
            clob = await r.json()
    assert event["markets"][0]["conditionId"] == CID
    assert json.loads(m["clobTokenIds"]) == [UP, DOWN] and json.loads(m["outcomes"]) == ["Up", "Down"]
    assert clob["tokens"][0] == {"token_id": UP, "outcome": "Up", "winner": False} and clob["accepting_orders"]


def test_scenario_files(tmp_path):
    ex = Exchange()
    good = tmp_path / "s.json"
    good.write_text('[{"at": 1, "fault": "drop_ws"}, {"at": 0, "fault": "engine_restart", "restart_s": 5}]')
    assert [s[1] for s in load_scenario(ex, good)] == ["engine_restart", "drop_ws"]
    bad = tmp_path / "b.json"
    bad.write_text('[{"at": 1, "fault": "meteor"}]')
    with pytest.raises(ValueError, match="unknown faults"):
        load_scenario(ex, bad)


CAPTURE_SHAPES = {
    "book": "ws_book.json",
    "price_change": "ws_price_change_current.json",
    "last_trade_price": "ws_last_trade_price.json",
    "tick_size_change": "ws_tick_size_change.json",
    "best_bid_ask": "ws_market_best_bid_ask_msg.json",
    "market_resolved": "ws_market_resolved_msg.json",
}


@pytest.mark.asyncio
async def test_exchange_messages_have_the_captured_shapes_and_custom_features_are_opt_in(ex):
    from conftest import capture

    maker, taker = OrderSigner(MAKER_KEY), OrderSigner(TAKER_KEY)
    rest = RestClient(ex.clob_url, maker, await derive(ex, MAKER_KEY))
    trest = RestClient(ex.clob_url, taker, await derive(ex, TAKER_KEY))
    frames: dict[str, list[dict]] = {"custom": [], "plain": []}
    async with aiohttp.ClientSession() as s:
        socks = {}
        for name, custom in (("custom", True), ("plain", False)):
            ws = await s.ws_connect(ex.ws_url + "/ws/market")
            await ws.send_str(
                json.dumps({"assets_ids": [UP, DOWN], "type": "market", "custom_feature_enabled": custom})
            )
            socks[name] = ws

        async def drain(name):
            async for msg in socks[name]:
                data = orjson.loads(msg.data)
                frames[name] += data if isinstance(data, list) else [data]

        tasks = [asyncio.ensure_future(drain(n)) for n in socks]
        await rest.post_orders([build_order(maker, UP, 0, 9700, 10 * SH, 100)])  # a bid above 0.96: tick 0.001
        await trest.post_orders([build_order(taker, DOWN, 0, 400, 5 * SH, 10)], post_only=False)
        ex.resolve_market(CID, UP)
        await wait_for(lambda: any(f["event_type"] == "market_resolved" for f in frames["custom"]))
        await asyncio.sleep(0.1)
        for t in tasks:
            t.cancel()
    by_type = {}
    for f in frames["custom"]:
        by_type.setdefault(f["event_type"], f)
    for event_type, name in CAPTURE_SHAPES.items():
        captured = orjson.loads(capture(name))
        missing = (
            set(captured)
            - set(by_type[event_type])
            - {"tags", "question", "description", "slug", "event_message", "outcomes"}
        )
        assert not missing, (event_type, missing)
    assert set(orjson.loads(capture("ws_price_change_current.json"))["price_changes"][0]) <= set(
        by_type["price_change"]["price_changes"][0]
    )
    assert by_type["tick_size_change"]["new_tick_size"] == "0.001"
    assert {f["event_type"] for f in frames["plain"]} & {"best_bid_ask", "market_resolved"} == set()
    await rest.close()
    await trest.close()


@pytest.mark.asyncio
async def test_per_signer_token_bucket(ex):
    ex.cfg.order_rate = (1.0, 3.0)
    maker = OrderSigner(MAKER_KEY)
    rest = RestClient(ex.clob_url, maker, await derive(ex, MAKER_KEY), sleep=lambda s: asyncio.sleep(0))
    orders = [build_order(maker, UP, 0, 3000 + 100 * i, 5 * SH, 100) for i in range(4)]
    results = await rest.post_orders(orders[:3])
    assert all(r.accepted for r in results)
    (r,) = await rest.post_orders(orders[3:])  # the 4th in the same second: over the burst of 3
    assert r.error_kind == "rate_limited" and r.status == "rejected"
    await rest.close()


@pytest.mark.asyncio
async def test_maker_rebates_are_queryable(ex):
    m = ex.engine.markets[CID]
    m.fees = FeeSchedule(rate=Fraction(7, 100), rebate_share=Fraction(1, 5))
    maker, taker = OrderSigner(MAKER_KEY), OrderSigner(TAKER_KEY)
    rest = RestClient(ex.clob_url, maker, await derive(ex, MAKER_KEY))
    trest = RestClient(ex.clob_url, taker, await derive(ex, TAKER_KEY))
    await rest.post_orders([build_order(maker, UP, 0, 5000, 100 * SH, 100)])
    await trest.post_orders([build_order(taker, DOWN, 0, 5000, 100 * SH, 100)], post_only=False)
    async with aiohttp.ClientSession() as s:
        async with s.get(ex.clob_url + "/rebates/current", params={"maker_address": maker.address}) as r:
            (row,) = await r.json()
        async with s.get(ex.clob_url + "/rebates/current", params={"maker_address": "0x0"}) as r:
            assert await r.json() is None
    assert row["condition_id"] == CID and row["rebated_fees_usdc"] == "0.350000"  # 0.2 x 0.07 x 0.25 x 100
    await rest.close()
    await trest.close()


@pytest.mark.asyncio
async def test_best_bid_ask_is_sent_when_a_touch_moves_not_with_every_price_change(ex):
    """The venue emits best_bid_ask when a token's best bid or ask changes: an order deeper in
    the book publishes a price_change and no best_bid_ask; one that moves the touch publishes a
    best_bid_ask for both tokens (the Down touch is the Up touch's complement)."""
    maker = OrderSigner(MAKER_KEY)
    rest = RestClient(ex.clob_url, maker, await derive(ex, MAKER_KEY))
    frames: list[dict] = []
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(ex.ws_url + "/ws/market")
        await ws.send_str(json.dumps({"assets_ids": [UP, DOWN], "type": "market", "custom_feature_enabled": True}))

        async def drain():
            async for msg in ws:
                data = orjson.loads(msg.data)
                frames.extend(data if isinstance(data, list) else [data])

        task = asyncio.ensure_future(drain())
        await wait_for(lambda: any(f["event_type"] == "book" for f in frames))

        async def place(price: int) -> list[dict]:
            start = len(frames)
            await rest.post_orders([build_order(maker, UP, 0, price, 10 * SH, 100)])
            await wait_for(lambda: any(f["event_type"] == "price_change" for f in frames[start:]))
            await asyncio.sleep(0.05)
            return [f for f in frames[start:] if f["event_type"] == "best_bid_ask"]

        moved = await place(5000)
        assert sorted((f["asset_id"], f["best_bid"], f["best_ask"]) for f in moved) == sorted(
            [(UP, "0.5", "1"), (DOWN, "0", "0.5")]
        )
        assert await place(4000) == []  # deeper than the touch: nothing to tell
        higher = await place(5100)
        assert {(f["asset_id"], f["best_bid"]) for f in higher} == {(UP, "0.51"), (DOWN, "0")}
        # a frozen feed tells no one of a touch move; the first frame after it thaws does
        ex.faults.freeze_market = True
        await rest.post_orders([build_order(maker, UP, 0, 5200, 10 * SH, 100)])
        await asyncio.sleep(0.05)
        ex.faults.freeze_market = False
        thawed = await place(3000)  # deeper, but the touch its subscribers know is stale
        assert {(f["asset_id"], f["best_bid"]) for f in thawed} == {(UP, "0.52"), (DOWN, "0")}
        task.cancel()
    await rest.close()
