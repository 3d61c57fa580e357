"""Virtual time for the whole process: an asyncio event loop whose clock jumps.

The loop's ``time()`` is virtual. Whenever nothing is ready - no callback queued and no socket
readable (checked with a zero-timeout poll) - the clock jumps straight to the next scheduled
timer instead of sleeping. Everything that waits on the loop (``asyncio.sleep``, ``call_later``,
timeouts, the exchange's flow and settlement, the bot's timers, WebSocket pings) runs on that
time; the bot and the exchange read it through :class:`LoopClock`, the one injectable clock.

Sockets stay real (loopback): the bytes the bot reads are exactly the bytes the venue would
send. A write on a loopback socket is readable by its peer when the write returns, so a
zero-timeout poll that finds nothing means nothing is in flight, and jumping is safe.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any


class _JumpingSelector(selectors.BaseSelector):
    """Wraps the real selector: polls without waiting; when nothing is ready and the loop
    would have waited ``timeout`` seconds for its next timer, moves virtual time instead."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            # No timer at all: only another thread can wake the loop (its self-pipe).
            return self._real.select(None)
        self._loop.advance(timeout)
        return []

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Any:
        return self._real.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._now = 0.0
        self.jumps = 0
        self.jumped_s = 0.0
        super().__init__(selector=_JumpingSelector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self._now += seconds
            self.jumps += 1
            self.jumped_s += seconds


class LoopClock:
    """The one clock, read from a (virtual-time) event loop: wall time is ``epoch`` plus the
    loop's time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, epoch: float) -> None:
        self.loop = loop
        self.epoch = epoch

    def time(self) -> float:
        return self.epoch + self.loop.time()

    def ms(self) -> int:
        return int((self.epoch + self.loop.time()) * 1000)

    def monotonic(self) -> float:
        return self.loop.time()

    def perf(self) -> float:
        return self.loop.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
