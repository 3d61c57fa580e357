"""The embedded Polymarket-compatible exchange: CLOB REST, market and user WebSockets, and a
Gamma-like discovery API, on 127.0.0.1 (POLYMARKET.md is the contract).

Usable in-process (``await Exchange(cfg).start()``; ``await ex.stop()``) and from the command
line (``active-quoting exchange``). The venue layer's signing code is used only to verify:
order hashes are recomputed from the wire order and the signer recovered; L1 ClobAuth and L2
HMAC headers are checked on every private endpoint. Faults are scripted through
:class:`Faults` (from Python or a scenario file).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import math
import random
import ssl
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from active_quoting import core
from active_quoting.aio import TaskSet
from active_quoting.clock import SYSTEM, Clock
from active_quoting.exchange import messages
from active_quoting.exchange.engine import (
    ALLOWANCE_REFUSAL,
    ASK,
    BID,
    BUY,
    NOT_ENOUGH_BALANCE,
    SCALE,
    SELL,
    Engine,
    EngineError,
    Market,
    Order,
    Result,
    Trade,
)
from active_quoting.exchange.faults import Faults
from active_quoting.exchange.rtds import RtdsHub
from active_quoting.venue.signing import (
    POLY_1271,
    SigningError,
    checksum_address,
    clob_auth_digest,
    keccak,
    recover_order_signer,
    recover_signer,
)

_log = logging.getLogger(__name__)


async def _send_text(ws: web.WebSocketResponse, text: str) -> None:
    try:
        await ws.send_str(text)
    except ConnectionError:
        pass  # the subscriber went away between publication and send; its handler cleans up


def _text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame (RFC 6455 5.2): the bytes aiohttp's writer sends for
    ``send_str`` on a connection without compression."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


# A queued frame due within this is written now: sleeping a float remainder that the loop's
# clock cannot represent would not advance virtual time.
SEND_SLACK_S = 1e-6
HEARTBEAT_TIMEOUT_S = 15.0  # 10 s plus the 5 s buffer
CUSTOM_FEATURE_EVENTS = frozenset({"best_bid_ask", "new_market", "market_resolved"})
END_CURSOR = "LTE="
DEFAULT_CLIENT_UAS = ("python", "aiohttp", "curl", "go-http-client", "okhttp", "java")
# The spenders a trading account approves (POLYMARKET.md 6.1): CTF Exchange V2, Neg-Risk CTF
# Exchange V2, the neg-risk adapter (V2), ExchangeV3.
ALLOWANCE_SPENDERS = (
    "0xE111180000d2663C0091e4f400237545B87B996B",
    "0xe2222d279d744050d28e00520010520000310F59",
    "0xadA2005600Dec949baf300f4C6120000bDB6eAab",
    "0xe3333700cA9d93003F00f0F71f8515005F6c00Aa",
)
MAX_ALLOWANCE = str(2**256 - 1)


@dataclass
class ExchangeConfig:
    host: str = "127.0.0.1"
    clob_port: int = 0
    gamma_port: int = 0
    chain_id: int = 137
    order_version: int = 2
    paper_balance_usdc: int = 10_000  # credited to any account on first authentication
    seed_balances: dict[str, int] = field(default_factory=dict)  # address -> USDC
    settle_delays_ms: tuple[int, int] = (300, 1500)  # MATCHED -> MINED -> CONFIRMED
    ghost_share: float = 0.0  # share of trades that go RETRYING -> FAILED
    order_rate: tuple[float, float] = (40.0, 60.0)  # per-signer token bucket: rate/s, burst
    cancel_rate: tuple[float, float] = (80.0, 120.0)
    page_size: int = 100
    seed: int = 1
    record: str | None = None  # file receiving every frame the exchange sends
    ssl_context: ssl.SSLContext | None = None  # serve https/wss (the venue's schemes) with this server context
    # Accounts (EOA address -> its deposit wallet) the venue makes use the deposit-wallet flow:
    # their EOA/proxy/Safe orders get "maker address not allowed, please use the deposit wallet flow".
    deposit_wallets: dict[str, str] = field(default_factory=dict)
    gamma_refuse_default_ua: bool = False  # Cloudflare's 403 to Python-urllib/aiohttp/requests user-agents
    # A latency model (the simulator's; 0 = loopback): order and cancel requests reach the engine
    # entry_delay_ms after they arrive, market-channel frames leave md_delay_ms after the event.
    entry_delay_ms: int = 0
    md_delay_ms: int = 0
    # The RTDS Chainlink feed reaches subscribers this long after its (second-aligned) stamp, as
    # the real one does (~1.3 s median on the recorded day); Binance prices only md_delay_ms.
    chainlink_lag_ms: int = 0


class _Bucket:
    def __init__(self, rate: float, burst: float, clock: Clock) -> None:
        self.clock = clock
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, clock.monotonic()

    def take(self, n: float) -> float:
        """Take ``n`` tokens; 0.0 when admitted, else the seconds to wait (all-or-nothing)."""
        now = self.clock.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate


@dataclass
class ApiKey:
    key: str
    secret: str
    passphrase: str
    address: str


async def serve_app(
    app: web.Application, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, str]:
    """Start an aiohttp app on ``host``:``port`` (0 = a free port), over TLS when given a server
    ``ssl_context``; returns the runner and its URL (``https://`` then)."""
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    real = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"{'https' if ssl_context else 'http'}://{host}:{real}"


def _json(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json", headers=headers)


def _err(message: str, status: int = 400, **extra: object) -> web.Response:
    return _json({"error": message, **extra}, status)


def _seconds(s: float) -> str:
    """A ``Retry-After`` value: whole seconds, rounded up."""
    return str(max(1, math.ceil(s)))


def _cursor(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode()


def _offset(cursor: str) -> int:
    try:
        return int(base64.b64decode(cursor).decode())
    except ValueError:
        raise web.HTTPBadRequest(text='{"error":"invalid next_cursor"}', content_type="application/json") from None


class Exchange:
    def __init__(self, config: ExchangeConfig | None = None, clock: Clock = SYSTEM) -> None:
        self.cfg = config or ExchangeConfig()
        self.clock = clock
        # Frames not yet written, per socket, in publication order, each with the monotonic time
        # it may leave (the latency model): one FIFO per socket, never the loop's timer heap.
        self._outbox: dict[web.WebSocketResponse, deque[tuple[float, bytes]]] = {}
        self._outbox_wake: dict[web.WebSocketResponse, asyncio.Future[None]] = {}
        # The transport of each uncompressed socket: the frames due together are written to it
        # in one call (the same bytes as one send_str each, a tenth of the system calls).
        self._ws_transport: dict[web.WebSocketResponse, asyncio.Transport] = {}
        self.engine = Engine()
        self.faults = Faults()
        self.rng = random.Random(self.cfg.seed)
        self.keys: dict[str, ApiKey] = {}
        self.heartbeats: dict[str, tuple[str, float]] = {}  # address -> (id, last monotonic)
        self.buckets: dict[str, tuple[_Bucket, _Bucket]] = {}
        self.gamma_markets: list[dict[str, Any]] = []
        self.closed_markets: dict[str, dict[str, Any]] = {}  # records of resolved markets forgotten
        self._published_tops: dict[str, tuple[str, str]] = {}  # token -> the touch its last best_bid_ask told
        self.market_sockets: dict[web.WebSocketResponse, set[str]] = {}
        self.custom_feature: set[web.WebSocketResponse] = set()
        self.user_sockets: dict[web.WebSocketResponse, tuple[ApiKey, set[str]]] = {}
        # The real-time data socket (reference prices): the flow publishes its underlying here.
        self.rtds = RtdsHub(self._send, clock, self.cfg.md_delay_ms, self.cfg.chainlink_lag_ms)
        self.sent_frames = 0
        # Order signature checks by outcome (verified_v3, verified_1271, deposit_wallet_required,
        # version_mismatch, invalid_signature), and the deposit wallets: wallet -> owner EOA.
        self.signature_checks: dict[str, int] = {}
        self.wallet_owners: dict[str, str] = {}
        for owner, wallet in self.cfg.deposit_wallets.items():
            self.require_deposit_wallet(owner, wallet)
        self.gamma_refused = 0  # Gamma requests refused for their user-agent
        self.revoked_allowances: dict[str, set[str]] = {}  # address (lower) -> spenders (lower) not approved
        self.geoblocked = False  # /api/geoblock says this IP may not trade
        self.geo_country = "XX"
        self.clock_skew_s = 0.0  # added to what /time says (a client clock that is off, seen from it)
        self._record = open(self.cfg.record, "ab") if self.cfg.record else None  # noqa: SIM115 - closed in stop()
        self._runners: list[web.AppRunner] = []
        self._tasks = TaskSet(_log)
        self.clob_url = ""
        self.gamma_url = ""
        for address, usdc in self.cfg.seed_balances.items():
            self.engine.credit(address, collateral=usdc * 1_000_000)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> Exchange:
        clob = web.Application(client_max_size=4 * 1024 * 1024)
        r = clob.router
        for path, handler in (
            ("/time", self.h_time),
            ("/ok", self.h_ok),
            ("/version", self.h_version),
            ("/book", self.h_book),
            ("/tick-size", self.h_tick_size),
            ("/neg-risk", self.h_neg_risk),
            ("/fee-rate", self.h_fee_rate),
            ("/markets", self.h_markets),
            ("/markets/{cid}", self.h_market),
            ("/clob-markets/{cid}", self.h_clob_market),
            ("/midpoint", self.h_midpoint),
            ("/price", self.h_price),
            ("/last-trade-price", self.h_last_trade),
            ("/auth/derive-api-key", self.h_derive_key),
            ("/data/orders", self.h_orders_list),
            ("/data/order/{oid}", self.h_order_get),
            ("/data/trades", self.h_trades),
            ("/rebates/current", self.h_rebates),
            ("/balance-allowance", self.h_balance),
            ("/balance-allowance/update", self.h_balance),  # no cache to refresh: the same answer
            ("/api/geoblock", self.h_geoblock),
            ("/ws/market", self.ws_market),
            ("/ws/user", self.ws_user),
            ("/ws/rtds", self.ws_rtds),
        ):
            r.add_get(path, handler)
        r.add_post("/books", self.h_books)
        r.add_post("/auth/api-key", self.h_create_key)
        r.add_post("/order", self.h_post_order)
        r.add_post("/orders", self.h_post_orders)
        r.add_delete("/order", self.h_cancel)
        r.add_delete("/orders", self.h_cancel_many)
        r.add_delete("/cancel-all", self.h_cancel_all)
        r.add_delete("/cancel-market-orders", self.h_cancel_market)
        r.add_post("/v1/heartbeats", self.h_heartbeat)
        gamma = web.Application()
        gamma.router.add_get("/events/slug/{slug}", self.g_event)
        gamma.router.add_get("/markets", self.g_markets)
        gamma.router.add_get("/markets/keyset", self.g_keyset)
        self.clob_url = await self._serve(clob, self.cfg.clob_port)
        self.gamma_url = await self._serve(gamma, self.cfg.gamma_port)
        self._tasks.spawn(self._housekeeping())
        return self

    async def _serve(self, app: web.Application, port: int) -> str:
        runner, url = await serve_app(app, self.cfg.host, port, self.cfg.ssl_context)
        self._runners.append(runner)
        return url

    @property
    def ws_url(self) -> str:
        return self.clob_url.replace("https://", "wss://").replace("http://", "ws://")

    @property
    def rtds_url(self) -> str:
        """The real-time data socket (the venue's ``wss://ws-live-data.polymarket.com``)."""
        return self.ws_url + "/ws/rtds"

    async def stop(self) -> None:
        self._tasks.cancel()
        self.rtds.cancel_pending()
        for ws in list(self.market_sockets) + list(self.user_sockets) + list(self.rtds.sockets):
            await ws.close()
        for runner in self._runners:
            await runner.cleanup()
        if self._record:
            self._record.close()
            self._record = None

    async def _housekeeping(self) -> None:
        while True:
            await self.clock.sleep(0.5)
            now = self.clock.monotonic()
            for address, (_hb, last) in list(self.heartbeats.items()):
                if now - last > HEARTBEAT_TIMEOUT_S:
                    _log.info("heartbeat missed by %s: cancelling all its orders", address)
                    del self.heartbeats[address]
                    for o in self.engine.live_orders(account=address):
                        self._publish(self.engine.cancel(o.id, reason="heartbeat expired")[2])
            self._publish(self.engine.expire(self.clock.ms()))
            self.forget()

    def forget(self) -> None:
        """Forget the history past the engine's horizon; a forgotten market leaves Gamma too."""
        forgotten = self.engine.forget(self.clock.ms())
        for m in forgotten:  # the venue answers /markets/{id} for closed markets for good
            self.closed_markets[m.condition_id] = messages.market_record(m)
        for m in forgotten:
            self._published_tops.pop(m.up, None)
            self._published_tops.pop(m.down, None)
        gone = {m.condition_id for m in forgotten}
        if gone:
            self.gamma_markets[:] = [g for g in self.gamma_markets if g.get("conditionId") not in gone]

    # -- markets ------------------------------------------------------------------------

    def add_market(self, market: Market, gamma: dict[str, Any] | None = None) -> None:
        self.engine.add_market(market)
        if gamma is not None:
            if market.order_version == 3:
                # A Protocol-V2 market as Gamma serves it: version "v2", positionIds, no clobTokenIds.
                gamma = dict(
                    gamma, version="v2", positionIds=gamma.get("clobTokenIds", f'["{market.up}", "{market.down}"]')
                )
                gamma.pop("clobTokenIds", None)
            self.gamma_markets.append(gamma)
        if self._record:
            self._record.write(
                orjson.dumps([messages.book_msg(market, t, self.clock.ms()) for t in (market.up, market.down)]) + b"\n"
            )

    def resolve_market(self, condition_id: str, winner: str) -> None:
        m = self.engine.markets[condition_id]
        self._publish(self.engine.resolve(condition_id, winner, self.clock.ms()))
        msg = {
            "event_type": "market_resolved",
            "id": condition_id,
            "market": condition_id,
            "assets_ids": [m.up, m.down],
            "winning_asset_id": winner,
            "winning_outcome": "Up" if winner == m.up else "Down",
            "timestamp": str(self.clock.ms()),
        }
        self._broadcast_market(None, msg)

    def announce_market(self, market: Market, slug: str, question: str) -> None:
        msg = {
            "event_type": "new_market",
            "id": market.condition_id,
            "question": question,
            "market": market.condition_id,
            "slug": slug,
            "assets_ids": [market.up, market.down],
            "outcomes": ["Up", "Down"],
            "condition_id": market.condition_id,
            "clob_token_ids": [market.up, market.down],
            "active": True,
            "order_price_min_tick_size": core.format_price(market.tick),
            "timestamp": str(self.clock.ms()),
        }
        self._broadcast_market(None, msg)

    # -- publication --------------------------------------------------------------------

    def _send(self, ws: web.WebSocketResponse, frame: bytes, delay_s: float = 0.0) -> None:
        """Queue a frame for a subscriber, to leave ``delay_s`` from now: one sender per socket,
        frames written in the order they were queued (no task per frame).

        The delay is kept in the socket's queue rather than in a ``call_later`` per frame:
        timers due at the same instant have no order in asyncio's heap, and frames published
        in one instant (a cancel and a place reaching the engine together, a ``price_change``
        and its ``best_bid_ask``) were written in a scrambled order, which a subscriber's book
        cannot survive (sizes are absolute per level; the stated top is after the frame)."""
        self.sent_frames += 1
        box = self._outbox.get(ws)
        if box is None:
            box = self._outbox[ws] = deque()
            self._tasks.spawn(self._sender(ws, box))
        box.append((self.clock.monotonic() + delay_s if delay_s > 0 else 0.0, frame))
        waiter = self._outbox_wake.pop(ws, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _sender(self, ws: web.WebSocketResponse, box: deque[tuple[float, bytes]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not ws.closed:
                while box and not ws.closed:
                    due, frame = box[0]
                    wait = due - self.clock.monotonic()
                    if wait > SEND_SLACK_S:  # a frame behind it is due no earlier: FIFO holds
                        await self.clock.sleep(wait)
                        continue
                    transport = self._ws_transport.get(ws)
                    if transport is None:
                        box.popleft()
                        await _send_text(ws, frame.decode())
                        continue
                    # Everything due now, in order, in one write: what the peer reads at its next
                    # poll is the same either way (one send_str each never yielded in between).
                    until = self.clock.monotonic() + SEND_SLACK_S
                    frames = []
                    while box and box[0][0] <= until:
                        frames.append(_text_frame(box.popleft()[1]))
                    if not transport.is_closing():
                        transport.write(b"".join(frames))
                if ws.closed:
                    break
                waiter = self._outbox_wake[ws] = loop.create_future()
                await waiter
        finally:
            self._outbox.pop(ws, None)
            self._outbox_wake.pop(ws, None)

    def _broadcast_market(self, tokens: set[str] | None, msg: dict[str, Any]) -> None:
        """Send to subscribers of ``tokens`` (None = everyone); the custom-feature events only to
        connections that asked for them with ``custom_feature_enabled``."""
        if self.faults.freeze_market:
            return
        frame = orjson.dumps(msg)
        if self._record:
            # The recording is the feed of a subscriber to every token, one frame per line.
            self._record.write(frame + b"\n")
        custom_only = msg.get("event_type") in CUSTOM_FEATURE_EVENTS
        for ws, subs in list(self.market_sockets.items()):
            if custom_only and ws not in self.custom_feature:
                continue
            if tokens is None or subs & tokens:
                self._send(ws, frame, self.cfg.md_delay_ms / 1000)

    def _publish(self, result: Result) -> None:
        now = str(self.clock.ms())
        by_market: dict[str, list[Any]] = {}
        for ch in result.changes:
            by_market.setdefault(ch.market, []).append(ch)
        for cid, changes in by_market.items():
            m = self.engine.markets[cid]
            self._check_tick(m)
            entries = []
            up_top, down_top = messages.top(m, m.up), messages.top(m, m.down)
            for ch in changes:
                entries.append(
                    {
                        "asset_id": m.up,
                        "price": core.format_price(ch.price),
                        "size": core.format_size(ch.size),
                        "side": BUY if ch.side == BID else SELL,
                        "hash": m.next_hash(),
                        "best_bid": up_top[0],
                        "best_ask": up_top[1],
                    }
                )
                entries.append(
                    {
                        "asset_id": m.down,
                        "price": core.format_price(SCALE - ch.price),
                        "size": core.format_size(ch.size),
                        "side": SELL if ch.side == BID else BUY,
                        "hash": m.next_hash(),
                        "best_bid": down_top[0],
                        "best_ask": down_top[1],
                    }
                )
            self._broadcast_market(
                {m.up, m.down},
                {"market": cid, "price_changes": entries, "timestamp": now, "event_type": "price_change"},
            )
            for token, top in ((m.up, up_top), (m.down, down_top)):
                # The venue emits best_bid_ask when a token's best bid or ask changes, not with
                # every price_change (a change deeper in the book moves no touch).
                if self.faults.freeze_market or self._published_tops.get(token) == top:
                    continue  # (a frozen feed tells no one: the touch it hid is told when it thaws)
                self._published_tops[token] = top
                self._broadcast_market(
                    {token},
                    {
                        "event_type": "best_bid_ask",
                        "market": cid,
                        "asset_id": token,
                        "best_bid": top[0],
                        "best_ask": top[1],
                        "spread": messages.spread_text(top),
                        "timestamp": now,
                    },
                )
        for trade in result.trades:
            self._publish_trade(trade)
        if result.touched:
            listening = {key.key for key, _ in self.user_sockets.values()}
            for order in result.touched:
                if order.owner in listening:  # most are the house's and the takers': nobody listens
                    self._user_order_event(order)

    def _check_tick(self, m: Market) -> None:
        bid, ask = m.best(BID), m.best(ASK)
        extreme = (bid != core.NO_PRICE and bid > 9600) or (ask != core.NO_PRICE and ask < 400)
        want = min(m.base_tick, 10) if extreme else m.base_tick
        if want != m.tick:
            self.force_tick_size(m.condition_id, want, sticky=False)

    def force_tick_size(self, condition_id: str, tick: int, sticky: bool = True) -> None:
        """Change a market's tick and announce it. A forced change (the fault) sticks: the market's
        base tick follows it; the automatic flips at the 0.96/0.04 extremes do not."""
        m = self.engine.markets[condition_id]
        if sticky:
            m.base_tick = tick
        old, m.tick = m.tick, tick
        for token in (m.up, m.down):
            self._broadcast_market(
                {token},
                {
                    "event_type": "tick_size_change",
                    "asset_id": token,
                    "market": condition_id,
                    "old_tick_size": core.format_price(old),
                    "new_tick_size": core.format_price(tick),
                    "timestamp": str(self.clock.ms()),
                },
            )

    def _publish_trade(self, trade: Trade) -> None:
        m = self.engine.markets[trade.market]
        taker = trade.taker
        self._broadcast_market(
            {m.up, m.down},
            {
                "asset_id": taker.token,
                "event_type": "last_trade_price",
                "fee_rate_bps": "0",
                "market": m.condition_id,
                "price": core.format_price(trade.price),
                "side": taker.side,
                "size": core.format_size(trade.size),
                "timestamp": str(trade.t_ms),
            },
        )
        self._user_trade_event(trade)
        d1, d2 = self.cfg.settle_delays_ms
        ghost = self.rng.random() < self.cfg.ghost_share
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven without a server (offline simulation): settle at once
            for status in ("RETRYING", "FAILED") if ghost else ("MINED", "CONFIRMED"):
                self._settle_step(trade, status)
            return
        if ghost:
            loop.call_later(d1 / 1000, self._settle_step, trade, "RETRYING")
            loop.call_later(d2 / 1000, self._settle_step, trade, "FAILED")
        else:
            loop.call_later(d1 / 1000, self._settle_step, trade, "MINED")
            loop.call_later(d2 / 1000, self._settle_step, trade, "CONFIRMED")

    def _settle_step(self, trade: Trade, status: str) -> None:
        if status == "FAILED":
            self.engine.fail_trade(trade)
        elif status in ("MINED", "CONFIRMED"):
            self.engine.deliver(trade)  # the chain delivers tokens and sale collateral when mined
        trade.status = status
        self._user_trade_event(trade)

    def _user_trade_event(self, trade: Trade) -> None:
        owners = {trade.taker.owner} | {mf.order.owner for mf in trade.makers}
        for ws, (key, markets) in list(self.user_sockets.items()):
            if key.key in owners and (not markets or trade.market in markets):
                msg = messages.trade_msg(self.engine.markets[trade.market], trade, key.key, self.clock.ms())
                frame = orjson.dumps(msg)
                self._user_send(ws, frame)
                if self.faults.duplicate_user_trades:
                    self.faults.duplicated += 1
                    self._user_send(ws, frame)

    def _user_order_event(self, order: Order) -> None:
        if not any(key.key == order.owner for key, _ in self.user_sockets.values()):
            return  # nobody listens for this account (the house, the takers)
        kind = "CANCELLATION" if order.status == "CANCELED" else ("PLACEMENT" if order.matched == 0 else "UPDATE")
        status = order.status
        if status == "CANCELED" and order.reason and order.reason.startswith("order couldn't"):
            status = f"CANCELED_{order.reason}"
        elif status == "CANCELED" and order.reason == "venue invalidation":
            status = "INVALID"
        msg = {
            "asset_id": order.token,
            "associate_trades": [],
            "created_at": str(order.created_at),
            "event_type": "order",
            "expiration": str(order.expiration),
            "id": order.id,
            "maker_address": order.account,
            "market": order.market,
            "order_owner": order.owner,
            "order_type": order.order_type,
            "original_size": core.format_size(order.size),
            "outcome": "Up" if order.token == self.engine.by_token[order.token].up else "Down",
            "owner": order.owner,
            "price": core.format_price(order.price),
            "side": order.side,
            "size_matched": core.format_size(order.matched),
            "status": status,
            "timestamp": str(self.clock.ms()),
            "type": kind,
        }
        frame = orjson.dumps(msg)
        for ws, (key, markets) in list(self.user_sockets.items()):
            if key.key == order.owner and (not markets or order.market in markets):
                self._user_send(ws, frame)

    def _user_send(self, ws: web.WebSocketResponse, frame: bytes) -> None:
        delay = self.faults.delay_user_ms / 1000
        if self.faults.reorder_user:
            delay = self.rng.random() * max(delay, 0.2)
        if delay:
            self.faults.delayed += 1
            asyncio.get_running_loop().call_later(delay, self._send, ws, frame)
        else:
            self._send(ws, frame)

    # -- auth ---------------------------------------------------------------------------

    def _key_for(self, address: str, nonce: int) -> ApiKey:
        seed = hashlib.sha256(f"{address.lower()}:{nonce}:{self.cfg.seed}".encode()).digest()
        key = ApiKey(
            str(uuid.UUID(bytes=seed[:16])), base64.urlsafe_b64encode(seed).decode(), seed[16:28].hex(), address
        )
        if key.key not in self.keys:
            self.keys[key.key] = key
            acct = self.engine.account(address)
            if address not in self.cfg.seed_balances and acct.collateral == 0 and acct.reserved == 0:
                acct.collateral = self.cfg.paper_balance_usdc * 1_000_000
        return key

    def require_deposit_wallet(self, owner: str, wallet: str | None = None) -> str:
        """Flag ``owner``'s account as one that must trade through a deposit wallet (as the venue
        does for API accounts created since ~May 2026) and register the wallet (by default an
        address derived from the owner, as a wallet factory's CREATE2 would); returns it."""
        if wallet is None:
            wallet = checksum_address(keccak(b"deposit-wallet:" + bytes.fromhex(owner[2:]))[-20:])
        self.cfg.deposit_wallets[owner.lower()] = wallet
        self.wallet_owners[wallet.lower()] = owner
        return wallet

    def _checked(self, outcome: str) -> None:
        self.signature_checks[outcome] = self.signature_checks.get(outcome, 0) + 1

    def _verify_order(self, wire: dict[str, Any], market: Market, key: ApiKey) -> str:
        """The orderID of a wire order whose signature holds for the exchange the market trades
        on, or an EngineError with the venue's message. Orders of a Protocol-V2 market are
        signed for ExchangeV3, the others for the venue's order version; a V2-shaped order
        signed for the other V2-family exchange is a version mismatch, as the venue says."""
        is_v2 = "timestamp" in wire
        want = 3 if market.order_version == 3 else self.cfg.order_version
        if is_v2 != (want != 1):
            self._checked("version_mismatch")
            raise EngineError("order_version_mismatch", "order_version_mismatch")
        sig_type = int(wire["signatureType"])
        if sig_type != POLY_1271 and key.address.lower() in self.cfg.deposit_wallets:
            self._checked("deposit_wallet_required")
            raise EngineError("maker address not allowed, please use the deposit wallet flow")
        if sig_type == POLY_1271:
            # ERC-1271: the wallet is maker and signer; its owner's key signed the nested digest.
            owner = self.wallet_owners.get(str(wire["signer"]).lower())
            if owner is None or str(wire["maker"]).lower() != str(wire["signer"]).lower():
                self._checked("invalid_signature")
                raise EngineError("invalid signature")
            expected = owner
        else:
            expected = str(wire["signer"])
        versions = (want,) if not is_v2 else (want, 3 if want == 2 else 2)
        for version in versions:
            try:
                oid, signer = recover_order_signer(wire, self.cfg.chain_id, False, version)
            except SigningError:
                continue
            if signer.lower() == expected.lower():
                if version != want:
                    self._checked("version_mismatch")
                    raise EngineError("order_version_mismatch", "order_version_mismatch")
                self._checked("verified_1271" if sig_type == POLY_1271 else f"verified_v{version}")
                if expected.lower() != key.address.lower():
                    raise EngineError("the order signer address has to be the address of the API KEY")
                return oid
        self._checked("invalid_signature")
        raise EngineError("invalid signature")

    def _l1(self, request: web.Request) -> ApiKey:
        h = request.headers
        try:
            address, ts, nonce, sig = (
                h["POLY_ADDRESS"],
                h["POLY_TIMESTAMP"],
                int(h.get("POLY_NONCE", "0")),
                h["POLY_SIGNATURE"],
            )
            signer = recover_signer(clob_auth_digest(address, ts, nonce, self.cfg.chain_id), sig)
        except (KeyError, ValueError, SigningError):
            raise web.HTTPUnauthorized(
                text='{"error":"Invalid L1 Request headers"}', content_type="application/json"
            ) from None
        if signer.lower() != address.lower():
            raise web.HTTPUnauthorized(text='{"error":"Invalid L1 Request headers"}', content_type="application/json")
        return self._key_for(signer, nonce)

    async def _l2(self, request: web.Request, body: bytes) -> ApiKey:
        h = request.headers
        key = self.keys.get(h.get("POLY_API_KEY", ""))
        if key is None or h.get("POLY_PASSPHRASE") != key.passphrase:
            raise web.HTTPUnauthorized(text='{"error":"Unauthorized/Invalid api key"}', content_type="application/json")
        msg = f"{h.get('POLY_TIMESTAMP', '')}{request.method}{request.path}".encode() + body.replace(b"'", b'"')
        want = base64.urlsafe_b64encode(
            hmac.new(base64.urlsafe_b64decode(key.secret), msg, hashlib.sha256).digest()
        ).decode()
        if not hmac.compare_digest(want, h.get("POLY_SIGNATURE", "")):
            raise web.HTTPUnauthorized(text='{"error":"Unauthorized/Invalid api key"}', content_type="application/json")
        if self.faults.rate_limit_next > 0:
            self.faults.rate_limit_next -= 1
            self.faults.rate_limit_answers += 1
            raise web.HTTPTooManyRequests(
                text='{"error":"Too Many Requests"}',
                content_type="application/json",
                headers={"Retry-After": _seconds(self.faults.rate_limit_retry_after)},
            )
        return key

    def _limit(self, key: ApiKey, kind: int, cost: float) -> web.Response | None:
        buckets = self.buckets.get(key.address)
        if buckets is None:
            buckets = self.buckets[key.address] = (
                _Bucket(*self.cfg.order_rate, self.clock),
                _Bucket(*self.cfg.cancel_rate, self.clock),
            )
        wait = buckets[kind].take(cost)
        if wait:
            return _json({"error": "rate limit exceeded"}, 429, {"Retry-After": f"{max(1, round(wait))}"})
        return None

    def _fault(self, order_endpoint: bool, post_only: bool = True, place: bool = False) -> web.Response | None:
        """The scripted answer an order endpoint gives now instead of doing its job (``place``:
        a submit, refused in cancel-only mode; cancels are not), or None."""
        if self.faults.http_status_queue:
            status, body, headers = self.faults.http_status_queue.popleft()
            return _json(body, status, headers)
        now = self.clock.monotonic()
        if order_endpoint and now < self.faults.restart_until:
            self.faults.restart_answers += 1
            restart_left = {"Retry-After": _seconds(self.faults.restart_until - now)}
            return _json(
                {"error": "Too Early: the matching engine is restarting"},
                425,
                restart_left if self.faults.restart_retry_after else None,
            )
        if place and now < self.faults.cancel_only_until:
            self.faults.cancel_only_answers += 1
            retry = self.faults.cancel_only_retry_after
            return _json(
                {"error": "Trading is currently cancel-only. New orders are not accepted, but cancels are allowed."},
                503,
                {"Retry-After": _seconds(retry)} if retry is not None else None,
            )
        if order_endpoint and not post_only and now < self.faults.post_only_until:
            self.faults.post_only_answers += 1
            left = int(self.faults.post_only_until - now) + 1
            return _json(
                {
                    "error": "post-only mode: only post-only orders and cancels are allowed",
                    "code": "post_only_mode",
                    "retry_after_seconds": left,
                },
                503,
                {"Retry-After": str(left)},
            )
        return None

    async def h_create_key(self, request: web.Request) -> web.Response:
        key = self._l1(request)
        return _json({"apiKey": key.key, "secret": key.secret, "passphrase": key.passphrase})

    async def h_derive_key(self, request: web.Request) -> web.Response:
        key = self._l1(request)
        return _json({"apiKey": key.key, "secret": key.secret, "passphrase": key.passphrase})

    # -- public REST --------------------------------------------------------------------

    def _market_of(self, token: str | None) -> Market:
        if not token or not token.isdigit():
            raise web.HTTPBadRequest(text='{"error":"Invalid token id"}', content_type="application/json")
        m = self.engine.by_token.get(token)
        if m is None:
            raise web.HTTPNotFound(
                text='{"error":"No orderbook exists for the requested token id"}', content_type="application/json"
            )
        return m

    async def h_time(self, request: web.Request) -> web.Response:
        return web.Response(text=str(int(self.clock.time() + self.clock_skew_s)))

    async def h_ok(self, request: web.Request) -> web.Response:
        return _json("OK")

    async def h_version(self, request: web.Request) -> web.Response:
        return _json({"version": self.cfg.order_version})

    def _rest_book(self, token: str) -> dict[str, Any]:
        m = self._market_of(token)
        msg = messages.book_msg(m, token, self.clock.ms())
        msg.pop("event_type")
        msg.update(min_order_size=core.format_size(m.min_size), neg_risk=False)
        return msg

    async def h_book(self, request: web.Request) -> web.Response:
        return _json(self._rest_book(request.query.get("token_id", "")))

    async def h_books(self, request: web.Request) -> web.Response:
        items = orjson.loads(await request.read())
        if len(items) > 500:
            return _err("Payload exceeds the limit")
        return _json([self._rest_book(i["token_id"]) for i in items if i.get("token_id") in self.engine.by_token])

    async def h_tick_size(self, request: web.Request) -> web.Response:
        m = self._market_of(request.query.get("token_id"))
        return _json({"minimum_tick_size": float(Fraction(m.tick, SCALE))})

    async def h_neg_risk(self, request: web.Request) -> web.Response:
        self._market_of(request.query.get("token_id"))
        return _json({"neg_risk": False})

    async def h_fee_rate(self, request: web.Request) -> web.Response:
        m = self._market_of(request.query.get("token_id"))
        return _json({"base_fee": 1000 if m.fees.rate else 0})

    async def h_clob_market(self, request: web.Request) -> web.Response:
        m = self.engine.markets.get(request.match_info["cid"])
        return _json(messages.clob_market(m)) if m else _err("market not found", 404)

    async def h_markets(self, request: web.Request) -> web.Response:
        markets = list(self.engine.markets.values())
        return self._page(markets, request.query.get("next_cursor", "MA=="), messages.market_record)

    async def h_market(self, request: web.Request) -> web.Response:
        record = self.market_record(request.match_info["cid"])
        return _json(record) if record is not None else _err("market not found", 404)

    def market_record(self, cid: str) -> dict[str, Any] | None:
        """``/markets/{id}``: a listed market's record, or a resolved one's after the engine
        forgot it (its winner: a bot back after the horizon still settles its positions)."""
        m = self.engine.markets.get(cid)
        return messages.market_record(m) if m is not None else self.closed_markets.get(cid)

    async def h_midpoint(self, request: web.Request) -> web.Response:
        m = self._market_of(request.query.get("token_id"))
        bid, ask = messages.top(m, request.query["token_id"])
        mid = Fraction(core.parse_price(bid) + core.parse_price(ask), 2 * SCALE)
        return _json({"mid": str(float(mid))})

    async def h_price(self, request: web.Request) -> web.Response:
        m = self._market_of(request.query.get("token_id"))
        bid, ask = messages.top(m, request.query["token_id"])
        return _json({"price": bid if request.query.get("side") == "BUY" else ask})

    async def h_last_trade(self, request: web.Request) -> web.Response:
        m = self._market_of(request.query.get("token_id"))
        return _json({"price": core.format_price(m.last_trade) if m.last_trade else "0.5", "side": ""})

    async def h_rebates(self, request: web.Request) -> web.Response:
        maker = request.query.get("maker_address", "")
        acct = self.engine.accounts.get(maker)
        if acct is None or not acct.rebates:
            return _json(None)
        date = request.query.get("date") or time.strftime("%Y-%m-%d", time.gmtime())
        return _json(
            [
                {
                    "date": f"{date}T00:00:00Z",
                    "condition_id": cid,
                    "asset_address": "",
                    "maker_address": maker,
                    "rebated_fees_usdc": f"{float(v):.6f}",
                }
                for cid, v in acct.rebates.items()
            ]
        )

    # -- private REST -------------------------------------------------------------------

    async def h_balance(self, request: web.Request) -> web.Response:
        key = await self._l2(request, b"")
        acct = self.engine.account(key.address)
        token = request.query.get("token_id", "")
        # The on-chain balance: settled holdings, including what resting orders reserve (orders
        # do not move funds on chain); undelivered trades are not in it yet.
        if request.query.get("asset_type", "COLLATERAL").upper() == "CONDITIONAL":
            held = acct.tokens.get(token, 0) + acct.reserved_tokens.get(token, 0)
            return _json({"balance": str(held), "allowances": self._allowances(key.address, conditional=True)})
        return _json({"balance": str(acct.collateral + acct.reserved), "allowances": self._allowances(key.address)})

    def _allowances(self, address: str, conditional: bool = False) -> dict[str, str]:
        """What the account approved, per spender (the exchanges and the neg-risk adapter), as
        the venue reports it: the collateral allowance in micro-USDC, or for tokens the CTF
        approval (max-uint when approved, "0" when not). Unlimited unless set otherwise
        (``set_allowance`` / ``set_approval``, enforced on orders) or revoked for the report
        alone (``revoked_allowances``)."""
        revoked = self.revoked_allowances.get(address.lower(), set())
        acct = self.engine.account(address)
        out = {}
        for s in ALLOWANCE_SPENDERS:
            if conditional:
                amount = MAX_ALLOWANCE if acct.approved(s) else "0"
            else:
                limit = acct.allowance(s)
                amount = MAX_ALLOWANCE if limit is None else str(limit)
            out[s] = "0" if s.lower() in revoked else amount
        return out

    def _check_revoked(self, order: Order) -> None:
        """A spender revoked for the account (``revoked_allowances``) is neither allowed
        collateral nor approved for tokens: the order is refused as the venue refuses it."""
        spender = self.engine.by_token[order.token].spender
        if spender.lower() in self.revoked_allowances.get(order.account.lower(), set()):
            raise EngineError(f"{ALLOWANCE_REFUSAL} -> spender: {spender}, allowance: 0", NOT_ENOUGH_BALANCE)

    def set_allowance(self, address: str, spender: str, amount: int | None) -> None:
        """An account's collateral allowance to one spender (micro-USDC; None: unlimited), as an
        ERC-20 ``approve`` would set it; BUY orders beyond it are refused."""
        self.engine.set_allowance(address, spender, amount)

    def set_approval(self, address: str, operator: str, approved: bool) -> None:
        """An account's CTF ``setApprovalForAll`` for one operator; SELL orders need it."""
        self.engine.set_approval(address, operator, approved)

    async def h_geoblock(self, request: web.Request) -> web.Response:
        """``polymarket.com/api/geoblock``: whether orders from this IP are refused."""
        ip = request.remote or ""
        return _json({"blocked": self.geoblocked, "ip": ip, "country": self.geo_country, "region": ""})

    def _parse_order(self, entry: dict[str, Any], key: ApiKey) -> Order:
        try:
            wire = entry["order"]
            order_type = str(entry.get("orderType", "GTC"))
            post_only = bool(entry.get("postOnly", False))
            token = str(wire["tokenId"])
            m = self.engine.by_token.get(token)
            if m is None:
                raise EngineError(f"market not found for token id {token}")
            oid = self._verify_order(wire, m, key)
        except (KeyError, ValueError, TypeError, SigningError):
            raise EngineError("Invalid order payload") from None
        if entry.get("owner") != key.key:
            raise EngineError("the order owner has to be the owner of the API KEY")
        maker_amount, taker_amount = int(wire["makerAmount"]), int(wire["takerAmount"])
        side = wire["side"]
        shares, collateral = (taker_amount, maker_amount) if side == BUY else (maker_amount, taker_amount)
        if shares <= 0 or side not in (BUY, SELL) or (collateral * SCALE) % shares:
            raise EngineError(f"order {oid} is invalid. Price breaks minimum tick size rules")
        return Order(
            oid,
            key.address,
            key.key,
            m.condition_id,
            token,
            side,
            collateral * SCALE // shares,
            shares,
            order_type,
            post_only,
            int(wire.get("expiration", 0) or 0),
        )

    def _place(self, entry: dict[str, Any], key: ApiKey) -> dict[str, Any]:
        try:
            order = self._parse_order(entry, key)
            self._check_revoked(order)
            if self.faults.server_error_share and self.rng.random() < self.faults.server_error_share:
                return {"_status": 500, "error": "could not run the execution"}
            result = self.engine.place(order, self.clock.ms())
        except EngineError as exc:
            return {"success": False, "orderID": "", "status": "", "errorMsg": exc.message, "_code": exc.code}
        self._publish(result)
        status = "matched" if result.trades else "live"
        if order.status == "CANCELED":
            status = "unmatched"
        return {
            "success": True,
            "orderID": order.id,
            "status": status,
            "makingAmount": "",
            "takingAmount": "",
            "errorMsg": "",
            "tradeIDs": [t.id for t in result.trades],
        }

    async def _entry_delay(self) -> None:
        if self.cfg.entry_delay_ms:
            await self.clock.sleep(self.cfg.entry_delay_ms / 1000)

    async def h_post_order(self, request: web.Request) -> web.Response:
        body = await request.read()
        key = await self._l2(request, body)
        await self._entry_delay()
        entry = orjson.loads(body)
        fault = self._fault(True, bool(entry.get("postOnly", False)), place=True)
        if fault:
            return fault
        limited = self._limit(key, 0, 1)
        if limited:
            return limited
        reply = self._place(entry, key)
        if reply.get("_status") == 500:
            return _err(reply["error"], 500)
        if not reply["success"]:
            return _err(reply["errorMsg"])
        await self._maybe_hold()
        return _json(reply)

    async def h_post_orders(self, request: web.Request) -> web.Response:
        body = await request.read()
        key = await self._l2(request, body)
        await self._entry_delay()
        entries = orjson.loads(body)
        if not isinstance(entries, list) or len(entries) > 15:
            return _err("Invalid order payload: at most 15 orders per batch")
        fault = self._fault(True, all(bool(e.get("postOnly", False)) for e in entries), place=True)
        if fault:
            return fault
        limited = self._limit(key, 0, len(entries))
        if limited:
            return limited
        replies = [self._place(e, key) for e in entries]
        if any(r.get("_status") == 500 for r in replies):
            return _err("could not run the execution", 500)
        for r in replies:
            if not r["success"] and r["errorMsg"] != "order_version_mismatch":
                r["success"] = True  # a refused leg: success with an empty orderID and the reason
            r.pop("_code", None)
        await self._maybe_hold()
        return _json(replies)

    async def _maybe_hold(self) -> None:
        if self.faults.timeout_after_place > 0:
            self.faults.timeout_after_place -= 1
            await self.clock.sleep(self.faults.hold_seconds)

    def _cancel_ids(self, key: ApiKey, ids: list[str]) -> dict[str, Any]:
        canceled, not_canceled = [], {}
        for oid in dict.fromkeys(ids):
            order, refusal, result = self.engine.cancel(oid, key.address)
            if refusal:
                not_canceled[oid] = refusal
            else:
                canceled.append(oid)
                self._publish(result)
        return {"canceled": canceled, "not_canceled": not_canceled}

    async def _cancel_reply(self, key: ApiKey, ids: list[str]) -> web.Response:
        """The cancels carried out by the engine; under ``timeout_after_cancel`` their answer is
        held back ``cancel_hold_seconds`` (longer than a client's timeout: it cannot tell what went)."""
        reply = _json(self._cancel_ids(key, ids))
        if self.faults.timeout_after_cancel > 0:
            self.faults.timeout_after_cancel -= 1
            self.faults.held_cancels += 1
            await self.clock.sleep(self.faults.cancel_hold_seconds)
        return reply

    async def h_cancel(self, request: web.Request) -> web.Response:
        body = await request.read()
        key = await self._l2(request, body)
        await self._entry_delay()
        refused = self._fault(True) or self._limit(key, 1, 1)
        return refused or await self._cancel_reply(key, [orjson.loads(body)["orderID"]])

    async def h_cancel_many(self, request: web.Request) -> web.Response:
        body = await request.read()
        key = await self._l2(request, body)
        await self._entry_delay()
        ids = orjson.loads(body)
        if len(ids) > 1000:
            return _err("Invalid payload: at most 1000 order ids")
        refused = self._fault(True) or self._limit(key, 1, len(ids))
        return refused or await self._cancel_reply(key, ids)

    async def h_cancel_all(self, request: web.Request) -> web.Response:
        key = await self._l2(request, await request.read())
        fault = self._fault(True)
        ids = [o.id for o in self.engine.live_orders(account=key.address)]
        refused = fault or self._limit(key, 1, 1 + len(ids))
        return refused or await self._cancel_reply(key, ids)

    async def h_cancel_market(self, request: web.Request) -> web.Response:
        body = await request.read()
        key = await self._l2(request, body)
        args = orjson.loads(body) if body else {}
        ids = [o.id for o in self.engine.live_orders(key.address, args.get("market", ""), args.get("asset_id", ""))]
        fault = self._fault(True)
        refused = fault or self._limit(key, 1, 1 + len(ids))
        return refused or await self._cancel_reply(key, ids)

    async def h_orders_list(self, request: web.Request) -> web.Response:
        await self._slow(self.faults.slow_data_s)
        key = await self._l2(request, b"")
        q = request.query
        orders = [
            o
            for o in self.engine.live_orders(key.address, q.get("market", ""), q.get("asset_id", ""))
            if not q.get("id") or o.id == q["id"]
        ]
        return self._page(
            orders, q.get("next_cursor", "MA=="), lambda o: messages.open_order(self.engine.by_token[o.token], o)
        )

    def _page(self, items: list[Any], cursor: str, row: Callable[[Any], dict[str, Any]]) -> web.Response:
        """One page of ``items`` from ``cursor``, each page's items made into rows by ``row``
        (only those of the page: a client reading a long history page by page)."""
        if cursor == END_CURSOR:
            return _err("invalid next_cursor")
        start = _offset(cursor)
        page = [row(item) for item in items[start : start + self.cfg.page_size]]
        nxt = _cursor(start + len(page)) if start + len(page) < len(items) else END_CURSOR
        return _json({"limit": self.cfg.page_size, "count": len(page), "next_cursor": nxt, "data": page})

    async def h_order_get(self, request: web.Request) -> web.Response:
        key = await self._l2(request, b"")
        o = self.engine.orders.get(request.match_info["oid"])
        m = self.engine.by_token.get(o.token) if o is not None else None
        if o is None or m is None or o.account != key.address:  # no market: forgotten with it
            return _err("order not found", 404)
        return _json(messages.open_order(m, o))

    async def h_trades(self, request: web.Request) -> web.Response:
        await self._slow(self.faults.slow_data_s)
        key = await self._l2(request, b"")
        q = request.query
        after = int(q.get("after") or 0)
        trades = []
        for t in reversed(self.engine.by_owner.get(key.key, ())):  # newest first: ``after`` reads the tail
            if t.t_ms // 1000 < after:
                break
            trades.append(t)
        market, before = q.get("market"), q.get("before")
        chosen = [
            t
            for t in reversed(trades)
            if (not market or t.market == market) and (not before or t.t_ms // 1000 < int(before))
        ]
        now_ms = self.clock.ms()

        def row(t: Any) -> dict[str, Any]:
            r = messages.trade_msg(self.engine.markets[t.market], t, key.key, now_ms)
            r.pop("event_type", None)
            return r

        return self._page(chosen, q.get("next_cursor", "MA=="), row)

    async def h_heartbeat(self, request: web.Request) -> web.Response:
        body = await request.read()
        key = await self._l2(request, body)
        sent = (orjson.loads(body) if body else {}).get("heartbeat_id", "")
        current = self.heartbeats.get(key.address)
        if current is not None and sent != current[0]:
            return _err("Invalid Heartbeat ID", 400, heartbeat_id=current[0])
        hb = str(uuid.UUID(int=self.rng.getrandbits(128)))
        self.heartbeats[key.address] = (hb, self.clock.monotonic())
        return _json({"heartbeat_id": hb})

    # -- WebSockets ---------------------------------------------------------------------

    async def _ws_loop(
        self, request: web.Request, on_message: Callable[[web.WebSocketResponse, Any], None], registry: dict[Any, Any]
    ) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        if not ws.compress and request.transport is not None:
            self._ws_transport[ws] = request.transport  # type: ignore[assignment]
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                if msg.data == "PING":
                    if not self.faults.drop_pong:
                        await ws.send_str("PONG")
                    continue
                try:
                    on_message(ws, json.loads(msg.data))
                except (ValueError, KeyError, TypeError, web.HTTPException):
                    await ws.close(code=1008, message=b"bad subscription")
        finally:
            registry.pop(ws, None)
            self.custom_feature.discard(ws)
            self._ws_transport.pop(ws, None)
            waiter = self._outbox_wake.pop(ws, None)  # its sender sees the socket closed and ends
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        return ws

    def _market_sub(self, ws: web.WebSocketResponse, msg: dict[str, Any]) -> None:
        assets = [str(a) for a in msg.get("assets_ids", [])]
        subs = self.market_sockets.setdefault(ws, set())
        if msg.get("operation") == "unsubscribe":
            subs.difference_update(assets)
            return
        subs.update(assets)
        if msg.get("custom_feature_enabled"):
            self.custom_feature.add(ws)
        if not self.faults.freeze_market:
            self._send(ws, orjson.dumps(self._subscribed_books(assets)))

    def _subscribed_books(self, assets: list[str]) -> list[dict[str, Any]]:
        """The ``book`` snapshots a new subscription to ``assets`` gets (the tokens known)."""
        now_ms = self.clock.ms()
        return [messages.book_msg(self.engine.by_token[a], a, now_ms) for a in assets if a in self.engine.by_token]

    def _user_sub(self, ws: web.WebSocketResponse, msg: dict[str, Any]) -> None:
        if "auth" in msg:
            a = msg["auth"]
            key = self.keys.get(a.get("apiKey", ""))
            if key is None or a.get("secret") != key.secret or a.get("passphrase") != key.passphrase:
                raise web.HTTPUnauthorized()
            self.user_sockets[ws] = (key, set(msg.get("markets") or []))
            return
        key, markets = self.user_sockets[ws]
        if msg.get("operation") == "unsubscribe":
            markets.difference_update(msg.get("markets", []))
        else:
            markets.update(msg.get("markets", []))

    async def ws_market(self, request: web.Request) -> web.WebSocketResponse:
        return await self._ws_loop(request, self._market_sub, self.market_sockets)

    async def ws_user(self, request: web.Request) -> web.WebSocketResponse:
        return await self._ws_loop(request, self._user_sub, self.user_sockets)

    async def ws_rtds(self, request: web.Request) -> web.WebSocketResponse:
        return await self._ws_loop(request, self.rtds.on_message, self.rtds.sockets)

    async def drop_sockets(self, channel: str = "market") -> None:
        for ws in list(self.market_sockets if channel == "market" else self.user_sockets):
            await ws.close()

    def send_raw_market(self, frame: bytes) -> None:
        """Send any bytes to every market subscriber (malformed-frame fault)."""
        for ws in list(self.market_sockets):
            self._send(ws, frame)

    def invalidate_orders(self, address: str) -> None:
        """Venue-side cancels the account did not ask for (status INVALID)."""
        for o in self.engine.live_orders(account=address):
            self._publish(self.engine.cancel(o.id, reason="venue invalidation")[2])

    async def _slow(self, seconds: float) -> None:
        if seconds > 0:
            await self.clock.sleep(seconds)

    # -- Gamma --------------------------------------------------------------------------

    async def g_event(self, request: web.Request) -> web.Response:
        await self._slow(self.faults.slow_gamma_s)
        slug = request.match_info["slug"]
        markets = [g for g in self.gamma_markets if g["slug"] == slug]
        if not markets:
            return _err("event not found", 404)
        g = markets[0]
        return _json(
            {
                "id": g["id"],
                "slug": slug,
                "title": g["question"],
                "startDate": g["startDate"],
                "endDate": g["endDate"],
                "markets": markets,
            }
        )

    async def g_markets(self, request: web.Request) -> web.Response:
        await self._slow(self.faults.slow_gamma_s)
        refused = self._cloudflare(request)
        if refused:
            return refused
        slugs = request.query.getall("slug", [])
        rows = [g for g in self.gamma_markets if not slugs or g["slug"] in slugs]
        # As Gamma since 2026-04-09: closed defaults to false, closed markets silently omitted.
        want_closed = request.query.get("closed", "false") == "true"
        rows = [g for g in rows if bool(g.get("closed")) == want_closed]
        return _json(rows)

    def _cloudflare(self, request: web.Request) -> web.Response | None:
        """Gamma sits behind Cloudflare, which answers 403 to default client user-agents."""
        if not self.cfg.gamma_refuse_default_ua:
            return None
        ua = request.headers.get("User-Agent", "").lower()
        if not ua or any(ua.startswith(p) for p in DEFAULT_CLIENT_UAS):
            self.gamma_refused += 1
            return web.Response(status=403, text="error code: 1010", content_type="text/plain")
        return None

    async def g_keyset(self, request: web.Request) -> web.Response:
        await self._slow(self.faults.slow_gamma_s)
        after = request.query.get("after_cursor", "")
        limit = min(int(request.query.get("limit", "100")), 500)
        rows = sorted(self.gamma_markets, key=lambda g: int(g["id"]))
        if after:
            rows = [g for g in rows if int(g["id"]) > int(after)]
        page = rows[:limit]
        return _json({"markets": page, "next_cursor": page[-1]["id"] if len(rows) > limit else None})
