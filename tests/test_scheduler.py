"""Quote passes: one at a time, over the markets that changed, with the time of the pass -
marks made while a pass waits for the venue are folded into the next pass instead of piling
up passes with a stale clock."""

from __future__ import annotations

import asyncio
import logging

import pytest

from active_quoting.aio import TaskSet
from active_quoting.clock import ManualClock
from active_quoting.execution.scheduler import PassScheduler
from active_quoting.observability.metrics import Metrics


class RecordingPass:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], float]] = []

    def run(self, markets, now):  # the production QuotePass's interface
        self.calls.append((sorted(markets), now))
        return list(markets)


class SlowVenue:
    """flush() waits for the venue's answer to that flush, which the test releases. The pass
    just decided sends something in each of its markets but those in ``quiet``."""

    def __init__(self, qp: RecordingPass | None = None, quiet: set[str] | None = None) -> None:
        self.waiting: list[asyncio.Future[None]] = []
        self.flushes = 0
        self.qp = qp
        self.quiet = quiet or set()

    def staged_markets(self) -> set[str]:
        return set(self.qp.calls[-1][0]) - self.quiet if self.qp is not None and self.qp.calls else set()

    async def flush(self) -> float:
        self.flushes += 1
        answer = asyncio.get_running_loop().create_future()
        self.waiting.append(answer)
        await answer
        return 0.0

    def answer(self, i: int) -> None:
        self.waiting[i].set_result(None)


async def _turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_a_market_waits_for_its_own_pass_only_and_is_decided_again_at_the_current_time():
    async def main() -> None:
        clock = ManualClock(100.0)
        qp = RecordingPass()
        venue = SlowVenue(qp)
        s = PassScheduler(qp, venue, clock, Metrics(), TaskSet(logging.getLogger("t")))  # type: ignore[arg-type]
        s.mark("A", 1.0)
        s.request()
        s.request()  # the same loop turn: one pass
        await _turns(2)
        assert qp.calls == [(["A"], 100.0)] and venue.flushes == 1 and s.in_flight == {"A"}
        # while A's pass waits for its answer, frames keep coming in A and in B
        for i in range(50):
            clock.advance(0.01)
            s.mark("B" if i % 2 else "A", 2.0)
            s.request()
            await asyncio.sleep(0)
        # B was decided at its first frame, in a pass of its own (not behind A's round trip);
        # every later mark of A or B folded into the next pass of its market
        assert qp.calls[1] == (["B"], pytest.approx(100.02)) and len(qp.calls) == 2
        assert s.concurrent == 1 and s.coalesced == 47 and s.in_flight == {"A", "B"}
        assert set(s.dirty) == {"A", "B"}
        venue.answer(0)  # A's answers: A is decided again, alone (B's pass still waits)
        await _turns()
        assert qp.calls[2] == (["A"], clock.time()) and s.in_flight == {"A", "B"} and set(s.dirty) == {"B"}
        clock.advance(1.0)
        venue.answer(1)  # B's answers: B again, at the time it ran
        await _turns()
        assert qp.calls[3] == (["B"], clock.time()) and s.dirty == {}
        assert s.decides_later("A") and s.decides_later("B") and not s.decides_later("C")
        stopping = asyncio.ensure_future(s.stop())
        await _turns()
        assert not stopping.done()  # the passes in flight finish first (their orders are tracked)
        assert s.decides_later("C")  # stopping: nothing is decided any more
        venue.answer(3)
        await _turns()
        assert not stopping.done()  # B's pass is done, A's still waits
        venue.answer(2)
        await _turns()
        assert stopping.done() and not s.running and s.in_flight == set() and len(qp.calls) == 4
        s.mark("A")
        s.request()
        await asyncio.sleep(0)
        assert len(qp.calls) == 4  # stopped: no pass starts

    asyncio.run(main())


def test_a_request_made_while_a_pass_decides_only_marks():
    """An event the decision itself causes (a fill noted synchronously, say) starts no nested
    pass: the deciding pass, or its market's next, takes the mark."""

    async def main() -> None:
        clock = ManualClock(5.0)
        venue = SlowVenue()
        s: PassScheduler

        class Nesting(RecordingPass):
            def run(self, markets, now):
                if not self.calls:
                    s.mark("C")
                    s.request()
                return super().run(markets, now)

        qp = Nesting()
        venue.qp = qp
        s = PassScheduler(qp, venue, clock, Metrics(), TaskSet(logging.getLogger("t")))  # type: ignore[arg-type]
        s.mark("A")
        s.request()
        await _turns()
        assert qp.calls == [(["A"], 5.0)] and s.dirty == {"C": 0.0} and venue.flushes == 1
        s.request()  # the next request takes C at once: it is not in flight
        await _turns()
        assert qp.calls[1] == (["C"], 5.0)

    asyncio.run(main())


def test_a_market_that_sent_nothing_in_a_pass_does_not_wait_for_the_others_answers():
    """The timer decides every market in one pass; only A's decision sends. A frame on B right
    after is decided at once, not after A's round trip."""

    async def main() -> None:
        clock = ManualClock(10.0)
        qp = RecordingPass()
        venue = SlowVenue(qp, quiet={"B", "C"})
        s = PassScheduler(qp, venue, clock, Metrics(), TaskSet(logging.getLogger("t")))  # type: ignore[arg-type]
        s.mark_all(["A", "B", "C"])
        s.request()
        await _turns()
        assert qp.calls == [(["A", "B", "C"], 10.0)] and s.in_flight == {"A"}
        clock.advance(0.1)
        s.mark("B", 1.0)
        s.request()
        await _turns()
        assert qp.calls[1] == (["B"], pytest.approx(10.1)) and s.in_flight == {"A"}

    asyncio.run(main())


def test_a_market_freed_early_and_taken_by_another_pass_stays_that_passs():
    """Pass 1 decides A and B; only A sends, so B is free at once. A frame on B starts pass 2,
    which sends for B. When pass 1's answers come, B must stay in flight (pass 2 waits): a frame
    on B then must not start a third pass while B's requests are unanswered."""

    async def main() -> None:
        qp = RecordingPass()
        venue = SlowVenue(qp, quiet={"B"})
        s = PassScheduler(qp, venue, ManualClock(1.0), Metrics(), TaskSet(logging.getLogger("t")))  # type: ignore[arg-type]
        s.mark_all(["A", "B"])
        s.request()
        await _turns()
        assert s.in_flight == {"A"}
        venue.quiet = set()  # B's next decision sends
        s.mark("B")
        s.request()
        await _turns()
        assert qp.calls[1][0] == ["B"] and s.in_flight == {"A", "B"}
        venue.answer(0)  # pass 1's answers (A's)
        await _turns()
        assert s.in_flight == {"B"}
        s.mark("B")
        s.request()
        await _turns()
        assert len(qp.calls) == 2  # B waits for its own pass (pass 2) to be answered
        venue.answer(1)
        await _turns()
        assert qp.calls[2][0] == ["B"]

    asyncio.run(main())


def test_a_pass_that_fails_frees_its_markets():
    """A bug in a decision, or a flush that raises: the pass's markets must not stay in flight
    (each later mark would wait forever and the market would never be quoted again)."""

    async def main() -> None:
        clock = ManualClock(1.0)

        class Failing(RecordingPass):
            fail = True

            def run(self, markets, now):
                if self.fail:
                    self.fail = False
                    raise RuntimeError("a bug in a decision")
                return super().run(markets, now)

        qp = Failing()
        venue = SlowVenue(qp)
        tasks = TaskSet(logging.getLogger("t"))
        s = PassScheduler(qp, venue, clock, Metrics(), tasks)  # type: ignore[arg-type]
        s.mark("A")
        s.request()
        await _turns()
        assert s.in_flight == set() and not s.running and qp.calls == []
        s.mark("A")
        s.request()
        await _turns()
        assert qp.calls == [(["A"], 1.0)] and s.in_flight == {"A"}
        s.mark("A")  # a frame while the pass waits: folded into A's next pass
        s.request()
        venue.waiting[0].set_exception(RuntimeError("the flush failed"))
        await _turns()
        # the failed pass freed A and asked for that next pass itself (no new mark needed)
        assert len(qp.calls) == 2 and s.in_flight == {"A"} and s.dirty == {}

    asyncio.run(main())


@pytest.mark.parametrize("answered_first", [0, 1])
def test_stop_waits_for_every_pass_in_flight(answered_first):
    async def main() -> None:
        qp = RecordingPass()
        venue = SlowVenue(qp)
        s = PassScheduler(qp, venue, ManualClock(1.0), Metrics(), TaskSet(logging.getLogger("t")))  # type: ignore[arg-type]
        for market in ("A", "B"):
            s.mark(market)
            s.request()
            await _turns()
        assert s.in_flight == {"A", "B"} and len(venue.waiting) == 2
        stopping = asyncio.ensure_future(s.stop())
        await _turns()
        venue.answer(answered_first)
        await _turns()
        assert not stopping.done()  # the other pass still waits for its answers
        venue.answer(1 - answered_first)
        await _turns()
        assert stopping.done() and not s.running

    asyncio.run(main())
