"""The market channel stays in step with the embedded exchange on the simulator's virtual-time
loop (the loop ``active-quoting sim`` runs on), through the real market stream over loopback:

- frames published in one instant (a requote's cancel and new order reaching the engine
  together, as concurrent replace makes them, each with its ``best_bid_ask``) are written in the
  order they were published, also with the simulator's market-data delay, so no book desyncs;
- a market that resolves publishes the levels its cancelled orders leave, so a subscriber's book
  empties with the venue's and the freeze watch, probing the now quiet market on REST, does not
  find it "moved" and reconnect the feed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson

from active_quoting import core
from active_quoting.exchange.engine import BUY, SELL, Market, Order
from active_quoting.exchange.server import Exchange, ExchangeConfig
from active_quoting.sim.loop import LoopClock, VirtualTimeLoop
from active_quoting.venue.rest import RestClient
from active_quoting.venue.ws import Backoff, MarketStream

UP, DOWN, CID = "2001", "2002", "0x" + "cd" * 32
SH = 1_000_000
T0 = 1_780_000_000.0
FLOW = "0x" + "11" * 20  # another trader: its orders make the book
ME = "0x" + "22" * 20  # the requoting maker


def _order(oid: str, account: str, token: str, side: str, price: int, size: int = 10 * SH) -> Order:
    return Order(oid, account, "key-" + account[-4:], CID, token, side, price, size, post_only=True)


async def _until(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _setup(
    cfg: ExchangeConfig, clock: LoopClock, rest: bool = False
) -> tuple[Exchange, MarketStream, list[bytes], RestClient | None]:
    ex = Exchange(cfg, clock=clock)
    await ex.start()
    ex.add_market(Market(CID, UP, DOWN))
    for account in (FLOW, ME):
        ex.engine.credit(account, collateral=100_000 * SH)
    client = RestClient(ex.clob_url, order_lane=False) if rest else None
    if client is not None:
        await client.start()
    stream = MarketStream(ex.ws_url + "/ws/market", rest=client, clock=clock, freeze_after=15.0, freeze_check_every=5.0,
                          backoff=lambda: Backoff(0.05, 0.2))  # fmt: skip
    received: list[bytes] = []
    stream.record = received.append
    stream.subscribe([UP, DOWN])
    await stream.start()
    await _until(lambda: stream.is_readable(UP) and stream.is_readable(DOWN), "the first snapshots")
    return ex, stream, received, client


def _events(frames: list[bytes], kinds: set[str]) -> list[bytes]:
    """The frames of the given event types, byte for byte (each carries its own hashes)."""
    out = []
    for f in frames:
        msg = orjson.loads(f)
        if isinstance(msg, dict) and msg.get("event_type") in kinds:
            out.append(orjson.dumps(msg))
    return out


def _assert_books_match(ex: Exchange, stream: MarketStream) -> None:
    m = ex.engine.markets[CID]
    for token in (UP, DOWN):
        book = stream.md.books.get(token)
        bids, asks = m.token_view(token)
        assert book is not None
        want_bid = bids[-1] if bids else (core.NO_PRICE, 0)
        want_ask = asks[-1] if asks else (core.NO_PRICE, 0)
        assert (book.best_bid(), book.best_bid_size()) == want_bid, (token, book)
        assert (book.best_ask(), book.best_ask_size()) == want_ask, (token, book)


def test_frames_published_in_one_instant_arrive_in_order_and_no_book_desyncs(tmp_path: Path) -> None:
    record = tmp_path / "feed.jsonl"
    loop = VirtualTimeLoop()
    clock = LoopClock(loop, T0)
    cycles = 40

    async def main() -> tuple[Exchange, MarketStream, list[bytes]]:
        cfg = ExchangeConfig(md_delay_ms=15, entry_delay_ms=15, record=str(record), seed=5)
        ex, stream, received, _ = await _setup(cfg, clock)
        try:
            # A book for the requotes to move in: the flow's bids 0.40-0.44, asks (Down bids) 0.56-0.60.
            for i in range(5):
                for o in (
                    _order(f"fb{i}", FLOW, UP, BUY, 4000 + 100 * i),
                    _order(f"fa{i}", FLOW, DOWN, BUY, core.PRICE_SCALE - 6000 + 100 * i),
                ):
                    ex._publish(ex.engine.place(o, clock.ms()))
            await asyncio.sleep(0.1)
            # Our bid walks between 0.45 and 0.49 (best bid, so each replace moves the top), on
            # the Up and the Down token by turns; the cancel of the old order and the new order
            # reach the engine in the same instant, as two lane requests sent together do.
            live = ""
            for n in range(cycles):
                price = 4500 + 100 * (n % 5)
                token, tprice = (UP, price) if n % 2 == 0 else (DOWN, core.PRICE_SCALE - price)
                side = BUY if token == UP else SELL
                if live:
                    _, refusal, result = ex.engine.cancel(live, ME)
                    assert not refusal
                    ex._publish(result)
                live = f"me{n}"
                new = _order(live, ME, token, side, tprice)
                if side == SELL:
                    ex.engine.credit(ME, token=DOWN, shares=new.size)
                ex._publish(ex.engine.place(new, clock.ms()))
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)
            return ex, stream, received
        finally:
            await stream.stop()
            await ex.stop()

    ex, stream, received = loop.run_until_complete(main())
    loop.close()
    kinds = {"price_change", "best_bid_ask"}
    published = _events([line for line in record.read_bytes().splitlines() if line], kinds)
    got = _events(received, kinds)
    # The scenario took place: every replace published two price_changes in one millisecond.
    stamps = Counter(orjson.loads(f)["timestamp"] for f in published if b'"price_change"' in f)
    assert sum(1 for c in stamps.values() if c >= 2) >= cycles - 1
    assert len(got) == len(published) >= 6 * cycles
    disagreements = {token: stream.md.books.get(token).disagreements for token in (UP, DOWN)}
    assert disagreements == {UP: 0, DOWN: 0} and stream.md.desync_marks == 0 and stream.resyncs == 0
    assert got == published  # the socket carried the frames in the order they were published
    _assert_books_match(ex, stream)


def test_a_resolved_market_empties_the_book_and_the_quiet_feed_is_not_declared_frozen() -> None:
    loop = VirtualTimeLoop()
    clock = LoopClock(loop, T0)

    async def main() -> tuple[Exchange, MarketStream, list[bytes]]:
        ex, stream, received, client = await _setup(ExchangeConfig(md_delay_ms=15, seed=6), clock, rest=True)
        assert client is not None
        try:
            for i in range(4):
                ex._publish(ex.engine.place(_order(f"b{i}", FLOW, UP, BUY, 9000 + 100 * i), clock.ms()))
            await asyncio.sleep(1.0)
            assert stream.md.books.get(UP).best_bid() == 9300
            ex.resolve_market(CID, UP)
            await asyncio.sleep(1.0)
            # The cancelled orders' levels reached the feed: both books are empty at once.
            tops = [(stream.md.books.get(t).best_bid(), stream.md.books.get(t).best_ask()) for t in (UP, DOWN)]
            assert tops == [(core.NO_PRICE, core.NO_PRICE)] * 2, tops
            # The market is quiet from now on; the freeze watch probes it on REST (15 s silent).
            await asyncio.sleep(45.0)
            return ex, stream, received
        finally:
            await stream.stop()
            await client.close()
            await ex.stop()

    ex, stream, received = loop.run_until_complete(main())
    loop.close()
    assert ex.engine.markets[CID].resolved == UP and not ex.engine.live_orders(market=CID)
    assert any(b'"market_resolved"' in f for f in received)
    for token in (UP, DOWN):
        book = stream.md.books.get(token)
        assert book.best_bid() == core.NO_PRICE and book.best_ask() == core.NO_PRICE, book
    _assert_books_match(ex, stream)
    assert stream.probes >= 2 and stream.confirmations >= 2  # the watch probed the silent tokens
    assert stream.stale_events == 0 and stream.shards[0].connects == 1
