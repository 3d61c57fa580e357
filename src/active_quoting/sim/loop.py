"""Virtual time for the whole process: an asyncio event loop whose clock jumps.

The loop's ``time()`` is virtual. Whenever nothing is ready - no callback queued and no socket
readable (checked with a zero-timeout poll) - the clock jumps straight to the next scheduled
timer instead of sleeping. Everything that waits on the loop (``asyncio.sleep``, ``call_later``,
timeouts, the exchange's flow and settlement, the bot's timers, WebSocket pings) runs on that
time; the bot and the exchange read it through :class:`LoopClock`, the one injectable clock.

Sockets stay real (loopback): the bytes the bot reads are exactly the bytes the venue would
send. The loop's model is that a byte written is readable by its peer at the next poll. Loopback
delivers a segment synchronously, but TCP does not always send what it is given: with
``TCP_NODELAY`` every frame is its own segment, and once a burst of frames fills the congestion
window (about ten segments) before the peer has read, the rest waits in the sender's queue for
the peer's ACK - which the peer's kernel may delay by up to its delayed-ACK timer (40 ms and
more of *real* time, and whether it delays depends on real-time heuristics such as pingpong
mode). Whether that data was readable at a given poll then depended on the wall clock, and two
runs of one seed diverged (a market frame and a reference-price frame arriving in one instant
were decided in one pass or in two). So before every poll the loop settles its sockets: any
TCP connection of the process whose send queue holds unsent bytes (``SIOCOUTQNSD``) has its
peer told to ACK now (``TCP_QUICKACK``), which releases the data into the peer's receive
queue before the poll looks. ``released`` counts those, ``settle_waits`` the rare cases that
needed real time on top (bounded; ``unsettled`` counts any that never cleared).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import heapq
import selectors
import socket
import sys
import time
from asyncio import selector_events
from collections.abc import Iterator
from typing import Any

# linux/sockios.h: the bytes of a TCP send queue not yet sent (SIOCOUTQ counts unacked too).
SIOCOUTQNSD = 0x894B
_SETTLE = sys.platform.startswith("linux") and hasattr(socket, "TCP_QUICKACK")
# A send queue that settling could not clear at once (it never happened in the runs measured) is
# waited for in real time, up to past the longest delayed ACK (200 ms), then given up (counted).
SETTLE_LIMIT_S = 0.5
_READ_CHUNK = 1 << 18

_Addr = Any  # a socket address as getsockname/getpeername return it


class _Socket:
    """A connected socket whose reads first return what the loop took out of the kernel's
    receive queue early (``pushback``), then the kernel's; a write marks its transport in the
    loop's ``written`` (only a socket written to since the last poll can hold unsent bytes);
    everything else goes to the socket."""

    __slots__ = ("_real", "_fd", "_transport", "_written", "pushback", "eof", "error")

    def __init__(self, real: socket.socket, transport: _Transport, written: dict[int, _Transport]) -> None:
        self._real = real
        self._fd = real.fileno()
        self._transport = transport
        self._written = written
        self.pushback = bytearray()
        self.eof = False
        self.error: OSError | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def send(self, data: Any, *flags: int) -> int:
        self._written[self._fd] = self._transport
        return self._real.send(data, *flags)

    def drain(self) -> None:
        """Move everything the kernel holds for us into ``pushback`` (an empty receive queue is
        what lets the kernel acknowledge at once)."""
        while not self.eof and self.error is None:
            try:
                data = self._real.recv(_READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.error = exc
                return
            if not data:
                self.eof = True
                return
            self.pushback += data

    def _pending(self) -> bool:
        return bool(self.pushback) or self.eof or self.error is not None

    def recv(self, size: int, *flags: int) -> bytes:
        if not self._pending():
            return self._real.recv(size, *flags)
        self.drain()  # a read returns what one read of the kernel's queue would have
        if self.pushback:
            data = bytes(self.pushback[:size])
            del self.pushback[:size]
            return data
        return self._end()

    def recv_into(self, buffer: Any, nbytes: int = 0, *flags: int) -> int:
        if not self._pending():
            return self._real.recv_into(buffer, nbytes, *flags)
        self.drain()
        if self.pushback:
            view = memoryview(buffer).cast("B")
            n = min(len(view), nbytes or len(view), len(self.pushback))
            view[:n] = self.pushback[:n]
            del self.pushback[:n]
            return n
        self._end()
        return 0

    def _end(self) -> bytes:
        if self.error is not None:
            exc, self.error = self.error, None
            raise exc
        return b""  # end of stream, as often as asked


class _Transport(selector_events._SelectorSocketTransport):  # type: ignore[name-defined,misc]
    """The stock socket transport, known to its loop while connected, so that the loop can
    settle its connection before each poll."""

    def __init__(self, loop: VirtualTimeLoop, sock: socket.socket, *args: Any) -> None:
        super().__init__(loop, sock, *args)
        self._vsock: _Socket | None = None
        self._vkey: tuple[_Addr, _Addr] | None = None  # (local, peer) while tracked
        if loop._track(self, sock):
            self._vsock = self._sock = _Socket(sock, self, loop._written)  # type: ignore[assignment]

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        loop = self._loop
        if isinstance(loop, VirtualTimeLoop):
            loop._untrack(self)
        super()._call_connection_lost(exc)


class _JumpingSelector(selectors.BaseSelector):
    """Wraps the real selector: settles the loop's connections, then polls without waiting; when
    nothing is ready and the loop would have waited ``timeout`` seconds for its next timer,
    moves virtual time instead. Ready sockets come in the order their connections were made,
    not in the order the kernel happened to queue them."""

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
        loop = self._loop
        loop.settle()
        ready = self._real.select(0)
        if loop._pushed:
            ready = self._with_pushback(ready)
        if ready:
            if len(ready) > 1:
                ready.sort(key=loop._order)
            return ready
        if timeout == 0:
            return ready
        if timeout is None:
            # No timer at all: only another thread can wake the loop (its self-pipe).
            return self._real.select(None)
        loop.advance(timeout)
        return []

    def _with_pushback(self, ready: list[tuple[selectors.SelectorKey, int]]) -> list[tuple[selectors.SelectorKey, int]]:
        """Data the loop took out of a receive queue is readable as if it were still there."""
        fds = {key.fd: i for i, (key, _) in enumerate(ready)}
        keys = self._real.get_map()
        for fd, vsock in list(self._loop._pushed.items()):
            if not vsock._pending():
                del self._loop._pushed[fd]
                continue
            key = keys.get(fd) if keys is not None else None
            if key is None or not key.events & selectors.EVENT_READ:
                continue  # reading paused: it waits, as it would have in the kernel
            if fd in fds:
                k, mask = ready[fds[fd]]
                ready[fds[fd]] = (k, mask | selectors.EVENT_READ)
            else:
                ready.append((key, selectors.EVENT_READ))
        return ready

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Any:
        return self._real.get_map()


class _FifoTimer(asyncio.TimerHandle):
    """A timer that, due at the same instant as another, runs after the ones scheduled before
    it. asyncio's timers compare by deadline alone, so timers due together (common on a virtual
    clock: a 15 ms market-data delay and a 15 ms entry delay set in one callback, whole-second
    loops) ran in whatever order the heap's history gave, and an unrelated change (a timer
    cancelled elsewhere) changed which order came in first - and with it the fills."""

    __slots__ = ("_order",)

    def __init__(self, when: float, callback: Any, args: Any, loop: Any, context: Any, order: int) -> None:
        super().__init__(when, callback, args, loop, context)
        self._order = order

    def __lt__(self, other: Any) -> bool:
        # heapq compares with < only; the loop's heap holds nothing but these (call_at below)
        if not isinstance(other, _FifoTimer):
            return super().__lt__(other)  # type: ignore[no-any-return]
        if self._when == other._when:
            return self._order < other._order  # type: ignore[no-any-return]
        return self._when < other._when  # type: ignore[no-any-return]


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    # Read by code that picks its own transports (venue/ws.py: picows' aiofastnet reads the
    # kernel directly, which this loop cannot settle): on this loop, use the loop's.
    virtual_time = True

    def __init__(self) -> None:
        self._now = 0.0
        self._timers_made = 0
        self.jumps = 0
        self.jumped_s = 0.0
        # connected TCP transports of this loop by (local address, peer address): a socket's
        # peer in the same process is the entry with the two swapped
        self._conns: dict[tuple[_Addr, _Addr], _Transport] = {}
        self._seq: dict[int, int] = {}  # fd -> the order its connection was made
        self._next_seq = 0
        self._pushed: dict[int, _Socket] = {}  # fd -> a socket with data taken out early
        self._written: dict[int, _Transport] = {}  # fd -> a connection written to since the last settle
        self._unsent = bytearray(4)
        self.released = 0  # send queues found holding data back before a poll, and released
        self.settle_waits = 0  # ... of which needed real time as well
        self.unsettled = 0  # ... of which had not cleared after SETTLE_LIMIT_S
        super().__init__(selector=_JumpingSelector(self))

    def time(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Any, *args: Any, context: Any = None) -> asyncio.TimerHandle:
        """As asyncio's, with timers due at one instant run in the order they were scheduled."""
        if when is None:
            raise TypeError("when cannot be None")
        self._check_closed()
        if self._debug:
            self._check_thread()  # type: ignore[attr-defined]
            self._check_callback(callback, "call_at")  # type: ignore[attr-defined]
        timer = _FifoTimer(when, callback, args, self, context, self._timers_made)
        if timer._source_traceback:  # type: ignore[attr-defined]
            del timer._source_traceback[-2:]  # type: ignore[attr-defined]  # this call and the timer's __init__
        self._timers_made += 1
        heapq.heappush(self._scheduled, timer)  # type: ignore[attr-defined]
        timer._scheduled = True  # type: ignore[attr-defined]
        return timer

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self._now += seconds
            self.jumps += 1
            self.jumped_s += seconds

    def _make_socket_transport(
        self, sock: socket.socket, protocol: Any, waiter: Any = None, *, extra: Any = None, server: Any = None
    ) -> asyncio.Transport:
        return _Transport(self, sock, protocol, waiter, extra, server)

    def _track(self, transport: _Transport, sock: socket.socket) -> bool:
        fd = sock.fileno()
        self._seq[fd] = self._next_seq
        self._next_seq += 1
        if not _SETTLE or sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return False
        try:
            key = (sock.getsockname(), sock.getpeername())
        except OSError:
            return False  # not connected (any more): nothing to settle
        self._conns[key] = transport
        transport._vkey = key
        return True

    def _untrack(self, transport: _Transport) -> None:
        key = transport._vkey
        if key is not None and self._conns.get(key) is transport:
            del self._conns[key]
        transport._vkey = None
        fd = transport._sock_fd
        if self._written.get(fd) is transport:
            del self._written[fd]
        if self._seq.get(fd) is not None and transport._sock is not None:
            self._seq.pop(fd, None)
        self._pushed.pop(fd, None)

    def _order(self, event: tuple[selectors.SelectorKey, int]) -> tuple[int, int]:
        fd = event[0].fd
        seq = self._seq.get(fd)
        return (0, seq) if seq is not None else (1, fd)

    def _held(self, transports: Any) -> list[_Transport]:
        """Those of ``transports`` (still connected) whose send queue holds unsent bytes."""
        held = []
        buf = self._unsent
        for transport in transports:
            if transport._vkey is None:
                continue
            try:
                fcntl.ioctl(transport._sock_fd, SIOCOUTQNSD, buf)
            except OSError:
                continue
            if buf != b"\0\0\0\0":
                held.append(transport)
        return held

    def settle(self) -> None:
        """Make every byte written so far readable by its peer at the next poll. TCP may hold
        data in a send queue until the peer acknowledges what it has; the peer's kernel
        acknowledges at once when its receive queue is empty and it is told to (quick ACK), so
        the loop empties that queue into the peer's pushback and tells it. Only the connections
        written to since the last settle are looked at: a send queue only grows by a write, and
        settling leaves every queue it looked at empty (or counted ``unsettled``, and looked at
        again before the next poll)."""
        if not self._written:
            return
        held = self._held(self._written.values())
        self._written.clear()
        if not held:
            return
        self.released += len(held)
        waited = False
        deadline = 0.0
        while held:
            for transport in held:
                local, remote = transport._vkey or (None, None)
                peer = self._conns.get((remote, local))
                vsock = peer._vsock if peer is not None else None
                if vsock is None:
                    continue
                vsock.drain()
                if vsock._pending():
                    self._pushed[peer._sock_fd] = vsock  # type: ignore[union-attr]
                try:
                    vsock._real.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                except OSError:
                    pass
            held = self._held(held)
            if not held:
                return
            # Real time only decides how long settling takes, never what the next poll sees.
            now = time.monotonic()
            if not waited:
                waited, deadline = True, now + SETTLE_LIMIT_S
                self.settle_waits += 1
            elif now >= deadline:
                self.unsettled += 1
                for transport in held:
                    self._written[transport._sock_fd] = transport
                return
            time.sleep(0.0002)


@contextlib.contextmanager
def aiohttp_on_loop_time(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """aiohttp's client connector expires pooled keep-alive connections by ``time.monotonic()``
    (``aiohttp.connector.monotonic``: the release time of a connection against its cleanup,
    which runs on the loop's timers), so which requests found a pooled connection and which
    opened a new one (another connection, later in the loop's order of ready sockets) depended
    on the wall clock, and simulations of one seed diverged. aiohttp has no option for its
    clock: while this is active, that name reads the loop's time."""
    import aiohttp.connector

    real = aiohttp.connector.monotonic
    aiohttp.connector.monotonic = loop.time
    try:
        yield
    finally:
        aiohttp.connector.monotonic = real


class LoopClock:
    """The one clock, read from a (virtual-time) event loop: wall time is ``epoch`` plus the
    loop's time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, epoch: float) -> None:
        self.loop = loop
        self.epoch = epoch
        # The loop's own method, not a call through this one: these are read millions of times
        # a run (the exchange's and the bot's every timestamp).
        self.monotonic = self.perf = loop.time  # type: ignore[method-assign]

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
