"""The order lane: orders and cancels over pre-opened keep-alive HTTP/1.1 connections.

A minimal client of our own on an :class:`asyncio.Protocol` (uvloop or plain asyncio; TLS through
the same protocol with an ``ssl`` context), answers parsed by httptools. Why not aiohttp here: a
POST round trip through its client costs several times what a bare protocol does on loopback, and
its pool can put a cancel behind an order. Orders and cancels have separate pools, each with its
connections opened before they are needed, so a cancel never waits for an order's answer (and
an order never waits for a cancel's). A pool keeps a spare: when a request takes its last idle
connection, one more is opened in the background (up to a bound), so the next request finds one
ready instead of paying a handshake (TCP, and TLS in production) ahead of its write; a request
that still finds none waits for whichever comes first, a connection freed or one opened.

Each request is written as one ``transport.write``: a header template built once per endpoint
and credentials (host, content type, address, API key, passphrase), then the timestamp, the L2
HMAC over the exact body bytes, the length and the body. The lane knows nothing of what the
answer means: it returns the status, the raw body and ``Retry-After``; the caller classifies
(``venue.errors.classify``) exactly as for any other request. A connection the peer closes is
dropped and its pool refilled in the background (backing off while connections die young). A
request that gets no connection (none opens, or none frees up within ``timeout``) fails as
``not_sent``: nothing was written. One on a connection that dies fails as ``network``; one
without an answer ``timeout`` seconds after its write fails as ``timeout`` (both unknown outcomes
for a submit), and its connection is closed, since a late answer on it would be read as the next
request's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import ssl as _ssl
from collections import Counter, deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from active_quoting.aio import TaskSet
from active_quoting.venue.errors import VenueError
from active_quoting.venue.signing import ApiCredentials

_log = logging.getLogger(__name__)

# (method, path) pairs the lane carries; everything else stays on the general REST session.
ORDER_ENDPOINTS = frozenset({("POST", "/order"), ("POST", "/orders")})
CANCEL_ENDPOINTS = frozenset({("DELETE", "/order"), ("DELETE", "/orders")})
LANE_ENDPOINTS = ORDER_ENDPOINTS | CANCEL_ENDPOINTS

ORDERS = "orders"
CANCELS = "cancels"
YOUNG_S = 1.0  # a connection lost this soon after opening, with no answer, died young
REFILL_DELAY_MIN_S = 0.05
REFILL_DELAY_MAX_S = 1.0


@dataclass(frozen=True)
class LaneReply:
    """One HTTP answer as received: status, raw body, the ``Retry-After`` header if any."""

    status: int
    body: bytes
    retry_after: str | None


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight (no pipelining)."""

    def __init__(self, lane: OrderLane, pool: str) -> None:
        self.lane = lane
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.busy = False
        self.alive = False
        self._waiter: asyncio.Future[LaneReply] | None = None
        self._body: list[bytes] = []
        self._retry_after: str | None = None
        self._header_name = b""
        self.answered = 0
        self.opened_at = 0.0
        self.aborted = False  # closed by us (a timeout, an unsolicited answer), not by the peer
        self.idle_since = 0.0  # loop time it last became idle
        self.retiring = False  # a fresh connection is opening to replace it (OrderLane._keep_fresh)

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.alive = True
        self.opened_at = asyncio.get_running_loop().time()

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # Bytes nobody asked for (a late answer after a timeout closes the connection first).
            self.lane.counts["unsolicited"] += 1
            self._abort()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.lane.counts["bad_response"] += 1
            self._fail(VenueError("network", f"unreadable answer: {exc}"))
            self._abort()

    def eof_received(self) -> bool:
        """The venue closed its side (an idle keep-alive timed out, say): out of the pool now,
        not at ``connection_lost`` a turn later, so no request is written into the closing
        transport (its bytes would be dropped and the submit read as an unknown outcome)."""
        if self.alive:
            self.alive = False
            self.lane._lost(self)
        return False  # close; connection_lost fails an answer still awaited

    def usable(self) -> bool:
        transport = self.transport
        return self.alive and transport is not None and not transport.is_closing() and not self.lane._closed

    def connection_lost(self, exc: Exception | None) -> None:
        was_alive, self.alive = self.alive, False
        if self._waiter is not None:
            self._fail(VenueError("network", f"connection closed before the answer ({exc or 'closed by peer'})"))
        if was_alive:
            self.lane._lost(self)

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._body = []
        self._retry_after = None

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"retry-after":
            self._retry_after = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        reply = LaneReply(self.parser.get_status_code(), b"".join(self._body), self._retry_after)
        self.answered += 1
        keep = self.parser.should_keep_alive()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)
        if not keep:
            self.lane.counts["closed_by_peer"] += 1
            self._abort()

    # -- use -----------------------------------------------------------------------------

    def send(self, data: bytes) -> asyncio.Future[LaneReply]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter

    def _fail(self, err: VenueError) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(err)

    def _abort(self) -> None:
        # Out of the pool at once: connection_lost comes a loop turn later.
        self.aborted = True
        if self.alive:
            self.alive = False
            self.lane._lost(self)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class _Template:
    """The fixed part of an L2 request's head, for one endpoint and one set of credentials."""

    __slots__ = ("head", "key")

    def __init__(self, method: str, path: str, host: str, creds: ApiCredentials, address: str) -> None:
        self.key = base64.urlsafe_b64decode(creds.secret)
        self.head = (
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: active-quoting\r\n"
            f"Accept: */*\r\nContent-Type: application/json\r\nPOLY_ADDRESS: {address}\r\n"
            f"POLY_API_KEY: {creds.api_key}\r\nPOLY_PASSPHRASE: {creds.passphrase}\r\nPOLY_TIMESTAMP: "
        ).encode()


class OrderLane:
    """Keep-alive connections for ``POST /order(s)`` and ``DELETE /order(s)``.

    ``order_connections`` and ``cancel_connections`` are opened by :meth:`start` and kept open
    (refilled after a close); each pool grows towards ``max_per_pool`` a connection ahead of
    need (a spare). A request that finds no connection waits at most ``acquire_timeout`` (capped
    by ``timeout``): an order decided that long ago is better re-decided than sent. No
    connection stays idle much past ``max_idle_s`` (None: no limit): the venue's side closes idle
    keep-alives after a while, and a request written as that close crosses it is an unknown
    outcome (see ``_keep_fresh``). ``ssl``: a context for ``https`` URLs (default: the system's verified
    context)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 5.0,
        order_connections: int = 2,
        cancel_connections: int = 2,
        max_per_pool: int = 8,
        acquire_timeout: float = 1.0,
        max_idle_s: float | None = 30.0,
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"order lane: expected an http(s) URL, got {base_url!r}")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.prefix = url.path.rstrip("/")
        default_port = (url.scheme == "https" and self.port == 443) or (url.scheme == "http" and self.port == 80)
        self.host_header = self.host if default_port else f"{self.host}:{self.port}"
        self.ssl: _ssl.SSLContext | None = None
        if url.scheme == "https":
            self.ssl = ssl if ssl is not None else _ssl.create_default_context()
        self.timeout = timeout
        self.acquire_timeout = min(acquire_timeout, timeout)
        if max_idle_s is not None and max_idle_s <= 0:
            raise ValueError(f"order lane: max_idle_s must be positive or None, got {max_idle_s}")
        self.max_idle_s = max_idle_s
        self.minimum = {ORDERS: max(1, order_connections), CANCELS: max(1, cancel_connections)}
        self.max_per_pool = max(max_per_pool, *self.minimum.values())
        self.counts: Counter[str] = Counter()
        self._pools: dict[str, list[_Connection]] = {ORDERS: [], CANCELS: []}
        self._opening = {ORDERS: 0, CANCELS: 0}  # connections being opened: counted against the bound
        self._refill_delay = {ORDERS: 0.0, CANCELS: 0.0}  # grows while connections die young
        self._queued: dict[str, deque[asyncio.Future[_Connection]]] = {ORDERS: deque(), CANCELS: deque()}
        self._templates: dict[tuple[str, str, ApiCredentials, str], _Template] = {}
        self._tasks = TaskSet(_log)  # reconnections under way
        self._started = False
        self._closed = False
        self._closing: asyncio.Event | None = None  # set when a close() under way has finished

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._started and not self._closed

    async def start(self) -> None:
        """Open the minimum connections of both pools. A venue that cannot be reached now is
        not an error here: the first request retries the connection and fails as ``network``."""
        if self._closing is not None:
            await self._closing.wait()  # a close under way finishes first
        if self.started:
            return
        self._started = True
        self._closed = False
        if self.max_idle_s is not None:
            self._tasks.spawn(self._keep_fresh(self.max_idle_s))
        opens = [self._tasks.spawn_now(self._offer(pool)) for pool, n in self.minimum.items() for _ in range(n)
                 if self._reserve(pool)]  # fmt: skip
        opened = await asyncio.gather(*opens, return_exceptions=True)  # a close meanwhile cancels them
        failed = opened.count(False)
        if failed and not self._closed:
            _log.warning("order lane: %d of %d connections did not open", failed, len(opened))

    async def close(self) -> None:
        """Close every connection and fail what waits for one, at once; then wait for the opens
        under way to give their places back (a cancelled close has already torn down)."""
        self._closed = True
        closing = self._closing = asyncio.Event()
        try:
            for pool in self._pools.values():
                for conn in list(pool):
                    conn.alive = False
                    conn._fail(VenueError("network", "order lane closed"))
                    conn._abort()
                pool.clear()
            for pool in self._queued:
                self._fail_queued(pool, VenueError("network", "order lane closed"))
            await self._tasks.cancel_and_wait()  # an open that lands meanwhile sees the lane closed
        finally:
            closing.set()
            if self._closing is closing:
                self._closing = None

    def connections(self, pool: str) -> int:
        """Open connections in a pool (``ORDERS`` or ``CANCELS``)."""
        return sum(1 for c in self._pools[pool] if c.alive)

    # -- requests ------------------------------------------------------------------------

    async def request(
        self, method: str, path: str, body: bytes, *, creds: ApiCredentials, address: str, timestamp: int
    ) -> LaneReply:
        """Send one L2-authenticated request with ``body`` (the exact bytes signed and sent)."""
        if (method, path) not in LANE_ENDPOINTS:
            raise ValueError(f"order lane: {method} {path} is not an order or cancel endpoint")
        if self._closed:
            raise VenueError("not_sent", f"{method} {path}: order lane closed")
        data = self._encode(method, path, body, creds, address, timestamp)
        pool = CANCELS if method == "DELETE" else ORDERS
        loop = asyncio.get_running_loop()
        conn = self._idle(pool)  # the usual case: no task, no timer, no await before the write
        if conn is None:
            try:
                conn = await self._acquire(pool, loop.time() + self.acquire_timeout)
            except VenueError as err:
                raise VenueError("not_sent", f"{method} {path}: {err.message}") from None
            if not conn.usable():  # it closed between its handover and this step
                self._release(conn)
                raise VenueError("not_sent", f"{method} {path}: its connection closed before the write")
        self.counts["requests"] += 1
        waiter = conn.send(data)
        self._keep_spare(pool)  # after the write: the next request's connection, opened meanwhile
        # the answer gets the whole timeout from the write, however long the wait for a connection
        timer = loop.call_at(loop.time() + self.timeout, _expire, waiter)
        try:
            reply = await waiter
        except asyncio.TimeoutError:
            self.counts["timeout"] += 1
            conn._abort()  # a late answer must not be taken for the next request's
            raise VenueError("timeout", f"{method} {path}: no answer in {self.timeout}s") from None
        except asyncio.CancelledError:
            conn._abort()
            raise
        finally:
            timer.cancel()
            self._release(conn)
        return reply

    def _encode(self, method: str, path: str, body: bytes, creds: ApiCredentials, address: str, ts: int) -> bytes:
        tk = (method, path, creds, address)
        tpl = self._templates.get(tk)
        if tpl is None:
            tpl = self._templates[tk] = _Template(method, self.prefix + path, self.host_header, creds, address)
        stamp = str(ts).encode()
        # What the venue (and the SDK) signs: the body with ' read as " (orjson never writes ').
        signed = body.replace(b"'", b'"') if b"'" in body else body
        mac = hmac.new(tpl.key, stamp + method.encode() + path.encode() + signed, hashlib.sha256).digest()
        return b"".join((tpl.head, stamp, b"\r\nPOLY_SIGNATURE: ", base64.urlsafe_b64encode(mac),
                         b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\n\r\n", body))  # fmt: skip

    # -- pools ---------------------------------------------------------------------------

    def _idle(self, pool: str) -> _Connection | None:
        """The least recently used idle connection (``_release`` moves a freed one to the end):
        every connection is used in turn, so none sits idle long enough for the venue's side to
        close it just as a request is written on it."""
        fallback = None
        for conn in self._pools[pool]:
            if not conn.busy and conn.usable():
                if not conn.retiring:
                    conn.busy = True
                    return conn
                fallback = fallback or conn  # its replacement is opening: used only if alone
        if fallback is not None:
            fallback.busy = True
        return fallback

    def _reserve(self, pool: str) -> bool:
        """Count a connection about to be opened against the pool's bound, before any await, so
        that concurrent requests cannot all pass the check."""
        if self._closed or len(self._pools[pool]) + self._opening[pool] >= self.max_per_pool:
            return False
        self._opening[pool] += 1
        return True

    def _offer_one(self, pool: str, spare: bool = False) -> bool:
        """Open one more connection, for whichever request waits first (else it stays idle), if
        the bound allows. Its task starts at once: a close that cancels it finds it inside its
        ``try`` (the reservation is always given back)."""
        if not self._reserve(pool):
            return False
        self._tasks.spawn_now(self._offer(pool, spare))
        return True

    def _keep_spare(self, pool: str) -> None:
        """A request took a connection: if none of the pool is idle now and none is on its way,
        open one more in the background, for the next request."""
        if self._opening[pool]:
            return
        for conn in self._pools[pool]:
            if conn.alive and not conn.busy:
                return
        self._offer_one(pool, spare=True)

    async def _offer(self, pool: str, spare: bool = False) -> bool:
        """Open a reserved connection and hand it to the first request waiting (``_release``).
        When it cannot open, with nothing else on its way and no open connection that could
        free up, the requests waiting fail now with the connect error: an unreachable venue is
        not waited out to the timeout."""
        try:
            conn = await self._open(pool)
        except VenueError as err:
            _log.warning("order lane: a connection of the %s pool did not open: %s", pool, err)
            if not self._opening[pool] and not self._pools[pool]:
                self._fail_queued(pool, err)  # nothing on its way, nothing to free up: fail now
            return False
        if spare:
            self.counts["spares"] += 1
        self._release(conn)
        return True

    def _waiting(self, pool: str) -> int:
        """Requests still waiting for a connection (a timed-out one leaves at its next step)."""
        return sum(1 for fut in self._queued[pool] if not fut.done())

    def _fail_queued(self, pool: str, err: VenueError) -> None:
        waiters = self._queued[pool]
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_exception(err)

    async def _acquire(self, pool: str, deadline: float) -> _Connection:
        """A connection for a request that found none idle: whichever comes first, one freed by
        another request or one opened for it (one open under way per waiting request, within
        the bound). Fails with the connect error when none can open, or at ``deadline``."""
        idle = self._idle(pool)
        if idle is not None:
            return idle
        waiters = self._queued[pool]
        fut: asyncio.Future[_Connection] = asyncio.get_running_loop().create_future()
        waiters.append(fut)
        self.counts["queued"] += 1
        if self._opening[pool] < self._waiting(pool):
            self._offer_one(pool)
        timer = asyncio.get_running_loop().call_at(deadline, _no_connection, fut, self.acquire_timeout)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._release(fut.result())  # handed over as this request gave up: not lost
            raise
        except VenueError:
            self.counts["no_connection"] += 1
            raise
        finally:
            timer.cancel()
            if not fut.done():
                fut.cancel()
            with contextlib.suppress(ValueError):
                waiters.remove(fut)

    def _release(self, conn: _Connection) -> None:
        conn.busy = False
        if not conn.alive:
            return
        waiters = self._queued[conn.pool]
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                conn.busy = True
                fut.set_result(conn)
                return
        conn.idle_since = asyncio.get_running_loop().time()
        pool = self._pools[conn.pool]
        if conn in pool and pool[-1] is not conn:
            pool.remove(conn)
            pool.append(conn)  # most recently used last

    async def _open(self, pool: str) -> _Connection:
        """Open one connection into ``pool`` (its place reserved by ``_reserve``), busy: the
        caller hands it on."""
        loop = asyncio.get_running_loop()
        try:
            # (not wait_for: on 3.11 it returns a connect that finished as the task was cancelled)
            async with asyncio.timeout_at(loop.time() + self.timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self, pool),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )
        except (OSError, asyncio.TimeoutError) as exc:
            self.counts["connect_failed"] += 1
            raise VenueError("not_sent", f"order lane: cannot connect to {self.host}:{self.port}: {exc!r}") from None
        finally:
            self._opening[pool] -= 1
        if self._closed or not conn.alive:  # closed meanwhile (the lane, or the peer at once)
            conn.alive = False
            conn._abort()
            raise VenueError("not_sent", "order lane closed" if self._closed else "closed by the peer on connect")
        conn.busy = True
        self.counts["opened"] += 1
        self._pools[pool].append(conn)
        return conn

    async def _keep_fresh(self, max_idle_s: float) -> None:
        """No connection stays idle much past ``max_idle_s`` (checked every third of it, from
        two thirds idle on): above the pool's minimum a stale idle one is closed (the pool
        shrinks back after a burst); at it, a fresh one is opened first (it goes to whoever
        waits, else stays idle) and the old one closed once it is in, if still idle and stale;
        when the open fails, the old one stays."""
        loop = asyncio.get_running_loop()
        limit = max_idle_s * 2 / 3
        while not self._closed:
            await asyncio.sleep(max_idle_s / 3)
            now = loop.time()
            for pool, conns in self._pools.items():
                for conn in list(conns):
                    if conn.busy or conn.retiring or not conn.usable() or now - conn.idle_since <= limit:
                        continue
                    if self.connections(pool) > self.minimum[pool]:
                        self.counts["retired"] += 1
                        conn._abort()  # more than the minimum: no replacement needed
                    elif self._reserve(pool):
                        conn.retiring = True
                        self._tasks.spawn_now(self._replace(pool, conn, limit))

    async def _replace(self, pool: str, old: _Connection, limit: float) -> None:
        try:
            fresh = await self._offer(pool)
        finally:
            old.retiring = False
        stale = asyncio.get_running_loop().time() - old.idle_since > limit
        if fresh and stale and not old.busy and old.alive and self.connections(pool) > self.minimum[pool]:
            self.counts["refreshed"] += 1
            self.counts[f"refreshed_{pool}"] += 1
            old._abort()  # the fresh one took its place

    def _lost(self, conn: _Connection) -> None:
        pool = self._pools[conn.pool]
        if conn not in pool:
            return  # never pooled (closed as it connected) or already dropped
        pool.remove(conn)
        self.counts["lost"] += 1
        # One the peer closes young without an answer (a venue or proxy refusing us after the
        # accept) is not replaced at once, again and again: the refill backs off, up to a second.
        delay = self._refill_delay[conn.pool]
        young = not conn.answered and not conn.aborted and asyncio.get_running_loop().time() - conn.opened_at < YOUNG_S
        self._refill_delay[conn.pool] = min(REFILL_DELAY_MAX_S, max(REFILL_DELAY_MIN_S, 2 * delay)) if young else 0.0
        if not self._closed:
            while self._waiting(conn.pool) > self._opening[conn.pool] and self._offer_one(conn.pool):
                pass  # the room it leaves goes to the requests waiting, at once
            self._tasks.spawn(self._refill(conn.pool))

    async def _refill(self, pool: str) -> None:
        delay = self._refill_delay[pool]
        if delay:
            self.counts["refill_backoffs"] += 1
            await asyncio.sleep(delay)
        while len(self._pools[pool]) + self._opening[pool] < self.minimum[pool] and self._reserve(pool):
            if not await self._offer(pool):
                return
            self.counts["reconnected"] += 1


def _expire(waiter: asyncio.Future[LaneReply]) -> None:
    if not waiter.done():
        waiter.set_exception(asyncio.TimeoutError())


def _no_connection(fut: asyncio.Future[_Connection], timeout: float) -> None:
    if not fut.done():
        fut.set_exception(VenueError("not_sent", f"no connection in {timeout}s"))


__all__ = ["OrderLane", "LaneReply", "LANE_ENDPOINTS", "ORDER_ENDPOINTS", "CANCEL_ENDPOINTS", "ORDERS", "CANCELS"]
