"""Market and user WebSocket channels over picows (POLYMARKET.md §2, §3).

Both channels: text ``PING`` every ``ping_interval`` seconds with ``PONG`` expected within
``pong_timeout`` (picows' auto-ping with a user-specific ping), reconnect with exponential
backoff and jitter, and everything resubscribed after a reconnect. Frame handlers decode and
apply without awaiting; anything slow (a REST resync) runs as a task.

Market channel: assets are sharded over connections (``shard_size``, default 200; the venue
stops sending snapshots past about 500). A book is readable for quoting only after a snapshot
on the current connection and while it is not desynced; a desynced book is resynced from REST
``/book`` (or by resubscribing).

Freshness is per token: only book, price_change, tick_size_change, best_bid_ask and
last_trade_price events of a subscribed token refresh it (global frames such as ``new_market``,
``NO NEW ASSETS`` or PONG say nothing about a book). A token silent past ``freeze_after`` is
probed on REST ``/book``: an unchanged book confirms it (a quiet market, fresh again); a moved
book means the connection is frozen (the venue has been seen to keep a socket open, answering
PONG, while sending nothing), so it is declared stale and reconnected; a 404 means the token's
window is gone, and it is not probed again. :meth:`MarketStream.fresh_ms` is what the risk
manager's stale-feed rule reads; keep ``freeze_after + freeze_check_every`` below
``risk.stale_feed_seconds`` so a quiet market is confirmed before it counts as stale.

User channel: raw-credential auth message, ``order`` and ``trade`` events, our fills
de-duplicated through settlement (:class:`~active_quoting.venue.user_codec.FillTracker`); after a
reconnect the listener is asked to reconcile, because the stream does not replay what was missed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import msgspec
import orjson
from picows import WSAutoPingStrategy, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from active_quoting import core
from active_quoting.aio import TaskSet, cancel_and_wait
from active_quoting.clock import SYSTEM, Clock
from active_quoting.errors import FrameError, UnitsError
from active_quoting.venue.errors import VenueError
from active_quoting.venue.market_codec import (
    BestBidAskEvent,
    BookEvent,
    LastTradePriceEvent,
    PriceChangeEvent,
    TickSizeChangeEvent,
)
from active_quoting.venue.market_data import MarketData
from active_quoting.venue.signing import ApiCredentials
from active_quoting.venue.user_codec import (
    FillTracker,
    FillUpdate,
    OrderEvent,
    OrderUpdate,
    TradeEvent,
    UserCodec,
    order_update,
)

_log = logging.getLogger(__name__)

PING = b"PING"
PONG = b"PONG"
_DATA_FRAMES = frozenset((WSMsgType.TEXT, WSMsgType.BINARY))


class Backoff:
    """Exponential backoff with jitter: base, 2x base, ... up to ``cap``, each scaled by a
    random factor in [0.5, 1) so that many clients do not reconnect in step."""

    def __init__(self, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None) -> None:
        self.base, self.cap, self.attempt = base, cap, 0
        self.rng = rng or random.Random()

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * 2**self.attempt) * (0.5 + self.rng.random() / 2)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class _Listener(WSListener):  # type: ignore[misc]
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.conn._connected(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type in _DATA_FRAMES:
            self.conn._frame(frame.get_payload_as_bytes(), frame.last_in_buffer)
            return
        if frame.last_in_buffer:
            self.conn._read_end()  # a control frame ended the read: the frames before it are decided
        if frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.conn.transport = None

    def send_user_specific_ping(self, transport: WSTransport) -> None:
        transport.send(WSMsgType.TEXT, PING)
        self.conn.pings_sent += 1

    def is_user_specific_pong(self, frame: WSFrame) -> bool:
        if frame.msg_type == WSMsgType.TEXT and frame.payload_size == 4 and frame.get_payload_as_bytes() == PONG:
            self.conn.pongs += 1
            if frame.last_in_buffer:
                self.conn._read_end()  # our PONG ended the read (picows keeps it from on_ws_frame)
            return True
        return False


def _use_aiofastnet() -> bool | None:
    """picows' transport choice: its default (aiofastnet when installed) except on the
    simulator's virtual-time loop (``virtual_time``), which must own every transport - it
    carries connections in memory (sim/loop.py), and aiofastnet connects real sockets itself."""
    return False if getattr(asyncio.get_running_loop(), "virtual_time", False) else None


class ReadEnds:
    """Tells ``on_end`` once the last frame of a socket read has been handled, so that frames
    read together are acted on together, in the same turn, with no hop. A stream calls
    :meth:`frame_done` after each data frame; a read that ends on a frame the data path never
    sees (a PONG, a control frame) is ended by the connection (``Connection.on_read_end``) or,
    failing that, by a backstop at the loop's next turn."""

    def __init__(self, on_end: Callable[[], None]) -> None:
        self.on_end = on_end
        self._armed = False  # a backstop end-of-read is scheduled
        self._open = False  # frames of a read handled, its end not yet seen

    def frame_done(self, conn: Connection) -> None:
        if not conn.more_in_read:
            self.end()
        else:
            self._open = True
            if not self._armed:
                # once per read: should the read end on a frame no one hands us (a ping picows
                # answers itself), what it carried is still acted on
                self._armed = True
                asyncio.get_running_loop().call_soon(self._backstop)

    def end(self) -> None:
        self._open = False
        self.on_end()

    def _backstop(self) -> None:
        self._armed = False
        if self._open:  # no frame ended the read
            self.end()


class Connection:
    """One WebSocket connection kept alive: connect, greet, read, reconnect with backoff."""

    def __init__(
        self,
        url: str,
        greeting: Callable[[], bytes],
        on_frame: Callable[[Connection, bytes], None],
        on_state: Callable[[Connection, bool], None],
        *,
        name: str = "ws",
        ping_interval: float = 10.0,
        pong_timeout: float = 10.0,
        backoff: Backoff | None = None,
        clock: Clock = SYSTEM,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not 0 < pong_timeout <= ping_interval:
            raise ValueError(f"{name}: pong_timeout must be positive and at most ping_interval ({ping_interval}s)")
        self.url = url
        self.greeting = greeting
        self.on_frame = on_frame
        self.more_in_read = False  # set per frame: more frames of the same socket read follow
        self.on_read_end: Callable[[], None] | None = None  # told when a read ends on a non-data frame
        self.on_state = on_state
        self.name = name
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.backoff = backoff or Backoff()
        self.ssl_context = ssl_context  # for wss:// (None: the system's verified default)
        self.transport: WSTransport | None = None
        self.connects = 0
        self.pings_sent = 0
        self.pongs = 0
        self.frames = 0
        self.clock = clock
        self.last_data = clock.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"aq-{self.name}")

    async def stop(self) -> None:
        self._stopping = True
        if self.transport is not None:
            self.transport.disconnect()
        await cancel_and_wait(self._task)
        self._task = None

    @property
    def connected(self) -> bool:
        return self.transport is not None

    def send(self, payload: bytes) -> bool:
        if self.transport is None:
            return False
        self.transport.send(WSMsgType.TEXT, payload)
        return True

    def reconnect(self, reason: str) -> None:
        """Drop the connection (it reconnects by itself)."""
        _log.warning("%s: reconnecting: %s", self.name, reason)
        if self.transport is not None:
            self.transport.disconnect(graceful=False)

    def _connected(self, transport: WSTransport) -> None:
        # Runs before any frame of the new connection: state reset first, then the greeting.
        self.transport = transport
        self.connects += 1
        self.last_data = self.clock.monotonic()
        self.on_state(self, True)
        transport.send(WSMsgType.TEXT, self.greeting())

    def _frame(self, payload: bytes, last_in_read: bool = True) -> None:
        self.frames += 1
        if payload != PONG:
            self.last_data = self.clock.monotonic()
        self.more_in_read = not last_in_read  # more frames of the same socket read follow at once
        self.on_frame(self, payload)

    def _read_end(self) -> None:
        """The read's last frame was one the data path never sees (a PONG, a control frame)."""
        if self.more_in_read:
            self.more_in_read = False
            if self.on_read_end is not None:
                self.on_read_end()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                transport, _ = await ws_connect(
                    lambda: _Listener(self),
                    self.url,
                    ssl_context=self.ssl_context,
                    enable_auto_ping=True,
                    auto_ping_strategy=WSAutoPingStrategy.PING_PERIODICALLY,
                    auto_ping_idle_timeout=self.ping_interval,
                    auto_ping_reply_timeout=self.pong_timeout,
                    websocket_handshake_timeout=10,
                    use_aiofastnet=_use_aiofastnet(),
                )
            except (ValueError, TypeError):
                raise  # a configuration or programming error: retrying cannot help
            except Exception as exc:  # noqa: BLE001 - network, handshake, timeout: retry
                if self._stopping:
                    return
                delay = self.backoff.next_delay()
                _log.warning("%s: connect failed (%s); retrying in %.2fs", self.name, exc, delay)
                await asyncio.sleep(delay)
                continue
            self.backoff.reset()
            await transport.wait_disconnected()
            self.transport = None
            if self._stopping:
                return
            self.on_state(self, False)
            delay = self.backoff.next_delay()
            _log.warning("%s: disconnected; reconnecting in %.2fs", self.name, delay)
            await asyncio.sleep(delay)


# Events that speak about one token's book; anything else (new_market, market_resolved, PONG,
# NO NEW ASSETS) says nothing about whether that book is current.
_BOOK_EVENTS = (BookEvent, TickSizeChangeEvent, BestBidAskEvent, LastTradePriceEvent)


class MarketListener(Protocol):
    def on_market_events(self, events: list[Any]) -> None: ...
    def on_market_read(self) -> None: ...  # the last frame of one socket read has been handled
    def on_tick_size_change(self, asset_id: str, tick: int) -> None: ...
    def on_feed_state(self, shard: int, connected: bool) -> None: ...
    def on_feed_stale(self, shard: int, reason: str) -> None: ...


class NullMarketListener:
    def on_market_events(self, events: list[Any]) -> None:
        pass

    def on_market_read(self) -> None:
        pass

    def on_tick_size_change(self, asset_id: str, tick: int) -> None:
        pass

    def on_feed_state(self, shard: int, connected: bool) -> None:
        pass

    def on_feed_stale(self, shard: int, reason: str) -> None:
        pass


class MarketStream:
    """The market channel for a set of tokens, sharded over connections."""

    def __init__(
        self,
        url: str,
        market_data: MarketData | None = None,
        listener: MarketListener | None = None,
        *,
        rest: Any = None,
        shard_size: int = 200,
        ping_interval: float = 10.0,
        pong_timeout: float = 10.0,
        freeze_after: float = 15.0,
        freeze_check_every: float = 5.0,
        probes_per_check: int = 8,
        backoff: Callable[[], Backoff] = Backoff,
        clock: Clock = SYSTEM,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not 1 <= shard_size <= 500:
            raise ValueError(f"shard_size must be between 1 and 500 (the venue's cap), got {shard_size}")
        self.url = url
        self.md = market_data or MarketData()
        self.listener = listener or NullMarketListener()
        self.rest = rest
        self.shard_size = shard_size
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.freeze_after = freeze_after
        self.freeze_check_every = freeze_check_every
        self.probes_per_check = probes_per_check
        self.clock = clock
        self.ssl_context = ssl_context
        self._backoff = backoff
        self.shards: list[Connection] = []
        self._assets: list[list[str]] = []
        self._readable: set[str] = set()
        self._resyncing: set[str] = set()
        self._ticks: dict[str, int] = {}  # the tick last reported to the listener, per token
        # Per subscribed token, wall ms: subscribed, last book event, last REST confirmation.
        self._subscribed_ms: dict[str, int] = {}
        self._book_ms: dict[str, int] = {}
        self._confirmed_ms: dict[str, int] = {}
        self._gone: set[str] = set()  # REST says no book any more (window ended): not probed
        self._moved_once: set[str] = set()  # tokens whose last probe disagreed with our book
        self.resyncs = 0
        self.stale_events = 0
        self.probes = 0
        self.confirmations = 0
        self.gone_tokens = 0
        self.last_frame_t = 0.0
        self._reads = ReadEnds(self._end_read)
        self.record: Callable[[bytes], None] | None = None  # e.g. a journal: every frame as received
        # Told how long each frame took, arrival to return: decode, books, the listener's
        # bookkeeping and any decision and requests it wrote, the journal's copy (seconds).
        self.handled: Callable[[float], None] | None = None
        self._tasks = TaskSet(_log)
        self._freeze_task: asyncio.Task[None] | None = None

    # -- subscriptions ------------------------------------------------------------------

    def _greeting(self, shard: int) -> Callable[[], bytes]:
        return lambda: orjson.dumps(
            {"assets_ids": self._assets[shard], "type": "market", "custom_feature_enabled": True}
        )

    def _new_shard(self) -> int:
        index = len(self.shards)
        self._assets.append([])
        conn = Connection(
            self.url, self._greeting(index), self._on_frame, self._on_state,
            name=f"market-{index}", ping_interval=self.ping_interval, pong_timeout=self.pong_timeout,
            backoff=self._backoff(), clock=self.clock, ssl_context=self.ssl_context,
        )  # fmt: skip
        conn.shard = index  # type: ignore[attr-defined]
        conn.on_read_end = self._reads.end
        self.shards.append(conn)
        return index

    def subscribe(self, asset_ids: Iterable[str]) -> None:
        """Add tokens: to shards with room (dynamic subscribe) or to new connections."""
        known = {a for assets in self._assets for a in assets}
        new = [a for a in dict.fromkeys(asset_ids) if a not in known]
        now_ms = self.clock.ms()
        for a in new:
            self._subscribed_ms[a] = now_ms
        running = self._freeze_task is not None
        for index, assets in enumerate(self._assets):
            room = self.shard_size - len(assets)
            if room <= 0 or not new:
                continue
            take, new = new[:room], new[room:]
            assets.extend(take)
            self.shards[index].send(
                orjson.dumps({"assets_ids": take, "operation": "subscribe", "custom_feature_enabled": True})
            )
        while new:
            index = self._new_shard()
            self._assets[index].extend(new[: self.shard_size])
            new = new[self.shard_size :]
            if running:
                self.shards[index].start()

    def unsubscribe(self, asset_ids: Iterable[str]) -> None:
        gone = set(asset_ids)
        for index, assets in enumerate(self._assets):
            drop = [a for a in assets if a in gone]
            if drop:
                self._assets[index] = [a for a in assets if a not in gone]
                self.shards[index].send(orjson.dumps({"assets_ids": drop, "operation": "unsubscribe"}))
        for a in gone:
            # Everything kept per token goes with it (a day of windows must not accumulate).
            self._readable.discard(a)
            self._resyncing.discard(a)
            self._gone.discard(a)
            self._moved_once.discard(a)
            self._ticks.pop(a, None)
            self._subscribed_ms.pop(a, None)
            self._book_ms.pop(a, None)
            self._confirmed_ms.pop(a, None)
            self.md.books.remove(a)  # type: ignore[attr-defined]

    def assets(self) -> list[str]:
        return [a for assets in self._assets for a in assets]

    def fresh_ms(self, asset_id: str) -> int:
        """When the token's book was last known good (wall ms): its newest book event, REST
        confirmation or resync, or its subscription (a grace period for the first snapshot).
        0 for a token not subscribed: it cannot be fresh."""
        since = self._subscribed_ms.get(asset_id)
        if since is None:
            return 0
        return max(since, self._book_ms.get(asset_id, 0), self._confirmed_ms.get(asset_id, 0))

    def last_book_event_ms(self, asset_id: str) -> int | None:
        """Wall ms of the token's newest book event on the feed, None before the first."""
        return self._book_ms.get(asset_id)

    def is_gone(self, asset_id: str) -> bool:
        """REST answered 404 for the token: its window is over."""
        return asset_id in self._gone

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        for conn in self.shards:
            conn.start()
        self._freeze_task = asyncio.get_running_loop().create_task(self._freeze_watch(), name="aq-market-freeze")

    async def stop(self) -> None:
        if self._freeze_task is not None:
            self._freeze_task.cancel()
        self._tasks.cancel()
        for conn in self.shards:
            await conn.stop()

    # -- the hot path -------------------------------------------------------------------

    def is_readable(self, asset_id: str) -> bool:
        """A snapshot arrived on the current connection and the book is not desynced."""
        if asset_id not in self._readable:
            return False
        book = self.md.books.get(asset_id)  # type: ignore[attr-defined]
        return book is not None and not book.desynced

    def _on_frame(self, conn: Connection, payload: bytes) -> None:
        """One frame: decoded, applied to the books, handed to the listener; after the last frame
        of a socket read, ``on_market_read`` (the bot decides there: frames read together are
        decided together, in the same turn, with no hop between the read and the decision)."""
        self.last_frame_t = arrived = self.clock.perf()  # before decode: for frame-to-decision latency
        try:
            self._handle(payload)
        finally:
            try:
                self._reads.frame_done(conn)
            finally:
                if self.record is not None:
                    self.record(payload)  # the journal's copy: after the decision and its requests
                if self.handled is not None:
                    self.handled(self.clock.perf() - arrived)

    def _end_read(self) -> None:
        self.listener.on_market_read()

    def _handle(self, payload: bytes) -> None:
        events = self.md.on_frame(payload)
        if not events:
            return
        now_ms = self.clock.ms()
        book_ms, subscribed, books = self._book_ms, self._subscribed_ms, self.md.books
        desynced: list[str] | None = None  # tokens of this frame's price_changes whose book is desynced
        for ev in events:
            if type(ev) is PriceChangeEvent:
                for entry in ev.price_changes:
                    aid = entry.asset_id
                    if aid in subscribed:
                        book_ms[aid] = now_ms
                    book = books.get(aid)  # type: ignore[attr-defined]
                    if book is not None and book.desynced:
                        desynced = (desynced or []) + [aid]
                continue
            if isinstance(ev, _BOOK_EVENTS) and ev.asset_id in subscribed:
                book_ms[ev.asset_id] = now_ms
            cls = type(ev)
            if cls is BookEvent:
                self._readable.add(ev.asset_id)
                self._resyncing.discard(ev.asset_id)
                self._note_tick(ev.asset_id)
            elif cls is TickSizeChangeEvent:
                self._note_tick(ev.asset_id)
        # The frame is applied whole: a book it left desynced is rebuilt, once at a time. After
        # every event is read, so that a snapshot later in the frame cannot start a second one.
        for aid in desynced or ():
            if aid not in self._resyncing:
                self._resyncing.add(aid)
                self._tasks.spawn(self._resync(aid))
        self.listener.on_market_events(events)

    def _note_tick(self, asset_id: str) -> None:
        """Tell the listener the token's tick whenever the venue's word on it changes: a
        ``tick_size_change``, or a snapshot (subscribe, reconnect, REST resync) whose
        ``tick_size`` differs from what was known (discovery's tick can be stale)."""
        book = self.md.books.get(asset_id)  # type: ignore[attr-defined]
        if book is not None and self._ticks.get(asset_id) != book.tick:
            self._ticks[asset_id] = book.tick
            self.listener.on_tick_size_change(asset_id, book.tick)

    async def _resync(self, asset_id: str) -> None:
        """Rebuild a desynced book: REST ``/book`` when a client is given, else resubscribe."""
        self.resyncs += 1
        _log.warning("book %s… desynced: resyncing", asset_id[:12])
        if self.rest is not None:
            try:
                raw = await self.rest.book(asset_id)
                if asset_id not in self._subscribed_ms:
                    return  # unsubscribed while the request was out: do not bring the book back
                self.md.books.apply_book(msgspec.convert(dict(raw, event_type="book"), BookEvent))  # type: ignore[attr-defined]
                self._note_tick(asset_id)
                self._readable.add(asset_id)
                self._resyncing.discard(asset_id)
                self._confirmed_ms[asset_id] = self.clock.ms()
                return
            except Exception as exc:  # noqa: BLE001 - fall back to a resubscribe
                _log.warning("REST resync of %s… failed (%s); resubscribing", asset_id[:12], exc)
        for index, assets in enumerate(self._assets):
            if asset_id in assets:
                conn = self.shards[index]
                conn.send(orjson.dumps({"assets_ids": [asset_id], "operation": "unsubscribe"}))
                conn.send(
                    orjson.dumps({"assets_ids": [asset_id], "operation": "subscribe", "custom_feature_enabled": True})
                )

    def _on_state(self, conn: Connection, connected: bool) -> None:
        shard = conn.shard  # type: ignore[attr-defined]
        # On a (re)connect and on a loss, this shard's books cannot be trusted until the
        # fresh snapshots of the new connection arrive.
        for a in self._assets[shard]:
            self._readable.discard(a)
        self.listener.on_feed_state(shard, connected)

    # -- silent freeze ------------------------------------------------------------------

    async def _freeze_watch(self) -> None:
        while True:
            await self.clock.sleep(self.freeze_check_every)
            await self.check_freeze()

    async def check_freeze(self) -> list[int]:
        """Probe on REST the tokens silent past ``freeze_after`` (at most ``probes_per_check``
        per shard, the longest silent first, never one REST has said is gone): a book that
        moved while the socket said nothing declares the shard stale and reconnects it; an
        unchanged one confirms the token. Returns the shards declared stale."""
        stale: list[int] = []
        if self.rest is None:
            return stale
        silent_ms = int(self.freeze_after * 1000)
        for index, conn in enumerate(self.shards):
            if not conn.connected:
                continue
            now_ms = self.clock.ms()
            silent = [
                a for a in self._assets[index]
                if a not in self._gone and self.md.books.get(a) is not None  # type: ignore[attr-defined]
                and now_ms - self.fresh_ms(a) >= silent_ms
            ]  # fmt: skip
            silent.sort(key=self.fresh_ms)
            for asset_id in silent[: self.probes_per_check]:
                verdict = await self._probe(asset_id)
                if asset_id not in self._subscribed_ms:
                    continue  # unsubscribed while the request was out
                if verdict == "gone":
                    self._gone.add(asset_id)
                    self.gone_tokens += 1
                elif verdict == "same":
                    self._confirmed_ms[asset_id] = self.clock.ms()
                    self.confirmations += 1
                elif verdict == "moved":
                    self.stale_events += 1
                    stale.append(index)
                    age_s = (self.clock.ms() - self.fresh_ms(asset_id)) // 1000
                    reason = f"token {asset_id[:12]}… silent for {age_s}s while REST shows its book moved"
                    self.listener.on_feed_stale(index, reason)
                    conn.reconnect(reason)
                    break
        return stale

    async def _probe(self, asset_id: str) -> str:
        """``same``, ``moved``, ``gone`` (404: no book any more) or ``unknown`` (cannot tell:
        never declare stale on a guess)."""
        self.probes += 1
        heard = self._book_ms.get(asset_id, 0)
        try:
            raw = await self.rest.book(asset_id)
        except VenueError as exc:
            if exc.status == 404:
                _log.info("freeze check: %s… has no book any more (window over): not probed again", asset_id[:12])
                return "gone"
            _log.warning("freeze check: REST /book failed (%s)", exc)
            return "unknown"
        except Exception as exc:  # noqa: BLE001 - cannot tell: do not declare stale on a guess
            _log.warning("freeze check: REST /book failed (%s)", exc)
            return "unknown"
        probe = core.BookSet()
        try:
            venue = probe.apply_book(msgspec.convert(dict(raw, event_type="book"), BookEvent))
        except (msgspec.ValidationError, UnitsError, FrameError):
            return "unknown"
        ours = self.md.books.get(asset_id)  # type: ignore[attr-defined]
        if ours is None:
            return "unknown"
        if self._book_ms.get(asset_id, 0) != heard:
            return "unknown"  # the socket spoke for it while we asked: not frozen, and the answers race
        moved = (venue.best_bid(), venue.best_ask(), venue.best_bid_size(), venue.best_ask_size()) != (
            ours.best_bid(), ours.best_ask(), ours.best_bid_size(), ours.best_ask_size(),
        )  # fmt: skip
        if not moved:
            self._moved_once.discard(asset_id)
            return "same"
        if asset_id not in self._moved_once:
            # REST can lag the socket: one disagreement is a suspicion, two in a row (with
            # the socket silent between them) a frozen feed.
            self._moved_once.add(asset_id)
            return "unknown"
        self._moved_once.discard(asset_id)
        return "moved"


class UserListener(Protocol):
    def on_order(self, update: OrderUpdate) -> None: ...
    def on_fill(self, update: FillUpdate) -> None: ...
    def on_user_read(self) -> None: ...  # the last frame of one socket read has been handled
    def on_user_state(self, connected: bool) -> None: ...
    def on_reconcile_needed(self) -> None: ...


class UserStream:
    """The authenticated user channel: order updates and our fills."""

    def __init__(
        self,
        url: str,
        creds: ApiCredentials,
        listener: UserListener,
        markets: Iterable[str] = (),
        *,
        is_our_order: Callable[[str], bool] = lambda _oid: False,
        ping_interval: float = 10.0,
        pong_timeout: float = 10.0,
        backoff: Backoff | None = None,
        clock: Clock = SYSTEM,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.creds = creds
        self.listener = listener
        self.markets = list(dict.fromkeys(markets))
        self.codec = UserCodec()
        self.fills = FillTracker(creds.api_key, is_our_order)
        self.record: Callable[[bytes], None] | None = None
        self.errors = 0
        self.conn = Connection(
            url, self._greeting, self._on_frame, self._on_state, name="user",
            ping_interval=ping_interval, pong_timeout=pong_timeout, backoff=backoff, clock=clock,
            ssl_context=ssl_context,
        )  # fmt: skip
        self._reads = ReadEnds(self._end_read)  # events read together are acted on together
        self.conn.on_read_end = self._reads.end

    def _greeting(self) -> bytes:
        c = self.creds
        auth = {"apiKey": c.api_key, "secret": c.secret, "passphrase": c.passphrase}
        return orjson.dumps({"auth": auth, "markets": self.markets, "type": "user"})

    async def start(self) -> None:
        self.conn.start()

    async def stop(self) -> None:
        await self.conn.stop()

    def subscribe(self, markets: Iterable[str]) -> None:
        new = [m for m in markets if m not in self.markets]
        if new:
            self.markets += new
            self.conn.send(orjson.dumps({"operation": "subscribe", "markets": new}))

    def unsubscribe(self, markets: Iterable[str]) -> None:
        gone = [m for m in markets if m in self.markets]
        if gone:
            self.markets = [m for m in self.markets if m not in gone]
            self.conn.send(orjson.dumps({"operation": "unsubscribe", "markets": gone}))

    def _on_frame(self, conn: Connection, payload: bytes) -> None:
        if self.record is not None:
            self.record(payload)
        try:
            events = self.codec.decode(payload)
            for ev in events:
                if type(ev) is OrderEvent:
                    self.listener.on_order(order_update(ev))
                elif type(ev) is TradeEvent:
                    for update in self.fills.on_trade(ev):
                        self.listener.on_fill(update)
        except (FrameError, UnitsError) as exc:
            self.errors += 1
            _log.warning("user frame refused: %s", exc)
        finally:
            self._reads.frame_done(conn)

    def _end_read(self) -> None:
        self.listener.on_user_read()

    def _on_state(self, conn: Connection, connected: bool) -> None:
        self.listener.on_user_state(connected)
        if connected and conn.connects > 1:
            self.listener.on_reconcile_needed()
