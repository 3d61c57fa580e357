"""The one clock. Wall time, monotonic time and sleeping come from a clock object handed to
whoever needs it; nothing else calls ``time.time()``. Production uses :class:`SystemClock`;
tests and the simulator use :class:`ManualClock`, whose time moves only when told to, so the
same code runs on a virtual clock.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (venue timestamps, window boundaries)."""

    def ms(self) -> int:
        """Wall-clock milliseconds since the epoch."""

    def monotonic(self) -> float:
        """Seconds that never go backwards (intervals, timeouts, rate limits)."""

    def perf(self) -> float:
        """A high-resolution counter for latency measurements."""

    async def sleep(self, seconds: float) -> None:
        """Wait this long on this clock."""


class SystemClock:
    """The machine's clocks. The readings the frame path takes several times a frame are the
    ``time`` module's own functions (no Python frame in between)."""

    monotonic = staticmethod(time.monotonic)
    perf = staticmethod(time.perf_counter)
    time = staticmethod(time.time)  # last: from here on ``time`` in this class body is this

    def ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock that moves only when :meth:`advance` (or :meth:`set`) is called; ``sleep``
    returns once the clock has moved past its deadline. Monotonic and perf time are the wall
    time (they never go backwards because ``set`` refuses to)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._t = float(start)
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def time(self) -> float:
        return self._t

    def ms(self) -> int:
        return int(self._t * 1000)

    def monotonic(self) -> float:
        return self._t

    def perf(self) -> float:
        return self._t

    def set(self, t: float) -> None:
        if t < self._t:
            raise ValueError(f"a clock does not go backwards ({t} < {self._t})")
        self._t = float(t)
        due = [s for s in self._sleepers if s[0] <= self._t]
        self._sleepers = [s for s in self._sleepers if s[0] > self._t]
        for _, fut in due:
            if not fut.done():
                fut.set_result(None)

    def advance(self, seconds: float) -> None:
        self.set(self._t + seconds)

    def next_deadline(self) -> float | None:
        """The earliest time a sleeper waits for (what a simulator advances to next)."""
        live = [t for t, f in self._sleepers if not f.done()]
        return min(live) if live else None

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._t + seconds, fut))
        await fut


SYSTEM = SystemClock()
