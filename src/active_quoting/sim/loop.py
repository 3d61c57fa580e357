"""Virtual time for the whole process: an asyncio event loop whose clock jumps and whose
connections are in memory.

The loop's ``time()`` is virtual. Whenever nothing is ready - no callback queued and no other
thread waking the loop - the clock jumps straight to the next scheduled timer instead of
sleeping. Everything that waits on the loop (``asyncio.sleep``, ``call_later``, timeouts, the
exchange's flow and settlement, the bot's timers, WebSocket pings) runs on that time; the bot and
the exchange read it through :class:`LoopClock`, the one injectable clock.

Connections carry the venue's exact bytes, in memory. A server started on this loop (what
aiohttp's ``TCPSite`` does) listens on a loopback port the loop hands out; a connection to it -
``create_connection`` (picows, the order lane), or a socket connected with ``sock_connect`` and
then handed to ``create_connection`` (aiohttp's connector) - is a pair of transports in memory.
The protocols on both ends are the production ones: the bytes are the HTTP/1.1 requests and
answers and the WebSocket frames they write. The model: what one end writes is delivered to the
other at the loop's next turn (``call_soon``), in the order written, as one read of everything
written since its last read; a close is an end of stream for the peer after that data (a reset
when the closing end left data unread, as TCP does). No kernel socket and no selector poll are
involved, so nothing depends on the wall clock (real loopback TCP held a burst back for the
peer's delayed ACK, and two runs of one seed diverged). What the loop intercepts - servers,
connections, ``sock_connect``, name lookups - it answers in memory or refuses with a clear
error (another address, TLS, a socket not connected through it): in a simulation, a byte that
crossed a real socket could not be reproduced. Other real I/O (executors, raw socket calls) is
not intercepted; the simulation uses none.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import heapq
import selectors
import socket
from collections.abc import Iterator
from typing import Any

_HOST = "127.0.0.1"
_LOOPBACK = frozenset({None, "", "127.0.0.1", "localhost", "0.0.0.0"})
_FIRST_PORT = 20_000  # servers' ports are handed out from here, clients' from _FIRST_CLIENT_PORT
_FIRST_CLIENT_PORT = 40_000

_Addr = tuple[str, int]


def _address(host: Any, port: Any) -> _Addr:
    if host not in _LOOPBACK or not isinstance(port, int):
        raise ValueError(
            f"the simulator's loop carries in-memory connections on {_HOST} only, not {host!r}:{port!r} "
            "(a byte that crossed a real socket could not be reproduced)"
        )
    return (_HOST, port)


def _refused(target: _Addr) -> ConnectionRefusedError:
    return ConnectionRefusedError(errno.ECONNREFUSED, f"nothing listens on {target[0]}:{target[1]} in the simulation")


class _NoSocket:
    """``get_extra_info("socket")`` of an in-memory connection: the options protocols set on
    their socket (``TCP_NODELAY``, keep-alive, quick ACK) are accepted and mean nothing here.
    Its descriptor is -1, so a direct ``send()`` on it (picows' fast path) fails at once with
    EBADF and the protocol falls back to the transport's ``write``."""

    family = socket.AF_INET
    type = socket.SOCK_STREAM
    proto = socket.IPPROTO_TCP

    def __init__(self, sockname: _Addr, peername: _Addr | None) -> None:
        self._sockname = sockname
        self._peername = peername

    def fileno(self) -> int:
        return -1

    def setsockopt(self, *args: Any) -> None:
        return None

    def getsockopt(self, *args: Any) -> int:
        return 0

    def getsockname(self) -> _Addr:
        return self._sockname

    def getpeername(self) -> _Addr:
        if self._peername is None:
            raise OSError(errno.ENOTCONN, "not connected")
        return self._peername


class _MemTransport(asyncio.Transport):
    """One end of an in-memory connection (see the module's docstring for its model). Where a
    socket's behaviour shows through asyncio, this end behaves as a loopback TCP socket would:
    a close with unread data resets the connection (the peer's ``connection_lost`` gets a
    ``ConnectionResetError``, its unread data is lost), a write after the peer closed breaks
    the pipe (``connection_lost(BrokenPipeError)``), a protocol callback that raises closes the
    connection through the loop's exception handler, and a write after ``write_eof`` is an
    error."""

    def __init__(self, loop: VirtualTimeLoop, sockname: _Addr, peername: _Addr) -> None:
        super().__init__()
        self._loop = loop
        self._protocol: asyncio.BaseProtocol | None = None
        self._buffered = False
        self._peer: _MemTransport | None = None
        self._inbox: list[bytes] = []  # written by the peer, not read yet
        self._eof_in = False  # the peer closed or wrote EOF: told after the inbox is read
        self._eof_out = False  # this end wrote EOF (or closed): the peer was told once
        self._due = False  # a delivery is queued on the loop
        self._paused = False
        self._closing = False
        self._lost = False
        self._extra = {"socket": _NoSocket(sockname, peername), "sockname": sockname, "peername": peername}

    # -- the asyncio.Transport interface ---------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        self._buffered = isinstance(protocol, asyncio.BufferedProtocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[return-value]

    def is_closing(self) -> bool:
        return self._closing

    def is_reading(self) -> bool:
        return not (self._paused or self._closing)

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            self._queue()

    def get_write_buffer_size(self) -> int:
        return 0  # what is written is handed to the peer at once

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (0, 0)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        return None

    def can_write_eof(self) -> bool:
        return True

    def write(self, data: Any) -> None:
        if self._eof_out and not self._closing:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._closing or not data:
            return  # asyncio drops a write after close too
        peer = self._peer
        if peer is None or peer._closing:
            # The peer closed: on TCP its kernel answers with a reset and the write fails.
            self._shut(BrokenPipeError(errno.EPIPE, "the peer closed the connection"))
            return
        peer._inbox.append(bytes(data))
        self._loop.bytes_carried += len(data)
        peer._queue()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        if self._eof_out or self._closing:
            return
        self._eof_out = True
        peer = self._peer
        if peer is not None and not peer._closing:
            peer._eof_in = True
            peer._queue()

    def close(self) -> None:
        self._shut(None)

    def abort(self) -> None:
        self._shut(None)

    # -- delivery ----------------------------------------------------------------------------

    def _queue(self) -> None:
        if not self._due and not self._paused and not self._closing and (self._inbox or self._eof_in):
            self._due = True
            self._loop.call_soon(self._deliver)

    def _deliver(self) -> None:
        self._due = False
        if self._closing or self._paused:
            return
        inbox = self._inbox
        if inbox:
            data = inbox[0] if len(inbox) == 1 else b"".join(inbox)
            inbox.clear()
            self._loop.deliveries += 1
            try:
                if self._buffered:
                    self._feed(data)
                else:
                    self._protocol.data_received(data)  # type: ignore[union-attr]
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal(exc, "protocol.data_received() call failed.")
                return
        if self._eof_in and not inbox and not self._closing and not self._paused:
            self._eof_in = False
            try:
                keep_open = self._protocol.eof_received()  # type: ignore[union-attr]
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal(exc, "protocol.eof_received() call failed.")
                return
            if not keep_open:
                self.close()

    def _feed(self, data: bytes) -> None:
        """A BufferedProtocol reads into its own buffer, as much as it offers at a time; what is
        left when it pauses reading waits at the front of the inbox. The view of its buffer is
        released before it is told (it may resize the buffer then)."""
        protocol: asyncio.BufferedProtocol = self._protocol  # type: ignore[assignment]
        view = memoryview(data)
        while view:
            with memoryview(protocol.get_buffer(len(view))) as offered, offered.cast("B") as buf:
                n = min(len(buf), len(view))
                if not n:
                    raise RuntimeError("get_buffer() returned an empty buffer")
                buf[:n] = view[:n]
            view = view[n:]
            protocol.buffer_updated(n)
            if view and (self._paused or self._closing):
                if not self._closing:
                    self._inbox.insert(0, bytes(view))
                return

    def _fatal(self, exc: BaseException, message: str) -> None:
        self._loop.call_exception_handler(
            {"message": f"Fatal error: {message}", "exception": exc, "transport": self, "protocol": self._protocol}
        )
        self._shut(exc)

    def _shut(self, exc: BaseException | None) -> None:
        """Close this end: its protocol is told first, then the peer - an end of stream after
        what it has not read yet, or a reset when this end left data unread (or failed)."""
        if self._closing:
            return
        self._closing = True
        reset = bool(self._inbox) or isinstance(exc, OSError)
        self._inbox.clear()
        self._loop.call_soon(self._call_connection_lost, exc)
        peer = self._peer
        if peer is None or peer._closing:
            return
        if reset:
            peer._inbox.clear()
            peer._shut(ConnectionResetError(errno.ECONNRESET, "connection reset by peer"))
        elif not self._eof_out:
            self._eof_out = True
            peer._eof_in = True
            peer._queue()

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._loop.open_connections -= 1
        if self._protocol is not None:
            self._protocol.connection_lost(exc)  # type: ignore[arg-type]


class _MemServer(asyncio.AbstractServer):
    """A server listening in memory on the loop (``sockets[0].getsockname()`` gives its port)."""

    def __init__(self, loop: VirtualTimeLoop, factory: Any, address: _Addr) -> None:
        self._loop = loop
        self._factory = factory
        self.address = address
        self.sockets = (_NoSocket(address, None),)
        self._serving = True

    def close(self) -> None:
        # As asyncio's: no new connections; those made stay open.
        if self._serving:
            self._serving = False
            if self._loop._listeners.get(self.address) is self:
                del self._loop._listeners[self.address]

    async def wait_closed(self) -> None:
        return None

    def is_serving(self) -> bool:
        return self._serving

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    async def start_serving(self) -> None:
        return None

    async def serve_forever(self) -> None:
        raise NotImplementedError("an in-memory server serves while the loop runs")


class _Selector(selectors.BaseSelector):
    """Wraps the real selector, which only another thread's wake-up (the loop's self-pipe) can
    make ready: polls without waiting; when nothing is ready and the loop would have waited
    ``timeout`` seconds for its next timer, moves virtual time instead."""

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
        if timeout == 0:
            # Callbacks are ready. A thread's wake-up needs no poll: call_soon_threadsafe queued
            # its callback already (the self-pipe's byte is read when the loop is next idle).
            return []
        ready = self._real.select(0)
        if ready:
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
    # Read by code that picks its own transports (venue/ws.py: picows' aiofastnet connects
    # sockets itself, past the loop): on this loop, use the loop's.
    virtual_time = True

    def __init__(self) -> None:
        self._now = 0.0
        self._timers_made = 0
        self.jumps = 0
        self.jumped_s = 0.0
        self._listeners: dict[_Addr, _MemServer] = {}
        self._connecting: dict[socket.socket, _Addr] = {}  # sock_connect'ed, awaiting create_connection
        self._next_port = _FIRST_PORT
        self._next_client_port = _FIRST_CLIENT_PORT
        self.connections = 0  # made in memory, over the loop's life
        self.open_connections = 0  # transports not yet told connection_lost (two per connection)
        self.deliveries = 0  # reads delivered
        self.bytes_carried = 0
        super().__init__(selector=_Selector(self))

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

    # -- connections, in memory ------------------------------------------------------------

    async def create_server(  # type: ignore[override]
        self, protocol_factory: Any, host: Any = None, port: int | None = None, *, sock: Any = None,
        ssl: Any = None, **kwargs: Any,
    ) -> _MemServer:  # fmt: skip
        if sock is not None or ssl is not None:
            raise ValueError("the simulator's loop serves in memory: no socket or TLS of its own")
        if not port:
            while (_HOST, self._next_port) in self._listeners:
                self._next_port += 1
            port, self._next_port = self._next_port, self._next_port + 1
        address = _address(host, port)
        if address in self._listeners:
            raise OSError(errno.EADDRINUSE, f"address already in use: {address[0]}:{address[1]}")
        server = self._listeners[address] = _MemServer(self, protocol_factory, address)
        return server

    async def getaddrinfo(  # type: ignore[override]
        self, host: Any, port: Any, *, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[tuple[Any, ...]]:
        """Loopback names, answered in the loop's turn: asyncio's resolver runs on a thread,
        and the virtual clock would jump while it ran (aiohttp resolves any host that is not
        an IP address), so how long a connect took would depend on the wall clock."""
        if isinstance(host, bytes):
            host = host.decode()
        address = _address(host, int(port or 0))
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)]

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        """aiohttp's connector connects a socket of its own, then hands it to
        ``create_connection(sock=...)``: noted here, connected there (in memory)."""
        target = _address(address[0], address[1])
        if target not in self._listeners:
            raise _refused(target)
        self._connecting[sock] = target

    async def create_connection(  # type: ignore[override]
        self, protocol_factory: Any, host: Any = None, port: int | None = None, *, ssl: Any = None,
        sock: Any = None, **kwargs: Any,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:  # fmt: skip
        if ssl:
            raise ValueError("the simulator's loop carries in-memory connections without TLS")
        if sock is not None:
            target = self._connecting.pop(sock, None)
            if target is None:
                raise ValueError(
                    "the simulator's loop carries in-memory connections: this socket was not connected through it"
                )
            sock.close()
        else:
            target = _address(host, port)
        server = self._listeners.get(target)
        if server is None:
            raise _refused(target)
        local = (_HOST, self._next_client_port)  # a name for the peer (peername); ports wrap
        self._next_client_port = self._next_client_port + 1 if self._next_client_port < 65535 else _FIRST_CLIENT_PORT
        ours, theirs = _MemTransport(self, local, target), _MemTransport(self, target, local)
        ours._peer, theirs._peer = theirs, ours
        served = server._factory()
        protocol = protocol_factory()
        theirs.set_protocol(served)
        ours.set_protocol(protocol)
        self.connections += 1
        self.open_connections += 2
        # The server's end is made first: nothing the client writes can reach it before.
        served.connection_made(theirs)
        protocol.connection_made(ours)
        return ours, protocol


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
