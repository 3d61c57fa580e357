"""When quote passes run: over the markets that changed, with the current time, never more
than one pass per market at a time.

Frames mark their markets dirty and ask for a pass; a timer marks every quoted market (time
alone changes decisions: cooldowns end, refresh intervals pass). A pass decides its markets and
waits for the venue's answers to what it sent. Meanwhile a mark on another market starts a pass
of its own at once: a frame in one market never waits for another market's round trip. A mark on
a market whose pass is still waiting accumulates, and that market's next pass takes it with a
fresh ``now`` once the answers are in: passes over one market never pile up and never decide with
a stale clock, and a market's orders are never decided again while the requests it last sent are
unanswered. Limits hold across concurrent passes: every decision counts the orders in flight in
any market as pending (the order manager tracks an order before its request is written).

A pass never waits out a venue state (425 restart, 503 cancel-only, 429): the order manager
holds back what the state forbids and its flush says until when; the scheduler then wakes once
at that time, lets the deferred cancels go and decides the held markets again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from active_quoting.aio import TaskSet
from active_quoting.clock import Clock
from active_quoting.execution.order_manager import OrderManager
from active_quoting.observability.metrics import Metrics
from active_quoting.strategy.quote_pass import QuotePass

_log = logging.getLogger(__name__)


class PassScheduler:
    def __init__(
        self, quote_pass: QuotePass, orders: OrderManager, clock: Clock, metrics: Metrics, tasks: TaskSet
    ) -> None:
        self.quote_pass = quote_pass
        self.orders = orders
        self.clock = clock
        self.metrics = metrics
        self.tasks = tasks
        self.dirty: dict[str, float] = {}  # market -> perf time of the first frame not yet decided on
        self.stopped = False
        self.in_flight: set[str] = set()  # markets of passes waiting for the venue's answers
        self._passes: set[asyncio.Task[None]] = set()
        self._deciding = False  # a pass is deciding (synchronously): requests meanwhile only mark
        self.coalesced = 0  # marks folded into a pass already due
        self.concurrent = 0  # passes started while another waited for the venue
        self._waking: asyncio.Task[None] | None = None
        self.venue_wakes = 0  # passes asked for because a venue state passed

    @property
    def running(self) -> bool:
        """Some pass is in flight."""
        return bool(self._passes)

    def mark(self, market: str, frame_t: float = 0.0) -> None:
        if market not in self.dirty:
            self.dirty[market] = frame_t
        else:
            self.coalesced += 1

    def mark_all(self, markets: Iterable[str]) -> None:
        for m in markets:
            self.dirty.setdefault(m, 0.0)

    def request(self) -> None:
        """Start a pass over the marked markets that no pass is waiting on. The pass runs at
        once, in the caller's turn (the frame handler's): the decision, the signing and the
        requests handed to the kernel all happen before this returns; only the wait for the
        venue's answers goes on as a task. A request made while a pass decides (an event it
        causes) only marks: that pass, or the next, takes it."""
        if self.stopped or self._deciding or not self.dirty:
            return
        in_flight = self.in_flight
        if in_flight and all(m in in_flight for m in self.dirty):
            return  # each waits for its own market's pass to finish
        if self._passes:
            self.concurrent += 1
        self.tasks.spawn_now(self._run())

    def decides_later(self, market: str) -> bool:
        """Whether a mark on ``market`` now waits (its pass waits for the venue, or quoting is
        stopping): what must go at once there (an exposed quote) needs a cancel of its own."""
        return self.stopped or market in self.in_flight

    def _take(self) -> dict[str, float]:
        """The marked markets no pass waits on, unmarked."""
        in_flight = self.in_flight
        if not in_flight:
            take, self.dirty = self.dirty, {}
        else:
            take = {m: t for m, t in self.dirty.items() if m not in in_flight}
            for m in take:
                del self.dirty[m]
        return take

    async def _run(self) -> None:
        task = asyncio.current_task()  # from its first step on, which runs inside request()
        assert task is not None
        self._passes.add(task)
        try:
            while not self.stopped:
                take = self._take()
                if not take:
                    break
                held: list[str] = []  # the markets this pass keeps in flight
                try:
                    self._deciding = True  # no other pass starts while this one decides
                    try:
                        self.quote_pass.run(take, self.clock.time())
                    finally:
                        self._deciding = False
                    # Only a market that sent something waits for the answers (a quiet one is
                    # free at once; another pass may take it, and frees it itself).
                    sending = self.orders.staged_markets()
                    held = [m for m in take if m in sending]
                    self.in_flight.update(held)
                    decided_at = self.clock.perf()
                    for t in take.values():
                        if t:
                            self.metrics.observe("frame_to_decision", decided_at - t)
                    if await self.orders.flush() and self._waking is None:
                        self._waking = self.tasks.spawn(self._wake())
                finally:
                    self.in_flight.difference_update(held)
        finally:
            self._passes.discard(task)
            if not self.stopped:
                self.request()  # marks made while this pass waited and it could not take (it failed)

    async def _wake(self) -> None:
        """Sleep until the venue state that held orders back passes (it may be extended
        meanwhile), then send the cancels it deferred and decide the held markets again."""
        try:
            while not self.stopped:
                delay = self.orders.venue_resume_at() - self.clock.monotonic()
                if delay <= 0:
                    break
                await self.clock.sleep(delay)
        finally:
            self._waking = None
        if self.stopped:
            return
        self.venue_wakes += 1
        await self.orders.retry_cancels()
        self.mark_all(self.orders.take_venue_held())
        self.request()

    async def stop(self) -> None:
        """No pass starts after this; those in flight finish (their orders are tracked)."""
        self.stopped = True
        if self._waking is not None:
            self._waking.cancel()
        for running in list(self._passes):
            try:
                await asyncio.shield(running)
            except Exception:  # noqa: BLE001 - already logged by the task set
                pass
