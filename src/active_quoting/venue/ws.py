"""Market and user WebSocket channels over picows (POLYMARKET.md §2, §3).

Both channels: text ``PING`` every ``ping_interval`` seconds with ``PONG`` expected within
``pong_timeout`` (picows' auto-ping with a user-specific ping), reconnect with exponential
backoff and jitter, and everything resubscribed after a reconnect. Frame handlers decode and
apply without awaiting; anything slow (a REST resync) runs as a task.

Market channel: assets are sharded over connections (``shard_size``, default 200; the venue
stops sending snapshots past about 500). A book is readable for quoting only after a snapshot
on the current connection and while it is not desynced; a desynced book is resynced from REST
``/book`` (or by resubscribing). A connection that carries tokens and has been silent past
``freeze_after`` while REST shows the book moved is declared stale and reconnected: the venue
has been seen to keep a socket open, answering PONG, while sending nothing.

User channel: raw-credential auth message, ``order`` and ``trade`` events, our fills
de-duplicated through settlement (:class:`~active_quoting.venue.user_codec.FillTracker`); after a
reconnect the listener is asked to reconcile, because the stream does not replay what was missed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import msgspec
import orjson
from picows import WSAutoPingStrategy, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from active_quoting import core
from active_quoting.aio import TaskSet, cancel_and_wait
from active_quoting.errors import FrameError, UnitsError
from active_quoting.venue.market_codec import BookEvent, TickSizeChangeEvent
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
        if frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            self.conn._frame(frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.conn.transport = None

    def send_user_specific_ping(self, transport: WSTransport) -> None:
        transport.send(WSMsgType.TEXT, PING)
        self.conn.pings_sent += 1

    def is_user_specific_pong(self, frame: WSFrame) -> bool:
        if frame.msg_type == WSMsgType.TEXT and frame.payload_size == 4 and frame.get_payload_as_bytes() == PONG:
            self.conn.pongs += 1
            return True
        return False


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
    ) -> None:
        if not 0 < pong_timeout <= ping_interval:
            raise ValueError(f"{name}: pong_timeout must be positive and at most ping_interval ({ping_interval}s)")
        self.url = url
        self.greeting = greeting
        self.on_frame = on_frame
        self.on_state = on_state
        self.name = name
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.backoff = backoff or Backoff()
        self.transport: WSTransport | None = None
        self.connects = 0
        self.pings_sent = 0
        self.pongs = 0
        self.frames = 0
        self.last_data = time.monotonic()
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
        self.last_data = time.monotonic()
        self.on_state(self, True)
        transport.send(WSMsgType.TEXT, self.greeting())

    def _frame(self, payload: bytes) -> None:
        self.frames += 1
        if payload != PONG:
            self.last_data = time.monotonic()
        self.on_frame(self, payload)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                transport, _ = await ws_connect(
                    lambda: _Listener(self),
                    self.url,
                    enable_auto_ping=True,
                    auto_ping_strategy=WSAutoPingStrategy.PING_PERIODICALLY,
                    auto_ping_idle_timeout=self.ping_interval,
                    auto_ping_reply_timeout=self.pong_timeout,
                    websocket_handshake_timeout=10,
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


class MarketListener(Protocol):
    def on_market_events(self, events: list[Any]) -> None: ...
    def on_tick_size_change(self, asset_id: str, tick: int) -> None: ...
    def on_feed_state(self, shard: int, connected: bool) -> None: ...
    def on_feed_stale(self, shard: int, reason: str) -> None: ...


class NullMarketListener:
    def on_market_events(self, events: list[Any]) -> None:
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
        freeze_after: float = 30.0,
        freeze_check_every: float = 5.0,
        backoff: Callable[[], Backoff] = Backoff,
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
        self._backoff = backoff
        self.shards: list[Connection] = []
        self._assets: list[list[str]] = []
        self._readable: set[str] = set()
        self._resyncing: set[str] = set()
        self._ticks: dict[str, int] = {}  # the tick last reported to the listener, per token
        self.resyncs = 0
        self.stale_events = 0
        self.last_frame_t = 0.0
        self.record: Callable[[bytes], None] | None = None  # e.g. a journal: every frame as received
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
            backoff=self._backoff(),
        )  # fmt: skip
        conn.shard = index  # type: ignore[attr-defined]
        self.shards.append(conn)
        return index

    def subscribe(self, asset_ids: Iterable[str]) -> None:
        """Add tokens: to shards with room (dynamic subscribe) or to new connections."""
        known = {a for assets in self._assets for a in assets}
        new = [a for a in dict.fromkeys(asset_ids) if a not in known]
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
            self._readable.discard(a)
            self._ticks.pop(a, None)
            self.md.books.remove(a)  # type: ignore[attr-defined]

    def assets(self) -> list[str]:
        return [a for assets in self._assets for a in assets]

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
        self.last_frame_t = time.perf_counter()  # arrival, before decode: for frame-to-decision latency
        if self.record is not None:
            self.record(payload)
        events = self.md.on_frame(payload)
        if not events:
            return
        for ev in events:
            cls = type(ev)
            if cls is BookEvent:
                self._readable.add(ev.asset_id)
                self._resyncing.discard(ev.asset_id)
                self._note_tick(ev.asset_id)
            elif cls is TickSizeChangeEvent:
                self._note_tick(ev.asset_id)
        self._check_desync(events)
        self.listener.on_market_events(events)

    def _note_tick(self, asset_id: str) -> None:
        """Tell the listener the token's tick whenever the venue's word on it changes: a
        ``tick_size_change``, or a snapshot (subscribe, reconnect, REST resync) whose
        ``tick_size`` differs from what was known (discovery's tick can be stale)."""
        book = self.md.books.get(asset_id)  # type: ignore[attr-defined]
        if book is not None and self._ticks.get(asset_id) != book.tick:
            self._ticks[asset_id] = book.tick
            self.listener.on_tick_size_change(asset_id, book.tick)

    def _check_desync(self, events: list[Any]) -> None:
        for ev in events:
            changes = getattr(ev, "price_changes", None)
            if not changes:
                continue
            for entry in changes:
                aid = entry.asset_id
                book = self.md.books.get(aid)  # type: ignore[attr-defined]
                if book is not None and book.desynced and aid not in self._resyncing:
                    self._resyncing.add(aid)
                    self._tasks.spawn(self._resync(aid))

    async def _resync(self, asset_id: str) -> None:
        """Rebuild a desynced book: REST ``/book`` when a client is given, else resubscribe."""
        self.resyncs += 1
        _log.warning("book %s… desynced: resyncing", asset_id[:12])
        if self.rest is not None:
            try:
                raw = await self.rest.book(asset_id)
                self.md.books.apply_book(msgspec.convert(dict(raw, event_type="book"), BookEvent))  # type: ignore[attr-defined]
                self._note_tick(asset_id)
                self._readable.add(asset_id)
                self._resyncing.discard(asset_id)
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
            await asyncio.sleep(self.freeze_check_every)
            await self.check_freeze()

    async def check_freeze(self) -> list[int]:
        """Reconnect every shard that carries tokens, has been silent past ``freeze_after`` and
        whose book REST shows has moved. Returns the shards declared stale."""
        stale = []
        now = time.monotonic()
        for index, conn in enumerate(self.shards):
            assets = [a for a in self._assets[index] if self.md.books.get(a) is not None]  # type: ignore[attr-defined]
            if not conn.connected or not assets or now - conn.last_data < self.freeze_after or self.rest is None:
                continue
            moved = await self._book_moved(assets[0])
            if moved:
                self.stale_events += 1
                stale.append(index)
                reason = f"silent for {now - conn.last_data:.0f}s while REST shows the book moved"
                self.listener.on_feed_stale(index, reason)
                conn.reconnect(reason)
        return stale

    async def _book_moved(self, asset_id: str) -> bool:
        try:
            raw = await self.rest.book(asset_id)
        except Exception as exc:  # noqa: BLE001 - cannot tell: do not declare stale on a guess
            _log.warning("freeze check: REST /book failed (%s)", exc)
            return False
        probe = core.BookSet()
        try:
            venue = probe.apply_book(msgspec.convert(dict(raw, event_type="book"), BookEvent))
        except (msgspec.ValidationError, UnitsError, FrameError):
            return False
        ours = self.md.books.get(asset_id)  # type: ignore[attr-defined]
        return (venue.best_bid(), venue.best_ask(), venue.best_bid_size(), venue.best_ask_size()) != (
            ours.best_bid(), ours.best_ask(), ours.best_bid_size(), ours.best_ask_size(),
        )  # fmt: skip


class UserListener(Protocol):
    def on_order(self, update: OrderUpdate) -> None: ...
    def on_fill(self, update: FillUpdate) -> None: ...
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
            ping_interval=ping_interval, pong_timeout=pong_timeout, backoff=backoff,
        )  # fmt: skip

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

    def _on_state(self, conn: Connection, connected: bool) -> None:
        self.listener.on_user_state(connected)
        if connected and conn.connects > 1:
            self.listener.on_reconcile_needed()
