"""The bot: wiring and lifecycle.

With no venue configured it starts the embedded exchange in-process and trades it over real
loopback sockets with a throwaway key. Startup: store, windows and positions restored from it,
API credentials (L1), reconciliation with the venue (orders, and fills missed while down),
both channels, heartbeat, then quoting. Each job has its own room:

* :mod:`active_quoting.windows` - a window's whole life (discover .. prune);
* :mod:`active_quoting.strategy.quote_pass` - what the strategy wants, as order intents;
* :mod:`active_quoting.execution.scheduler` - quote passes over what changed, one per market at a time;
* :mod:`active_quoting.execution.order_manager` - the one submit path, reconciliation;
* :mod:`active_quoting.fill_intake` - fills into store, inventory, analytics, alerts, once;
* :mod:`active_quoting.status` - status rows, metrics.

The bot starts them, hands venue events to their owners and runs the timers. Timers are
separate tasks: the risk tick (and a halt's cancels) never waits behind discovery, a
reconciliation or a slow venue answer. Shutdown (duration, SIGINT/SIGTERM): stop quoting,
cancel what is ours, confirm, persist, report.
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import hashlib
import logging
import os
import random
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from active_quoting import core, halts
from active_quoting.aio import TaskSet, cancel_and_wait
from active_quoting.alerts.notifier import Alerts
from active_quoting.analytics.fills import FillAnalytics
from active_quoting.clock import SYSTEM, Clock
from active_quoting.discovery import Discovery
from active_quoting.execution.order_manager import OrderManager
from active_quoting.execution.scheduler import PassScheduler
from active_quoting.fill_intake import FillIntake
from active_quoting.model import ASK, BID, BUY, OrderIntent, up_terms
from active_quoting.observability.metrics import Metrics
from active_quoting.options import RunOptions
from active_quoting.status import StatusPublisher, render_status
from active_quoting.store.journal import Journal, JournalWriteError
from active_quoting.store.sqlite import Store, StoreWriteError
from active_quoting.strategy.balances import Balances
from active_quoting.strategy.config import Config
from active_quoting.strategy.fair_value import Fair, FairValues
from active_quoting.strategy.inventory import InventoryManager
from active_quoting.strategy.momentum import MomentumDetector
from active_quoting.strategy.quote_pass import QuotePass, make_strategy, strategy_config
from active_quoting.strategy.quoting import MarketDecision, SideDecision, notional_size
from active_quoting.strategy.risk import RiskManager
from active_quoting.venue.market_codec import BookEvent, LastTradePriceEvent, MarketResolvedEvent, PriceChangeEvent
from active_quoting.venue.market_data import MarketData
from active_quoting.venue.orders import new_salt
from active_quoting.venue.records import market_winner, window_from_market_record
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import ApiCredentials, OrderSigner
from active_quoting.venue.spot_feed import SpotFeed, SpotTick
from active_quoting.venue.user_codec import FillUpdate, OrderUpdate
from active_quoting.venue.ws import Backoff, MarketStream, UserStream
from active_quoting.windows import WindowLifecycle, WindowParts

__all__ = ["AlreadyRunning", "Bot", "RunOptions", "render_status", "throwaway_key"]

_log = logging.getLogger(__name__)
GC_GEN0_THRESHOLD = 50_000  # allocations between young collections (the default 700 collects every few frames)
_CANCEL = SideDecision(core.NO_PRICE, 0, core.CANCEL)
_UNTOUCHED = SideDecision(core.NO_PRICE, 0, core.NONE)


class AlreadyRunning(RuntimeError):
    """The store is locked by another running bot."""


def throwaway_key(seed: int) -> str:
    """A deterministic key for the embedded exchange only (reproducible runs); never a real one."""
    return "0x" + hashlib.sha256(f"active-quoting throwaway key {seed}".encode()).hexdigest()


class Bot:
    shutdown_cancel_s = 30.0  # how long shutdown keeps cancelling and confirming before it gives up
    full_pass_s = 0.5  # every market is decided again at least this often, frames or not
    balances_every_s = 10.0  # the venue's balances and allowances read again (fills move them meanwhile)

    def __init__(self, cfg: Config, opts: RunOptions, clock: Clock = SYSTEM) -> None:
        cfg = strategy_config(opts.strategy, cfg)
        self.cfg = cfg
        self.opts = opts
        self.clock = clock
        self._lock: Any = None
        self._take_lock()  # before the store opens: a second bot must not touch a running bot's store
        self.store = Store(opts.db, clock=clock)
        self.inventory = InventoryManager(cfg.inventory)
        self.analytics = FillAnalytics(cfg.analytics)
        self.momentum = MomentumDetector(cfg.momentum)
        self.risk = RiskManager(cfg.risk)
        self.strategy = make_strategy(opts.strategy, cfg, self.inventory, self.momentum, self.risk)
        fv = cfg.fair_value
        self.fair_values = FairValues(fv) if fv.enabled or fv.observe else None
        self.spot: SpotFeed | None = None
        self.alerts = Alerts(cfg.alerts, clock=clock)
        self.metrics = Metrics()
        # Background work (quote passes, cancels, reconciliations) is referenced until done and
        # a failure is logged and alerted, never lost.
        self._tasks = TaskSet(_log, on_error=self._background_failed)
        self._timers: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._signals = 0
        self._next_full_pass = 0.0
        self.exchange: Any = None
        self._started_ms = clock.ms()
        self._balance_diffs: set[tuple[str, str]] = set()
        self._moved: dict[str, tuple[int, Any]] = {}  # token -> (ms, book) whose top moved in this socket read
        self._tops: dict[str, tuple[int, int, int, bool]] = {}  # token -> (bid, ask, tick, desynced) last seen
        self._hot: set[str] = set()  # markets last seen in a momentum cooldown
        self._pulls = self.strategy.pulls_on(self.momentum)  # a cooldown cancels both quotes
        self._pulled = False  # pulls staged in this socket read, not yet sent
        fv = cfg.fair_value
        # fair value moves the quotes but no spot tick asks for a pass: every frame decides
        self._fair_unguarded = fv.enabled and not fv.guard
        self.balance_mismatches = 0
        self.run_id = f"{self._started_ms}"

    # -- listeners: venue events to their owners ------------------------------------------

    def on_market_events(self, events: list[Any]) -> None:
        now = self.clock.ms()
        books = self.market.md.books
        windows = self.windows
        frame_t = self.market.last_frame_t
        touched: set[str] = set()
        snapshots: set[str] = set()
        for ev in events:
            cls = type(ev)
            if cls is PriceChangeEvent:  # most frames
                for entry in ev.price_changes:
                    touched.add(entry.asset_id)
            elif cls is LastTradePriceEvent:
                cid = windows.market_of(ev.asset_id)
                w = windows.get(cid or "")
                if w is not None:
                    book = books.get(ev.asset_id)
                    tick = book.tick if book is not None else w.info.tick  # the venue's latest word on the grid
                    _, up_price = up_terms(ev.asset_id == w.info.up, BUY, core.parse_price(ev.price))
                    if self.momentum.on_trade(cid, now, up_price, tick):
                        self.scheduler.mark(w.cid, frame_t)  # a trade move starts a cooldown: pull now
                        self._pull(w.cid)
            elif cls is MarketResolvedEvent:
                if ev.winning_asset_id:
                    windows.resolve(ev.market, ev.winning_asset_id)
            elif cls is BookEvent and ev.asset_id:
                touched.add(ev.asset_id)
                snapshots.add(ev.asset_id)  # a (re)subscribed book: readable again, decide
        moved = self._moved
        tops = self._tops
        for token in touched:
            cid, w = windows.lookup(token)
            book = books.get(token)
            if cid is None or book is None:
                continue
            # A decision reads a book only through its touch, tick and trust, and momentum's
            # verdict: a change deeper in the book decides nothing by itself, so it asks for no
            # pass - unless the market's last decision waits on time (held back by the refresh
            # limits or a post-only backoff, or a cooldown that may have ended), which any frame
            # used to retry; the timer's full pass still comes every full_pass_s.
            top = book.top_state()  # (best bid, best ask, tick, desynced)
            decide = tops.get(token) != top or token in snapshots
            if decide:
                tops[token] = top
                moved[token] = (now, book)
            if w is not None and token == w.info.up:
                # The detector is an input of the decision (a sweep pulls the quotes in this very
                # pass). Our own orders are in the book: it reads the market without them.
                if self.momentum.on_book(cid, now, book, *self.orders.own_and_leaving(cid)):
                    self._pull(cid)
                    decide = True
            if decide or self._waits_on_time(cid, now):
                self.scheduler.mark(cid, frame_t)

    def _waits_on_time(self, market: str, now_ms: int) -> bool:
        """Whether ``market``'s decision may change with time alone, so that any frame should
        decide it again (as it did before frames were filtered by what they move)."""
        hot = self.momentum.is_active(market, now_ms)
        if hot != (market in self._hot):  # a cooldown started or ended
            (self._hot.add if hot else self._hot.discard)(market)
            return True
        return self.orders.holds_back(market) or self._fair_unguarded

    def _pull(self, market: str) -> None:
        """Momentum holds ``market`` in a cooldown, in which the strategy cancels both quotes
        whatever else it reads: their cancels are staged now and go out when the read's frames
        are applied, before any quote pass decides (and before the answers a running pass
        waits for). An order whose submit is still unanswered is left to the pass that follows
        the answer (:meth:`OrderManager.stage_pull`); the market is marked for it."""
        if self._pulls and self.orders.stage_pull(market):
            self._pulled = True

    def on_market_read(self) -> None:
        """The frames of one socket read are applied: pulls go first (:meth:`_pull`), then the
        markets they moved are decided, now (the pass and its requests are written before this
        returns), then the analytics."""
        if self._pulled:
            self._pulled = False
            self._tasks.spawn_now(self.orders.send_cancels())
        self.scheduler.request()
        moved, self._moved = self._moved, {}
        for token, (now, book) in moved.items():
            self.analytics.on_mid(token, now, book.mid_x2())

    def on_spot_tick(self, tick: SpotTick) -> None:
        """A reference price (the RTDS feed): fair values move; with the guard on, a market
        whose fair value moved since it was decided is decided again in this loop turn."""
        fv = self.fair_values
        if fv is None or tick.source != self.cfg.fair_value.source:
            return
        now_ms = self.clock.ms()
        # listed windows too: a strike is taken from the ticks around the start, kept minutes only
        mine = [
            w.info for w in self.windows.windows.values() if w.info.asset == tick.asset and w.info.end > now_ms // 1000
        ]
        fv.on_tick(tick.asset, tick.price, tick.ts_ms, now_ms, mine)
        fairs = {info.condition_id: fv.fair(info, now_ms) for info in mine}  # once per window and tick
        for info in mine:
            fair = fairs[info.condition_id]
            if fair is not None:
                _, down = up_terms(False, BUY, fair.price)  # the Down token's fair value
                self.analytics.on_fair(info.up, now_ms, 2 * fair.price)
                self.analytics.on_fair(info.down, now_ms, 2 * down)
        if self.cfg.fair_value.enabled and self.cfg.fair_value.guard:
            moved = [
                cid for cid, fair in fairs.items() if self.windows.is_quoting(cid) and fv.moved_since_decided(cid, fair)
            ]
            if moved:
                t = self.clock.perf()
                waiting = [cid for cid in moved if self.scheduler.decides_later(cid)]
                if waiting and self._cancel_exposed(waiting, fairs, now_ms):
                    # their pass is waiting for the venue: the exposed quotes go now, not after it
                    self._tasks.spawn_now(self.orders.send_cancels())
                for cid in moved:
                    self.scheduler.mark(cid, t)
                self.scheduler.request()

    def _cancel_exposed(self, markets: list[str], fairs: dict[str, Fair | None], now_ms: int) -> bool:
        """Stage the cancel of every resting quote the fair value (``fairs``) left exposed in
        ``markets``; True when any was staged."""
        fv = self.fair_values
        staged = False
        for cid in markets:
            w = self.windows.get(cid)
            fair = fairs.get(cid)
            if fv is None or w is None or fair is None:
                continue
            book = self.market.md.books.get(w.info.up)
            tick = book.tick if book is not None else w.info.tick
            bid, ask = self.orders.resting(cid, BID), self.orders.resting(cid, ASK)
            out_bid, out_ask = fv.exposed(fair, tick, bid.price, ask.price)
            if out_bid or out_ask:
                side = lambda out: _CANCEL if out else _UNTOUCHED  # noqa: E731
                self.orders.stage(MarketDecision(cid, side(out_bid), side(out_ask), False, 0), [], now_ms / 1000)
                staged = True
        return staged

    def on_tick_size_change(self, asset_id: str, tick: int) -> None:
        cid = self.windows.market_of(asset_id)
        w = self.windows.get(cid or "")
        if w is not None and asset_id == w.info.up:
            # A tick_size_change, or a snapshot whose tick differs from what discovery said:
            # orders off the new grid are cancelled now and replaced by the next quote pass.
            if self.orders.cancel_off_grid(w.cid, tick):
                self._tasks.spawn_now(self.orders.send_cancels())
            self.scheduler.mark(w.cid, self.market.last_frame_t)

    def on_feed_state(self, shard: int, connected: bool) -> None:
        self.risk.on_market_channel(self.clock.ms(), connected)
        if not connected:
            self.alerts.notify("disconnect", f"market channel connection {shard} lost")

    def on_feed_stale(self, shard: int, reason: str) -> None:
        _log.warning("market feed stale (shard %s): %s", shard, reason)
        self.alerts.notify("stale", f"market channel connection {shard}: {reason}")

    def on_order(self, update: OrderUpdate) -> None:
        self.orders.on_order(update)
        if update.market in self.windows.windows:  # what rests changed: decide that market again
            self.scheduler.mark(update.market)

    def on_fill(self, update: FillUpdate) -> None:
        if self.fills.on_fill(update) and update.fill.market in self.windows.windows:
            self.scheduler.mark(update.fill.market)  # the position changed: so do the quotes

    def on_user_read(self) -> None:
        """The events of one socket read are in: the markets they marked are decided together,
        now (a fill and its order's update, or a batch of them, make one pass, not one each)."""
        self.scheduler.request()

    def on_user_state(self, connected: bool) -> None:
        self.risk.on_user_channel(self.clock.ms(), connected)
        if not connected:
            self.alerts.notify("disconnect", "user channel lost: order state unknown", critical=True)

    def on_reconcile_needed(self) -> None:
        self._tasks.spawn(self._reconcile())

    def _background_failed(self, exc: BaseException) -> None:
        self.alerts.notify("error", f"a background task failed: {exc!r}", critical=True)

    # -- venue round trips (run as tasks, never inline in a timer that risk depends on) ----

    async def _reconcile(self) -> None:
        """Orders against ``/data/orders``; fills the user stream missed (it does not replay a
        disconnection, and nothing is heard while the bot is down) from ``/data/trades`` since
        the newest fill known, for every market, ended windows included."""
        await self.orders.reconcile()
        after_s = max(0, self.fills.recovery_from_ms() // 1000 - 60)
        try:
            trades = await self.rest.trades(after=after_s)
        except Exception as exc:  # noqa: BLE001 - the next reconciliation retries
            _log.warning("trade reconciliation failed: %s", exc)
            return
        updates = self.fills.updates_from_trades(self.user.fills, trades)
        for cid in self.fills.unknown_markets(updates):
            await self._adopt_ended_window(cid)
        self.fills.take(updates)

    async def _adopt_ended_window(self, cid: str) -> None:
        """A market with fills of ours that this run did not track (it ended while we were
        down): tracked until it resolves, so its fills count and its positions settle."""
        try:
            record = await self.rest.market(cid)
        except Exception as exc:  # noqa: BLE001 - its fills stay in the store; retried next time
            _log.warning("market %s of a recovered fill unknown: %s", cid, exc)
            return
        info = window_from_market_record(record, self.clock.time())
        if info is not None:
            self.windows.adopt_ended(info, self.clock.time())
            # what the store already holds of it counts first (a later run finding the same
            # trades again must not count them twice)
            self.fills.restore(f for f in self.store.fills() if f.market == cid)
            self._check_resolution(cid, record)

    def _check_resolution(self, cid: str, record: dict[str, Any]) -> None:
        winner = market_winner(record)
        if winner:
            self.windows.resolve(cid, winner)

    async def _lookup_resolutions(self) -> None:
        """Windows that ended without a ``market_resolved`` seen (the event is not reliable,
        and the bot may have been down): ask the venue for the winner."""
        for w in self.windows.due_lookups(self.clock.time()):
            try:
                self._check_resolution(w.cid, await self.rest.market(w.cid))
            except Exception as exc:  # noqa: BLE001 - asked again later
                _log.warning("resolution lookup for %s failed: %s", w.info.slug, exc)

    async def _discover(self) -> None:
        now = self.clock.time()
        # Only assets whose current or next window is unknown ask Gamma (until the rollover
        # there is nothing to learn), all at once with a bound, each window confirmed by the CLOB.
        missing = [a for a in self.opts.assets if not self.windows.has_slots(a, now, self.opts.window_s)]
        if missing:
            for info in await self.discovery.discover(missing, now):
                self.windows.add(info, now)

    # -- timers ---------------------------------------------------------------------------

    def _every(self, seconds: float, job: Callable[[], Awaitable[None] | None], name: str) -> None:
        async def loop() -> None:
            while True:
                try:
                    result = job()
                    if result is not None:
                        await result
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a timer keeps running; the failure is told
                    _log.exception("%s failed", name)
                    self.alerts.notify(name, f"{name} failed: {exc!r}")
                await self.clock.sleep(seconds)

        self._timers.append(asyncio.get_running_loop().create_task(loop(), name=name))

    def _risk_tick(self) -> None:
        """Every loop tick: windows move on, risk decides, what must be cancelled goes now, and
        every quoted market is decided again (time alone changes decisions)."""
        now = self.clock.time()
        now_ms = int(now * 1000)
        for cid in self.windows.advance(now):
            self.scheduler.mark(cid)  # stopped quoting: the pass cancels what rests there
            self.orders.forget_presigned(cid)
        self.risk.tick(now_ms)
        self._act_on_risk()
        self._tasks.spawn(self.orders.retry_cancels())
        if now >= self._next_full_pass:
            # Frames, fills and order events decide their markets at once; this pass catches
            # what time alone changes (cooldowns ending, refresh intervals passing, windows
            # stopping: markets not quoted get what rests there cancelled).
            self._next_full_pass = now + self.full_pass_s
            self.scheduler.mark_all(self.windows.windows)
        self.scheduler.request()
        self.alerts.flush_fills()

    async def _rollover(self) -> None:
        await self._discover()
        await self._lookup_resolutions()
        infos = {cid: w.info for cid, w in self.windows.windows.items()}
        pruned = self.windows.prune(self.clock.time())
        for cid in pruned:
            self._hot.discard(cid)
            self._tops.pop(infos[cid].up, None)
            self._tops.pop(infos[cid].down, None)
            if self.fair_values is not None:
                self.fair_values.forget(cid)
            self.balances.forget(cid)
            self.fills.forget(cid, self.user.fills)
            self.risk.forget_market(cid)
            self.metrics.forget(market=infos[cid].slug)
        if pruned:
            halts.save(self.store, self.risk)  # a pruned market's halt is not re-imposed on restart

    def _housekeeping(self) -> None:
        now_ms = self.clock.ms()
        fresh = self.market.fresh_ms  # a feed is stale after tens of seconds: checked every second
        self.risk.check_stale(now_ms, {w.cid: min(fresh(w.info.up), fresh(w.info.down)) for w in self.windows.quoted()})
        self._act_on_risk()
        self.journal.flush()
        self._pnl_update(now_ms)
        self._persist_analytics(now_ms)
        for line in halts.apply_requests(self.store, self.risk, now_ms):
            _log.warning("operator: %s", line)
        self.store.run_heartbeat(self.run_id, self._started_ms, now_ms)

    def _register_balances(self) -> None:
        for w in self.windows.active():
            self.balances.register_window(w.info, self.signer.chain_id)

    async def _refresh_balances(self) -> None:
        """The venue's balances and allowances read again; a position that differs from the
        venue's balance at two reads in a row (not a read racing a settlement) is reported."""
        self._register_balances()
        await self.balances.refresh()
        age = self.balances.age()
        if age is None or age > 3 * self.balances_every_s:
            # quoting goes on from the last read moved by our own fills (payments at once,
            # receipts when settled: never more than there is), but an operator should know
            since = "never read" if age is None else f"last read {age:.0f} s ago"
            self.alerts.notify("balance", f"venue balances {since} ({self.balances.read_errors} failed reads)")
        now = {(d.market, d.token): d for d in self.balances.differences(self.inventory)}
        for key, d in now.items():
            if key in self._balance_diffs:
                self.balance_mismatches += 1
                w = self.windows.get(d.market)
                name = w.info.slug if w else d.market
                venue, ours = core.format_size(d.venue), core.format_size(d.ours)
                text = f"{name}: the venue holds {venue} shares, our fills say {ours}"
                _log.warning("balance mismatch: %s", text)
                self.alerts.notify("balance", text)
        self._balance_diffs = set(now)

    def _persist_analytics(self, now_ms: int) -> None:
        """Markouts as they resolve and cooldown time as it accrues: a kill -9 loses at most
        the last second of it."""
        self.analytics.flush(now_ms)
        for trade_id, order_id, horizon_s, value in self.analytics.take_resolved():
            self.store.markout(trade_id, order_id, horizon_s, value)
        for trade_id, order_id, horizon_s, value in self.analytics.take_resolved_fair():
            self.store.fair_markout(trade_id, order_id, horizon_s, value)
        for cid, ms in self.momentum.take_cooldown_ms(now_ms).items():
            self.store.add_cooldown_ms(cid, ms)

    def _pnl_update(self, now_ms: int) -> None:
        books = self.market.md.books
        for w in self.windows.active():
            marks = {}
            for token in (w.info.up, w.info.down):
                b = books.get(token)
                if b is not None and not b.is_crossed():
                    marks[token] = b.mid_x2()
            pnl = self.inventory.realized(w.cid) + self.inventory.unrealized(w.cid, marks)
            self.risk.on_pnl(now_ms, w.cid, pnl)

    def _publish_status(self) -> None:
        self.status.publish(self.clock.time(), self.opts.show_status)

    def _risk_events(self) -> bool:
        """Risk transitions logged, stored and alerted; True when a global cancel is asked.
        A market-scoped halt cancels through the next quote pass (the market is not quoted)."""
        cancel = changed = False
        for e in self.risk.drain_events():
            self.store.risk_event(e.t_ms, e.scope, e.old, e.new, e.reason)
            self.metrics.risk_event(e.scope, e.new)
            _log.warning("risk %s: %s -> %s (%s)", e.scope, e.old, e.new, e.reason)
            self.alerts.notify("circuit", f"{e.scope}: {e.old} -> {e.new}: {e.reason}", critical=e.new == "HALTED")
            if e.scope == "global":
                cancel = cancel or e.cancel_all
            else:
                self.scheduler.mark(e.scope)
            changed = True
        if changed:
            halts.save(self.store, self.risk)
        return cancel

    def _act_on_risk(self) -> None:
        """Risk transitions handled; a global halt's cancels go out at once."""
        if self._risk_events():
            self._tasks.spawn_now(self._halt_cancels())  # written before this returns

    async def _halt_cancels(self) -> None:
        """A global halt's cancel of everything; what it missed (an order whose submit was
        still unanswered) is decided again as soon as its answer is in - the halted market's
        pass cancels it."""
        missed = await self.orders.cancel_all()
        for cid in missed:
            self.scheduler.mark(cid)
        self.scheduler.request()

    async def _heartbeats(self) -> None:
        if self.opts.dry_run or not self.cfg.orders.heartbeat:
            return  # nothing is sent (or the account is shared: no dead-man switch wanted)
        try:
            await self.rest.heartbeat()
            self.risk.on_success(self.clock.ms(), "heartbeat")
        except Exception as exc:  # noqa: BLE001 - a missed heartbeat is a risk event, not a crash
            _log.warning("heartbeat failed: %s", exc)
            self.risk.on_error(self.clock.ms(), "heartbeat", "heartbeat")

    # -- start ----------------------------------------------------------------------------

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

    async def _venue(self) -> tuple[str, str]:
        """The CLOB and Gamma URLs: a configured venue, or the embedded exchange in-process."""
        if self.opts.clob_url:
            return self.opts.clob_url.rstrip("/"), self.opts.gamma_url.rstrip("/")
        from active_quoting.exchange.flow import FlowConfig, MarketFlow
        from active_quoting.exchange.server import Exchange, ExchangeConfig

        self.exchange = Exchange(ExchangeConfig(seed=self.opts.seed, **self.opts.exchange_config))
        await self.exchange.start()
        _log.warning("embedded exchange at %s (gamma %s)", self.exchange.clob_url, self.exchange.gamma_url)
        self.flow = MarketFlow(
            self.exchange,
            FlowConfig(
                assets=self.opts.assets, window_s=self.opts.window_s, seed=self.opts.seed, **self.opts.flow_config
            ),
        )
        self.flow.start()
        return self.exchange.clob_url, self.exchange.gamma_url

    def _would_cross(self, intent: OrderIntent) -> bool:
        """Would this order take liquidity on our view of its book? A post-only order that
        crosses is refused by the venue: it is not sent."""
        book = self.market.md.books.get(intent.token)
        if book is None:
            return False
        if intent.side == BUY:
            ask = book.best_ask()
            return ask != core.NO_PRICE and intent.price >= ask
        bid = book.best_bid()
        return bid != core.NO_PRICE and intent.price <= bid

    def _salts(self) -> Callable[[], int]:
        """Order salts: random, or drawn from the simulator's seed (a run is then reproducible
        to the order hash; restarts differ by the order timestamp)."""
        if self.opts.sim_seed is None:
            return new_salt
        rng = random.Random(self.opts.sim_seed * 1_000_003 + self.clock.ms())
        return lambda: rng.getrandbits(63)

    def _readable_book(self, token: str) -> Any:
        return self.market.md.books.get(token) if self.market.is_readable(token) else None

    async def start(self) -> None:
        clob_url, gamma_url = await self._venue()
        ws_url = self.opts.ws_url.rstrip("/") or clob_url.replace("https://", "wss://").replace("http://", "ws://")
        key = self.opts.private_key or throwaway_key(self.opts.seed)
        self.signer = OrderSigner(key, funder=self.opts.funder, signature_type=self.opts.signature_type)
        self.rest = RestClient(clob_url, self.signer, clock=self.clock.time, sleep=self.clock.sleep)
        if self.opts.api_creds:
            creds = ApiCredentials(*self.opts.api_creds)
            self.rest.creds = creds
        elif self.opts.private_key:
            creds = await self._derive_with_official_client(clob_url)
            self.rest.creds = creds
        else:
            creds = await self.rest.create_or_derive_api_key()
        await self.rest.sync_clock()
        now_ms = self.clock.ms()
        opts = self.opts
        self.orders = OrderManager(
            self.rest, self.signer, self.store, clock=self.clock, dry_run=self.opts.dry_run,
            concurrent_replace=self.cfg.orders.concurrent_replace, metrics=self.metrics,
            min_refresh_ms=self.cfg.refresh.min_interval_ms, global_cap_per_sec=self.cfg.refresh.global_cap_per_sec,
            may_place=self.risk.can_quote, crosses=self._would_cross,
            adopt_unknown=self.cfg.orders.unknown_orders != "ignore", salts=self._salts(),
            rng=random.Random(opts.sim_seed) if opts.sim_seed is not None else None,  # 429 jitter
            on_error=lambda kind: self.risk.on_error(self.clock.ms(), kind, "orders"),
            on_success=lambda: self.risk.on_success(self.clock.ms(), "orders"),
            on_fault=self._background_failed,
        )  # fmt: skip
        o = self.cfg.orders
        if o.presign:  # a requote takes an order signed ahead in idle time
            self.orders.enable_presign(
                o.presign_ticks, float(o.presign_max_age_seconds), o.presign_budget, notional_size(self.cfg)
            )
        self.discovery = Discovery(gamma_url, self.opts.window_s, clob=self.rest)
        jitter = random.Random(opts.sim_seed) if opts.sim_seed is not None else None
        self.market = MarketStream(
            ws_url + "/ws/market", MarketData(), self, rest=self.rest, clock=self.clock,
            backoff=lambda: Backoff(rng=jitter),
        )  # fmt: skip
        self.user = UserStream(
            ws_url + "/ws/user", creds, self, [], is_our_order=self.orders.is_ours, clock=self.clock,
            backoff=Backoff(rng=jitter),
        )  # fmt: skip
        self.market.handled = self.metrics.histograms["market_frame"].observe
        self.journal = Journal(self.opts.db + ".journal")
        if self.opts.journal:
            self.market.record = self.journal.market
            self.user.record = self.journal.user
            self.orders.journal = self.journal
        parts = WindowParts(
            self.inventory, self.analytics, self.orders, self.momentum, self.store, self.market, self.user
        )
        self.windows = WindowLifecycle(parts, stop_before_end_s=opts.stop_before_end_s, linger_s=opts.linger_s)
        self.fills = FillIntake(self.windows, self.alerts, self.clock)
        self.balances = Balances(
            self.rest, self.clock, signature_type=self.signer.signature_type, publish=self.metrics.set_balance
        )
        self.fills.balances = self.balances
        self.quote_pass = QuotePass(
            self.strategy, self.windows, self.orders, self._readable_book,
            self.fair_values if self.cfg.fair_value.enabled else None, self.balances, self.signer.chain_id,
        )  # fmt: skip
        self.scheduler = PassScheduler(self.quote_pass, self.orders, self.clock, self.metrics, self._tasks)
        self.status = StatusPublisher(self)
        self._restore(now_ms)
        await self._discover()
        await self.orders.reconcile()  # adopt what the venue still holds for us; the rest is finished
        if self.cfg.orders.unknown_orders == "cancel" and not self.opts.dry_run:
            adopted = [oid for oid in self.orders.adopted if self.orders.orders[oid].status == "LIVE"]
            if adopted:
                _log.warning("cancelling %d orders found on the venue at startup (orders.unknown_orders)", len(adopted))
                await self.rest.cancel_orders(adopted)
                await self.orders.reconcile()
        await self._reconcile()  # fills missed while down, ended windows included
        await self._lookup_resolutions()
        self._register_balances()
        await self.balances.refresh()  # nothing is quoted beyond what the venue says is free
        await self.market.start()
        await self.user.start()
        if self.fair_values is not None:
            self.spot = SpotFeed(
                self._rtds_url(ws_url), self.opts.assets, self.on_spot_tick, sources=(self.cfg.fair_value.source,),
                clock=self.clock, stale_after_s=float(self.cfg.fair_value.stale_seconds), backoff=Backoff(rng=jitter),
            )  # fmt: skip
            self._spot_task = asyncio.get_running_loop().create_task(self.spot.run(), name="aq-spot-feed")
        self.alerts.start()

    def _rtds_url(self, ws_url: str) -> str:
        """The reference price socket: configured (the real venue's by the ``run`` command), the
        in-process exchange's, or a separately served embedded exchange's beside its channels."""
        if self.opts.rtds_url:
            return self.opts.rtds_url
        if self.exchange is not None:
            return str(self.exchange.rtds_url)
        return ws_url + "/ws/rtds"

    def _restore(self, now_ms: int) -> None:
        """Windows not yet resolved, their positions and orders, and the halts, from the store."""
        now = now_ms / 1000
        for row in self.store.markets():
            if not row["winner"]:
                self.windows.restore(row, now)
            else:
                self.windows.retire(row["condition_id"])
        floor = int(self.store.get("recovery_floor_ms") or 0)
        if not floor:  # the store's first run: nothing before it is this bot's to recover
            floor = now_ms - 60_000
            self.store.put("recovery_floor_ms", str(floor))
        self.fills.floor_ms = floor
        self.fills.restore(self.store.fills())
        self.orders.restore(self.store.open_orders())
        halts.restore(self.store, self.risk, now_ms)

    # -- run ------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # from the start: a stop during startup is clean too
            try:
                loop.add_signal_handler(sig, self._on_signal)
            except (NotImplementedError, RuntimeError):
                pass
        try:
            await self.start()
        except BaseException:
            await self._close_partial()
            raise
        # What start-up built (codecs, books, signer tables, connections) is kept for the whole
        # run: moved out of the collector's sight, and young collections made rarer, so no
        # collection walks it between a frame and the order it causes (issue 11: no GC pause).
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_GEN0_THRESHOLD, 50, 100)
        if self.opts.metrics_port is not None:
            _log.warning("metrics at %s", await self.metrics.serve(self.opts.metrics_port))
        self._every(self.opts.loop_ms / 1000, self._risk_tick, "risk tick")
        self._every(1.0, self._rollover, "rollover")
        self._every(1.0, self._housekeeping, "housekeeping")
        self._every(self.opts.status_every_s, self._publish_status, "status")
        self._every(10.0, self._reconcile, "reconciliation")
        self._every(self.balances_every_s, self._refresh_balances, "balances")
        self._every(5.0, self._heartbeats, "heartbeat")
        try:
            if self._stop.is_set():
                pass  # stopped while starting
            elif self.opts.duration_s:
                waits = [loop.create_task(self._stop.wait()), loop.create_task(self.clock.sleep(self.opts.duration_s))]
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:  # the other one (both, if this run is cancelled) is not left pending
                    for t in waits:
                        t.cancel()
            else:
                await self._stop.wait()
        finally:
            await self.shutdown()

    def stop(self) -> None:
        self._stop.set()

    def _on_signal(self) -> None:
        """The first SIGINT/SIGTERM stops cleanly (cancels confirmed, store flushed); a second
        one exits at once, after flushing what the store has queued."""
        self._signals += 1
        if self._signals == 1:
            _log.warning("stopping: cancelling our orders (a second signal exits at once)")
            self._stop.set()
            return
        _log.critical("second signal: exiting without waiting for the cancels to be confirmed")
        try:
            self.store.flush(timeout=2.0)
        finally:
            os._exit(130)

    @property
    def stopping(self) -> bool:
        """Asked to stop, or shutting down (no quote pass starts any more)."""
        scheduler = getattr(self, "scheduler", None)
        return self._stop.is_set() or (scheduler is not None and scheduler.stopped)

    @property
    def passing(self) -> bool:
        """A quote pass is in flight (waiting for the venue's answers)."""
        scheduler = getattr(self, "scheduler", None)
        return scheduler is not None and scheduler.running

    async def shutdown(self) -> None:
        # Every timer stops but the heartbeat: it runs until our cancels are confirmed (else the
        # venue's dead-man switch could cancel what we still manage, and others' orders too).
        heartbeat = [t for t in self._timers if t.get_name() == "heartbeat"]
        for t in self._timers:
            if t not in heartbeat:
                await cancel_and_wait(t)
        self._timers = heartbeat
        await self.scheduler.stop()  # a pass in flight finishes first; none starts after
        self._tasks.cancel()  # what is left are reconciliations and retries; shutdown runs its own
        deadline = self.clock.monotonic() + self.shutdown_cancel_s
        while not self.opts.dry_run and self.clock.monotonic() < deadline:
            await self.orders.cancel_all()
            await self.orders.reconcile()
            if not self.orders.live():
                break
            await self.clock.sleep(0.25)
        if self.orders.live():
            left = len(self.orders.live())
            _log.error("shutdown: %d orders not confirmed cancelled after %.0f s", left, self.shutdown_cancel_s)
            self.alerts.notify("shutdown", f"{left} orders not confirmed cancelled at shutdown", critical=True)
        for t in self._timers:
            await cancel_and_wait(t)
        self._timers.clear()
        await self.clock.sleep(0.3)  # the last settlements and order events
        await self._lookup_resolutions()
        now_ms = self.clock.ms()
        self._persist_analytics(now_ms)
        self._risk_events()
        self.store.run_heartbeat(self.run_id, self._started_ms, now_ms)
        self._publish_status()
        await self.alerts.stop()
        await self.metrics.stop()
        await self.market.stop()
        await self.user.stop()
        await self._stop_spot()
        await self.rest.close()
        await self.discovery.close()
        if self.exchange is not None:
            await self.flow.stop()
            await self.exchange.stop()
        try:
            self.journal.close()
        except JournalWriteError as exc:
            _log.error("journal: %s", exc)
        try:
            self.store.close()
        except StoreWriteError as exc:
            _log.error("store: %s", exc)
            self.alerts.notify("store", f"store writes lost: {exc}", critical=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    async def _close_partial(self) -> None:
        """A start that failed half way: close what was opened (sockets, the exchange, the
        store and its lock); nothing was quoted yet."""
        for name in ("market", "user"):
            stream = getattr(self, name, None)
            if stream is not None:
                await stream.stop()
        await self._stop_spot()
        for name in ("rest", "discovery"):
            client = getattr(self, name, None)
            if client is not None:
                await client.close()
        if self.exchange is not None:
            if getattr(self, "flow", None) is not None:
                await self.flow.stop()
            await self.exchange.stop()
        self.store.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    async def _stop_spot(self) -> None:
        if self.spot is not None:
            await self.spot.stop()
            await cancel_and_wait(self._spot_task)
            self.spot = None

    def close(self) -> None:
        """Release a bot that was built but not run (its store and the store's lock)."""
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

