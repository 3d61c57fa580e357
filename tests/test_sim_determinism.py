"""The virtual-time loop's connections: in memory, with the model the loop states - what one end
writes is read by the other at the loop's next turn, as one read of everything written since,
with no virtual time passing; a close is an end of stream after that data.

Real loopback TCP broke that model by itself (a burst larger than the congestion window waited
in the sender's queue for the peer's delayed ACK: real time), and two runs of one seed diverged;
the loop now carries every connection in memory and refuses what it cannot carry."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from active_quoting.exchange.server import serve_app
from active_quoting.sim import loop as loop_module
from active_quoting.sim.loop import VirtualTimeLoop
from active_quoting.sim.runner import SimConfig, Simulation
from active_quoting.venue.ws import Connection

FRAME = b"x" * 281  # the size of an RTDS price frame
BURST = 400


class _Server(asyncio.Protocol):
    def __init__(self, connected: asyncio.Future[asyncio.Transport]) -> None:
        self.connected = connected
        self.events: list[Any] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connected.set_result(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.events.append(data)

    def eof_received(self) -> None:
        self.events.append("eof")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", exc))


class _Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.reads: list[int] = []
        self.first: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.reads.append(len(data))
        if not self.first.done():
            self.first.set_result(len(data))


async def _turns(n: int = 6) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def _run(coro_fn: Any) -> tuple[Any, VirtualTimeLoop]:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro_fn(loop)), loop
    finally:
        loop.close()


async def _pair(loop: VirtualTimeLoop) -> tuple[Any, _Client, asyncio.Transport, _Server, Any]:
    connected: asyncio.Future[asyncio.Transport] = loop.create_future()
    served: list[_Server] = []

    def factory() -> _Server:
        served.append(_Server(connected))
        return served[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client_transport, client = await loop.create_connection(_Client, "127.0.0.1", port)
    return client_transport, client, await connected, served[0], server


def test_a_burst_is_one_read_at_the_next_turn_with_no_virtual_time_passing() -> None:
    async def burst(loop: VirtualTimeLoop) -> tuple[int, int, list[int], bool]:
        client_transport, client, server_transport, _, server = await _pair(loop)
        await asyncio.sleep(1.0)
        t0 = loop.time()
        for _ in range(BURST):
            server_transport.write(FRAME)
        assert not client.reads  # nothing is read in the turn that wrote it
        first = await client.first
        assert loop.time() == t0  # nothing waited in virtual time
        server_transport.write(b"more")
        await asyncio.sleep(0)
        reads = list(client.reads)
        real = isinstance(client_transport.get_extra_info("socket"), socket.socket)
        client_transport.close()
        server.close()
        return first, sum(reads), reads, real

    (first, total, reads, real), loop = _run(burst)
    assert first == BURST * len(FRAME), f"first read {first} of {BURST * len(FRAME)} bytes"
    assert reads == [BURST * len(FRAME), 4] and total == BURST * len(FRAME) + 4
    assert not real and loop.connections == 1
    assert loop.deliveries == 2 and loop.bytes_carried == BURST * len(FRAME) + 4


def test_a_close_is_an_end_of_stream_after_the_data_and_both_ends_are_told() -> None:
    async def close(loop: VirtualTimeLoop) -> tuple[list[Any], int, bool]:
        client_transport, _, server_transport, served, _ = await _pair(loop)
        client_transport.write(b"last words")
        client_transport.close()
        client_transport.write(b"after close")  # dropped, as asyncio drops it
        for _ in range(4):
            await asyncio.sleep(0)
        return served.events, loop.open_connections, server_transport.is_closing()

    (events, still_open, server_closed), _ = _run(close)
    # the server read the data, then the end of stream (eof_received returned None: it closes)
    assert events == [b"last words", "eof", ("lost", None)]
    assert server_closed and still_open == 0


def test_paused_reading_holds_the_data_until_resumed() -> None:
    async def paused(loop: VirtualTimeLoop) -> tuple[list[int], list[int]]:
        client_transport, client, server_transport, _, _ = await _pair(loop)
        client_transport.pause_reading()
        server_transport.write(b"a" * 10)
        server_transport.write(b"b" * 5)
        await asyncio.sleep(0.5)
        held = list(client.reads)
        client_transport.resume_reading()
        await asyncio.sleep(0)
        return held, client.reads

    (held, reads), _ = _run(paused)
    assert held == [] and reads == [15]


class _SmallBuffers(asyncio.BufferedProtocol):
    """Offers 7 bytes at a time, grows its buffer by one byte after each read (legal: the
    transport holds no view of it then) and pauses reading after the second read."""

    def __init__(self) -> None:
        self.buf = bytearray(7)
        self.got = bytearray()
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buf)[:7]

    def buffer_updated(self, nbytes: int) -> None:
        self.got += self.buf[:nbytes]
        self.buf.append(0)  # a BufferError if a view of it were still held
        if len(self.got) == 14:
            self.transport.pause_reading()


def test_a_buffered_protocol_reads_into_its_own_buffer_and_keeps_its_place_when_it_pauses() -> None:
    async def buffered(loop: VirtualTimeLoop) -> tuple[bytes, bytes]:
        connected: asyncio.Future[asyncio.Transport] = loop.create_future()
        server = await loop.create_server(lambda: _Server(connected), "127.0.0.1", 0)
        transport, protocol = await loop.create_connection(
            _SmallBuffers, "127.0.0.1", server.sockets[0].getsockname()[1]
        )
        served = await connected
        served.write(bytes(range(30)))
        await asyncio.sleep(0)
        paused = bytes(protocol.got)
        transport.resume_reading()
        await asyncio.sleep(0)
        return paused, bytes(protocol.got)

    (paused, got), _ = _run(buffered)
    assert paused == bytes(range(14)) and got == bytes(range(30))


def test_what_the_loop_cannot_carry_in_memory_is_refused_with_a_clear_error() -> None:
    async def refused(loop: VirtualTimeLoop) -> list[str]:
        errors = []
        stray, other = socket.socket(), socket.socket()
        attempts = [
            loop.create_connection(asyncio.Protocol, "127.0.0.1", 9),  # nothing listens
            loop.create_connection(asyncio.Protocol, "10.1.2.3", 443),  # not loopback
            loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl=object()),
            loop.create_connection(asyncio.Protocol, sock=stray),  # not connected through the loop
            loop.sock_connect(other, ("127.0.0.1", 9)),
            loop.getaddrinfo("example.com", 443),  # a name lookup the loop cannot answer in its turn
        ]
        for attempt in attempts:
            with pytest.raises((ValueError, ConnectionRefusedError)) as caught:
                await attempt
            errors.append(str(caught.value))
        stray.close()
        other.close()
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        with pytest.raises(OSError, match="already in use"):
            await loop.create_server(asyncio.Protocol, "127.0.0.1", server.sockets[0].getsockname()[1])
        # a port taken explicitly is skipped when the next one is handed out
        taken = await loop.create_server(asyncio.Protocol, "127.0.0.1", server.sockets[0].getsockname()[1] + 1)
        nxt = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        assert nxt.sockets[0].getsockname()[1] == taken.sockets[0].getsockname()[1] + 1
        return errors

    errors, _ = _run(refused)
    assert "nothing listens on 127.0.0.1:9" in errors[0] and "nothing listens" in errors[4]
    assert "in-memory" in errors[1] and "10.1.2.3" in errors[1]
    assert "TLS" in errors[2] and "not connected through it" in errors[3]
    assert "in-memory" in errors[5] and "example.com" in errors[5]


class _Recorder(asyncio.Protocol):
    def __init__(self, fail_on: bytes = b"") -> None:
        self.events: list[Any] = []
        self.fail_on = fail_on

    def data_received(self, data: bytes) -> None:
        if self.fail_on and self.fail_on in data:
            raise asyncio.CancelledError  # a BaseException, as asyncio's own transports catch
        self.events.append(data)

    def eof_received(self) -> None:
        self.events.append("eof")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", type(exc).__name__ if exc else None))


async def _recorded(loop: VirtualTimeLoop, fail_on: bytes = b"") -> tuple[Any, _Recorder, Any, _Recorder]:
    made: list[tuple[asyncio.Transport, _Recorder]] = []

    def factory() -> _Recorder:
        p = _Recorder(fail_on)
        p.connection_made = lambda t: made.append((t, p))  # type: ignore[method-assign]
        return p

    server = await loop.create_server(factory, "127.0.0.1", 0)
    client_t, client = await loop.create_connection(_Recorder, "127.0.0.1", server.sockets[0].getsockname()[1])
    return client_t, client, made[0][0], made[0][1]


def test_a_close_with_unread_data_resets_the_peer_and_a_write_to_a_closed_peer_breaks_the_pipe() -> None:
    async def reset(loop: VirtualTimeLoop) -> tuple[list[Any], list[Any], list[Any], list[Any], int]:
        client_t, client, server_t, served = await _recorded(loop)
        server_t.write(b"never read")
        client_t.write(b"also never read")
        client_t.abort()  # before its inbox was read: a reset, the server's unread data is lost
        await _turns()
        first = (list(client.events), list(served.events))
        client_t, client, server_t, served = await _recorded(loop)
        client_t.close()  # nothing unread: an end of stream
        await _turns()
        server_t.write(b"too late")  # the peer is gone: a broken pipe
        await _turns()
        return first[0], first[1], client.events, served.events, loop.open_connections

    (aborter, reset_peer, closer, writer, still_open), _ = _run(reset)
    assert aborter == [("lost", None)] and reset_peer == [("lost", "ConnectionResetError")]
    assert closer == [("lost", None)] and writer == ["eof", ("lost", None)]
    assert still_open == 0


def test_a_write_to_a_peer_that_closed_while_this_end_paused_reading_breaks_the_pipe() -> None:
    async def paused(loop: VirtualTimeLoop) -> tuple[list[Any], bool]:
        client_t, client, server_t, served = await _recorded(loop)
        server_t.pause_reading()  # it never reads the end of stream
        client_t.close()
        await _turns()
        server_t.write(b"x")
        await _turns()
        return served.events, server_t.is_closing()

    (events, closed), _ = _run(paused)
    assert events == [("lost", "BrokenPipeError")] and closed


def test_a_protocol_callback_that_raises_closes_its_connection_through_the_exception_handler() -> None:
    async def raising(loop: VirtualTimeLoop) -> tuple[list[Any], list[Any], list[str]]:
        handled: list[str] = []
        loop.set_exception_handler(lambda _loop, ctx: handled.append(ctx["message"]))
        client_t, client, server_t, served = await _recorded(loop, fail_on=b"boom")
        client_t.write(b"boom")
        await _turns()
        return served.events, client.events, handled

    (served, client, handled), _ = _run(raising)
    assert handled == ["Fatal error: protocol.data_received() call failed."]
    assert served == [("lost", "CancelledError")] and client == ["eof", ("lost", None)]


def test_write_eof_is_told_once_and_a_write_after_it_is_an_error() -> None:
    async def eof(loop: VirtualTimeLoop) -> list[Any]:
        client_t, _, _, served = await _recorded(loop)
        client_t.write(b"data")
        client_t.write_eof()
        with pytest.raises(RuntimeError, match="write_eof"):
            client_t.write(b"after eof")
        await _turns()
        client_t.close()
        await _turns()
        return served.events

    events, _ = _run(eof)
    # eof_received returned None: the server's end closed itself; the client's close added nothing
    assert events == [b"data", "eof", ("lost", None)]


def test_loopback_names_resolve_in_the_loops_turn() -> None:
    """aiohttp resolves a host that is not an IP address with loop.getaddrinfo, on a thread:
    the clock jumped while it ran and a connect took a wall-clock-dependent virtual time."""

    async def by_name(loop: VirtualTimeLoop) -> tuple[float, str]:
        runner, url, _ = await _http_server()
        try:
            async with aiohttp.ClientSession() as session:
                t0 = loop.time()
                async with session.get(url.replace("127.0.0.1", "localhost")) as r:
                    text = await r.text()
                return loop.time() - t0, text
        finally:
            await runner.cleanup()

    for _ in range(3):
        (took, text), _ = _run(by_name)
        assert text == "hello" and took == 0.0


# -- what else decided a simulation by the wall clock ------------------------------------------


async def _http_server() -> tuple[web.AppRunner, str, set[Any]]:
    """An aiohttp server on the running loop that records the connections its requests came on."""
    peers: set[Any] = set()

    async def hello(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner, base = await serve_app(app)
    return runner, base + "/", peers


class _KeepAliveProbe(Simulation):
    """A simulation whose world is one aiohttp client and server: a request, 20 s of virtual
    idle time (beyond the client's 15 s keep-alive), a second request."""

    async def _main(self) -> dict[str, Any]:  # type: ignore[override]
        runner, url, peers = await _http_server()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(url) as r:
                    assert await r.text() == "hello"
                await asyncio.sleep(20.0)  # virtual: no real time passes
                async with session.get(url) as r:
                    assert await r.text() == "hello"
        finally:
            await runner.cleanup()
        return {"connections": len(peers), "now": self.loop.time(), "made": self.loop.connections}


def test_aiohttp_keep_alive_expires_on_virtual_time_in_a_simulation(tmp_path: Any) -> None:
    """aiohttp's connector expires pooled connections by time.monotonic(): 20 virtual seconds
    took milliseconds of real time, the idle connection stayed pooled and was reused - unless
    the wall clock happened to pass 15 s, as it does later in a soak. Which request then opened
    a new connection depended on real time."""
    summary = _KeepAliveProbe(SimConfig(hours=0.01, db=str(tmp_path / "k.db"))).run()
    assert summary["now"] >= 20.0
    # the second request found its pooled connection expired (15 s of virtual time) and opened one,
    # in memory (aiohttp's connector connects through the loop's sock_connect)
    assert summary["connections"] == 2 and summary["made"] == 2, summary


async def _ws_connection_is_the_loops(loop: VirtualTimeLoop) -> tuple[bool, int]:
    received: list[str] = []

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        await sock.send_str("hello")
        async for msg in sock:
            received.append(msg.data)
        return sock

    app = web.Application()
    app.router.add_get("/ws", ws)
    runner, base = await serve_app(app)
    states: list[bool] = []
    frames: list[bytes] = []
    conn = Connection(
        base.replace("http", "ws", 1) + "/ws",
        lambda: b"hi",
        lambda c, f: frames.append(f),
        lambda c, up: states.append(up),
    )
    conn.start()
    while not frames or not received:
        await asyncio.sleep(0.01)
    assert received == ["hi"]  # the greeting crossed the other way (picows' send on fd -1 fell back)
    in_memory = isinstance(conn.transport.underlying_transport, loop_module._MemTransport)  # type: ignore[union-attr]
    await conn.stop()
    await runner.cleanup()
    assert frames == [b"hello"]
    return in_memory, loop.connections


def test_the_bots_websockets_use_the_virtual_loops_transports() -> None:
    """On the simulator's loop, picows must not bring aiofastnet's transports (they connect a
    socket themselves, past the loop): venue/ws.py asks for the loop's own, by the loop's
    ``virtual_time`` flag, with no process-wide switch. Frames cross in memory both ways (picows
    writes through the transport when its direct send on the connection's descriptor fails)."""
    (in_memory, made), _ = _run(_ws_connection_is_the_loops)
    assert in_memory and made == 1
