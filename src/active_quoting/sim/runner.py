"""One simulation: the production bot against the embedded exchange and its market flow, in one
process, on virtual time (:mod:`active_quoting.sim.loop`), deterministic for a seed.

What runs is the production code: the bot (quote pass, order manager, risk, inventory,
analytics, store) talks to the exchange with the exact bytes of the venue's protocol, over
connections the loop carries in memory. What the simulator adds around it:

- a seeded fault schedule over the run (every fault the exchange knows, plus bot crashes:
  the bot object is dropped without any shutdown, as a kill -9 would, and a new one restarts
  from its store);
- a simulated operator who clears a kill switch or market halt some time after it fires (a
  real operator would look, then decide; ``operator_clear_s = 0``: nobody does);
- invariants checked every second (:mod:`active_quoting.sim.invariants`);
- per simulated hour: resident memory and the real CPU time a quote pass costs (the slope of
  either over a day is a finding);
- a progress line (simulated time, speed, ETA) and a JSON summary.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import random
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from active_quoting.bot import Bot
from active_quoting.exchange.faults import FAULTS
from active_quoting.exchange.flow import MARKETS, FlowConfig, MarketFlow
from active_quoting.exchange.server import Exchange, ExchangeConfig
from active_quoting.exchange.spot import SpotPath
from active_quoting.options import RunOptions, stop_before_end
from active_quoting.report import build_report
from active_quoting.sim.invariants import InvariantMonitor
from active_quoting.sim.loop import LoopClock, VirtualTimeLoop, aiohttp_on_loop_time
from active_quoting.store.sqlite import Store
from active_quoting.strategy.config import load_config

EPOCH = 1_780_000_200.0  # a window boundary (multiple of 5 and 15 minutes); the same for every run


@dataclass
class SimConfig:
    hours: float = 24.0
    assets: tuple[str, ...] = ("btc", "eth", "sol", "xrp")
    window_s: int = 900
    seed: int = 1
    strategy: str = "active"
    market: str = "lively"  # the flow preset (exchange.flow.MARKETS)
    faults: str = "none"  # "none" or "default" (a seeded schedule over the run)
    crashes: int = 0  # bot crashes (kill -9 and restart from the store) spread over the run
    config_env: dict[str, str] = field(default_factory=dict)  # AQ_<SECTION>_<KEY> overrides (sweeps)
    db: str = ""  # the bot's store (default: a temporary file)
    flow_step_ms: int = 1000
    # The latency model (see README): a bot near the venue.
    entry_delay_ms: int = 15  # our requests reach the matching engine
    md_delay_ms: int = 15  # market frames reach us
    taker_delay_ms: int = 50  # the venue's hold on marketable orders (crypto markets)
    # The venue's book lags spot: its background makers price off the underlying as it was this
    # long ago, while informed takers act 150 ms after a jump (an assumption, see README).
    house_lag_ms: int = 2000
    # The Chainlink reference feed is heard this long after its stamp (the recorded day: 1.3 s
    # median from stamp to arrival); the Binance topic only md_delay_ms.
    chainlink_lag_ms: int = 1300
    operator_clear_s: float = 1800.0
    check_every_s: float = 1.0
    progress: bool = False
    spot_csv: str = ""  # a recorded Chainlink feed (exchange.spot) driving the first asset; the run starts with it


@dataclass
class _Hour:
    hour: int
    rss_mb: float  # the process's resident memory: keeps the allocator's high-water mark
    heap_kblocks: float  # small-object blocks in use (thousands): what is live now, peaks or not
    quote_passes: int
    pass_cpu_us: float  # real CPU per quote pass, mean over the hour
    windows: int
    live_orders: int


FAULT_MENU: tuple[tuple[str, dict[str, Any], float], ...] = (
    # name, arguments, how long it stays on (s; 0 = a one-off)
    ("drop_ws", {"channel": "market"}, 0),
    ("drop_ws", {"channel": "user"}, 0),
    ("freeze_market", {"on": True}, 40),
    ("engine_restart", {"restart_s": 30.0, "post_only_s": 30.0}, 0),
    ("rate_limit_burst", {"count": 5}, 0),
    ("server_errors", {"share": 0.3}, 20),
    ("timeout_after_place", {"count": 1, "hold_seconds": 8.0}, 0),
    ("timeout_after_cancel", {"count": 1, "hold_seconds": 8.0}, 0),  # the bot's requests time out after 5 s
    ("duplicate_user_trades", {"on": True}, 60),
    ("delay_user", {"ms": 400}, 60),
    ("malformed_frame", {}, 0),
    ("tick_size_change", {"tick": "0.001"}, 0),
    ("reorder_user", {"on": True}, 60),
    ("drop_pong", {"on": True}, 40),
    ("slow_gamma", {"seconds": 8.0}, 30),
    ("slow_data", {"seconds": 8.0}, 30),
    ("invalidate_orders", {}, 0),
)
GHOST_SHARE = 0.02  # with faults on, this share of trades fails settlement (MATCHED -> RETRYING -> FAILED)


def fault_schedule(cfg: SimConfig) -> list[tuple[float, str, dict[str, Any], float]]:
    """(offset s, fault, args, duration) over the run, seeded: every fault of the menu at least
    once when the run is long enough, one every ~20 minutes."""
    if cfg.faults == "none":
        return []
    rng = random.Random(cfg.seed * 7919 + 1)
    total = cfg.hours * 3600
    count = max(len(FAULT_MENU), int(total // 1200))
    plan = []
    for i in range(count):
        name, args, duration = FAULT_MENU[i % len(FAULT_MENU)]
        at = 120 + (total - 240) * (i + rng.random()) / count
        plan.append((at, name, dict(args), duration))
    return sorted(plan, key=lambda p: p[0])


class Simulation:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.loop = VirtualTimeLoop()
        self.spot = SpotPath.from_chainlink_csv(cfg.spot_csv) if cfg.spot_csv else None
        # A recorded path fixes the calendar: the run starts where the feed does.
        self.clock = LoopClock(self.loop, float(self.spot.start_s) if self.spot is not None else EPOCH)
        self.monitor = InvariantMonitor()
        self.hours: list[_Hour] = []
        self.events: list[dict[str, Any]] = []
        self.rate_fault_until = 0.0
        self.bot: Bot | None = None
        self.crashes = 0
        self.operator_clears = 0
        # The windows resolved so far (condition id -> (Gamma id, slug, Up won)): noted every
        # simulated hour, before the exchange forgets them (engine.HISTORY_MS after resolution).
        self._resolved: dict[str, tuple[int, str, bool]] = {}
        self._tmp = None if cfg.db else tempfile.TemporaryDirectory(prefix="aq-sim-")
        self.db = cfg.db or str(Path(self._tmp.name) / "sim.db")  # type: ignore[union-attr]
        self._pass_cpu = 0.0
        self._passes = 0
        self._stopping = False

    # -- the bot -------------------------------------------------------------------------

    def _new_bot(self, duration_s: float) -> Bot:
        # Every strategy reads the reference feed, so all are measured against fair value too.
        # Orders signed ahead only save wall-clock time, which virtual time does not see: off
        # (their signatures would cost the simulator real CPU for nothing).
        base = {"AQ_FAIR_VALUE_OBSERVE": "true", "AQ_ORDERS_PRESIGN": "false"}
        cfg = load_config(env={**base, **self.cfg.config_env})
        opts = RunOptions(
            assets=self.cfg.assets, duration_s=duration_s, seed=self.cfg.seed, window_s=self.cfg.window_s,
            stop_before_end_s=stop_before_end(self.cfg.window_s), db=self.db, strategy=self.cfg.strategy,
            clob_url=self.exchange.clob_url, gamma_url=self.exchange.gamma_url, rtds_url=self.exchange.rtds_url,
            journal=False, sim_seed=self.cfg.seed,
            status_every_s=60.0,
        )  # fmt: skip
        bot = Bot(cfg, opts, clock=self.clock)
        bot.shutdown_cancel_s = 10.0
        return bot

    def _measure_passes(self, bot: Bot) -> None:
        """Wrap the production quote pass to measure its real CPU cost (not virtual time)."""
        quote_pass = bot.quote_pass
        run = quote_pass.run

        def timed(markets: Any, now: float) -> list[str]:
            t0 = time.thread_time()
            try:
                return run(markets, now)
            finally:
                self._pass_cpu += time.thread_time() - t0
                self._passes += 1

        quote_pass.run = timed  # type: ignore[method-assign]

    async def _crash(self, bot: Bot, task: asyncio.Task[None]) -> None:
        """kill -9: every task of the bot stops where it is, its sockets close, nothing is
        cancelled on the venue, the lock goes with the process. What the store had queued is
        committed first (a real kill loses the last milliseconds of it, which the writer
        thread's timing would make irreproducible here; tests/test_bot_restart.py and
        tests/test_store_writer.py kill a real process for that)."""
        async def no_shutdown() -> None:  # a killed process runs no shutdown
            return None

        bot.shutdown = no_shutdown  # type: ignore[method-assign]
        task.cancel()
        for t in list(bot._timers) + list(bot._tasks._tasks):
            t.cancel()
        await asyncio.sleep(0)
        for stream in (getattr(bot, "market", None), getattr(bot, "user", None), getattr(bot, "spot", None)):
            if stream is not None:
                await stream.stop()
        if getattr(bot, "rest", None) is not None:
            await bot.rest.close()
        if getattr(bot, "discovery", None) is not None:
            await bot.discovery.close()
        bot.store.flush()
        bot.store.abandon()
        self.bot = None  # down: nothing to check until the restart
        if bot._lock is not None:
            bot._lock.close()
            bot._lock = None
        # A killed process gives all its memory back. The bot froze what it built at start-up
        # (gc.freeze: never collected again), so the dead bot would outlive its crash - a whole
        # bot per crash, for the rest of the run: unfrozen, the next bot's start collects it.
        gc.unfreeze()
        self.crashes += 1

    # -- the world around it ---------------------------------------------------------------

    async def _faults(self) -> None:
        for at, name, args, duration in fault_schedule(self.cfg):
            await asyncio.sleep(max(0.0, at - self.loop.time()))
            if self._stopping:
                return
            if name == "tick_size_change":
                markets = [w.market.condition_id for w in self.flow.windows if not w.resolved]
                if not markets:
                    continue
                args = dict(args, market=markets[0])
            if name == "invalidate_orders":
                if self.bot is None or not hasattr(self.bot, "signer"):
                    continue
                args = dict(args, address=self.bot.signer.address)
            if name == "rate_limit_burst":
                self.rate_fault_until = self.loop.time() + 60
            self.events.append({"t": self.clock.time(), "fault": name, "args": args})
            result = FAULTS[name](self.exchange, **args)
            if asyncio.iscoroutine(result):
                await result
            if duration:
                self.loop.call_later(duration, self._fault_off, name)

    def _fault_off(self, name: str) -> None:
        f = self.exchange.faults
        if name == "freeze_market":
            f.freeze_market = False
        elif name == "server_errors":
            f.server_error_share = 0.0
        elif name == "duplicate_user_trades":
            f.duplicate_user_trades = False
        elif name == "delay_user":
            f.delay_user_ms = 0
        elif name == "reorder_user":
            f.reorder_user = False
        elif name == "drop_pong":
            f.drop_pong = False
        elif name == "slow_gamma":
            f.slow_gamma_s = 0.0
        elif name == "slow_data":
            f.slow_data_s = 0.0

    async def _operator(self) -> None:
        """Clears a kill switch or a market halt ``operator_clear_s`` after it fires."""
        if not self.cfg.operator_clear_s:
            return
        seen: dict[str, float] = {}
        while not self._stopping:
            bot: Bot | None = None  # no bot held across a sleep: a crashed one must be free to go (see _crash)
            await asyncio.sleep(10)
            bot = self.bot
            if bot is None or not hasattr(bot, "windows"):
                continue
            now = self.loop.time()
            halts = bot.risk.export_halts()
            targets = (["kill"] if halts.get("kill") else []) + list(halts.get("markets") or {})
            for target in targets:
                first = seen.setdefault(target, now)
                if now - first >= self.cfg.operator_clear_s:
                    now_ms = self.clock.ms()
                    if target == "kill":
                        bot.risk.clear_kill_switch(now_ms, "simulated operator")
                    else:
                        bot.risk.clear_market(now_ms, target, "simulated operator")
                    self.operator_clears += 1
                    self.events.append({"t": self.clock.time(), "operator": f"cleared {target}"})
                    seen.pop(target, None)

    async def _watch(self) -> None:
        """Invariants every check_every_s, per-hour measurements, progress."""
        started = time.perf_counter()
        next_hour = 3600.0
        total = self.cfg.hours * 3600
        last_progress = 0.0
        while not self._stopping:
            bot: Bot | None = None  # as in _operator
            await asyncio.sleep(self.cfg.check_every_s)
            bot = self.bot
            if bot is not None and hasattr(bot, "windows") and not bot.stopping and bot._timers:
                self.monitor.check(bot, self.exchange, self.clock.time(), self.loop.time() < self.rate_fault_until)
            now = self.loop.time()
            if now >= next_hour:
                self._hour(int(next_hour // 3600))
                next_hour += 3600
            wall = time.perf_counter() - started
            if self.cfg.progress and wall - last_progress >= 2.0:
                last_progress = wall
                speed = now / wall if wall else 0.0
                eta = (total - now) / speed if speed else 0.0
                sys.stderr.write(
                    f"\rsim {now / 3600:5.2f}/{self.cfg.hours:g} h  {speed:6.0f}x real time  ETA {eta / 60:4.1f} min  "
                    f"fills {bot.fills.seen if bot is not None and hasattr(bot, 'fills') else 0}  "
                    f"violations {sum(self.monitor.counts.values())}  "
                )
                sys.stderr.flush()

    def _hour(self, hour: int) -> None:
        self._note_resolutions()
        bot = self.bot
        rss_kb = _rss_kb()
        passes, cpu = self._passes, self._pass_cpu
        self._passes, self._pass_cpu = 0, 0.0
        self.hours.append(_Hour(
            hour, rss_kb / 1024, sys.getallocatedblocks() / 1000, passes, 1e6 * cpu / passes if passes else 0.0,
            len(bot.windows.windows) if bot is not None and hasattr(bot, "windows") else 0,
            len(bot.orders.live()) if bot is not None and hasattr(bot, "orders") else 0,
        ))  # fmt: skip

    # -- the run -----------------------------------------------------------------------------

    async def _main(self) -> dict[str, Any]:
        self.exchange = Exchange(ExchangeConfig(
            seed=self.cfg.seed, entry_delay_ms=self.cfg.entry_delay_ms, md_delay_ms=self.cfg.md_delay_ms,
            chainlink_lag_ms=self.cfg.chainlink_lag_ms, ghost_share=GHOST_SHARE if self.cfg.faults != "none" else 0.0,
        ), clock=self.clock)  # fmt: skip
        await self.exchange.start()
        self.flow = MarketFlow(self.exchange, FlowConfig(
            assets=self.cfg.assets, window_s=self.cfg.window_s, seed=self.cfg.seed, step_ms=self.cfg.flow_step_ms,
            taker_delay_ms=self.cfg.taker_delay_ms, house_lag_ms=self.cfg.house_lag_ms, **MARKETS[self.cfg.market],
            spot_paths={self.cfg.assets[0]: self.spot} if self.spot is not None else {},
        ))  # fmt: skip
        self.flow.start()
        total = self.cfg.hours * 3600
        helpers = [self.loop.create_task(c) for c in (self._faults(), self._operator(), self._watch())]
        crash_at = [total * (i + 1) / (self.cfg.crashes + 1) for i in range(self.cfg.crashes)]
        t_wall = time.perf_counter()
        try:
            for at in crash_at:
                bot = self.bot = self._new_bot(total - self.loop.time())
                task = self.loop.create_task(bot.run())
                await self._started(bot, task)
                await asyncio.sleep(max(0.0, at - self.loop.time()))
                self.events.append({"t": self.clock.time(), "crash": "bot killed (kill -9), restarting from its store"})
                await self._crash(bot, task)
                await asyncio.sleep(5)  # down for a moment, as a process supervisor would restart it
            bot = self.bot = self._new_bot(total - self.loop.time())
            task = self.loop.create_task(bot.run())
            await self._started(bot, task)
            await task
        finally:
            self._stopping = True
            for h in helpers:
                h.cancel()
            await self.flow.stop()
            await self.exchange.stop()
            leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in leftovers:  # what crashed bots left (their stop events never set)
                t.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
        wall = time.perf_counter() - t_wall
        self._final_check()
        last_hour = math.ceil(total / 3600)
        if not self.hours or self.hours[-1].hour < last_hour:
            self._hour(last_hour)
        if self.cfg.progress:
            sys.stderr.write("\n")
        return self._summary(wall)

    def _final_check(self) -> None:
        """After the last shutdown: nothing of ours rests on the venue."""
        bot = self.bot
        if bot is None or not hasattr(bot, "signer"):
            return
        left = self.exchange.engine.live_orders(account=bot.signer.address)
        if left:
            self.monitor.record("managed", self.clock.time(), f"{len(left)} orders of ours rest after the shutdown")

    async def _started(self, bot: Bot, task: asyncio.Task[None]) -> None:
        while not hasattr(bot, "quote_pass") and not task.done():
            await asyncio.sleep(0.05)
        if task.done():
            task.result()  # a start that failed raises here
        self._measure_passes(bot)

    def _summary(self, wall_s: float) -> dict[str, Any]:
        store = Store(self.db)
        try:
            report = build_report(store)
            fills = [(f.trade_id, f.order_id, f.side, f.price, f.size, f.status) for f in store.fills()]
        finally:
            store.close()
        total = report["total"]
        sim_s = self.cfg.hours * 3600
        bot = self.bot
        loop = self.loop
        return {
            "config": asdict(self.cfg),
            "wall_s": round(wall_s, 2),
            "speed_x": round(sim_s / wall_s, 1) if wall_s else None,
            "invariants": self.monitor.summary(),
            "report": {k: _plain(v) for k, v in total.items()},
            "markouts_per_share": _markouts(report),
            "markouts_vs_fair": {str(h): float(v) for h, v in report["vs_fair_per_share"].items()},
            "fills": len(fills),
            "fills_digest": _digest(fills),
            "orders": dict(bot.orders.counts) if bot is not None and hasattr(bot, "orders") else {},
            "crashes": self.crashes,
            "faults_fired": _faults_fired(self.exchange.faults),
            "operator_clears": self.operator_clears,
            # the loop's in-memory connections (sim/loop.py): made over the run, transport ends
            # not closed at the end (0: every connection was), reads delivered, bytes carried
            "loop": {
                "connections": loop.connections, "open_ends": loop.open_connections,
                "deliveries": loop.deliveries, "bytes": loop.bytes_carried, "jumps": loop.jumps,
            },
            "killed_at_end": bool(bot.risk.killed) if bot is not None else False,
            "hours": [asdict(h) for h in self.hours],
            "resolutions": self._resolutions(),
            "events": self.events[:200],
        }

    def _note_resolutions(self) -> None:
        for g in self.exchange.gamma_markets:
            m = self.exchange.engine.markets.get(g["conditionId"])
            if m is not None and m.resolved and m.condition_id not in self._resolved:
                self._resolved[m.condition_id] = (int(g["id"]), g["slug"], m.resolved == m.up)

    def _resolutions(self) -> list[dict[str, Any]]:
        """The windows the exchange resolved, in listing order: slug and whether Up won."""
        self._note_resolutions()
        return [{"slug": slug, "up_won": up_won} for _, slug, up_won in sorted(self._resolved.values())]

    def run(self) -> dict[str, Any]:
        asyncio.set_event_loop(self.loop)
        try:
            with aiohttp_on_loop_time(self.loop):
                return self.loop.run_until_complete(self._main())
        finally:
            self.loop.close()
            asyncio.set_event_loop(None)
            if self._tmp is not None:
                self._tmp.cleanup()


def run_simulation(cfg: SimConfig) -> dict[str, Any]:
    return Simulation(cfg).run()


def _markouts(report: dict[str, Any]) -> dict[str, float]:
    """Markout per share at each horizon over all markets, weighted by volume (USDC/share;
    positive is good for us)."""
    out: dict[str, float] = {}
    for h in report.get("horizons_s") or []:
        num = den = 0.0
        for r in report["markets"].values():
            v = (r.get("markouts_per_share") or {}).get(h)
            if v is not None and r["volume_shares"]:
                num += float(v) * float(r["volume_shares"])
                den += float(r["volume_shares"])
        out[str(h)] = round(num / den, 6) if den else None  # type: ignore[assignment]
    return out


def _faults_fired(f: Any) -> dict[str, int]:
    """What the exchange's faults answered or did (proof that they took effect)."""
    return {
        "restart_answers": f.restart_answers, "cancel_only_answers": f.cancel_only_answers,
        "post_only_answers": f.post_only_answers, "rate_limit_answers": f.rate_limit_answers,
        "held_cancels": f.held_cancels, "duplicated": f.duplicated, "delayed": f.delayed,
    }  # fmt: skip


def _rss_kb() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() // 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _plain(v: Any) -> Any:
    from fractions import Fraction

    if isinstance(v, Fraction):
        return float(v)
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


def _digest(rows: list[tuple[Any, ...]]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(sorted(rows)).encode()).hexdigest()[:16]
