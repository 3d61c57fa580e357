"""Both WebSocket channels over picows against loopback peers, under asyncio and uvloop:
subscribe formats, PING cadence, reconnect and resubscribe, sharding, tick changes, desync
resync, silent-freeze detection, user events and fills, reconcile after reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import random

import orjson
import pytest
import uvloop

from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import ApiCredentials
from active_quoting.venue.ws import Backoff, MarketStream, UserStream
from conftest import capture
from loopback_venue import LoopbackVenue
from loopback_ws import LoopbackWS, wait_for
from synth_feed import DOWN, UP, book_frame, initial_books, price_change_frame

LOOPS = ["asyncio", "uvloop"]


def run(loop_kind, fn):
    factory = uvloop.new_event_loop if loop_kind == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(asyncio.wait_for(fn(), 30))


def fast_backoff():
    return Backoff(base=0.02, cap=0.1, rng=random.Random(1))


class Recorder:
    def __init__(self):
        self.events, self.ticks, self.states, self.stale = [], [], [], []
        self.orders, self.fills, self.user_states, self.reconciles = [], [], [], 0
        self.reads = 0
        self.user_reads = 0

    def on_market_events(self, events):
        self.events += events

    def on_market_read(self):
        self.reads += 1

    def on_tick_size_change(self, asset_id, tick):
        self.ticks.append((asset_id, tick))

    def on_feed_state(self, shard, connected):
        self.states.append((shard, connected))

    def on_feed_stale(self, shard, reason):
        self.stale.append((shard, reason))

    def on_order(self, update):
        self.orders.append(update)

    def on_fill(self, update):
        self.fills.append(update)

    def on_user_read(self):
        self.user_reads += 1

    def on_user_state(self, connected):
        self.user_states.append(connected)

    def on_reconcile_needed(self):
        self.reconciles += 1


@contextlib.asynccontextmanager
async def market_stream(books, assets, rec, with_rest=False, **kw):
    """A market WebSocket peer serving ``books``, a started ``MarketStream`` subscribed to
    ``assets`` (fast pings and backoff), and with ``with_rest`` a REST venue beside the peer
    that the stream resyncs from; everything is stopped after. Yields (peer, venue, stream)."""
    server = LoopbackWS(books)
    venue = LoopbackVenue() if with_rest else None
    await server.start()
    rest = None
    if venue is not None:
        await venue.start()
        rest = RestClient(venue.url)
    kw.setdefault("ping_interval", 0.1)
    kw.setdefault("pong_timeout", 0.1)
    stream = MarketStream(server.url + "/ws/market", listener=rec, backoff=fast_backoff, rest=rest, **kw)
    stream.subscribe(assets)
    await stream.start()
    try:
        yield server, venue, stream
    finally:
        await stream.stop()
        if rest is not None:
            await rest.close()
        await server.stop()
        if venue is not None:
            await venue.stop()


@pytest.mark.parametrize("loop", LOOPS)
def test_subscribe_snapshot_and_ping_cadence(loop):
    async def go():
        books = initial_books(random.Random(1), levels=3)
        async with market_stream(books, [UP, DOWN], Recorder()) as (server, _, stream):
            await wait_for(lambda: stream.is_readable(UP) and stream.is_readable(DOWN))
            assert server.received[0] == (
                "market",
                {"assets_ids": [UP, DOWN], "type": "market", "custom_feature_enabled": True},
            )
            await asyncio.sleep(1.0)
            assert server.pings >= 3 and stream.shards[0].pongs >= 3  # text PING answered by text PONG
            assert stream.shards[0].connects == 1
            assert stream.md.books.get(UP).best_bid() == 4900

    run(loop, go)


@pytest.mark.parametrize("loop", LOOPS)
def test_reconnect_resubscribes_and_rebuilds(loop):
    async def go():
        books = initial_books(random.Random(2), levels=3)
        rec = Recorder()
        async with market_stream(books, [UP, DOWN], rec) as (server, _, stream):
            await wait_for(lambda: stream.is_readable(UP))
            await server.send_market(price_change_frame(books, [(UP, "BUY", 4950, 7_000_000)], 2))
            await wait_for(lambda: stream.md.books.get(UP).best_bid() == 4950)
            server.books[UP].set("BUY", 4950, 0)  # the venue's book moved while we were away
            await server.drop("market")
            await wait_for(lambda: stream.shards[0].connects == 2 and stream.is_readable(UP))
            subs = [p for ch, p in server.received if p.get("type") == "market"]
            assert len(subs) == 2 and subs[1]["assets_ids"] == [UP, DOWN]
            assert stream.md.books.get(UP).best_bid() == 4900  # rebuilt from the fresh snapshot
            assert (0, False) in rec.states and rec.states.count((0, True)) == 2

    run(loop, go)


@pytest.mark.parametrize("loop", LOOPS)
def test_missing_pong_forces_reconnect(loop):
    async def go():
        books = initial_books(random.Random(3), levels=2)
        async with market_stream(books, [UP], Recorder(), pong_timeout=0.05) as (server, _, stream):
            await wait_for(lambda: stream.is_readable(UP))
            server.answer_pong = False
            await wait_for(lambda: server.connections >= 2, timeout=5)
            server.answer_pong = True
            await wait_for(lambda: stream.is_readable(UP))

    run(loop, go)


@pytest.mark.parametrize("loop", LOOPS)
def test_sharding_and_dynamic_subscriptions(loop):
    async def go():
        rng = random.Random(4)
        books = {str(1000 + i): initial_books(rng, levels=2)[UP] for i in range(5)}
        async with market_stream(books, list(books)[:5], Recorder(), shard_size=2) as (server, _, stream):
            await wait_for(lambda: all(stream.is_readable(a) for a in books))
            assert len(stream.shards) == 3
            firsts = [p["assets_ids"] for ch, p in server.received if p.get("type") == "market"]
            assert sorted(len(a) for a in firsts) == [1, 2, 2]
            server.books["2000"] = books["1000"]
            stream.subscribe(["2000"])  # the last shard has room: a dynamic subscribe
            await wait_for(lambda: stream.is_readable("2000"))
            assert (
                "market",
                {"assets_ids": ["2000"], "operation": "subscribe", "custom_feature_enabled": True},
            ) in server.received
            assert len(stream.shards) == 3
            stream.unsubscribe(["1000"])
            await wait_for(lambda: ("market", {"assets_ids": ["1000"], "operation": "unsubscribe"}) in server.received)
            assert not stream.is_readable("1000") and stream.md.books.get("1000") is None

    run(loop, go)


@pytest.mark.parametrize("loop", LOOPS)
def test_tick_change_notifies_and_desync_resyncs_from_rest(loop):
    async def go():
        books = initial_books(random.Random(5), levels=3)
        rec = Recorder()
        async with market_stream(books, [UP], rec, with_rest=True) as (server, venue, stream):
            await wait_for(lambda: stream.is_readable(UP))
            await server.send_market(orjson.dumps({"event_type": "tick_size_change", "asset_id": UP, "market": "0x1",
                                                   "old_tick_size": "0.01", "new_tick_size": "0.001"}))  # fmt: skip
            # the subscribe snapshot's tick, then the change (each reported once)
            await wait_for(lambda: rec.ticks == [(UP, 100), (UP, 10)])
            venue.book_replies[UP] = {"market": "0x1", "asset_id": UP, "bids": [{"price": "0.3", "size": "1"}],
                                      "asks": [{"price": "0.7", "size": "1"}], "hash": "r", "timestamp": "9",
                                      "tick_size": "0.01"}  # fmt: skip
            lie = orjson.loads(price_change_frame(books, [(UP, "BUY", 4000, 1_000_000)], 3))
            lie["price_changes"][0]["best_bid"] = "0.2"
            for _ in range(3):  # three disagreements in a row: desynced
                await server.send_market(orjson.dumps(lie))
            await wait_for(lambda: stream.resyncs == 1 and stream.is_readable(UP))
            assert stream.md.books.get(UP).best_bid() == 3000 and stream.md.desync_marks == 1
            assert rec.ticks[-1] == (UP, 100)  # the REST snapshot's tick differs from the last known: reported

    run(loop, go)


@pytest.mark.parametrize("loop", LOOPS)
def test_silent_freeze_is_detected_only_when_the_book_moved(loop):
    async def go():
        books = initial_books(random.Random(6), levels=2)
        rec = Recorder()
        stream_kw = {"freeze_after": 0.2, "freeze_check_every": 3600}
        async with market_stream(books, [UP], rec, with_rest=True, **stream_kw) as (server, venue, stream):
            await wait_for(lambda: stream.is_readable(UP))
            book = orjson.loads(book_frame({UP: books[UP]}, 1))[0]
            venue.book_replies[UP] = book  # REST agrees with us: a quiet market
            await asyncio.sleep(0.3)
            assert await stream.check_freeze() == [] and rec.stale == []
            assert stream.confirmations == 1  # the quiet book was confirmed: fresh again
            venue.book_replies[UP] = dict(book, bids=book["bids"][:-1])  # REST moved, the socket stayed silent
            await asyncio.sleep(0.3)
            assert await stream.check_freeze() == []  # one disagreement is a suspicion (REST may lag) ...
            assert await stream.check_freeze() == [0]  # ... two in a row with the socket silent: frozen
            assert "silent" in rec.stale[0][1]
            await wait_for(lambda: stream.shards[0].connects == 2 and stream.is_readable(UP))

    run(loop, go)


@pytest.mark.parametrize("loop", LOOPS)
def test_user_channel_events_fills_and_reconcile(loop):
    async def go():
        server = LoopbackWS()
        url = await server.start()
        rec = Recorder()
        creds = ApiCredentials("a93a3d32-74fa-dd2b-4b67-98bfa6fc5cb5", "c2VjcmV0", "pp")
        stream = UserStream(url + "/ws/user", creds, rec, ["0xdd22"], ping_interval=0.1, pong_timeout=0.1,
                            backoff=fast_backoff())  # fmt: skip
        await stream.start()
        try:
            await wait_for(lambda: server.user_sockets and server.received)
            assert server.received[0] == ("user", {"auth": {"apiKey": creds.api_key, "secret": "c2VjcmV0", "passphrase": "pp"},
                                                   "markets": ["0xdd22"], "type": "user"})  # fmt: skip
            await server.send_user(capture("ws_order_placement.json"))
            trade = capture("ws_user_trade3.json")
            for _ in range(3):
                await server.send_user(trade)  # duplicates: one fill
            await server.send_user(b"[" + capture("ws_user_order_venue_cancel.json") + b"]")
            await wait_for(lambda: len(rec.orders) == 2)
            assert [f.kind for f in rec.fills] == ["fill"] and rec.fills[0].fill.price == 5130
            assert rec.orders[1].status == "INVALID"
            stream.subscribe(["0xabc"])
            await wait_for(lambda: ("user", {"operation": "subscribe", "markets": ["0xabc"]}) in server.received)
            await server.drop("user")
            await wait_for(lambda: rec.reconciles == 1 and stream.conn.connects == 2)
            assert rec.user_states.count(False) == 1
            assert server.received[-1][1]["markets"] == ["0xdd22", "0xabc"]  # resubscribed everything
        finally:
            await stream.stop()
            await server.stop()

    run(loop, go)
