"""Latency harness, black-box: a touch-moving market frame handed to a pipeline's socket -> the
first byte of each order or cancel request that follows, both stamped by a proxy in front of the
venue.

Six processes, one clock (``CLOCK_MONOTONIC``, ``time.monotonic_ns``):

* **venue** (``latency.py venue``): the embedded exchange with three up/down windows (btc for the
  bot, eth for the stock pipeline, sol for the floor, so no pipeline's orders move another's
  book) whose house book (4 levels a side, 6 ticks wide) stands still between moves. Every
  ``--period`` seconds the books move the same way (``CYCLE``: whole book up 3 ticks and back,
  the ask in 2 and out, the bid in 2 and out; eth a third of a period after btc and sol two
  thirds, so no two pipelines react at the same time on the machine's two cores), one order at a
  time as the venue publishes; the ``price_change`` frame of the first step that moves the house
  touch is the move's frame: the venue records the digest of its exact text. Each
  ``POST /order(s)`` and ``DELETE /order(s)`` is recorded with its sender (``POLY_ADDRESS``),
  its ``POLY_SIGNATURE`` and how many orders it carries. The venue's own stamps (the frame handed
  to aiohttp, the server protocol's ``data_received``) are kept: the old method, printed beside.
* **proxy** (``latency.py proxy``, :class:`StampingProxy`): a uvloop ``asyncio.Protocol`` relay,
  raw bytes, TCP_NODELAY both sides; every connection a pipeline opens to the CLOB URL (REST and
  WebSocket) goes through it, Gamma goes direct. It stamps each WebSocket frame from the
  exchange when its write to the client's socket returns (frames parsed across chunks after
  the ``101``; payload digest, connection) and the first byte of each HTTP request from a client
  on arrival, before forwarding it (method, path, ``POLY_ADDRESS``, ``POLY_SIGNATURE``). The
  venue is busy publishing a move's several steps to several subscribers; measured at the
  venue, that cost was in every sample (see benchmarks/README.md).
* **ours**: ``active-quoting run --exchange-url <proxy> --gamma-url ...`` exactly as a user
  starts it against a separately served exchange: default configuration, store and journal on.
* **stock** (``latency.py stock``): ``json`` + a dict book + py-clob-client-v2 (``create_order``,
  ``post_order``/``post_orders``, ``cancel_orders``; tick-size, neg-risk and version caches
  warm) on the eth market stream. On the first touch change of a move it posts one order if the
  bid moved up, two if the ask moved down, and cancels what it holds otherwise.
* **floor** (``latency.py floor``): an instant reactor on the sol stream (picows, ``orjson``, a
  prebuilt signed ``DELETE /orders`` written to a pre-opened keep-alive connection on the first
  touch change of a move): the harness's own cost, which nothing can beat.

The harness joins the records: a move's time is the proxy's stamp of the first frame with the
move frame's digest, a request's the proxy's stamp of the request with its signature (by order
of arrival per method, path and sender when a request has none; counted).

A request belongs to the last move of its pipeline's market written before it, if it came
within ``--horizon`` (later ones, such as the bot's re-quote when a momentum cooldown ends, are
no frame's answer). Per move: answered by cancels alone, a **pure cancel** (latency of the
first); by exactly one new order, **one order** (latency of the request carrying it); by two or
more, a **two-sided requote** (latency of the request carrying the second: both quotes out).
What a pipeline does on a move is its own decision (the bot pulls both quotes on a 3-tick
move, momentum; it may not answer a 2-tick one-sided move at all): unanswered moves are
counted, not timed.

**Spot move to cancel** (``--scenario spot``, issue 13's target): the same venue process also
serves the reference-price socket (``/ws/rtds``); it publishes the btc Chainlink price once a
second (as the real feed does), and Gamma's ``priceToBeat`` for the bot's window is that price,
so the window's fair value starts at 0.50. The bot runs ``--strategy spot`` (fair value and the
spot-move guard on; everything else default). Every ``--period`` seconds the venue moves spot,
alternately down and up and back, each pull move sized (with a copy of the bot's volatility
model fed the same ticks) to take Up's fair value to 0.25 or 0.75, far past the quotes' bound
(fair -/+ band + margin), so the resting bid (down) or ask (up) must be pulled. The pull move's
RTDS frame is stamped when the proxy hands it to the bot's socket; its answer is the first byte of
the first ``DELETE /order(s)`` within ``--horizon`` that names the exposed quote (the venue
looks the cancelled ids up: the bid on a drop, the ask on a rise); the first cancel of any
quote is shown beside it. A pull move whose exposed quote is not cancelled in time is counted,
not timed. No stock column: the stock pipeline does not read spot.

Run: ``make latency`` (both scenarios; prints the tables; ``--scenario market|spot|all --moves N
--period S --dump --json OUT``). About 30 s of start-up plus ``moves * period`` per scenario.
The spot scenario has no stock or floor pipeline; its frames and cancels are stamped at the proxy
the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

STOCK_KEY = "0x" + "22" * 32  # throwaway
FLOOR_KEY = "0x" + "33" * 32  # throwaway
HOUSE = "0x0000000000000000000000000000000000000001"
HALF, LEVELS = 3, 4  # the house book: 4 levels a side, 3 ticks from its centre (6 ticks wide)
# (name, bid centre move, ask centre move) in ticks: whole-book shifts of 2 (past the refresh
# threshold) and 3 (momentum), and one side alone; each undone by the next.
CYCLE = (("up 3", 3, 3), ("down 3", -3, -3), ("ask in 2", 0, -2), ("ask out 2", 0, 2),
         ("bid in 2", 2, 0), ("bid out 2", -2, 0))  # fmt: skip
# The stock reactor answers the first touch change of a move and lets the rest of its frames pass.
STOCK_DEBOUNCE_S = 0.05
CASES = ("one order", "two-sided requote", "pure cancel")
SPOT_CASE = "spot move -> cancel"
SPOT0_USD = 100_000  # the reference price (btc/usd) the window's strike is set to
RTDS_NEEDLE = b'"crypto_prices_chainlink"'
# (name, direction) per period: a pull move, then back to the strike
SPOT_CYCLE = (("spot down", -1), ("back", 0), ("spot up", 1), ("back", 0))
SPOT_TARGET = 2500  # how far a pull move takes Up's fair value from 0.50 (price units: 0.25)


# -- the stamping proxy ------------------------------------------------------------------------

WS_DATA_OPCODES = frozenset({0, 1, 2})  # continuation, text, binary: control frames are not stamped
HEAD_LIMIT = 1 << 16  # an HTTP head longer than this is not parsed (stamping stops on that connection)


def payload_digest(payload: bytes) -> str:
    """What the venue and the proxy both record of a frame: blake2b of its payload (the text)."""
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


def _ws_header(buf: bytes | bytearray | memoryview) -> tuple[int, int, int, bytes] | None:
    """(header length, payload length, opcode, mask key or b"") of the WebSocket frame at the
    start of ``buf`` (RFC 6455 5.2), or None while ``buf`` holds less than the whole header."""
    if len(buf) < 2:
        return None
    b1 = buf[1]
    size = b1 & 0x7F
    hlen = 2 + (2 if size == 126 else 8 if size == 127 else 0) + (4 if b1 & 0x80 else 0)
    if len(buf) < hlen:
        return None
    if size == 126:
        size = int.from_bytes(buf[2:4], "big")
    elif size == 127:
        size = int.from_bytes(buf[2:10], "big")
    mask = bytes(buf[hlen - 4 : hlen]) if b1 & 0x80 else b""
    return hlen, size, buf[0] & 0x0F, mask


class FrameStamper:
    """The exchange -> client bytes of one connection. Until the end of the first response head
    nothing is known; a ``101`` makes it a WebSocket connection, whose frames are then followed
    across chunks (headers and payloads split anywhere, several frames per chunk); any other
    status means plain HTTP, not parsed further (nothing is timed on that direction).

    :meth:`feed` is called after the chunk was written to the client, with the time that write
    returned; every data frame whose last byte is in the chunk is appended to ``out`` as
    ``(t, opcode, payload)``."""

    __slots__ = ("mode", "head", "hdr", "remaining", "parts", "op", "mask")
    HEAD, WS, OFF = 0, 1, 2

    def __init__(self) -> None:
        self.mode = self.HEAD
        self.head = bytearray()
        self.hdr = bytearray()  # a frame header split across chunks
        self.remaining = -1  # payload bytes still to come; -1: between frames
        self.parts: list[bytes] = []
        self.op = 0
        self.mask = b""

    def feed(self, data: bytes, t: int, out: list[tuple[int, int, bytes]]) -> None:
        if self.mode == self.OFF:
            return
        if self.mode == self.HEAD:
            start = max(0, len(self.head) - 3)
            self.head += data
            end = self.head.find(b"\r\n\r\n", start)
            if end < 0:
                if len(self.head) > HEAD_LIMIT:
                    self.mode = self.OFF
                return
            status = bytes(self.head[:13])
            data = bytes(self.head[end + 4 :])
            self.head = bytearray()
            if not (status.startswith(b"HTTP/1.") and status[8:13] == b" 101 "):
                self.mode = self.OFF
                return
            self.mode = self.WS
        i, n = 0, len(data)
        while i < n:
            if self.remaining < 0:  # a header
                if self.hdr:
                    held = len(self.hdr)
                    buf: Any = self.hdr + data[i : i + 14 - held]
                else:
                    held = 0
                    buf = data[i : i + 14]
                h = _ws_header(buf)
                if h is None:  # everything left is the start of a header
                    self.hdr = bytearray(buf)
                    return
                hlen, self.remaining, self.op, self.mask = h
                i += hlen - held
                self.hdr = bytearray()
                self.parts = []
                if self.remaining == 0:
                    self._emit(t, out)
                continue
            take = min(self.remaining, n - i)
            self.parts.append(data[i : i + take])
            i += take
            self.remaining -= take
            if self.remaining == 0:
                self._emit(t, out)

    def _emit(self, t: int, out: list[tuple[int, int, bytes]]) -> None:
        self.remaining = -1
        if self.op in WS_DATA_OPCODES:
            payload = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
            if self.mask:  # server frames are never masked; a masked one is unmasked for its digest
                payload = bytes(b ^ self.mask[k & 3] for k, b in enumerate(payload))
            out.append((t, self.op, payload))
        self.parts = []


class RequestStamper:
    """The client -> exchange bytes of one connection: HTTP/1.1 requests, back to back on a
    keep-alive connection (``Content-Length`` or chunked bodies), until an upgrade to WebSocket
    (the client's frames are then not parsed).

    :meth:`feed` is called with the time the chunk arrived (taken before it was forwarded):
    each request whose first byte is in the chunk is stamped with it, and appended to ``out``
    as ``(t, method, path, POLY_ADDRESS, POLY_SIGNATURE)`` once its head is complete (a head
    split across chunks keeps the stamp of its first byte)."""

    __slots__ = ("mode", "head", "t0", "remaining", "line")
    HEAD, BODY, CHUNK_SIZE, CHUNK_DATA, TRAILER, OFF = range(6)

    def __init__(self) -> None:
        self.mode = self.HEAD
        self.head = bytearray()
        self.t0 = 0
        self.remaining = 0
        self.line = bytearray()  # a chunk-size or trailer line split across chunks

    def feed(self, data: bytes, t: int, out: list[tuple[int, str, str, str, str]]) -> None:
        i, n = 0, len(data)
        while i < n:
            mode = self.mode
            if mode == self.OFF:
                return
            if mode == self.HEAD:
                if not self.head:
                    while i < n and data[i] in b"\r\n":  # stray line breaks between requests (RFC 9112 2.2)
                        i += 1
                    if i == n:
                        return
                    self.t0 = t
                start = max(0, len(self.head) - 3)
                self.head += data[i:]
                end = self.head.find(b"\r\n\r\n", start)
                if end < 0:
                    if len(self.head) > HEAD_LIMIT:
                        self.mode = self.OFF
                    return
                i = n - (len(self.head) - end - 4)  # the first byte after the head in data
                head = bytes(self.head[:end])
                self.head = bytearray()
                self._request(head, out)
            elif mode == self.BODY:
                take = min(self.remaining, n - i)
                i += take
                self.remaining -= take
                if self.remaining == 0:
                    self.mode = self.HEAD
            elif mode == self.CHUNK_DATA:  # the chunk and its CRLF
                take = min(self.remaining, n - i)
                i += take
                self.remaining -= take
                if self.remaining == 0:
                    self.mode = self.CHUNK_SIZE
            else:  # CHUNK_SIZE or TRAILER: a line
                j = data.find(b"\n", i)
                if j < 0:
                    self.line += data[i:]
                    return
                line = bytes(self.line + data[i:j]).strip()
                self.line = bytearray()
                i = j + 1
                if mode == self.TRAILER:
                    if not line:
                        self.mode = self.HEAD
                    continue
                size = int(line.split(b";", 1)[0] or b"0", 16)
                if size == 0:
                    self.mode = self.TRAILER
                else:
                    self.remaining, self.mode = size + 2, self.CHUNK_DATA

    def _request(self, head: bytes, out: list[tuple[int, str, str, str, str]]) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        method = parts[0].decode("latin-1")
        path = parts[1].decode("latin-1").split("?", 1)[0] if len(parts) > 1 else ""
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        out.append((self.t0, method, path, headers.get("poly_address", "").lower(), headers.get("poly_signature", "")))
        if headers.get("upgrade", "").lower() == "websocket":
            self.mode = self.OFF
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self.mode = self.CHUNK_SIZE
        else:
            self.remaining = int(headers.get("content-length", "0") or 0)
            self.mode = self.BODY if self.remaining else self.HEAD


def _nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class StampingProxy:
    """A TCP relay on 127.0.0.1 in front of the exchange: every client connection gets its own
    to the exchange, bytes go both ways unchanged, and the two stampers above record what the
    harness times (one ``time.monotonic_ns`` clock, this process). Per-chunk work on the path
    is a clock read and a write; parsing happens after the chunk was handed on."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.frames: list[tuple[int, int, int, bytes]] = []  # (t, connection, opcode, payload)
        self.requests: list[tuple[int, int, str, str, str, str]] = []  # (t, conn, method, path, address, sig)
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self, port: int = 0) -> str:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _ClientSide(self), "127.0.0.1", port)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def records(self) -> dict[str, Any]:
        return {
            "frames": [(t, c, op, payload_digest(p)) for t, c, op, p in self.frames],
            "requests": [list(r) for r in self.requests],
        }


class _ClientSide(asyncio.Protocol):
    def __init__(self, proxy: StampingProxy) -> None:
        self.proxy = proxy
        self.up: _ExchangeSide | None = None
        self.transport: Any = None
        self.pending: list[bytes] = []  # what the client sent before the exchange side was open
        self.stamper = RequestStamper()
        self.reqs: list[tuple[int, str, str, str, str]] = []
        self.closed = False
        proxy.connections += 1
        self.id = proxy.connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        _nodelay(transport)
        asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, up = await loop.create_connection(lambda: _ExchangeSide(self), self.proxy.host, self.proxy.port)
        except OSError:
            self.transport.close()
            return
        self.up = up
        if self.closed:
            up.transport.close()
            return
        for chunk in self.pending:
            up.transport.write(chunk)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        t = time.monotonic_ns()  # stamp, then forward
        if self.up is not None:
            self.up.transport.write(data)
        else:
            self.pending.append(data)
        if self.stamper.mode != RequestStamper.OFF:
            self.stamper.feed(data, t, self.reqs)
            if self.reqs:
                self.proxy.requests.extend((r[0], self.id, *r[1:]) for r in self.reqs)
                self.reqs.clear()

    def pause_writing(self) -> None:
        if self.up is not None:
            self.up.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None:
            self.up.transport.resume_reading()

    def eof_received(self) -> bool:
        if self.up is not None and self.up.transport.can_write_eof():
            self.up.transport.write_eof()
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.up is not None:
            self.up.transport.close()


class _ExchangeSide(asyncio.Protocol):
    def __init__(self, client: _ClientSide) -> None:
        self.client = client
        self.transport: Any = None
        self.stamper = FrameStamper()
        self.out: list[tuple[int, int, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        _nodelay(transport)

    def data_received(self, data: bytes) -> None:
        self.client.transport.write(data)
        t = time.monotonic_ns()  # the frame is in the client's socket: its write returned
        if self.stamper.mode != FrameStamper.OFF:
            self.stamper.feed(data, t, self.out)
            if self.out:
                cid = self.client.id
                self.client.proxy.frames.extend((ft, cid, op, p) for ft, op, p in self.out)
                self.out.clear()

    def pause_writing(self) -> None:
        self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        self.client.transport.resume_reading()

    def eof_received(self) -> bool:
        if self.client.transport.can_write_eof():
            self.client.transport.write_eof()
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.transport.close()


async def proxy(args: argparse.Namespace) -> None:
    """``latency.py proxy --target URL --out FILE``: serve until SIGINT/SIGTERM, then write the
    records (frame digests, requests) to ``--out``."""
    target = urlsplit(args.target)
    px = StampingProxy(target.hostname or "127.0.0.1", target.port or 80)
    url = await px.start()
    print(json.dumps({"url": url}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await px.stop()
    Path(args.out).write_text(json.dumps(px.records()))


# -- the venue process -------------------------------------------------------------------------


async def start_exchange(middleware: Any) -> Any:
    """The embedded exchange, started with ``middleware`` on its aiohttp application and no rate
    limit that a benchmark would run into."""
    from aiohttp import web

    from active_quoting.exchange.server import Exchange, ExchangeConfig

    application = web.Application

    def with_middleware(*a: Any, **kw: Any) -> web.Application:
        return application(*a, middlewares=[middleware], **kw)

    web.Application = with_middleware  # type: ignore[misc,assignment]
    ex = Exchange(ExchangeConfig(order_rate=(1e6, 1e6), cancel_rate=(1e6, 1e6)))
    try:
        await ex.start()
    finally:
        web.Application = application  # type: ignore[misc]
    return ex


def stamp_first_bytes(first_byte: dict[object, int], clock: Any) -> None:
    """Stamp (``clock()``) the first bytes the venue's aiohttp server reads on a connection since
    its stamp was last taken (``first_byte.pop(request.protocol)`` in a middleware)."""
    from aiohttp import web_protocol

    original_received = web_protocol.RequestHandler.data_received

    def stamped_received(self: Any, data: bytes) -> None:
        if self not in first_byte:
            first_byte[self] = clock()
        original_received(self, data)

    web_protocol.RequestHandler.data_received = stamped_received  # type: ignore[method-assign]


async def venue(args: argparse.Namespace) -> None:
    from aiohttp import web

    from active_quoting.exchange import server as server_mod
    from active_quoting.exchange.engine import BUY, SCALE
    from active_quoting.exchange.flow import FlowConfig, MarketFlow
    from active_quoting.model import up_terms
    from active_quoting.venue.signing import OrderSigner

    clock = time.monotonic_ns
    first_byte: dict[object, int] = {}
    # (ns, method, path, address, orders posted, lane, the Up-terms quotes a cancel names: "ask,bid",
    # POLY_SIGNATURE: how the harness finds the request among the proxy's)
    requests: list[tuple[int, str, str, str, int, bool, str, str]] = []
    # (ns the frame was handed to send, "market kind", digest of the frame's text: the proxy's key)
    moves: list[list[Any]] = []
    o_up: dict[str, str] = {}  # market -> its Up token
    armed: list[tuple[tuple[bytes, ...], str]] = []  # (what its frame contains, all of it; the move) being written

    stamp_first_bytes(first_byte, clock)

    @web.middleware
    async def attribute(request: web.Request, handler: Any) -> web.StreamResponse:
        t = first_byte.pop(request.protocol, 0)
        if (request.method, request.path) in (("POST", "/order"), ("POST", "/orders"), ("DELETE", "/order"),
                                              ("DELETE", "/orders")):  # fmt: skip
            body = await request.read()
            # a body that came in a later read stamped the connection again: that stamp is not
            # the next request's first byte
            first_byte.pop(request.protocol, None)
            n = 0
            quotes = ""
            if request.method == "POST":
                n = len(json.loads(body)) if request.path == "/orders" else 1
            else:  # which of our quotes the cancel pulls (the spot scenario checks the exposed one)
                ids = json.loads(body) if request.path == "/orders" else [json.loads(body).get("orderID")]
                named = [ex.engine.orders.get(i) for i in ids if isinstance(i, str)]
                quotes = ",".join(sorted({up_terms(o.token == o_up.get(o.market, ""), o.side, o.price)[0]
                                          for o in named if o is not None}))  # fmt: skip
            sender = request.headers.get("POLY_ADDRESS", "").lower()
            lane = request.headers.get("User-Agent", "") == "active-quoting"  # venue/lane.py's requests
            signature = request.headers.get("POLY_SIGNATURE", "")
            requests.append((t, request.method, request.path, sender, n, lane, quotes, signature))
        return await handler(request)

    # A move's frame is recognised when it is queued for a subscriber (``Exchange._send``: every
    # market and RTDS frame, whatever the write path behind it) and stamped, the old way, when it
    # is handed to the socket: by ``_send_text`` (one ``send_str`` per frame) or, where the
    # exchange writes the due frames itself, ``_text_frame`` (called just before that write).
    # Until one of them sees it, the move keeps the time it was queued.
    pending: dict[bytes, list[Any]] = {}
    original_send = server_mod.Exchange._send

    def stamped_send(self: Any, ws: Any, frame: bytes, delay_s: float = 0.0) -> None:
        if armed and all(needle in frame for needle in armed[0][0]):
            label = armed.pop()[1]
            entry = [clock(), label, payload_digest(frame)]
            moves.append(entry)
            pending[frame] = entry
        original_send(self, ws, frame, delay_s)

    server_mod.Exchange._send = stamped_send  # type: ignore[method-assign]  # before the instance (RTDS binds it)
    original_send_text = server_mod._send_text

    async def stamped_send_text(ws: Any, text: str) -> None:
        if pending:
            entry = pending.pop(text.encode(), None)
            if entry is not None:
                entry[0] = clock()
        await original_send_text(ws, text)

    server_mod._send_text = stamped_send_text  # type: ignore[assignment]
    original_text_frame = getattr(server_mod, "_text_frame", None)
    if original_text_frame is not None:

        def stamped_text_frame(payload: bytes) -> bytes:
            if pending:
                entry = pending.pop(payload, None)
                if entry is not None:
                    entry[0] = clock()
            return original_text_frame(payload)

        server_mod._text_frame = stamped_text_frame
    ex = await start_exchange(attribute)

    flow = MarketFlow(ex, FlowConfig(assets=("btc", "eth", "sol"), window_s=args.window_seconds, noise_takers_per_s=0.0,
                                     jump_prob_per_s=0.0))  # fmt: skip
    now = time.time()
    flow.ensure_windows(now)  # the windows (Gamma records, markets); their books are ours to move
    ours_m, stock_m, floor_m = (next(w.market for w in flow.windows if w.asset == a and w.start <= now < w.end)
                                for a in ("btc", "eth", "sol"))  # fmt: skip
    tick = ours_m.tick
    pipelines = (ours_m, stock_m, floor_m)
    o_up.update({m.condition_id: m.up for m in pipelines})
    house: dict[str, dict[tuple[int, int], str]] = {m.condition_id: {} for m in pipelines}

    async def shift(m: Any, bid_center: int, ask_center: int, kind: str = "") -> None:
        """Move one market's house book (bids from ``bid_center - HALF``, asks from
        ``ask_center + HALF``, ``LEVELS`` each) one order at a time, as the venue publishes: new
        levels first (the most aggressive first), then the cancels. The frame of the first step
        that moves the house's Up touch is the move's frame (armed for the stamp)."""
        mine = house[m.condition_id]
        wanted = {(0, bid_center - (HALF + i) * tick) for i in range(LEVELS)}
        wanted |= {(1, ask_center + (HALF + i) * tick) for i in range(LEVELS)}

        def top() -> tuple[int, int]:
            return max((p for s, p in mine if s == 0), default=0), min((p for s, p in mine if s == 1), default=SCALE)

        before = top()
        steps: list[tuple[str, tuple[int, int]]] = [
            ("place", k) for k in sorted(wanted - set(mine), key=lambda k: -k[1] if k[0] == 0 else k[1])
        ]
        steps += [("cancel", k) for k in mine if k not in wanted]
        for op, key in steps:
            if op == "place":
                side, price = key
                token, limit = (m.up, price) if side == 0 else (m.down, SCALE - price)
                order = flow._order(HOUSE, m, token, BUY, limit, 20_000_000)
                result = ex.engine.place(order, int(time.time() * 1000))
                mine[key] = order.id
            else:
                result = ex.engine.cancel(mine.pop(key))[2]
            if kind and top() != before:
                armed[:] = [((b'"price_change"', m.condition_id.encode()), f"{m.condition_id} {kind}")]
                kind = ""
            ex._publish(result)
            await asyncio.sleep(0)  # the frame is written before the next step

    center = SCALE // 2
    for m in pipelines:
        await shift(m, center, center)
    stock_address = OrderSigner(STOCK_KEY).address.lower()
    floor_address = OrderSigner(FLOOR_KEY).address.lower()
    spot = args.scenario == "spot"
    if spot:
        from active_quoting.exchange.rtds import format_units
        from active_quoting.venue.spot_feed import SPOT_SCALE

        strike = SPOT0_USD * SPOT_SCALE
        for g in ex.gamma_markets:  # the price to beat, as Gamma serves it once the window runs
            if g["conditionId"] == ours_m.condition_id:
                g["eventMetadata"] = {"priceToBeat": format_units(strike)}
        ticker = SpotTicker(ex, strike, armed)
        ticker_task = asyncio.get_running_loop().create_task(ticker.run())
    print(json.dumps({"clob": ex.clob_url, "gamma": ex.gamma_url, "up": stock_m.up, "down": stock_m.down,
                      "floor_up": floor_m.up, "stock": stock_address, "floor": floor_address}), flush=True)  # fmt: skip

    def ours_live() -> bool:
        return bool(ex.engine.live_orders(market=ours_m.condition_id, account=None)) and any(
            o.account != HOUSE for o in ex.engine.live_orders(market=ours_m.condition_id)
        )

    deadline = time.monotonic() + args.ready_timeout
    while not (ours_live() and (ex.rtds.active if spot else len(ex.market_sockets) >= 3)):
        if time.monotonic() > deadline:
            print(json.dumps({"error": "the bot never quoted (or the stock or floor reactor never subscribed)"}),
                  flush=True)  # fmt: skip
            await ex.stop()
            return
        await asyncio.sleep(0.1)
    await asyncio.sleep(args.period)

    if spot:
        end_ms = int(next(w.end for w in flow.windows if w.market is ours_m) * 1000)
        for i in range(args.moves):
            kind, direction = SPOT_CYCLE[i % len(SPOT_CYCLE)]
            ticker.move(direction, end_ms, f"{ours_m.condition_id} {kind}" if direction else "")
            await asyncio.sleep(args.period)
        ticker.stop = True
        await ticker_task
    bid_c = ask_c = center
    for i in range(0 if spot else args.moves):
        kind, d_bid, d_ask = CYCLE[i % len(CYCLE)]
        bid_c += d_bid * tick
        ask_c += d_ask * tick
        for m in pipelines:  # a third of a period apart: each pipeline has the machine to itself
            await shift(m, bid_c, ask_c, kind)
            await asyncio.sleep(args.period / 3)
    markets = {"ours": ours_m.condition_id, "stock": stock_m.condition_id, "floor": floor_m.condition_id}
    Path(args.out).write_text(json.dumps({"moves": moves, "requests": requests, "stock": stock_address,
                                          "floor": floor_address, "markets": markets,
                                          "sized": ticker.sized if spot else []}))  # fmt: skip
    print(json.dumps({"done": len(moves)}), flush=True)
    stop = asyncio.Event()  # served until the harness has stopped the bot
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await ex.stop()


class SpotTicker:
    """The btc reference price on the venue's RTDS socket: one Chainlink tick a second (the
    topic's rate; a price the bot sees stop for 5 s is stale), the value changed by
    :meth:`move`. A copy of the bot's volatility model (``fair_value`` defaults) takes the same
    ticks, so a pull move can be sized to a fair value whatever the estimate has become."""

    def __init__(self, ex: Any, strike: int, armed: list[tuple[tuple[bytes, ...], str]]) -> None:
        from active_quoting import core
        from active_quoting.strategy.config import FairValueConfig

        self.cfg = FairValueConfig()
        ppm = 1_000_000
        impl = core.load(core.IMPL)  # the implementation the bot's process selects too
        self.vol = impl.VolEstimator(self.cfg.vol_half_life_seconds * 1000, int(self.cfg.vol_floor * ppm),
                                     int(self.cfg.vol_initial * ppm))  # fmt: skip
        self.fair_up = impl.fair_up
        self.ex, self.strike, self.value, self.armed = ex, strike, strike, armed
        self.label = ""
        self.stop = False
        self.sized: list[tuple[int, int, int]] = []  # per pull move: (spot, sigma ppm, fair aimed at)

    def move(self, direction: int, end_ms: int, label: str) -> None:
        """The next tick moves spot: back to the strike (0), or far enough down (-1) / up (+1)
        that Up's fair value is 0.50 -/+ ``SPOT_TARGET`` when the tick arrives (about 1 s on)."""
        if direction == 0:
            self.value = self.strike
            return
        tau = end_ms - int(time.time() * 1000) - 1000
        aim = 5000 + direction * SPOT_TARGET
        sigma = self.vol.sigma_ppm
        lo, hi = self.strike // 2, self.strike * 2  # fair is monotone in spot: bisect
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.fair_up(mid, self.strike, sigma, tau, 0, 0, 0, self.cfg.horizon_ms)[0] < aim:
                lo = mid
            else:
                hi = mid
        self.value = hi
        self.label = label
        self.sized.append((hi, sigma, aim))

    async def run(self) -> None:
        while not self.stop:
            await asyncio.sleep(1.2 - time.time() % 1.0)  # 0.2 s into each second: one tick a second
            now = time.time()
            if self.label:
                self.armed[:] = [((RTDS_NEEDLE,), self.label)]
                self.label = ""
            if self.ex.rtds.active:
                self.vol.update(self.value, int(now) * 1000)  # the Chainlink payload's second
            self.ex.rtds.publish("btc", self.value, now)


# -- the stock pipeline ------------------------------------------------------------------------


def stock(args: argparse.Namespace) -> None:
    import aiohttp
    from py_clob_client_v2.client import ClobClient
    from py_clob_client_v2.clob_types import ApiCreds, OrderArgsV2, PostOrdersV2Args

    client = ClobClient(args.clob, chain_id=137, key=STOCK_KEY)
    creds = client.create_or_derive_api_key()
    client.set_api_creds(ApiCreds(creds.api_key, creds.api_secret, creds.api_passphrase))
    for token in (args.up, args.down):  # warm caches: no lookups inside the timed path
        client._ClobClient__tick_sizes[token] = "0.01"
        client._ClobClient__neg_risk[token] = False
    client._ClobClient__cached_version = 2
    held: list[str] = []

    quiet_until = [0.0]

    def react(book: dict[str, dict[str, str]], last: list[float]) -> None:
        best_bid = max((float(p) for p in book["bids"]), default=0.0)
        best_ask = min((float(p) for p in book["asks"]), default=1.0)
        old_bid, old_ask = last
        last[:] = [best_bid, best_ask]
        if not old_bid or (best_bid == old_bid and best_ask == old_ask) or time.monotonic() < quiet_until[0]:
            return
        quiet_until[0] = time.monotonic() + STOCK_DEBOUNCE_S
        if best_bid > old_bid:
            o = client.create_order(OrderArgsV2(token_id=args.up, price=round(best_bid - 0.1, 2), size=5, side="BUY"))
            held.append(client.post_order(o, post_only=True)["orderID"])
        elif best_ask < old_ask:
            a = client.create_order(OrderArgsV2(token_id=args.up, price=round(best_bid - 0.1, 2), size=5, side="BUY"))
            b = client.create_order(OrderArgsV2(token_id=args.down, price=round(1 - best_ask - 0.1, 2), size=5,
                                                side="BUY"))  # fmt: skip
            out = client.post_orders([PostOrdersV2Args(order=a, orderType="GTC"),
                                      PostOrdersV2Args(order=b, orderType="GTC")], post_only=True)  # fmt: skip
            held.extend(r["orderID"] for r in out if r.get("orderID"))
        elif held:
            client.cancel_orders(list(held))
            held.clear()

    async def run() -> None:
        book: dict[str, dict[str, str]] = {"bids": {}, "asks": {}}
        last = [0.0, 1.0]
        async with aiohttp.ClientSession() as s, s.ws_connect(args.clob.replace("http", "ws", 1) + "/ws/market") as ws:
            await ws.send_str(json.dumps({"assets_ids": [args.up], "type": "market"}))
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT or not frame.data.startswith(("{", "[")):
                    continue
                data = json.loads(frame.data)
                for msg in data if isinstance(data, list) else [data]:
                    if msg.get("event_type") == "book" and msg.get("asset_id") == args.up:
                        book = {"bids": {lv["price"]: lv["size"] for lv in msg["bids"]},
                                "asks": {lv["price"]: lv["size"] for lv in msg["asks"]}}  # fmt: skip
                        react(book, last)
                    elif msg.get("event_type") == "price_change":
                        for ch in msg["price_changes"]:
                            if ch["asset_id"] != args.up:
                                continue
                            side = book["bids"] if ch["side"] == "BUY" else book["asks"]
                            if float(ch["size"]) == 0:
                                side.pop(ch["price"], None)
                            else:
                                side[ch["price"]] = ch["size"]
                        react(book, last)

    asyncio.run(run())


# -- the floor pipeline ------------------------------------------------------------------------


def floor(args: argparse.Namespace) -> None:
    """The harness's own cost: an instant reactor on the sol market. picows reads the market
    stream, ``orjson`` decodes a frame, and on a change of the Up touch a prebuilt, signed
    ``DELETE /orders`` (an unknown id) is written to a pre-opened keep-alive connection; the
    next request is built after the bytes are out. Nothing real can answer a frame faster
    through the same venue, proxy and loopback."""
    import uvloop

    uvloop.run(_floor(args))


async def _floor(args: argparse.Namespace) -> None:
    import orjson
    from picows import WSListener, WSMsgType, ws_connect
    from py_clob_client_v2.client import ClobClient

    from active_quoting.venue.signing import OrderSigner

    loop = asyncio.get_running_loop()
    creds = await loop.run_in_executor(None, lambda: ClobClient(args.clob, chain_id=137, key=FLOOR_KEY)
                                       .create_or_derive_api_key())  # fmt: skip
    address = OrderSigner(FLOOR_KEY).address
    secret = base64.urlsafe_b64decode(creds.api_secret)
    url = urlsplit(args.clob)
    body = json.dumps(["0x" + "00" * 32], separators=(",", ":")).encode()

    def build() -> bytes:
        ts = str(int(time.time()))
        sig = base64.urlsafe_b64encode(hmac.new(secret, f"{ts}DELETE/orders".encode() + body, hashlib.sha256)
                                       .digest()).decode()  # fmt: skip
        return (f"DELETE /orders HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nPOLY_ADDRESS: {address}\r\nPOLY_SIGNATURE: {sig}\r\n"
                f"POLY_TIMESTAMP: {ts}\r\nPOLY_API_KEY: {creds.api_key}\r\nPOLY_PASSPHRASE: "
                f"{creds.api_passphrase}\r\n\r\n").encode() + body  # fmt: skip

    class Lane(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            _nodelay(transport)

        def data_received(self, data: bytes) -> None:
            pass  # the answers: not_canceled, not timed

        def connection_lost(self, exc: Exception | None) -> None:
            lost.set_result(None) if not lost.done() else None

    lost: asyncio.Future[None] = loop.create_future()
    _, lane = await loop.create_connection(Lane, url.hostname, url.port)
    ready = [build()]
    last: list[tuple[float, float] | None] = [None]
    up = args.up
    quiet_until = [0]
    clock = time.monotonic_ns
    sends: list[tuple[int, int, int]] = []  # (frame read, write called, write returned): where its time goes

    def send(t_read: int) -> None:
        t_write = clock()
        lane.transport.write(ready[0])
        sends.append((t_read, clock(), t_write))
        quiet_until[0] = t_read + int(STOCK_DEBOUNCE_S * 1e9)  # a move's first touch change only, as the stock
        ready[0] = build()  # after the bytes are out

    class Listener(WSListener):  # type: ignore[misc]
        def on_ws_connected(self, transport: Any) -> None:
            transport.send(WSMsgType.TEXT, json.dumps({"assets_ids": [up], "type": "market"}).encode())

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            t_read = clock()
            if frame.msg_type != WSMsgType.TEXT:
                return
            data = orjson.loads(frame.get_payload_as_bytes())
            for msg in data if isinstance(data, list) else (data,):
                kind = msg.get("event_type")
                if kind == "price_change":
                    for ch in msg["price_changes"]:
                        if ch["asset_id"] == up:
                            top = (float(ch["best_bid"]), float(ch["best_ask"]))
                            if last[0] is not None and top != last[0] and t_read >= quiet_until[0]:
                                send(t_read)
                            last[0] = top
                            break
                elif kind == "book" and msg.get("asset_id") == up:
                    last[0] = (max((float(lv["price"]) for lv in msg["bids"]), default=0.0),
                               min((float(lv["price"]) for lv in msg["asks"]), default=1.0))  # fmt: skip

        def on_ws_disconnected(self, transport: Any) -> None:
            lost.set_result(None) if not lost.done() else None

    ws_url = args.clob.replace("http", "ws", 1) + "/ws/market"
    transport, _ = await ws_connect(Listener, ws_url)
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.set_result(None) if not stop.done() else None)
    await asyncio.wait([stop, lost], return_when=asyncio.FIRST_COMPLETED)
    transport.disconnect()
    lane.transport.close()
    if args.out:
        Path(args.out).write_text(json.dumps(sends))


# -- a round trip on each REST path ------------------------------------------------------------


def rtt(args: argparse.Namespace) -> int:
    """``DELETE /orders`` round trips (an unknown id: the venue answers not_canceled) against
    ``active-quoting exchange`` in its own process, through the order lane and through aiohttp."""
    import uvloop

    from active_quoting.venue.rest import RestClient
    from active_quoting.venue.signing import OrderSigner

    script = Path(sys.executable).parent / "active-quoting"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "active_quoting.cli"]
    venue_proc = subprocess.Popen([*command, "exchange", "--duration", "0", "--assets", "btc"], stdout=subprocess.PIPE)
    try:
        assert venue_proc.stdout is not None
        url = json.loads(venue_proc.stdout.readline())["clob"]

        rest_counts: dict[str, int] = {}

        async def measure(lane: bool) -> list[int]:
            rest = RestClient(url, OrderSigner(STOCK_KEY), order_lane=lane)
            await rest.create_or_derive_api_key()
            await rest.start()
            out: list[int] = []
            try:
                for i in range(args.rounds + 20):
                    t = time.perf_counter_ns()
                    await rest.cancel_orders(["0x" + "00" * 32])
                    if i >= 20:  # warm
                        out.append(time.perf_counter_ns() - t)
                    await asyncio.sleep(0.015)  # under the venue's cancel rate limit (80/s): no 429 waits
            finally:
                await rest.close()
                rest_counts.clear()
                rest_counts.update(rest.counts)
            return out

        for name, lane in (("order lane", True), ("aiohttp", False)):
            samples = uvloop.run(measure(lane))
            print(f"{name:12} DELETE /orders round trip: p50 {statistics.median(samples) / 1000:7.0f} us  "
                  f"p90 {pct(samples, 0.9):7.0f}  p99 {pct(samples, 0.99):7.0f}  ({len(samples)} rounds, "
                  f"429s: {rest_counts.get('rate_limited', 0)})")  # fmt: skip
    finally:
        venue_proc.send_signal(signal.SIGINT)
        venue_proc.wait(30)
    return 0


# -- the harness -------------------------------------------------------------------------------


def classify(
    moves: list[tuple[int, str]], requests: list[tuple[int, str, str, str, int]], who: Any, horizon_ns: int
) -> dict[str, Any]:
    """Per move, what the pipeline sent within ``horizon_ns`` of it and when (see the module
    docstring); requests later than that (a cooldown ending, a timer) belong to no move."""
    out: dict[str, Any] = {c: [] for c in CASES}
    out["first request"] = []
    out["unanswered"] = 0
    bounds = [t for t, _ in moves] + [1 << 62]
    for i, (t0, _) in enumerate(moves):
        end = min(bounds[i + 1], t0 + horizon_ns)
        mine = sorted(r for r in requests if who(r[3]) and t0 <= r[0] < end)
        if not mine:
            out["unanswered"] += 1
            continue
        out["first request"].append(mine[0][0] - t0)
        posted = 0
        second = first_post = None
        for t, method, _, _, n in mine:
            if method == "POST":
                first_post = first_post if first_post is not None else t
                posted += n
                if posted >= 2 and second is None:
                    second = t
        if posted == 0:
            out["pure cancel"].append(mine[0][0] - t0)
        elif posted == 1:
            out["one order"].append(first_post - t0)  # type: ignore[operator]
        else:
            out["two-sided requote"].append(second - t0)  # type: ignore[operator]
    return out


ORDER_PATHS = frozenset({("POST", "/order"), ("POST", "/orders"), ("DELETE", "/order"), ("DELETE", "/orders")})


def join(
    venue: dict[str, Any], proxy: dict[str, Any]
) -> tuple[list[tuple[int, str]], list[tuple[Any, ...]], dict[str, int]]:
    """The venue's moves and order/cancel requests on the proxy's clock.

    A move is the first frame the proxy handed to a client with the digest of the move frame's
    text, at or after the venue's own stamp (same ``CLOCK_MONOTONIC``); a request is the
    proxy's request with the same ``POLY_SIGNATURE`` (the first not yet taken), or, with no
    signature to go by, the next proxy request of the same (method, path, sender) in order of
    arrival (counted: ``fallbacks``). Moves and requests the proxy has no record of are dropped
    and counted. Returns ``(moves, requests, counts)``: moves as ``(t, "market kind")``,
    requests as the venue's first seven fields with the proxy's stamp."""
    by_digest: dict[str, list[int]] = {}
    for t, _conn, _op, digest in proxy["frames"]:
        by_digest.setdefault(digest, []).append(t)
    counts = {"moves": 0, "moves unmatched": 0, "requests": 0, "by signature": 0, "fallbacks": 0,
              "requests unmatched": 0}  # fmt: skip
    moves: list[tuple[int, str]] = []
    for tv, label, digest in venue["moves"]:
        stamps = [t for t in by_digest.get(digest, ()) if t >= tv]
        if stamps:
            moves.append((min(stamps), label))
            counts["moves"] += 1
        else:
            counts["moves unmatched"] += 1
    by_sig: dict[str, list[int]] = {}
    by_key: dict[tuple[str, str, str], list[int]] = {}
    for i, (_t, _conn, method, path, _address, sig) in enumerate(proxy["requests"]):
        if sig and (method, path) in ORDER_PATHS:
            by_sig.setdefault(sig, []).append(i)
    taken: set[int] = set()
    stamped: list[tuple[Any, ...] | None] = []
    later: list[int] = []  # venue requests left for the fallback
    for r in venue["requests"]:
        sig = r[7] if len(r) > 7 else ""
        queue = by_sig.get(sig) if sig else None
        if queue:
            i = queue.pop(0)
            taken.add(i)
            stamped.append((proxy["requests"][i][0], *r[1:7]))
            counts["by signature"] += 1
        else:
            stamped.append(None)
            later.append(len(stamped) - 1)
    for i, (_t, _conn, method, path, address, _sig) in enumerate(proxy["requests"]):
        if i not in taken and (method, path) in ORDER_PATHS:
            by_key.setdefault((method, path, address), []).append(i)
    for k in later:
        r = venue["requests"][k]
        queue = by_key.get((r[1], r[2], r[3]))
        if queue:
            stamped[k] = (proxy["requests"][queue.pop(0)][0], *r[1:7])
            counts["fallbacks"] += 1
        else:
            counts["requests unmatched"] += 1
    requests = [r for r in stamped if r is not None]
    counts["requests"] = len(requests)
    return moves, requests, counts


def floor_breakdown(
    moves: list[tuple[int, str]], requests: list[tuple[Any, ...]], sends: list[list[int]], who: Any, horizon_ns: int
) -> dict[str, list[int]]:
    """Where the floor's time goes, per move it answered: the proxy's frame stamp -> the floor's
    read of the frame (the proxy's write, loopback, the reader's wake-up and frame parse), the
    read -> the request written (decode, decide; then the write call itself, shown apart: on
    loopback the kernel runs the receiver's TCP path and wakes the proxy inside it), the write
    -> the proxy's stamp of its first byte (the proxy's wake-up). All on ``CLOCK_MONOTONIC``."""
    out: dict[str, list[int]] = {"frame -> read": [], "read -> written": [], "of which the write call": [],
                                 "written -> stamped": []}  # fmt: skip
    mine = sorted(r[0] for r in requests if who(r[3]))
    for t0, _ in moves:
        read = next((s for s in sends if t0 <= s[0] < t0 + horizon_ns), None)
        stamped = next((t for t in mine if read is not None and t >= read[1]), None)
        if read is None or stamped is None or stamped >= t0 + horizon_ns:
            continue
        out["frame -> read"].append(read[0] - t0)
        out["read -> written"].append(read[1] - read[0])
        if len(read) > 2:
            out["of which the write call"].append(read[1] - read[2])
        out["written -> stamped"].append(stamped - read[1])
    return out


def pct(samples: list[int], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] / 1000 if s else float("nan")


def table(ours: dict[str, Any], theirs: dict[str, Any], base: dict[str, Any] | None = None) -> str:
    """Per case: ours, stock, the floor pipeline (when given) and stock/ours at p50."""
    cols = [("ours", ours), ("stock", theirs)] + ([("floor", base)] if base is not None else [])
    head = f"{'case':20}" + "".join(f" {'n':>4} {name + ' p50':>9} {'p90':>8} {'p99':>8} " for name, _ in cols)
    head += f" {'stock/ours':>10}"
    lines = [head, "-" * len(head)]
    for case in (*CASES, "first request"):
        row = f"{case:20}"
        for _, c in cols:
            a = c[case]
            a50 = statistics.median(a) / 1000 if a else float("nan")
            row += f" {len(a):>4} {a50:>9.0f} {pct(a, 0.9):>8.0f} {pct(a, 0.99):>8.0f} "
        a, b = ours[case], theirs[case]
        ratio = f"{statistics.median(b) / statistics.median(a):9.2f}x" if a and b else f"{'-':>10}"
        lines.append(f"{row} {ratio}")
    lines.append("moves unanswered: " + ", ".join(f"{name} {c['unanswered']}" for name, c in cols))
    return "\n".join(lines)


class NoWindow(RuntimeError):
    """No window length leaves the run the time it needs (a run longer than ~25 minutes)."""


def pick_window(now: float, need_s: float) -> int:
    """A window length whose current window leaves ``need_s`` seconds of quoting (the bot stops
    ``stop_before_end`` seconds before a window's end), so the bot quotes it for the whole run.
    Windows start at multiples of their length since the epoch: lengths that are all multiples
    of 600 s end together every 10 h (their least common multiple, e.g. 12:00 UTC on 2026-11-30),
    so the candidates step by 60 s, and none is taken without the time."""
    from active_quoting.options import stop_before_end

    for w in range(3600, 1799, -60):
        if w - now % w > need_s + stop_before_end(w):
            return w
    raise NoWindow(f"no window length in 1800-3600 s leaves {need_s:.0f} s of quoting now: shorten the run")


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop the harness's processes, the last started first (SIGINT: each shuts down as a user's
    Ctrl-C would; killed after 40 s)."""
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        try:
            p.wait(40)
        except subprocess.TimeoutExpired:
            p.kill()


def pinning(args: argparse.Namespace) -> tuple[Any, Any]:
    """CPU affinity for the processes (``--pin``, the default on two or more CPUs): the venue and
    the stamping proxy share CPU 0, the pipelines (the bot, the stock, the floor; they react a
    third of a period apart) CPU 1 - as on a trading host, where the venue is another machine
    and the bot has a core of its own. Unpinned, the kernel often wakes the venue on the bot's
    CPU when the bot writes a request, and the bot's next write waits for the venue's handler."""
    cpus = sorted(os.sched_getaffinity(0))
    if not args.pin or len(cpus) < 2:
        return None, None

    def on(cpu: int) -> Any:
        return lambda: os.sched_setaffinity(0, {cpu})

    return on(cpus[0]), on(cpus[1])


def run_scenario(args: argparse.Namespace, scenario: str) -> tuple[dict[str, Any], dict[str, Any], Path] | None:
    """The venue, the stamping proxy in front of it, the bot and (market scenario) the stock and
    floor pipelines, each in its own process, until the venue has made its moves; the venue's
    record of moves and requests, and the proxy's."""
    here = Path(__file__).resolve()
    py = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix=f"aq-latency-{scenario}-"))
    out, px_out = tmp / "venue.json", tmp / "proxy.json"
    need = 60 + args.moves * args.period
    try:
        window = pick_window(time.time(), need + 120)
    except NoWindow as e:
        print(f"latency harness: {e}", file=sys.stderr)
        return None
    procs: list[subprocess.Popen[bytes]] = []
    env = dict(os.environ)
    venue_cpu, pipeline_cpu = pinning(args)
    try:
        v = subprocess.Popen([py, str(here), "venue", "--out", str(out), "--moves", str(args.moves), "--period",
                              str(args.period), "--window-seconds", str(window), "--scenario", scenario],
                             stdout=subprocess.PIPE, preexec_fn=venue_cpu)  # fmt: skip
        procs.append(v)
        assert v.stdout is not None
        info = json.loads(v.stdout.readline())
        px = subprocess.Popen([py, str(here), "proxy", "--target", info["clob"], "--out", str(px_out)],
                              stdout=subprocess.PIPE, stderr=open(tmp / "proxy.log", "wb"),
                              preexec_fn=venue_cpu)  # fmt: skip
        procs.append(px)
        assert px.stdout is not None
        clob = json.loads(px.stdout.readline())["url"]  # every pipeline's CLOB and WebSocket traffic
        script = Path(py).parent / "active-quoting"  # the command a user types, from this environment
        command = [str(script)] if script.exists() else [py, "-m", "active_quoting.cli"]
        strategy = ["--strategy", "spot"] if scenario == "spot" else []
        bot = subprocess.Popen([*command, "run", "--exchange-url", clob, "--gamma-url",
                                info["gamma"], "--assets", "btc", "--window-seconds", str(window), "--duration",
                                str(int(need + 60)), "--db", str(tmp / "run.db"), *strategy],
                               stdout=subprocess.DEVNULL, stderr=open(tmp / "bot.log", "wb"), env=env,
                               preexec_fn=pipeline_cpu)  # fmt: skip
        procs.append(bot)
        if scenario == "market":
            st = subprocess.Popen([py, str(here), "stock", "--clob", clob, "--up", info["up"], "--down",
                                   info["down"]], stderr=open(tmp / "stock.log", "wb"), preexec_fn=pipeline_cpu)  # fmt: skip
            procs.append(st)
            fl = subprocess.Popen([py, str(here), "floor", "--clob", clob, "--up", info["floor_up"], "--out",
                                   str(tmp / "floor.json")],
                                  stderr=open(tmp / "floor.log", "wb"), preexec_fn=pipeline_cpu)  # fmt: skip
            procs.append(fl)
        done = json.loads(v.stdout.readline() or "{}")
        if "done" not in done:
            print(f"latency harness ({scenario}): venue says {done}; logs in {tmp}", file=sys.stderr)
            return None
    finally:
        # the floor and the stock, then the bot (which cancels its orders through the proxy), then
        # the proxy (which writes its records), then the venue
        stop_all(procs)
    if not px_out.exists():
        print(f"latency harness ({scenario}): the proxy wrote no records; logs in {tmp}", file=sys.stderr)
        return None
    return json.loads(out.read_text()), json.loads(px_out.read_text()), tmp


def classify_spot(moves: list[tuple[int, str]], requests: list[tuple[int, str, str, str, int, bool, str]],
                  horizon_ns: int, who: Any) -> dict[str, Any]:  # fmt: skip
    """Per pull move, within ``horizon_ns``: the first ``DELETE`` of the bot's that pulls the
    exposed quote (the bid on a drop, the ask on a rise: the case), the first cancel of any
    quote, and the first request of any kind; a pull move whose exposed quote is not cancelled
    in time is counted, not timed."""
    out: dict[str, Any] = {SPOT_CASE: [], "first cancel": [], "first request": [], "unanswered": 0}
    bounds = [t for t, _ in moves] + [1 << 62]
    for i, (t0, kind) in enumerate(moves):
        end = min(bounds[i + 1], t0 + horizon_ns)
        mine = sorted(r for r in requests if who(r[3]) and t0 <= r[0] < end)
        if mine:
            out["first request"].append(mine[0][0] - t0)
        cancels = [r for r in mine if r[1] == "DELETE"]
        if cancels:
            out["first cancel"].append(cancels[0][0] - t0)
        exposed = "bid" if kind == "spot down" else "ask"  # the quote fair value moved through
        pulled = [r[0] for r in cancels if exposed in r[6].split(",")]
        if pulled:
            out[SPOT_CASE].append(pulled[0] - t0)
        else:
            out["unanswered"] += 1
    return out


def _dump(
    moves: list[tuple[int, str]], requests: list[tuple[Any, ...]], stock_address: str, floor_address: str
) -> None:
    events = [(t, f"move {k}") for t, k in moves]
    who = {stock_address: "stock", floor_address: "floor"}
    events += [(r[0], f"  {who.get(r[3], 'ours '):5} {r[1]} {r[2]} {r[4]} {r[6]}") for r in requests]
    t0 = moves[0][0] if moves else 0
    for t, e in sorted(events):
        print(f"{(t - t0) / 1e6:12.3f} ms  {e}")


def spot_table(spot: dict[str, Any]) -> str:
    head = f"{'case':20} {'n':>4} {'p50':>8} {'p90':>8} {'p99':>8}"
    lines = [head, "-" * len(head)]
    for case in (SPOT_CASE, "first cancel", "first request"):
        a = spot[case]
        a50 = statistics.median(a) / 1000 if a else float("nan")
        lines.append(f"{case:20} {len(a):>4} {a50:>8.0f} {pct(a, 0.9):>8.0f} {pct(a, 0.99):>8.0f}")
    lines.append(f"pull moves whose exposed quote (the bid on a drop, the ask on a rise) was not cancelled within the "
                 f"horizon: {spot['unanswered']}")
    return "\n".join(lines)


def _p50(samples: list[int]) -> str:
    return f"{statistics.median(samples) / 1000:.0f}" if samples else "-"


def done_with(tmp: Path, keep: bool) -> str:
    """A finished run's directory (bot log, store, journal: tens of MB) goes unless ``keep``; a
    failed run's is always kept, its path printed with the failure."""
    if keep:
        return f"bot log and store: {tmp}"
    shutil.rmtree(tmp, ignore_errors=True)
    return "run directory removed (--keep keeps it)"


def harness(args: argparse.Namespace) -> int:
    from active_quoting import core

    scenarios = ("market", "spot") if args.scenario == "all" else (args.scenario,)
    report: dict[str, Any] = {"core": core.IMPL, "period_s": args.period, "horizon_s": args.horizon,
                              "load": os.getloadavg(), "cases": {}, "venue_stamped": {},
                              "pinned": pinning(args)[0] is not None}  # fmt: skip
    print("CPUs: " + ("venue and proxy on one, the pipelines on another (--no-pin: unpinned)" if report["pinned"]
                      else "not pinned"))  # fmt: skip
    horizon = int(args.horizon * 1e9)
    for scenario in scenarios:
        ran = run_scenario(args, scenario)
        if ran is None:
            return 1
        result, proxied, tmp = ran
        stock_address, floor_address = result["stock"], result.get("floor", "")
        moves, requests7, counts = join(result, proxied)
        requests = [tuple(r[:5]) for r in requests7]
        v_requests = [tuple(r[:5]) for r in result["requests"]]  # the venue's own stamps (the old method)
        on_lane = sum(1 for r in result["requests"] if r[3] not in (stock_address, floor_address) and r[5])
        of_ours = sum(1 for r in result["requests"] if r[3] not in (stock_address, floor_address))
        markets = result["markets"]

        def of(market: str, ms: list[Any], markets: dict[str, str] = markets) -> list[tuple[int, str]]:
            return [(m[0], m[1].split(" ", 1)[1]) for m in ms if m[1].startswith(markets[market])]

        mine, other, base = of("ours", moves), of("stock", moves), of("floor", moves)
        ours_who = lambda a, s=stock_address, f=floor_address: bool(a) and a not in (s, f)  # noqa: E731
        stock_who = lambda a, s=stock_address: a == s  # noqa: E731
        floor_who = lambda a, f=floor_address: a == f  # noqa: E731
        if args.dump:
            _dump(sorted(mine + other + base), requests7, stock_address, floor_address)
        joined = (f"proxy records: {counts['moves']} moves found by frame digest ({counts['moves unmatched']} not "
                  f"found), {counts['by signature']} requests by POLY_SIGNATURE, {counts['fallbacks']} by order of "
                  f"arrival, {counts['requests unmatched']} not found")  # fmt: skip
        if scenario == "market":
            ours = classify(mine, requests, ours_who, horizon)  # type: ignore[arg-type]
            theirs = classify(other, requests, stock_who, horizon)  # type: ignore[arg-type]
            floor_c = classify(base, requests, floor_who, horizon)  # type: ignore[arg-type]
            v_moves = [(m[0], m[1]) for m in result["moves"]]
            old = {name: classify(of(name, v_moves), v_requests, who, horizon)["first request"]  # type: ignore[arg-type]
                   for name, who in (("ours", ours_who), ("stock", stock_who), ("floor", floor_who))}  # fmt: skip
            print(f"core: {core.IMPL}; {len(mine) + len(other) + len(base)} touch-moving frames, {args.period}s "
                  f"apart per market (btc ours, eth stock, sol floor, a third of a period apart); microseconds "
                  f"from the frame handed to the client's socket to the request's first byte, both at the "
                  f"stamping proxy (CLOCK_MONOTONIC, proxy process)")  # fmt: skip
            print(table(ours, theirs, floor_c))
            print(f"first request p50 as the venue stamps it (the old method, same run): ours {_p50(old['ours'])}, "
                  f"stock {_p50(old['stock'])}, floor {_p50(old['floor'])} us; at the proxy: ours "
                  f"{_p50(ours['first request'])}, stock {_p50(theirs['first request'])}, floor "
                  f"{_p50(floor_c['first request'])} us")  # fmt: skip
            sends = json.loads((tmp / "floor.json").read_text()) if (tmp / "floor.json").exists() else []
            parts = floor_breakdown(base, requests7, sends, floor_who, horizon)
            print("floor, where its time goes (p50/p90 us): " + "; ".join(
                f"{k} {_p50(v)}/{pct(v, 0.9):.0f}" for k, v in parts.items()))  # fmt: skip
            report["floor_breakdown"] = parts
            print(joined)
            for case in (*CASES, "first request"):
                report["cases"][case] = {"ours": ours[case], "stock": theirs[case], "floor": floor_c[case]}
            report["venue_stamped"]["first request"] = old
            report["unanswered"] = {"ours": ours["unanswered"], "stock": theirs["unanswered"],
                                    "floor": floor_c["unanswered"]}  # fmt: skip
        else:
            spot = classify_spot(mine, requests7, horizon, ours_who)  # type: ignore[arg-type]
            v_spot = classify_spot([(m[0], m[1].split(" ", 1)[1]) for m in result["moves"]],
                                   [tuple(r[:7]) for r in result["requests"]], horizon, ours_who)  # fmt: skip
            print(f"core: {core.IMPL}; bot --strategy spot; {len(mine)} spot pull moves (RTDS Chainlink frames), "
                  f"{2 * args.period}s apart; microseconds from the frame handed to the bot's socket to the "
                  f"cancel's first byte, both at the stamping proxy (CLOCK_MONOTONIC, proxy process)")  # fmt: skip
            print(spot_table(spot))
            print(f"as the venue stamps it (the old method, same run), p50: exposed-quote cancel "
                  f"{_p50(v_spot[SPOT_CASE])}, first cancel {_p50(v_spot['first cancel'])} us")  # fmt: skip
            print(joined)
            report["spot"] = {SPOT_CASE: spot[SPOT_CASE], "first cancel": spot["first cancel"],
                              "first request": spot["first request"], "unanswered": spot["unanswered"],
                              "moves": len(mine), "venue_stamped_first_cancel": v_spot["first cancel"],
                              "sized": result.get("sized", [])}  # fmt: skip
        report.setdefault("joins", {})[scenario] = counts
        missed = report.get("unanswered", {}).get("ours", 0) if scenario == "market" else report["spot"]["unanswered"]
        # a run whose moves went unanswered keeps its bot log: the evidence
        print(f"ours: {on_lane} of {of_ours} order/cancel requests on the order lane; "
              + done_with(tmp, args.keep or bool(missed)))  # fmt: skip
    report["load_after"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(report))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd")
    p = sub.add_parser("venue")
    p.add_argument("--out", required=True)
    p.add_argument("--moves", type=int, default=48)
    p.add_argument("--period", type=float, default=3.0)
    p.add_argument("--window-seconds", type=int, default=3600)
    p.add_argument("--ready-timeout", type=float, default=60.0)
    p.add_argument("--scenario", choices=("market", "spot"), default="market")
    p = sub.add_parser("rtt", help="round trips on the order lane and on aiohttp, venue in its own process")
    p.add_argument("--rounds", type=int, default=500)
    p = sub.add_parser("proxy", help="the stamping proxy in front of the venue (the harness starts it)")
    p.add_argument("--target", required=True, help="the venue's CLOB URL")
    p.add_argument("--out", required=True, help="where its records go when it is stopped")
    p = sub.add_parser("floor", help="the instant reactor on the sol market (the harness starts it)")
    p.add_argument("--clob", required=True)
    p.add_argument("--up", required=True)
    p.add_argument("--out", help="where its own stamps (frame read, request written) go when it is stopped")
    p = sub.add_parser("stock")
    p.add_argument("--clob", required=True)
    p.add_argument("--up", required=True)
    p.add_argument("--down", required=True)
    parser.add_argument("--moves", type=int, default=48)
    parser.add_argument("--period", type=float, default=3.0)
    parser.add_argument("--horizon", type=float, default=0.1, help="seconds after a move its answers count")
    parser.add_argument("--dump", action="store_true", help="print every move and request")
    parser.add_argument("--keep", action="store_true", help="keep each run's directory (bot log, store, journal)")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                        help="pin the venue and proxy to one CPU and the pipelines to another (default: on)")
    parser.add_argument("--scenario", choices=("market", "spot", "all"), default="all",
                        help="market frames (ours against stock), spot moves (--strategy spot), or both")
    parser.add_argument("--json", help="write every sample (ns) per case here (benchmarks/compare.py --latency)")
    args = parser.parse_args()
    if args.cmd == "venue":
        import uvloop

        uvloop.run(venue(args))
    elif args.cmd == "proxy":
        import uvloop

        uvloop.run(proxy(args))
    elif args.cmd == "floor":
        floor(args)
    elif args.cmd == "stock":
        stock(args)
    elif args.cmd == "rtt":
        sys.exit(rtt(args))
    else:
        sys.exit(harness(args))


if __name__ == "__main__":
    main()
