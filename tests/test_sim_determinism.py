"""The virtual-time loop's model: a byte written is readable by its peer at the next poll.

TCP on loopback breaks it by itself: with TCP_NODELAY each write is a segment, and once a burst
fills the congestion window before the peer has read, the rest waits in the sender's queue for
an ACK that the peer's kernel may delay by its delayed-ACK timer - real time. Which bytes a
poll then saw depended on the wall clock, and simulations of one seed diverged as soon as the
bot read the reference-price socket (a burst of small frames per flow step)."""

from __future__ import annotations

import asyncio
import fcntl
import socket
from typing import Any

import aiohttp
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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connected.set_result(transport)  # type: ignore[arg-type]


class _Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.reads: list[int] = []
        self.first: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.reads.append(len(data))
        if not self.first.done():
            self.first.set_result(len(data))


async def _burst(loop: VirtualTimeLoop) -> tuple[int, int]:
    connected: asyncio.Future[asyncio.Transport] = loop.create_future()
    server = await loop.create_server(lambda: _Server(connected), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client_transport, client = await loop.create_connection(_Client, "127.0.0.1", port)
    server_transport = await connected
    await asyncio.sleep(1.0)  # past the connection's start (its first segments are ACKed at once)
    t0 = loop.time()
    for _ in range(BURST):
        server_transport.write(FRAME)
    first = await client.first
    assert loop.time() == t0  # nothing waited in virtual time
    client_transport.close()
    server_transport.close()
    server.close()
    await server.wait_closed()
    return first, sum(client.reads)


def test_a_burst_larger_than_the_congestion_window_is_readable_at_the_next_poll() -> None:
    loop = VirtualTimeLoop()
    try:
        first, total = loop.run_until_complete(_burst(loop))
    finally:
        loop.close()
    # the peer's first read after the burst gets all of it, as the loop's model says
    assert first == BURST * len(FRAME), f"first read {first} of {BURST * len(FRAME)} bytes: TCP held the rest"
    assert total == BURST * len(FRAME)
    # the fault took effect: the kernel held data back and the loop released it before polling
    assert loop.released >= 1
    assert loop.settle_waits == 0 and loop.unsettled == 0


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
        return {"connections": len(peers), "now": self.loop.time()}


def test_aiohttp_keep_alive_expires_on_virtual_time_in_a_simulation(tmp_path: Any) -> None:
    """aiohttp's connector expires pooled connections by time.monotonic(): 20 virtual seconds
    took milliseconds of real time, the idle connection stayed pooled and was reused - unless
    the wall clock happened to pass 15 s, as it does later in a soak. Which request then opened
    a new connection (its place in the loop's order of ready sockets) depended on real time."""
    summary = _KeepAliveProbe(SimConfig(hours=0.01, db=str(tmp_path / "k.db"))).run()
    assert summary["now"] >= 20.0
    # the second request found its pooled connection expired (15 s of virtual time) and opened one
    assert summary["connections"] == 2, summary


async def _ws_connection_is_the_loops(loop: VirtualTimeLoop) -> tuple[bool, int]:
    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for _ in sock:
            pass
        return sock

    app = web.Application()
    app.router.add_get("/ws", ws)
    runner, base = await serve_app(app)
    states: list[bool] = []
    conn = Connection(base.replace("http", "ws", 1) + "/ws", lambda: b"hi", lambda c, f: None, lambda c, up: states.append(up))
    conn.start()
    while not states:
        await asyncio.sleep(0.01)
    transport = conn.transport.underlying_transport  # type: ignore[union-attr]
    tracked = any(t is transport for t in loop._conns.values())
    await conn.stop()
    await runner.cleanup()
    return tracked, len(loop._conns)


def test_the_bots_websockets_use_the_virtual_loops_transports() -> None:
    """On the simulator's loop, picows must not bring aiofastnet's transports (they read the
    kernel directly, past the loop's settling): venue/ws.py asks for the loop's own, by the
    loop's ``virtual_time`` flag, with no process-wide switch."""
    loop = VirtualTimeLoop()
    try:
        tracked, _ = loop.run_until_complete(_ws_connection_is_the_loops(loop))
    finally:
        loop.close()
    assert tracked, "the WebSocket's transport is not one the virtual-time loop settles"


class _CountingFcntl:
    """The loop module's ``fcntl``, counting the send-queue checks (ioctl calls)."""

    def __init__(self) -> None:
        self.calls = 0

    def ioctl(self, fd: int, request: int, arg: Any) -> Any:
        self.calls += 1
        return fcntl.ioctl(fd, request, arg)


async def _written_only(loop: VirtualTimeLoop, counter: _CountingFcntl) -> tuple[int, int, int]:
    """Many idle connections, one written to: settling looks at that one only."""
    connected: asyncio.Queue[asyncio.Transport] = asyncio.Queue()

    class Srv(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            connected.put_nowait(transport)  # type: ignore[arg-type]

    server = await loop.create_server(Srv, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients = [await loop.create_connection(_Client, "127.0.0.1", port) for _ in range(20)]
    servers = [await connected.get() for _ in clients]
    await asyncio.sleep(1.0)
    counter.calls = 0
    for _ in range(50):
        await asyncio.sleep(0.01)  # 50 polls with nothing written
    idle = counter.calls
    counter.calls = 0
    for _ in range(BURST):
        servers[7].write(FRAME)
    first = await clients[7][1].first
    burst = counter.calls
    for t, _ in clients:
        t.close()
    for t in servers:
        t.close()
    server.close()
    await server.wait_closed()
    return idle, burst, first


def test_settling_looks_only_at_connections_written_to_since_the_last_poll(monkeypatch: Any) -> None:
    """The cost of settling: an ioctl per tracked socket before every poll was 2.8M calls in a
    0.2 h x 16-market run. A send queue only grows by a write, so only those are looked at."""
    counter = _CountingFcntl()
    monkeypatch.setattr(loop_module, "fcntl", counter)
    loop = VirtualTimeLoop()
    try:
        idle, burst, first = loop.run_until_complete(_written_only(loop, counter))
    finally:
        loop.close()
    assert idle == 0, f"{idle} send-queue checks over 50 polls of 40 idle connections"
    # the burst's connection only: checked, released, checked again (a few times if it needed real time)
    assert burst >= 1 and (burst <= 2 or loop.settle_waits > 0), burst
    assert first == BURST * len(FRAME) and loop.unsettled == 0


class _StuckPeer(Simulation):
    """A soak where one connection's peer never reads: its send queue cannot be released before
    the next poll (what the loop's model cannot make reproducible)."""

    async def _faults(self) -> None:
        await asyncio.sleep(30)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        transport, _ = await self.loop.create_connection(asyncio.Protocol, *listener.getsockname())
        peer, _ = listener.accept()  # a socket outside the loop, never read
        transport.write(b"x" * (8 << 20))
        await asyncio.sleep(1.0)
        transport.abort()
        peer.close()
        listener.close()


def test_a_send_queue_left_unsettled_fails_the_soak(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(loop_module, "SETTLE_LIMIT_S", 0.01)
    summary = _StuckPeer(SimConfig(hours=0.02, assets=("btc",), db=str(tmp_path / "s.db"))).run()
    assert summary["loop"]["unsettled"] >= 1  # the fault took effect
    inv = summary["invariants"]
    assert not inv["ok"] and inv["violations"]["settled"] >= 1
    assert "depended on the wall clock" in inv["first"]["settled"]["detail"]
