"""Frames read together are decided together: the market stream tells its listener when the last
frame of one socket read has been handled (``on_market_read``), and the bot decides there, in the
same turn, with no hop; the user stream likewise (``on_user_read``). Against a raw WebSocket peer
that writes several frames in one write."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import random
import struct
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
import uvloop

from active_quoting.venue.signing import ApiCredentials
from active_quoting.venue.ws import MarketStream, UserStream
from conftest import capture
from synth_feed import DOWN, UP, book_frame, initial_books, price_change_frame

LOOPS = ["asyncio", "uvloop"]
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_frame(payload: bytes) -> bytes:
    """A server-to-client text frame (unmasked)."""
    n = len(payload)
    head = struct.pack("!BB", 0x81, n) if n < 126 else struct.pack("!BBH", 0x81, 126, n) if n < 65536 else \
        struct.pack("!BBQ", 0x81, 127, n)  # fmt: skip
    return head + payload


def client_texts(buf: bytearray) -> list[bytes]:
    """The payloads of the complete masked client frames at the front of ``buf`` (consumed)."""
    out = []
    while len(buf) >= 6:
        n, at = buf[1] & 0x7F, 2
        if n == 126:
            n, at = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            n, at = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < at + 4 + n:
            break
        mask = buf[at : at + 4]
        out.append(bytes(b ^ mask[i % 4] for i, b in enumerate(buf[at + 4 : at + 4 + n])))
        del buf[: at + 4 + n]
    return out


class RawPeer:
    """Accepts one WebSocket client and writes what it is told, each batch in one write; keeps
    the client's text payloads (its subscription, its PINGs)."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()
        self.from_client: list[bytes] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key"))  # fmt: skip
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")  # fmt: skip
        self.writer = writer
        self.connected.set()
        buf = bytearray()
        while data := await reader.read(65536):
            buf += data
            self.from_client += client_texts(buf)

    def send(self, *payloads: bytes) -> None:
        assert self.writer is not None
        self.writer.write(b"".join(ws_frame(p) for p in payloads))


class Sequence:
    """What the listener was told, in order."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def on_market_events(self, events):  # type: ignore[no-untyped-def]
        self.log += [type(e).__name__ for e in events]

    def on_market_read(self) -> None:
        self.log.append("read")

    def on_tick_size_change(self, asset_id, tick):  # type: ignore[no-untyped-def]
        pass

    def on_feed_state(self, shard, connected):  # type: ignore[no-untyped-def]
        pass

    def on_feed_stale(self, shard, reason):  # type: ignore[no-untyped-def]
        pass


@contextlib.asynccontextmanager
async def streamed() -> AsyncIterator[tuple[RawPeer, Sequence, dict]]:
    """A raw peer, a market stream subscribed to it, its books' first snapshot applied."""
    peer = RawPeer()
    server = await asyncio.start_server(peer._serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    seq = Sequence()
    stream = MarketStream(f"ws://127.0.0.1:{port}/ws/market", listener=seq, ping_interval=5, pong_timeout=5)
    stream.subscribe([UP, DOWN])
    await stream.start()
    try:
        await asyncio.wait_for(peer.connected.wait(), 5)
        books = initial_books(random.Random(3))
        peer.send(book_frame(books, 1))
        await reads(seq, 1)
        seq.log.clear()
        yield peer, seq, books
    finally:
        await stream.stop()
        server.close()
        await server.wait_closed()


async def reads(seq: Sequence, n: int) -> None:
    for _ in range(500):
        if seq.log.count("read") >= n:
            return
        await asyncio.sleep(0.002)


def run(loop: str, go) -> None:  # type: ignore[no-untyped-def]
    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(asyncio.wait_for(go(), 30))


@pytest.mark.parametrize("loop", LOOPS)
def test_frames_of_one_read_are_handled_then_decided_once(loop: str) -> None:
    async def go() -> None:
        async with streamed() as (peer, seq, books):
            changes = [price_change_frame(books, [(UP, "BUY", 4000 - 100 * i, 5_000_000)], 2 + i) for i in range(3)]
            peer.send(*changes)  # three frames, one write: one read on loopback
            await reads(seq, 1)
            # every frame of the read applied first, then one decision point
            assert seq.log == ["PriceChangeEvent"] * 3 + ["read"], seq.log
            peer.send(changes[0])
            await reads(seq, 2)
            assert seq.log[4:] == ["PriceChangeEvent", "read"]  # a frame alone is decided at once

    run(loop, go)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_read_that_ends_with_our_pong_is_still_decided(loop: str) -> None:
    """A read whose last frame is a PONG (handed on as data, or taken by picows' pong hook when
    it waits for one) still ends with one decision after the frames before it."""

    async def go() -> None:
        async with streamed() as (peer, seq, books):
            peer.send(price_change_frame(books, [(UP, "BUY", 4000, 5_000_000)], 2), b"PONG")
            await reads(seq, 1)
            assert seq.log[0] == "PriceChangeEvent" and seq.log[-1] == "read" and seq.log.count("read") == 1, seq.log

    run(loop, go)


def test_a_read_ending_on_a_frame_the_data_path_never_sees_ends_once() -> None:
    """Connection._read_end (a PONG taken by picows' hook, a control frame, last in the read):
    the frames before it are decided once; without frames pending it does nothing."""
    from active_quoting.venue.ws import Connection

    ends: list[int] = []
    conn = Connection("ws://127.0.0.1:1/ws/market", lambda: b"", lambda c, p: None, lambda c, up: None, name="t")
    conn.on_read_end = lambda: ends.append(1)
    conn._read_end()
    assert ends == []  # nothing pending: nothing to decide
    conn._frame(b"{}", False)  # a data frame with more in the same read
    conn._read_end()
    conn._read_end()
    assert ends == [1] and not conn.more_in_read


def test_a_frame_starts_one_resync_of_a_book_it_desyncs_whatever_snapshot_it_carries() -> None:
    """A frame is applied whole, then a book it left desynced is rebuilt once: a snapshot of the
    same token between two disagreeing price_changes of the frame does not start a second
    rebuild (it did when the check ran per price_change, e4cca6f)."""
    import orjson

    from active_quoting import core
    from active_quoting.venue.market_data import MarketData

    stream = MarketStream("ws://127.0.0.1:1/ws/market", MarketData(core.BookSet(desync_threshold=1)))
    started: list[str] = []

    def spawn(coro):  # the rebuild itself needs a venue: count it, do not run it
        started.append(coro.cr_frame.f_locals["asset_id"])
        coro.close()

    stream._tasks.spawn = spawn  # type: ignore[method-assign]
    books = initial_books(random.Random(1))
    stream._handle(book_frame(books, 1))

    def disagreeing(ts: int) -> dict:  # states a top the book does not have
        entry = orjson.loads(price_change_frame(books, [(UP, "BUY", 4000, 10_000_000)], ts))
        entry["price_changes"][0]["best_bid"] = "0.01"
        return entry

    frame = [disagreeing(2), *orjson.loads(book_frame({UP: books[UP]}, 3)), disagreeing(4)]
    stream._handle(orjson.dumps(frame))
    assert stream.md.books.get(UP).desynced and started == [UP]
    stream._handle(orjson.dumps([disagreeing(5)]))
    assert started == [UP]  # still being rebuilt: not again


class UserSequence:
    """What a user-channel listener was told, in order."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def on_order(self, update) -> None:  # type: ignore[no-untyped-def]
        self.log.append("order")

    def on_fill(self, update) -> None:  # type: ignore[no-untyped-def]
        self.log.append("fill")

    def on_user_read(self) -> None:
        self.log.append("read")

    def on_user_state(self, connected) -> None:  # type: ignore[no-untyped-def]
        pass

    def on_reconcile_needed(self) -> None:
        pass


@contextlib.asynccontextmanager
async def user_streamed(ping_interval: float) -> AsyncIterator[tuple[RawPeer, UserSequence, UserStream]]:
    """A raw peer and a user stream connected to it; both stopped after."""
    peer = RawPeer()
    server = await asyncio.start_server(peer._serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    seq = UserSequence()
    creds = ApiCredentials("a93a3d32-74fa-dd2b-4b67-98bfa6fc5cb5", "c2VjcmV0", "pp")
    stream = UserStream(f"ws://127.0.0.1:{port}/ws/user", creds, seq, ["0xdd22"], ping_interval=ping_interval,
                        pong_timeout=ping_interval)  # fmt: skip
    await stream.start()
    try:
        await asyncio.wait_for(peer.connected.wait(), 5)
        yield peer, seq, stream
    finally:
        await stream.stop()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("loop", LOOPS)
def test_user_events_of_one_read_are_acted_on_once(loop: str) -> None:
    """An order update and its trade written together (the venue sends them back to back) are both
    handed on before the one end-of-read, where the bot decides the market once; a frame the codec
    refuses still ends its read."""

    async def go() -> None:
        async with user_streamed(ping_interval=5) as (peer, seq, _):
            order, trade = capture("ws_order_placement.json"), capture("ws_user_trade3.json")
            peer.send(order, trade)
            await reads(seq, 1)  # type: ignore[arg-type]
            assert seq.log == ["order", "fill", "read"], seq.log
            peer.send(b"{not json")
            await reads(seq, 2)  # type: ignore[arg-type]
            assert seq.log[3:] == ["read"], seq.log

    run(loop, go)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_user_read_that_ends_with_the_answer_to_our_ping_ends_once(loop: str) -> None:
    """The venue answers our PING with PONG; written right after an order update, the PONG ends
    the read (picows' pong hook takes it, not the data path): the update is acted on once."""

    async def go() -> None:
        async with user_streamed(ping_interval=0.3) as (peer, seq, stream):
            for _ in range(200):
                if b"PING" in peer.from_client:
                    break
                await asyncio.sleep(0.005)
            assert b"PING" in peer.from_client
            peer.send(capture("ws_order_placement.json"), b"PONG")
            await reads(seq, 1)  # type: ignore[arg-type]
            assert seq.log == ["order", "read"], seq.log
            assert stream.conn.pongs == 1  # the PONG went to the pong hook, which ended the read

    run(loop, go)


def test_read_ends_once_per_read_by_the_connection_or_the_backstop() -> None:
    """ReadEnds: a frame last in its read ends it at once; frames with more to come wait for the
    connection's end (a PONG or control frame last) or, failing that, the backstop at the next
    turn; a read is never ended twice."""
    from active_quoting.venue.ws import ReadEnds

    async def go() -> None:
        ends: list[int] = []
        reads_ = ReadEnds(lambda: ends.append(1))
        conn = SimpleNamespace(more_in_read=False)
        reads_.frame_done(conn)  # type: ignore[arg-type]
        assert ends == [1]
        conn.more_in_read = True
        reads_.frame_done(conn)  # type: ignore[arg-type]
        reads_.frame_done(conn)  # type: ignore[arg-type]
        assert ends == [1]  # more to come
        reads_.end()  # the connection saw the read end on a frame the data path never sees
        await asyncio.sleep(0)  # the backstop runs and finds the read already ended
        assert ends == [1, 1]
        reads_.frame_done(conn)  # a read whose end no frame tells
        await asyncio.sleep(0)
        assert ends == [1, 1, 1]  # ended by the backstop
        await asyncio.sleep(0)
        assert ends == [1, 1, 1]

    asyncio.run(go())
