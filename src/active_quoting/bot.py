"""The bot: wiring and lifecycle.

With no venue configured it starts the embedded exchange in-process and trades it over real
loopback sockets with a throwaway key. Startup: store and positions restored from it, API
credentials (L1), both channels, reconciliation with the venue, heartbeat, then quoting.
Rollover: windows are discovered by slug, subscribed on both channels, quoted until
``stop_before_end_s`` before their end, then their orders are cancelled; resolutions settle
positions. Shutdown (duration, SIGINT/SIGTERM): stop quoting, cancel all, confirm, flush the
store, report.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import logging
import signal
import sys
import time
from typing import Any

import msgspec

from active_quoting import core
from active_quoting.aio import TaskSet
from active_quoting.alerts.notifier import Alerts
from active_quoting.analytics.fills import FeeSchedule as AnalyticsFees
from active_quoting.analytics.fills import FillAnalytics
from active_quoting.discovery import Discovery, WindowInfo
from active_quoting.errors import UnitsError
from active_quoting.execution.order_manager import MarketRef, OrderManager
from active_quoting.model import Fill
from active_quoting.observability.metrics import Metrics
from active_quoting.options import RunOptions
from active_quoting.store.journal import Journal
from active_quoting.store.sqlite import Store
from active_quoting.strategy.config import Config
from active_quoting.strategy.inventory import InventoryError, InventoryManager
from active_quoting.strategy.momentum import MomentumDetector
from active_quoting.strategy.only50 import Only50
from active_quoting.strategy.quoting import MarketDecision, MarketQuoter, SideDecision
from active_quoting.strategy.risk import RiskManager
from active_quoting.venue.market_codec import LastTradePriceEvent, MarketResolvedEvent
from active_quoting.venue.market_data import MarketData
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import ApiCredentials, OrderSigner
from active_quoting.venue.user_codec import FillUpdate, OrderUpdate, TradeEvent
from active_quoting.venue.ws import MarketStream, UserStream

_log = logging.getLogger(__name__)


class AlreadyRunning(RuntimeError):
    """The store is locked by another running bot."""


def render_status(snapshot: dict[str, Any]) -> str:
    """The live status: one line per market (also what ``active-quoting status`` prints)."""
    head = (
        f"{'market':30} {'left':>5} {'book':>13} {'quotes':>13} {'pos up':>9} {'pos down':>9} {'pnl':>9} "
        f"{'mk5s':>8} state"
    )
    lines = [
        f"risk {snapshot['risk']}{' KILLED' if snapshot.get('killed') else ''}  fills {snapshot['fills']}  "
        f"orders {snapshot['orders']}",
        head,
    ]
    for r in snapshot["markets"]:
        lines.append(
            f"{r['market'][:30]:30} {r['left_s']:>5} {r['book']:>13} {r['quotes']:>13} {r['position_up']:>9} "
            f"{r['position_down']:>9} {r['pnl']:>9} {r['markout_5s']:>8} {r['state']}"
        )
    return "\n".join(lines)


def throwaway_key(seed: int) -> str:
    """A deterministic key for the embedded exchange only (reproducible runs); never a real one."""
    return "0x" + hashlib.sha256(f"active-quoting throwaway key {seed}".encode()).hexdigest()


class Bot:
    def __init__(self, cfg: Config, opts: RunOptions) -> None:
        self.cfg = cfg
        self.opts = opts
        self.store = Store(opts.db)
        self.inventory = InventoryManager(cfg.inventory)
        self.analytics = FillAnalytics(cfg.analytics)
        self.momentum = MomentumDetector(cfg.momentum)
        self.risk = RiskManager(cfg.risk)
        self.quoter = MarketQuoter(cfg, self.inventory, self.momentum, self.risk)
        self.only50 = Only50(cfg, self.inventory, self.risk)
        self.alerts = Alerts(cfg.alerts)
        self.metrics = Metrics()
        self._dirty: dict[str, float] = {}  # market -> arrival of the first frame not yet quoted on
        self._quote_lock = asyncio.Lock()
        # Quote passes and reconciliations run as tasks, so the main loop (risk checks, the
        # cancel-all a halt asks for) never waits behind a slow venue answer.
        self._tasks = TaskSet(_log, on_error=self._background_failed)
        self._stopping = False
        self._kick_pending = False
        self.windows: dict[str, WindowInfo] = {}
        self.token_market: dict[str, str] = {}
        self.resolved: set[str] = set()
        self.last_market_event_ms = int(time.time() * 1000)
        self.fills_seen = 0
        self.recovered_fills = 0  # found by reconciliation, not by the stream
        self._stop = asyncio.Event()
        self._lock: Any = None
        self.exchange: Any = None
        self._restore()

    # -- restart ------------------------------------------------------------------------

    def _restore(self) -> None:
        """Positions and realized P&L from the stored fills; the kill switch from the store."""
        for m in self.store.markets():
            self.inventory.register_market(m["condition_id"], m["up"], m["down"])
            self.token_market[m["up"]] = self.token_market[m["down"]] = m["condition_id"]
        for f in self.store.fills():
            try:
                self.inventory.apply_fill(f)
            except InventoryError as exc:
                _log.error("stored fill not restorable: %s", exc)
        for m in self.store.markets():
            if m["winner"]:
                self.inventory.resolve(m["condition_id"], m["winner"])
                self.resolved.add(m["condition_id"])
        if self.store.get("kill_switch") == "1":
            self.risk.kill(int(time.time() * 1000), "kill switch still set from a previous run")

    # -- listeners ----------------------------------------------------------------------

    def on_market_events(self, events: list[Any]) -> None:
        now = int(time.time() * 1000)
        self.last_market_event_ms = now
        books = self.market.md.books
        touched: set[str] = set()
        for ev in events:
            cls = type(ev)
            if cls is LastTradePriceEvent:
                cid = self.token_market.get(ev.asset_id)
                w = self.windows.get(cid or "")
                if w is not None:
                    price = core.parse_price(ev.price)
                    book = books.get(ev.asset_id)
                    tick = book.tick if book is not None else w.tick  # the venue's latest word on the grid
                    self.momentum.on_trade(cid, now, price if ev.asset_id == w.up else core.MAX_PRICE - price, tick)
            elif cls is MarketResolvedEvent:
                if ev.market in self.windows and ev.winning_asset_id:
                    self._resolve(ev.market, ev.winning_asset_id)
            else:
                for entry in getattr(ev, "price_changes", ()) or ():
                    touched.add(entry.asset_id)
                if getattr(ev, "asset_id", "") and hasattr(ev, "bids"):
                    touched.add(ev.asset_id)
        frame_t = self.market.last_frame_t
        for token in touched:
            cid = self.token_market.get(token)
            if cid is not None:
                self._dirty.setdefault(cid, frame_t)
            book = books.get(token)
            if book is None:
                continue
            self.analytics.on_mid(token, now, book.mid_x2())
            cid = self.token_market.get(token)
            if cid in self.windows and token == self.windows[cid].up:
                self.momentum.on_book(cid, now, book)
        if self._dirty and not self._kick_pending:
            # Quote on the frame, not on the next timer tick: the decision runs as soon as the
            # frame handler returns (it never awaits itself).
            self._kick_pending = True
            asyncio.get_running_loop().call_soon(self._kick)

    def _background_failed(self, exc: BaseException) -> None:
        self.alerts.notify("error", f"a quote pass or reconciliation failed: {exc!r}", critical=True)

    def _kick(self) -> None:
        self._kick_pending = False
        self._tasks.spawn(self._quote_once(time.time()))

    def on_tick_size_change(self, asset_id: str, tick: int) -> None:
        cid = self.token_market.get(asset_id)
        w = self.windows.get(cid or "")
        if w is not None and asset_id == w.up:
            # A tick_size_change, or a snapshot whose tick differs from what discovery said:
            # orders off the new grid are cancelled now and replaced by the next quote pass.
            if self.orders.cancel_off_grid(w.condition_id, tick):
                self._tasks.spawn(self.orders.send_cancels())
                self._dirty.setdefault(w.condition_id, self.market.last_frame_t)

    def on_feed_state(self, shard: int, connected: bool) -> None:
        self.risk.on_market_channel(int(time.time() * 1000), connected)
        if not connected:
            self.alerts.notify("disconnect", f"market channel connection {shard} lost")

    def on_feed_stale(self, shard: int, reason: str) -> None:
        _log.warning("market feed stale (shard %s): %s", shard, reason)
        self.alerts.notify("stale", f"market channel connection {shard}: {reason}")

    def on_order(self, update: OrderUpdate) -> None:
        self.orders.on_order(update)

    def on_fill(self, update: FillUpdate) -> None:
        f: Fill = update.fill
        now = int(time.time() * 1000)
        if f.market not in self.windows and f.market not in self.token_market.values():
            return
        if self.store.fill(f):
            try:
                self.inventory.apply_fill(f)
            except InventoryError as exc:
                _log.error("fill not accounted: %s", exc)
        self.analytics.on_fill(f, now)
        self.fills_seen += 1
        if update.kind == "fill":
            w = self.windows.get(f.market)
            self.alerts.fill(
                f"{w.slug if w else f.market}: {f.side} {core.format_size(f.size)} @ {core.format_price(f.price)}"
            )

    def on_user_state(self, connected: bool) -> None:
        self.risk.on_user_channel(int(time.time() * 1000), connected)
        if not connected:
            self.alerts.notify("disconnect", "user channel lost: order state unknown", critical=True)

    def on_reconcile_needed(self) -> None:
        self._tasks.spawn(self._reconcile_all())

    async def _reconcile_all(self) -> None:
        """Orders against ``/data/orders``, and fills the user stream may have missed (it does
        not replay a disconnection) against ``/data/trades``."""
        await self.orders.reconcile()
        await self._reconcile_fills()

    async def _reconcile_fills(self) -> None:
        for cid in list(self.windows):
            try:
                trades = await self.rest.trades(market=cid)
            except Exception as exc:  # noqa: BLE001 - the next pass retries
                _log.warning("trade reconciliation for %s failed: %s", cid, exc)
                return
            for raw in trades:
                try:
                    event = msgspec.convert(dict(raw, event_type="trade"), TradeEvent)
                    updates = self.user.fills.on_trade(event)
                except (msgspec.ValidationError, UnitsError) as exc:
                    _log.warning("unusable trade record %s: %s", raw.get("id"), exc)
                    continue
                for update in updates:
                    self.recovered_fills += 1
                    self.on_fill(update)

    # -- markets ------------------------------------------------------------------------

    async def _discover(self, now: float) -> None:
        for asset in self.opts.assets:
            for w in await self.discovery.current_and_next(asset, now):
                if w.condition_id in self.windows:
                    continue
                self.windows[w.condition_id] = w
                self.token_market[w.up] = self.token_market[w.down] = w.condition_id
                self.inventory.register_market(w.condition_id, w.up, w.down)
                self.analytics.set_fee_schedule(
                    w.condition_id, AnalyticsFees(w.fee_rate, w.fee_exponent, w.rebate_share)
                )
                self.orders.add_market(MarketRef(w.condition_id, w.up, w.down, w.tick))
                self.store.market(
                    w.condition_id,
                    w.slug,
                    w.up,
                    w.down,
                    w.start,
                    w.end,
                    str(w.fee_rate),
                    str(w.rebate_share),
                    w.fee_exponent,
                )
                self.market.subscribe([w.up, w.down])
                self.user.subscribe([w.condition_id])
                _log.info("window %s listed (%s .. %s)", w.slug, w.start, w.end)

    def _resolve(self, cid: str, winner: str) -> None:
        if cid in self.resolved:
            return
        self.resolved.add(cid)
        pnl = self.inventory.resolve(cid, winner)
        self.store.resolved(cid, winner)
        _log.info("market %s resolved: realized %.4f USDC", cid, float(pnl))

    async def _settle_resolutions(self, now: float) -> None:
        """Windows that ended without a ``market_resolved`` seen (the event is not reliable, and
        the bot may have been down): ask the venue for the winner."""
        for m in self.store.markets():
            cid = m["condition_id"]
            if cid in self.resolved or m["end_s"] > now:
                continue
            try:
                record = await self.rest.market(cid)
            except Exception as exc:  # noqa: BLE001 - try again on the next pass
                _log.warning("resolution lookup for %s failed: %s", m["slug"], exc)
                continue
            winners = [t["token_id"] for t in record.get("tokens", []) if t.get("winner")]
            if winners:
                self._resolve(cid, winners[0])

    def _quotable(self, w: WindowInfo, now: float) -> bool:
        return w.start <= now < w.end - self.opts.stop_before_end_s and w.condition_id not in self.resolved

    async def _quote_once(self, now: float) -> None:
        async with self._quote_lock:
            if not self._stopping:
                await self._quote_locked(now)

    async def _quote_locked(self, now: float) -> None:
        now_ms = int(now * 1000)
        dirty, self._dirty = self._dirty, {}
        for cid, w in self.windows.items():
            if self._quotable(w, now):
                if self.opts.strategy == "only50":
                    decision, legs = self.only50.decide(
                        cid, self.orders.resting(cid, "bid"), self.orders.resting(cid, "ask"), w.min_size
                    )
                else:
                    book = self.market.md.books.get(w.up) if self.market.is_readable(w.up) else None
                    decision = self.quoter.decide(
                        cid,
                        book,
                        now_ms,
                        self.orders.resting(cid, "bid"),
                        self.orders.resting(cid, "ask"),
                        self.orders.pending(),
                        w.min_size,
                    )
                    legs = self.quoter.venue_orders(cid, decision)
                    if cid in dirty and dirty[cid]:
                        self.metrics.observe("frame_to_decision", time.perf_counter() - dirty[cid])
                self.orders.stage(decision, legs, now)
            elif self.orders.live(cid):
                none = SideDecision(core.NO_PRICE, 0, core.CANCEL)
                self.orders.stage(MarketDecision(cid, none, none, False, 0), [], now)
        await self.orders.flush()

    def _pnl_update(self, now_ms: int) -> None:
        books = self.market.md.books
        for cid, w in self.windows.items():
            marks = {}
            for token in (w.up, w.down):
                b = books.get(token)
                if b is not None and not b.is_crossed():
                    marks[token] = b.mid_x2()
            pnl = self.inventory.realized(cid) + self.inventory.unrealized(cid, marks)
            self.risk.on_pnl(now_ms, cid, pnl)

    def status_lines(self, now: float) -> list[dict[str, Any]]:
        """One line per market: window, book top, our quotes, position, P&L, markout, state."""
        books = self.market.md.books
        rows = []
        for cid, w in sorted(self.windows.items(), key=lambda kv: (kv[1].start, kv[1].slug)):
            if now >= w.end + 5 or now < w.start - 5:
                continue
            b = books.get(w.up)
            bid = self.orders.resting(cid, "bid")
            ask = self.orders.resting(cid, "ask")
            up, down = self.inventory.held(cid)
            marks = {t: books.get(t).mid_x2() for t in (w.up, w.down) if books.get(t) is not None}
            pnl = self.inventory.realized(cid) + self.inventory.unrealized(cid, marks)
            mk = self.analytics.market_report(cid)["markouts"].get(5, {}).get("avg_per_share")
            fmt = lambda p: core.format_price(p) if p not in (None, core.NO_PRICE) else "-"  # noqa: E731
            rows.append({
                "market": w.slug, "left_s": max(0, int(w.end - now)),
                "book": f"{fmt(b.best_bid() if b else None)}/{fmt(b.best_ask() if b else None)}",
                "quotes": f"{fmt(bid.price)}/{fmt(ask.price)}",
                "position_up": core.format_size(up), "position_down": core.format_size(down),
                "pnl": f"{float(pnl):.4f}", "markout_5s": f"{float(mk):.4f}" if mk is not None else "-",
                "state": "resolved" if cid in self.resolved else (
                    "cooldown" if self.momentum.is_active(cid, int(now * 1000)) else self.risk.state
                ),
            })  # fmt: skip
        return rows

    def _publish_status(self, now: float) -> None:
        rows = self.status_lines(now)
        snapshot = {"t": now, "risk": self.risk.state, "killed": self.risk.killed, "fills": self.fills_seen,
                    "orders": self.orders.counts, "markets": rows}  # fmt: skip
        self.store.put("status", json.dumps(snapshot))
        for r in rows:
            for key in ("position_up", "position_down", "pnl"):
                self.metrics.set(f"aq_{key}", float(r[key]), market=r["market"])
        self.metrics.set("aq_circuit_state", {"NORMAL": 0, "WARNING": 1, "RECOVERING": 2, "HALTED": 3}[self.risk.state])
        self.metrics.set("aq_fills_total", self.fills_seen)
        self.metrics.set("aq_feed_connected", sum(1 for c in self.market.shards if c.connected))
        self.metrics.set("aq_user_connected", 1 if self.user.conn.connected else 0)
        if self.opts.show_status:
            text = render_status(snapshot)
            if sys.stderr.isatty():
                sys.stderr.write("\x1b[H\x1b[2J" + text + "\n")
            else:
                sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def _risk_events(self) -> bool:
        cancel = False
        for e in self.risk.drain_events():
            self.store.risk_event(e.t_ms, e.scope, e.old, e.new, e.reason)
            _log.warning("risk %s: %s -> %s (%s)", e.scope, e.old, e.new, e.reason)
            self.alerts.notify("circuit", f"{e.scope}: {e.old} -> {e.new}: {e.reason}", critical=e.new == "HALTED")
            cancel = cancel or (e.cancel_all and e.scope == "global")
        self.store.put("kill_switch", "1" if self.risk.killed else "0")
        return cancel

    # -- lifecycle ----------------------------------------------------------------------

    async def _derive_with_official_client(self, clob_url: str) -> ApiCredentials:
        """A real account's API credentials through py-clob-client-v2's own L1 flow (create, or
        derive the existing key), run off the event loop: it is synchronous."""
        from py_clob_client_v2.client import ClobClient

        client = ClobClient(
            clob_url, chain_id=self.signer.chain_id, key=self.opts.private_key,
            signature_type=self.opts.signature_type, funder=self.opts.funder,
        )  # fmt: skip
        c = await asyncio.to_thread(client.create_or_derive_api_key)
        return ApiCredentials(c.api_key, c.api_secret, c.api_passphrase)

    async def _heartbeats(self) -> None:
        if self.opts.dry_run:
            return  # nothing is sent, so there is nothing for the dead-man switch to guard
        while True:
            try:
                await self.rest.heartbeat()
                self.risk.on_success(int(time.time() * 1000))
            except Exception as exc:  # noqa: BLE001 - a missed heartbeat is a risk event, not a crash
                _log.warning("heartbeat failed: %s", exc)
                self.risk.on_error(int(time.time() * 1000), "heartbeat")
            await asyncio.sleep(5)

    async def run(self) -> None:
        from active_quoting.exchange.flow import FlowConfig, MarketFlow
        from active_quoting.exchange.server import Exchange, ExchangeConfig

        self._take_lock()
        self._started_ms = int(time.time() * 1000)
        if self.opts.clob_url:
            # A separately served embedded exchange (``active-quoting exchange``).
            clob_url, gamma_url = self.opts.clob_url.rstrip("/"), self.opts.gamma_url.rstrip("/")
            self.exchange = None
        else:
            self.exchange = Exchange(ExchangeConfig(seed=self.opts.seed, **self.opts.exchange_config))
            await self.exchange.start()
            self.flow = MarketFlow(
                self.exchange, FlowConfig(assets=self.opts.assets, window_s=self.opts.window_s, seed=self.opts.seed)
            )
            self.flow.start()
            clob_url, gamma_url = self.exchange.clob_url, self.exchange.gamma_url
        ws_url = self.opts.ws_url.rstrip("/") or clob_url.replace("https://", "wss://").replace("http://", "ws://")
        key = self.opts.private_key or throwaway_key(self.opts.seed)
        self.signer = OrderSigner(key, funder=self.opts.funder, signature_type=self.opts.signature_type)
        self.rest = RestClient(clob_url, self.signer)
        if self.opts.api_creds:
            creds = ApiCredentials(*self.opts.api_creds)
            self.rest.creds = creds
        elif self.opts.private_key:
            creds = await self._derive_with_official_client(clob_url)
            self.rest.creds = creds
        else:
            creds = await self.rest.create_or_derive_api_key()
        await self.rest.sync_clock()
        self.orders = OrderManager(
            self.rest,
            self.signer,
            self.store,
            dry_run=self.opts.dry_run,
            concurrent_replace=self.cfg.orders.concurrent_replace,
            metrics=self.metrics,
            min_refresh_ms=self.cfg.refresh.min_interval_ms,
            global_cap_per_sec=self.cfg.refresh.global_cap_per_sec,
            may_place=self.risk.can_quote,
            on_error=lambda kind: self.risk.on_error(int(time.time() * 1000), kind),
            on_success=lambda: self.risk.on_success(int(time.time() * 1000)),
        )
        self.discovery = Discovery(gamma_url, self.opts.window_s)
        self.market = MarketStream(ws_url + "/ws/market", MarketData(), self, rest=self.rest)
        self.user = UserStream(ws_url + "/ws/user", creds, self, [], is_our_order=self.orders.is_ours)
        self.journal = Journal(self.opts.db + ".journal")
        self.market.record = self.journal.market
        self.user.record = self.journal.user
        self.orders.journal = self.journal
        await self._discover(time.time())
        for cid in self.windows:
            self.orders.add_market(MarketRef(cid, self.windows[cid].up, self.windows[cid].down, self.windows[cid].tick))
        for m in self.store.markets():  # markets of a previous run, for its orders
            if m["condition_id"] not in self.orders.markets:
                self.orders.add_market(MarketRef(m["condition_id"], m["up"], m["down"], core.DEFAULT_TICK))
        self.orders.restore(self.store.open_orders())
        await self.orders.reconcile()  # adopt what the venue still holds for us; the rest is finished
        if self.cfg.orders.unknown_orders == "cancel":
            adopted = [oid for oid in self.orders.adopted if self.orders.orders[oid].status == "LIVE"]
            if adopted:
                _log.warning("cancelling %d orders found on the venue at startup (orders.unknown_orders)", len(adopted))
                await self.rest.cancel_orders(adopted)
                await self.orders.reconcile()
        await self._settle_resolutions(time.time())  # windows that ended while we were away
        await self.market.start()
        await self.user.start()
        self.alerts.start()
        hb = asyncio.get_running_loop().create_task(self._heartbeats())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        deadline = time.time() + self.opts.duration_s
        last_discovery = last_reconcile = last_pnl = last_status = 0.0
        if self.opts.metrics_port is not None:
            _log.warning("metrics at %s", await self.metrics.serve(self.opts.metrics_port))
        try:
            while not self._stop.is_set() and time.time() < deadline:
                now = time.time()
                if now - last_discovery >= 1.0:
                    try:
                        await self._discover(now)
                        await self._settle_resolutions(now)
                    except Exception as exc:  # noqa: BLE001 - keep quoting what is known; say so
                        _log.warning("discovery failed: %s", exc)
                        self.alerts.notify("rollover", f"market discovery failed: {exc}")
                    last_discovery = now
                self.alerts.flush_fills()
                if not self._quote_lock.locked():  # else a pass is in flight; the next tick retries
                    self._tasks.spawn(self._quote_once(now))
                now_ms = int(now * 1000)
                if now - last_pnl >= 1.0:
                    self.journal.flush()
                    self._pnl_update(now_ms)
                    self.analytics.flush(now_ms)
                    last_pnl = now
                if now - last_status >= self.opts.status_every_s:
                    self._publish_status(now)
                    last_status = now
                self.risk.check_stale(now_ms, self.last_market_event_ms, self.user.conn.connected)
                self.risk.tick(now_ms)
                if self._risk_events():
                    await self.orders.cancel_all()
                if now - last_reconcile >= 10.0:
                    await self._reconcile_all()
                    last_reconcile = now
                await asyncio.sleep(self.opts.loop_ms / 1000)
        finally:
            hb.cancel()
            await self.shutdown()

    async def shutdown(self) -> None:
        self._stopping = True
        async with self._quote_lock:  # a quote pass in flight finishes first; none starts after
            pass
        self._tasks.cancel()  # what is left are reconciliations; shutdown runs its own
        await self.orders.cancel_all()
        for _ in range(20):
            await self.orders.reconcile()
            if not self.orders.live():
                break
            await self.orders.cancel_all()
            await asyncio.sleep(0.25)
        await asyncio.sleep(0.3)  # the last settlements and order events
        await self._settle_resolutions(time.time())
        now_ms = int(time.time() * 1000)
        self.analytics.flush(now_ms)
        self._save_markouts()
        self._risk_events()
        self._publish_status(time.time())
        await self.alerts.stop()
        await self.metrics.stop()
        await self.market.stop()
        await self.user.stop()
        await self.rest.close()
        await self.discovery.close()
        if self.exchange is not None:
            await self.flow.stop()
            await self.exchange.stop()
        self.journal.close()
        cooldown = json.loads(self.store.get("cooldown_ms", "{}"))
        for cid, ms in self.momentum.cooldown_ms_total.items():
            cooldown[cid] = cooldown.get(cid, 0) + ms
        self.store.put("cooldown_ms", json.dumps(cooldown))
        run_ms = int(self.store.get("run_ms", "0")) + now_ms - self._started_ms
        self.store.put("run_ms", str(run_ms))
        self.store.put("last_run_end_ms", str(now_ms))
        self.store.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _take_lock(self) -> None:
        """One bot per store: a second one would double every order and fill."""
        self._lock = open(self.opts.db + ".lock", "w")  # noqa: SIM115 - held for the whole run
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise AlreadyRunning(f"another bot is running with the store {self.opts.db}") from None

    def _save_markouts(self) -> None:
        for trade_id, order_id, horizon_s, value in self.analytics.resolved_markouts():
            self.store.markout(trade_id, order_id, horizon_s, value)
