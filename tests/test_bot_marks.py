"""Which market frames ask for a decision (issue 11: CPU per frame with no order to send). A
decision reads the Up book only through its touch, tick and trust, and momentum's verdict: a
frame that changes a level deeper in the book marks nothing; one that moves the touch, or that
momentum reads as a sweep, marks its market. The bot's handler runs on stand-ins for its parts
(a real MarketData with the compiled book, a real momentum detector), no sockets."""

from __future__ import annotations

import random
from collections.abc import Callable
from types import SimpleNamespace

import orjson

from active_quoting.bot import Bot
from active_quoting.clock import ManualClock
from active_quoting.strategy.momentum import MomentumDetector
from active_quoting.venue.market_data import MarketData
from synth_feed import DOWN, UP, book_frame, initial_books, price_change_frame

CID = "0x" + "ab" * 32


class Marks:
    def __init__(self) -> None:
        self.marked: list[str] = []

    def mark(self, market: str, frame_t: float = 0.0) -> None:
        if market not in self.marked:  # as the scheduler's dirty set: once per market
            self.marked.append(market)


def _bot(md: MarketData) -> SimpleNamespace:
    info = SimpleNamespace(up=UP, down=DOWN)
    windows = SimpleNamespace(
        market_of=lambda token: CID if token in (UP, DOWN) else None,
        get=lambda cid: SimpleNamespace(info=info, cid=cid) if cid == CID else None,
        lookup=lambda token: (CID, SimpleNamespace(info=info, cid=CID)) if token in (UP, DOWN) else (None, None),
    )
    held: set[str] = set()
    bot = SimpleNamespace(
        clock=ManualClock(1_000.0), market=SimpleNamespace(md=md, last_frame_t=0.0), windows=windows,
        momentum=MomentumDetector(), scheduler=Marks(), _moved={}, _tops={}, _hot=set(), _fair_unguarded=False,
        pulled=[],
        orders=SimpleNamespace(own_and_leaving=lambda cid: ({}, {}, {}, {}), holds_back=lambda m: m in held, held=held),
    )  # fmt: skip
    bot._waits_on_time = lambda market, now_ms: Bot._waits_on_time(bot, market, now_ms)  # type: ignore[arg-type]
    bot._pull = bot.pulled.append  # what momentum asks to pull at once (tests/test_hot_path.py: the send)
    return bot


def _feeder(bot: SimpleNamespace) -> Callable[[bytes], list[str]]:
    """Frames through the bot's handler, 1 ms apart; what each marked."""

    def feed(frame: bytes) -> list[str]:
        bot.scheduler.marked.clear()
        bot.clock.advance(0.001)
        Bot.on_market_events(bot, bot.market.md.on_frame(frame))  # type: ignore[arg-type]
        return bot.scheduler.marked

    return feed


def test_only_frames_that_can_change_a_decision_mark_the_market() -> None:
    md = MarketData()
    books = initial_books(random.Random(5))
    bot = _bot(md)
    feed = _feeder(bot)

    assert feed(book_frame(books, 1)) == [CID]  # a snapshot: the first word on this book
    best_bid = max(books[UP].bids)
    deep = min(books[UP].bids)
    # a level far below the touch changes size: nothing a decision reads moved
    assert feed(price_change_frame(books, [(UP, "BUY", deep, books[UP].bids[deep] + 1_000_000)], 2)) == []
    assert UP not in bot._moved or bot._moved[UP][0] != bot.clock.ms()  # no mid for the analytics either
    # the touch moves: decided
    assert feed(price_change_frame(books, [(UP, "BUY", best_bid + 100, 3_000_000)], 3)) == [CID]
    # the size at the touch changes, the touch does not: nothing
    assert feed(price_change_frame(books, [(UP, "BUY", best_bid + 100, 4_000_000)], 4)) == []
    # the touch goes back: decided again
    assert feed(price_change_frame(books, [(UP, "BUY", best_bid + 100, 0)], 5)) == [CID]


def test_a_sweep_momentum_sees_marks_the_market_even_when_the_touch_stands() -> None:
    md = MarketData()
    books = initial_books(random.Random(5))
    bot = _bot(md)
    Bot.on_market_events(bot, md.on_frame(book_frame(books, 1)))  # type: ignore[arg-type]
    bot.scheduler.marked.clear()
    # the levels just behind the best bid vanish (the touch itself stays): the depth near the
    # touch collapses, a sweep for the detector
    behind = sorted(books[UP].bids, reverse=True)[1:6]
    changes = [(UP, "BUY", p, 0) for p in behind]
    bot.clock.advance(0.01)
    Bot.on_market_events(bot, md.on_frame(price_change_frame(books, changes, 2)))  # type: ignore[arg-type]
    assert bot.momentum.triggers["sweep"] + bot.momentum.triggers["imbalance"] >= 1
    assert bot.scheduler.marked == [CID]
    assert bot.pulled == [CID]  # and its quotes are pulled before the pass decides it


def test_a_decision_waiting_on_time_or_a_trade_move_or_a_new_snapshot_is_decided_by_any_frame() -> None:
    """What the top alone does not show: a decision the refresh limits held back (any frame
    retries it, as before the filter), a cooldown started by trades, a snapshot after a
    reconnect whose top is the one last seen (the book is readable again)."""
    md = MarketData()
    books = initial_books(random.Random(5))
    bot = _bot(md)
    feed = _feeder(bot)
    feed(book_frame(books, 1))
    deep = min(books[UP].bids)
    assert feed(price_change_frame(books, [(UP, "BUY", deep, 1_000_000)], 2)) == []
    bot.orders.held.add(CID)  # the refresh limits held its last decision back
    assert feed(price_change_frame(books, [(UP, "BUY", deep, 2_000_000)], 3)) == [CID]
    bot.orders.held.clear()
    assert feed(book_frame(books, 4)) == [CID]  # the same top, a new snapshot: decided
    trades = [
        orjson.dumps({"market": "m", "asset_id": UP, "price": price, "size": "10", "side": "BUY", "fee_rate_bps": "0",
                      "timestamp": str(5 + i), "event_type": "last_trade_price"})
        for i, price in enumerate(("0.50", "0.56"))
    ]  # fmt: skip
    assert bot.pulled == []  # no momentum so far
    feed(trades[0])
    assert feed(trades[1]) == [CID] and bot.momentum.triggers["trade_move"] == 1  # the cooldown starts: decided
    assert bot.pulled == [CID]  # and pulled at once


def test_the_frame_handler_gives_momentum_our_levels_and_those_on_their_way_out() -> None:
    md = MarketData()
    books = initial_books(random.Random(5))
    bot = _bot(md)
    levels = ({4900: 7}, {5100: 8}, {4900: 7}, {})
    bot.orders.own_and_leaving = lambda cid: levels
    seen: list[tuple] = []
    on_book = bot.momentum.on_book

    def recorded(key, now_ms, book, *own):  # type: ignore[no-untyped-def]
        seen.append(own)
        return on_book(key, now_ms, book, *own)

    bot.momentum.on_book = recorded
    _feeder(bot)(book_frame(books, 1))
    assert seen == [levels]  # the Up book's frame, read without us (the leaving part possibly gone)


def test_user_events_mark_their_market_and_the_read_end_decides_once() -> None:
    """An order update and a fill arriving in one user-channel read mark their market; the pass
    is asked for once, when the read ends (``on_user_read``), not once per event."""

    class Scheduler(Marks):
        def __init__(self) -> None:
            super().__init__()
            self.requests: list[list[str]] = []

        def request(self) -> None:
            self.requests.append(list(self.marked))

    updates: list[object] = []
    bot = SimpleNamespace(
        scheduler=Scheduler(), windows=SimpleNamespace(windows={CID: object()}),
        orders=SimpleNamespace(on_order=updates.append), fills=SimpleNamespace(on_fill=lambda u: True),
    )  # fmt: skip
    Bot.on_order(bot, SimpleNamespace(market=CID))  # type: ignore[arg-type]
    Bot.on_fill(bot, SimpleNamespace(fill=SimpleNamespace(market=CID)))  # type: ignore[arg-type]
    Bot.on_order(bot, SimpleNamespace(market="0xother"))  # type: ignore[arg-type]  # not ours: no mark
    assert len(updates) == 2 and bot.scheduler.marked == [CID] and bot.scheduler.requests == []
    Bot.on_user_read(bot)  # type: ignore[arg-type]
    assert bot.scheduler.requests == [[CID]]
