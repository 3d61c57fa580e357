"""When quote passes run: one at a time, over the markets that changed, with the current time.

Frames mark their markets dirty and ask for a pass; a timer marks every quoted market (time
alone changes decisions: cooldowns end, refresh intervals pass). While a pass waits for the
venue's answers, new marks accumulate and the next pass takes them all at once with a fresh
``now``: passes never pile up and never decide with a stale clock.

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
        self._running: asyncio.Task[None] | None = None
        self.coalesced = 0  # requests folded into a pass already due
        self._waking: asyncio.Task[None] | None = None
        self.venue_wakes = 0  # passes asked for because a venue state passed

    @property
    def running(self) -> bool:
        return self._running is not None

    def mark(self, market: str, frame_t: float = 0.0) -> None:
        if market not in self.dirty:
            self.dirty[market] = frame_t
        else:
            self.coalesced += 1

    def mark_all(self, markets: Iterable[str]) -> None:
        for m in markets:
            self.dirty.setdefault(m, 0.0)

    def request(self) -> None:
        """Start a pass over what is marked unless one runs (it takes the new marks when its
        sends return). The pass runs at once, in the caller's turn (the frame handler's): the
        decision, the signing and the requests handed to the kernel all happen before this
        returns; only the wait for the venue's answers goes on as a task. A request made while
        that first step runs (an event it causes) only marks: the running pass takes it."""
        if self._running is None and self.dirty and not self.stopped:
            self.tasks.spawn_now(self._run())

    async def _run(self) -> None:
        self._running = asyncio.current_task()  # from its first step on, which runs inside request()
        try:
            while self.dirty and not self.stopped:
                dirty, self.dirty = self.dirty, {}
                self.quote_pass.run(dirty, self.clock.time())
                decided_at = self.clock.perf()
                for t in dirty.values():
                    if t:
                        self.metrics.observe("frame_to_decision", decided_at - t)
                if await self.orders.flush() and self._waking is None:
                    self._waking = self.tasks.spawn(self._wake())
        finally:
            self._running = None

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
        """No pass starts after this; the one in flight finishes (its orders are tracked)."""
        self.stopped = True
        if self._waking is not None:
            self._waking.cancel()
        running = self._running
        if running is not None:
            try:
                await asyncio.shield(running)
            except Exception:  # noqa: BLE001 - already logged by the task set
                pass
