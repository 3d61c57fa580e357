"""Quote passes: one at a time, over the markets that changed, with the time of the pass -
marks made while a pass waits for the venue are folded into the next pass instead of piling
up passes with a stale clock."""

from __future__ import annotations

import asyncio
import logging

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
    """flush() waits for the venue's answer, which the test releases."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.flushes = 0

    async def flush(self) -> None:
        self.flushes += 1
        await self.answer.wait()
        self.answer.clear()


def test_passes_coalesce_while_one_waits_and_use_the_current_time():
    async def main() -> None:
        clock = ManualClock(100.0)
        qp, venue = RecordingPass(), SlowVenue()
        s = PassScheduler(qp, venue, clock, Metrics(), TaskSet(logging.getLogger("t")))  # type: ignore[arg-type]
        s.mark("A", 1.0)
        s.request()
        s.request()  # the same loop turn: one pass
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert qp.calls == [(["A"], 100.0)] and venue.flushes == 1
        # while the first pass waits for its answer, frames keep coming
        for i in range(50):
            clock.advance(0.01)
            s.mark("B" if i % 2 else "A", 2.0)
            s.request()
            await asyncio.sleep(0)
        assert len(qp.calls) == 1  # no second pass started behind the first
        assert s.coalesced == 48
        venue.answer.set()
        for _ in range(5):
            await asyncio.sleep(0)
        # one more pass for everything that changed meanwhile, at the time it ran
        assert qp.calls[1] == (["A", "B"], clock.time())
        venue.answer.set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(qp.calls) == 2 and s.dirty == {}
        await s.stop()
        s.mark("A")
        s.request()
        await asyncio.sleep(0)
        assert len(qp.calls) == 2  # stopped: no pass starts

    asyncio.run(main())
