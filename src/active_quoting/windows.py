"""The market-window lifecycle: one object owns each window's whole life.

discover -> register (inventory, analytics, orders, store, both channels) -> quote -> stop
quoting ``stop_before_end_s`` before the end -> cancel its orders -> resolve (the venue's
``market_resolved`` or a REST lookup) -> unsubscribe -> prune (every per-market structure is
removed by the component that owns it). Nothing per window outlives its prune, so memory and
the cost of a quote pass stay flat over a day of rollovers.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

from active_quoting import core
from active_quoting.analytics.fills import FeeSchedule, FillAnalytics
from active_quoting.discovery import WindowInfo
from active_quoting.execution.order_manager import MarketRef, OrderManager
from active_quoting.store.sqlite import Store
from active_quoting.strategy.inventory import InventoryManager
from active_quoting.strategy.momentum import MomentumDetector

_log = logging.getLogger(__name__)

LISTED, QUOTING, STOPPING, ENDED, RESOLVED = "LISTED", "QUOTING", "STOPPING", "ENDED", "RESOLVED"
DEFAULT_MIN_SIZE = 5 * 1_000_000


@dataclass
class MarketWindow:
    info: WindowInfo
    phase: str = LISTED
    winner: str = ""
    next_lookup: float = 0.0  # when the resolution may next be asked of the venue
    unsubscribed: bool = False
    restored: bool = False  # rebuilt from the store, not (yet) confirmed by discovery

    @property
    def cid(self) -> str:
        return self.info.condition_id


@dataclass
class WindowParts:
    """The components that hold per-window state; each is told when a window comes and goes."""

    inventory: InventoryManager
    analytics: FillAnalytics
    orders: OrderManager
    momentum: MomentumDetector
    store: Store
    market: Any  # venue.ws.MarketStream
    user: Any  # venue.ws.UserStream


@dataclass
class WindowLifecycle:
    parts: WindowParts
    stop_before_end_s: float = 20.0
    linger_s: float = 90.0  # after the end: late fills settle, markouts (60 s) resolve
    lookup_every_s: float = 5.0
    windows: dict[str, MarketWindow] = field(default_factory=dict)
    token_market: dict[str, str] = field(default_factory=dict)
    pruned: int = 0
    # Markets whose windows were resolved and pruned (or found resolved in the store): never
    # tracked again. Bounded: a day of 16 markets retires ~1,500.
    retired: OrderedDict[str, None] = field(default_factory=OrderedDict)
    retired_kept: int = 50_000

    def retire(self, cid: str) -> None:
        self.retired[cid] = None
        while len(self.retired) > self.retired_kept:
            self.retired.popitem(last=False)

    def is_retired(self, cid: str) -> bool:
        return cid in self.retired

    # -- coming in ----------------------------------------------------------------------

    def add(self, info: WindowInfo, now: float) -> bool:
        """A window discovery found: registered everywhere and subscribed. False when known."""
        known = self.windows.get(info.condition_id)
        if known is not None:
            if known.restored:  # discovery has the venue's tick, size and fees; the store did not
                known.info, known.restored = info, False
                self.parts.orders.add_market(MarketRef(info.condition_id, info.up, info.down, info.tick, info.version))
            return False
        w = MarketWindow(info)
        self._register(w, now)
        self._store_market(info)
        _log.info("window %s listed (%s .. %s)", info.slug, info.start, info.end)
        return True

    def restore(self, row: dict[str, Any], now: float) -> MarketWindow:
        """A window of a previous run from its store row (its orders and fills are ours to
        settle); discovery replaces the guessed tick and size if the window is still current."""
        info = WindowInfo(
            asset=str(row["slug"]).split("-", 1)[0], slug=str(row["slug"]), condition_id=str(row["condition_id"]),
            up=str(row["up"]), down=str(row["down"]), start=int(row["start_s"]), end=int(row["end_s"]),
            tick=core.DEFAULT_TICK, min_size=DEFAULT_MIN_SIZE, fee_rate=Fraction(str(row.get("fee_rate") or 0)),
            fee_exponent=int(row.get("fee_exponent") or 1), rebate_share=Fraction(str(row.get("rebate_share") or 0)),
            closed=False,
        )  # fmt: skip
        w = MarketWindow(info, restored=True)
        self._register(w, now)
        return w

    def adopt_ended(self, info: WindowInfo, now: float) -> MarketWindow:
        """A window we traded but no longer knew (fills found after a restart): tracked to its
        resolution, never quoted."""
        w = self.windows.get(info.condition_id)
        if w is None:
            w = MarketWindow(replace(info, closed=True))
            self._register(w, now)
            self._store_market(info)
        return w

    def _store_market(self, info: WindowInfo) -> None:
        self.parts.store.market(
            info.condition_id, info.slug, info.up, info.down, info.start, info.end,
            str(info.fee_rate), str(info.rebate_share), info.fee_exponent,
        )  # fmt: skip

    def _register(self, w: MarketWindow, now: float) -> None:
        info, p = w.info, self.parts
        self.windows[info.condition_id] = w
        self.token_market[info.up] = self.token_market[info.down] = info.condition_id
        p.inventory.register_market(info.condition_id, info.up, info.down)
        fees = FeeSchedule(info.fee_rate, info.fee_exponent, info.rebate_share)
        p.analytics.set_fee_schedule(info.condition_id, fees)
        p.orders.add_market(MarketRef(info.condition_id, info.up, info.down, info.tick, info.version))
        w.phase = self._phase_for(w, now)
        if w.phase in (LISTED, QUOTING, STOPPING):
            p.market.subscribe([info.up, info.down])
        else:
            w.unsubscribed = True  # an ended window has no book worth reading
        p.user.subscribe([info.condition_id])

    def _phase_for(self, w: MarketWindow, now: float) -> str:
        info = w.info
        if w.winner:
            return RESOLVED
        if now >= info.end:
            return ENDED
        if info.closed:
            return STOPPING
        if now >= info.end - self.stop_before_end_s:
            return STOPPING
        if now >= info.start:
            return QUOTING
        return LISTED

    # -- views --------------------------------------------------------------------------

    def get(self, cid: str) -> MarketWindow | None:
        return self.windows.get(cid)

    def market_of(self, token: str) -> str | None:
        return self.token_market.get(token)

    def lookup(self, token: str) -> tuple[str | None, MarketWindow | None]:
        """The token's market and its window, in one call (every frame asks, per token)."""
        cid = self.token_market.get(token)
        return cid, (self.windows.get(cid) if cid is not None else None)

    def is_quoting(self, cid: str) -> bool:
        w = self.windows.get(cid)
        return w is not None and w.phase == QUOTING

    def quoting(self) -> list[str]:
        return [cid for cid, w in self.windows.items() if w.phase == QUOTING]

    def has_slots(self, asset: str, now: float, window_s: int) -> bool:
        """Whether the current and the next window of ``asset`` are both known (then there is
        nothing for discovery to ask Gamma about until the next rollover)."""
        start = int(now) // window_s * window_s
        starts = {w.info.start for w in self.windows.values() if w.info.asset == asset}
        return start in starts and start + window_s in starts

    def quoted(self) -> list[MarketWindow]:
        return [w for w in self.windows.values() if w.phase == QUOTING]

    def active(self) -> list[MarketWindow]:
        """Windows that may still hold orders of ours (quoting or being stopped)."""
        return [w for w in self.windows.values() if w.phase in (QUOTING, STOPPING)]

    # -- time passes --------------------------------------------------------------------

    def advance(self, now: float) -> list[str]:
        """Move every window along; returns the markets that stopped quoting now (the bot
        cancels their orders: the quote pass cancels what rests in a market it does not quote)."""
        stopped = []
        for w in self.windows.values():
            if w.phase == RESOLVED:
                continue
            new = self._phase_for(w, now)
            if new == w.phase or (w.phase == ENDED and new != RESOLVED):
                continue
            if w.phase in (LISTED, QUOTING) and new in (STOPPING, ENDED):
                stopped.append(w.cid)
            w.phase = new
        return stopped

    def due_lookups(self, now: float) -> list[MarketWindow]:
        """Ended windows with no winner known whose resolution may be asked for now."""
        due = []
        for w in self.windows.values():
            if w.phase == ENDED and now >= w.next_lookup:
                w.next_lookup = now + self.lookup_every_s
                due.append(w)
        return due

    def resolve(self, cid: str, winner: str) -> Fraction | None:
        """The winner is known: positions settle. Returns the market's realized P&L the first
        time, None when already resolved or unknown."""
        w = self.windows.get(cid)
        if w is None or w.winner:
            return None
        w.winner = winner
        w.phase = RESOLVED
        pnl = self.parts.inventory.resolve(cid, winner)
        self.parts.store.resolved(cid, winner)
        _log.info("market %s resolved: realized %.4f USDC", w.info.slug, float(pnl))
        return pnl

    def prune(self, now: float) -> list[str]:
        """Unsubscribe windows past their end and linger; forget resolved windows whose orders
        are all finished. Returns the pruned markets."""
        gone = []
        p = self.parts
        for cid, w in list(self.windows.items()):
            if now < w.info.end + self.linger_s:
                continue
            if not w.unsubscribed:
                p.market.unsubscribe([w.info.up, w.info.down])
                w.unsubscribed = True
            if w.phase != RESOLVED or not p.orders.forget_market(cid):
                continue
            p.user.unsubscribe([cid])
            cooldown_ms = p.momentum.forget(cid, int(now * 1000))
            if cooldown_ms:
                p.store.add_cooldown_ms(cid, cooldown_ms)
            p.analytics.forget(cid, (w.info.up, w.info.down))
            p.inventory.forget(cid, force=True)  # resolved: its P&L stays in the realized total
            del self.windows[cid]
            self.retire(cid)
            self.token_market.pop(w.info.up, None)
            self.token_market.pop(w.info.down, None)
            gone.append(cid)
        self.pruned += len(gone)
        return gone
