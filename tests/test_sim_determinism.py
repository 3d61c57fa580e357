"""The virtual-time loop's model: a byte written is readable by its peer at the next poll.

TCP on loopback breaks it by itself: with TCP_NODELAY each write is a segment, and once a burst
fills the congestion window before the peer has read, the rest waits in the sender's queue for
an ACK that the peer's kernel may delay by its delayed-ACK timer - real time. Which bytes a
poll then saw depended on the wall clock, and simulations of one seed diverged as soon as the
bot read the reference-price socket (a burst of small frames per flow step)."""

from __future__ import annotations

import asyncio

from active_quoting.sim.loop import VirtualTimeLoop

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
