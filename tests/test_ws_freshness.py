"""Market feed freshness per token (issue 9, item 11) over real sockets: only book events of
subscribed tokens make a book fresh (global frames do not), a silent market stops quoting in
the risk manager, the freeze probe survives a rollover (a 404 token is dropped, a live one
probed) and an unsubscribed token leaves nothing behind, not even through a resync in flight."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

import orjson
import pytest

from active_quoting.strategy.config import RiskConfig
from active_quoting.strategy.risk import HALTED, RiskManager
from conftest import capture
from loopback_ws import wait_for
from synth_feed import DOWN, UP, book_frame, initial_books, price_change_frame
from test_ws import LOOPS, Recorder, market_stream, run

NEW_MARKET = capture("ws_market_new_market_msg.json")
NOT_FOUND = (404, {"error": "No orderbook exists for the requested token id"}, {})


@pytest.mark.parametrize("loop", LOOPS)
def test_only_book_events_of_subscribed_tokens_refresh_and_a_silent_market_halts(loop):
    async def go():
        books = initial_books(random.Random(11), levels=2)
        from active_quoting.clock import ManualClock  # here: the other tests run on clockless trees too

        clock = ManualClock(1_000.0)
        async with market_stream(books, [UP, DOWN], Recorder(), clock=clock) as (server, _, stream):
            await wait_for(lambda: stream.is_readable(UP) and stream.is_readable(DOWN))
            assert stream.fresh_ms(UP) == stream.last_book_event_ms(UP) == 1_000_000
            clock.advance(10)
            frames = stream.md.frames
            for frame in (NEW_MARKET, b"NO NEW ASSETS", b"PONG"):
                await server.send_market(frame)
            other = initial_books(random.Random(12), levels=1)
            other["999"] = other.pop(UP)  # a token we never subscribed to
            await server.send_market(price_change_frame(other, [("999", "BUY", 4000, 1_000_000)], 2))
            await wait_for(lambda: stream.md.frames >= frames + 4)
            assert stream.md.event_counts["new_market"] >= 1  # the global frames did arrive
            assert stream.last_book_event_ms(UP) == stream.fresh_ms(UP) == 1_000_000
            assert stream.fresh_ms("999") == 0  # not subscribed: never fresh

            clock.advance(5)
            await server.send_market(price_change_frame(books, [(UP, "BUY", 4950, 7_000_000)], 3))
            await wait_for(lambda: stream.last_book_event_ms(UP) == 1_015_000)
            assert stream.last_book_event_ms(DOWN) == 1_000_000  # its own events only

            risk = RiskManager(RiskConfig(stale_feed_seconds=Decimal(30)))
            risk.on_user_channel(clock.ms(), True)
            clock.advance(26)  # UP silent 26 s, DOWN 41 s, global frames still flowing
            await server.send_market(NEW_MARKET)
            fresh = {"M": min(stream.fresh_ms(UP), stream.fresh_ms(DOWN))}
            assert risk.check_stale(clock.ms(), fresh) == ["M"]
            assert not risk.can_quote("M")
            assert [(e.scope, e.new, e.cancel_all) for e in risk.drain_events()] == [("M", HALTED, True)]

    run(loop, go)


@pytest.mark.parametrize("loop", LOOPS)
def test_freeze_is_detected_while_global_frames_keep_the_socket_busy(loop):
    async def go():
        books = initial_books(random.Random(13), levels=2)
        rec = Recorder()
        kw = {"freeze_after": 0.3, "freeze_check_every": 3600}
        async with market_stream(books, [UP], rec, with_rest=True, **kw) as (server, venue, stream):
            await wait_for(lambda: stream.is_readable(UP))
            book = orjson.loads(book_frame({UP: books[UP]}, 1))[0]
            venue.book_replies[UP] = dict(book, bids=book["bids"][:-1])  # the venue's book moved
            for _ in range(8):  # the socket is busy, but with nothing about our book
                await server.send_market(NEW_MARKET)
                await asyncio.sleep(0.05)
            assert stream.md.event_counts["new_market"] >= 8
            assert await stream.check_freeze() == []  # one disagreement is a suspicion (REST may lag) ...
            assert await stream.check_freeze() == [0]  # ... two in a row with the socket silent: frozen
            assert stream.stale_events == 1 and "silent" in rec.stale[0][1]
            await wait_for(lambda: stream.shards[0].connects == 2)

    run(loop, go)


@pytest.mark.parametrize("loop", LOOPS)
def test_freeze_probe_survives_a_rollover_404(loop):
    async def go():
        books = initial_books(random.Random(14), levels=2)
        rec = Recorder()
        kw = {"freeze_after": 0.2, "freeze_check_every": 3600}
        # DOWN stands for the shard's oldest token, whose window has ended: REST 404s it.
        async with market_stream(books, [DOWN, UP], rec, with_rest=True, **kw) as (server, venue, stream):
            await wait_for(lambda: stream.is_readable(UP) and stream.is_readable(DOWN))
            book = orjson.loads(book_frame({UP: books[UP]}, 1))[0]
            venue.book_replies[UP] = dict(book, bids=book["bids"][:-1])  # the live token's book moved
            venue.faults.append(NOT_FOUND)  # the first /book (the oldest token) answers 404
            await asyncio.sleep(0.3)
            assert await stream.check_freeze() == []  # one disagreement is a suspicion (REST may lag) ...
            assert await stream.check_freeze() == [0]  # ... two in a row with the socket silent: frozen
            assert stream.is_gone(DOWN) and stream.gone_tokens == 1 and not venue.faults
            await wait_for(lambda: stream.shards[0].connects == 2 and stream.is_readable(UP))
            venue.book_replies[UP] = orjson.loads(book_frame({UP: books[UP]}, 1))[0]  # agrees now
            await asyncio.sleep(0.3)
            probes = stream.probes
            assert await stream.check_freeze() == []
            assert stream.probes == probes + 1 and stream.confirmations == 1  # UP only: DOWN is not asked again
            assert stream.gone_tokens == 1

    run(loop, go)


@pytest.mark.parametrize("loop", LOOPS)
def test_unsubscribe_forgets_the_token_even_with_a_resync_in_flight(loop):
    async def go():
        books = initial_books(random.Random(15), levels=3)
        rec = Recorder()
        async with market_stream(books, [UP, DOWN], rec, with_rest=True) as (server, venue, stream):
            await wait_for(lambda: stream.is_readable(UP))
            venue.hang_next, venue.hang_seconds = 1, 0.5  # the resync's REST /book is slow
            lie = orjson.loads(price_change_frame(books, [(UP, "BUY", 4000, 1_000_000)], 3))
            lie["price_changes"][0]["best_bid"] = "0.2"
            for _ in range(3):  # three disagreements in a row: desynced, a REST resync starts
                await server.send_market(orjson.dumps(lie))
            await wait_for(lambda: stream.resyncs == 1)
            stream.unsubscribe([UP])
            await asyncio.sleep(0.8)  # the slow answer has arrived
            assert venue.hang_next == 0  # the hang did happen
            assert stream.md.books.get(UP) is None and not stream.is_readable(UP)
            assert stream.fresh_ms(UP) == 0 and stream.last_book_event_ms(UP) is None and not stream.is_gone(UP)
            assert stream.is_readable(DOWN)
            ticks = rec.ticks.count((UP, 100))
            stream.subscribe([UP])  # a token coming back is new: its tick is reported again
            await wait_for(lambda: stream.is_readable(UP) and rec.ticks.count((UP, 100)) == ticks + 1)

    run(loop, go)
