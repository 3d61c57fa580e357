"""The hot path of issue 11 item 2, against the embedded exchange over loopback (the order lane):
a requested pass has decided, signed and written its requests before ``request()`` returns; a
replace's cancel and new order are written in that same turn, the cancel first; a request made
while a pass's first step runs only marks (the pass takes it); the rows of sent orders are
written after the send but never behind a later state of the same order; a failure to record a
sent order is reported, not lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from types import SimpleNamespace

import pytest

from active_quoting import core
from active_quoting.aio import TaskSet
from active_quoting.bot import Bot
from active_quoting.execution.order_manager import Tracked
from active_quoting.model import BID
from active_quoting.store.sqlite import Store
from active_quoting.venue import lane as lane_mod
from test_venue_states import CID, CID2, rig, until


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every request the order lane hands to the kernel, by pool, in order."""
    log: list[str] = []
    send = lane_mod._Connection.send

    def logged(self: lane_mod._Connection, data: bytes) -> asyncio.Future[lane_mod.LaneReply]:
        log.append(self.pool)
        return send(self, data)

    monkeypatch.setattr(lane_mod._Connection, "send", logged)
    return log


@pytest.mark.asyncio
async def test_request_decides_and_writes_before_it_returns_and_a_replace_goes_out_in_one_turn(writes):
    async with rig(concurrent_replace=True) as r:
        await r.om.rest.start()  # as the bot does at start: the lane's connections open
        r.qp.prices = {CID: 4800}
        r.sched.mark(CID)
        r.sched.request()
        # no await since: decided, signed, tracked and on the wire
        assert writes == ["orders"] and r.qp.decided == [CID]
        assert [t.status for t in r.om.live(CID)] == ["SENT"]
        await until(lambda: r.resting() == {CID: 4800}, "the order to rest")
        await until(lambda: not r.sched.running, "the pass to end")
        writes.clear()
        r.qp.prices[CID] = 4900
        r.sched.mark(CID)
        r.sched.request()
        assert writes == ["cancels", "orders"]  # the same turn, the cancel first
        await until(lambda: r.resting() == {CID: 4900}, "the replace")


@pytest.mark.asyncio
async def test_a_request_during_a_pass_first_step_only_marks_and_the_pass_takes_it(writes):
    async with rig(concurrent_replace=True) as r:
        calls: list[list[str]] = []
        run = r.qp.run

        def run_and_cause_an_event(markets, now):  # type: ignore[no-untyped-def]
            calls.append(list(markets))
            out = run(markets, now)
            if len(calls) == 1:  # as an event handled inside the pass would
                r.sched.mark(CID2)
                r.sched.request()
            return out

        r.qp.run = run_and_cause_an_event  # type: ignore[method-assign]
        await r.om.rest.start()
        r.qp.prices = {CID: 4800, CID2: 4700}
        r.sched.mark(CID)
        r.sched.request()
        assert calls == [[CID]] and r.sched.running  # no nested pass; the running one waits for answers
        await until(lambda: r.resting() == {CID: 4800, CID2: 4700}, "both markets decided")
        assert calls == [[CID], [CID2]]  # the same task decided the mark when its answers came


@pytest.mark.asyncio
async def test_a_sent_orders_row_is_written_before_any_later_state_of_it(tmp_path):
    store = Store(tmp_path / "o.db")
    try:
        async with rig(store, dry_run=True) as r:
            r.qp.prices = {CID: 4800}
            await r.decide(CID)  # dry run: signed, recorded, DRY_RUN at once, in the same turn
            store.flush()
            rows = sqlite3.connect(tmp_path / "o.db").execute("SELECT status FROM orders").fetchall()
            assert rows == [("DRY_RUN",)]  # not SENT: the state did not land ahead of the row
    finally:
        store.close()


@pytest.mark.asyncio
async def test_a_sent_order_that_cannot_be_recorded_is_reported(tmp_path):
    store = Store(tmp_path / "o.db")
    faults: list[BaseException] = []
    async with rig(store, on_fault=faults.append) as r:
        store.close()  # every write now raises
        r.qp.prices = {CID: 4800}
        r.sched.mark(CID)
        r.sched.request()
        await until(lambda: bool(faults), "the failure to be reported")
        assert r.om.counts["record_failed"] == 1 and "closed" in repr(faults[0]).lower()
        assert r.om.resting(CID, BID).price in (4800, core.NO_PRICE)  # the order itself went out


@pytest.mark.asyncio
async def test_orders_sent_after_a_failed_record_are_recorded_without_waiting_for_a_state(tmp_path):
    # A record that failed leaves its queue non-empty; an order sent after it must still be
    # recorded at the end of its own turn, not only when some order's state is next written.
    store = Store(tmp_path / "o.db")
    faults: list[BaseException] = []
    try:
        async with rig(store, on_fault=faults.append) as r:
            sent = store.order_sent
            calls = []

            def once_broken(*args, **kw):  # type: ignore[no-untyped-def]
                calls.append(args[0])
                if len(calls) == 1:
                    raise OSError("disk full")
                return sent(*args, **kw)

            store.order_sent = once_broken  # type: ignore[method-assign]
            h1, h2, h3 = ("0x" + c * 64 for c in "123")
            r.om._register(Tracked("", CID, "UP", "BUY", 4800, 5_000_000, BID, 4800), h1)
            r.om._register(Tracked("", CID2, "UP2", "BUY", 4700, 5_000_000, BID, 4700), h2)  # the same turn
            await asyncio.sleep(0)
            assert r.om.counts["record_failed"] == 1 and len(faults) == 1
            assert calls == [h1]  # the second stays queued behind the failure
            r.om._register(Tracked("", CID, "UP", "BUY", 4600, 5_000_000, BID, 4600), h3)  # no state write follows
            await asyncio.sleep(0)
            assert calls == [h1, h2, h3]  # written at the end of the third's own turn
            store.flush()
            rows = sqlite3.connect(tmp_path / "o.db").execute("SELECT order_id FROM orders").fetchall()
            assert sorted(rows) == [(h2,), (h3,)]
    finally:
        store.close()


def _pulling_bot(r):  # type: ignore[no-untyped-def]
    """The bot's frame-read end (``_pull``, ``on_market_read``) over the rig's real order
    manager, scheduler and lane; a strategy that pulls on momentum."""
    bot = SimpleNamespace(
        orders=r.om, scheduler=r.sched, clock=r.clock, _pulls=True, _pulled=False, _moved={},
        _tasks=TaskSet(logging.getLogger("test")),
    )  # fmt: skip
    bot._pull = lambda market: Bot._pull(bot, market)  # type: ignore[arg-type]
    bot.on_market_read = lambda: Bot.on_market_read(bot)  # type: ignore[arg-type]
    return bot


@contextlib.asynccontextmanager
async def _quoting_with_a_pulling_bot():  # type: ignore[no-untyped-def]
    """The rig with a bid resting in CID, and the bot's read end over it."""
    async with rig(concurrent_replace=True) as r:
        await r.om.rest.start()
        r.qp.prices = {CID: 4800}
        await r.decide(CID)
        assert r.resting() == {CID: 4800}
        bot = _pulling_bot(r)
        try:
            yield r, bot
        finally:
            bot._tasks.cancel()


@pytest.mark.asyncio
async def test_a_momentum_pull_is_written_before_the_quote_pass_decides(writes):
    async with _quoting_with_a_pulling_bot() as (r, bot):
        seen_by_pass: list[list[str]] = []
        run = r.qp.run

        def run_after(markets, now):  # type: ignore[no-untyped-def]
            seen_by_pass.append(list(writes))
            return run(markets, now)

        r.qp.run = run_after  # type: ignore[method-assign]
        writes.clear()
        bot._pull(CID)  # a sweep in the read's frames
        r.sched.mark(CID2)  # and another market the same read moved
        r.qp.prices[CID2] = 4700
        bot.on_market_read()
        assert seen_by_pass == [["cancels"]]  # the pull was on the wire before anything was decided
        assert writes == ["cancels", "orders"]
        assert [t.status for t in r.om.live(CID)] == ["CANCELING"]
        await until(lambda: r.resting() == {CID2: 4700}, "the pull and the other market's order")
        await until(lambda: not r.sched.running, "the pass to end")
        assert r.om.live(CID) == []


@pytest.mark.asyncio
async def test_a_momentum_pull_does_not_wait_for_the_answers_of_a_running_pass(writes):
    async with _quoting_with_a_pulling_bot() as (r, bot):
        writes.clear()
        r.qp.prices[CID2] = 4700
        r.sched.mark(CID2)
        r.sched.request()  # a pass: its order is written, its answer awaited
        assert writes == ["orders"] and r.sched.running
        bot._pull(CID)
        bot.on_market_read()
        assert writes == ["orders", "cancels"] and r.sched.running  # out at once, the pass still waits
        await until(lambda: r.resting() == {CID2: 4700}, "the pull")


@pytest.mark.asyncio
async def test_a_pull_without_resting_quotes_or_a_strategy_that_pulls_sends_nothing(writes):
    async with rig(concurrent_replace=True) as r:
        await r.om.rest.start()
        bot = _pulling_bot(r)
        bot._pull(CID)  # nothing rests there
        bot.on_market_read()
        assert writes == [] and r.om.last_refresh == {}  # and the refresh limits were not touched
        r.qp.prices = {CID: 4800}
        await r.decide(CID)
        writes.clear()
        bot._pulls = False  # widens, keeps, or reads no momentum (naive, only50)
        bot._pull(CID)
        bot.on_market_read()
        assert writes == [] and r.resting() == {CID: 4800}
        bot._tasks.cancel()
