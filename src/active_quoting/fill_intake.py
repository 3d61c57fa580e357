"""Our fills into the store, inventory, analytics and alerts, each exactly once.

Fills arrive from the user channel and from reconciliation against ``/data/trades`` (the
channel does not replay what it missed, and a restarted bot missed everything while it was
down). The store holds every fill ever seen; this intake keeps the state of the fills of the
windows still alive (loaded from the store at start), so a fill seen again - a duplicate on the
channel, a recovered trade, the same fill after a restart - changes nothing, and a settlement
status that progressed updates positions without re-running analytics or re-announcing it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import msgspec

from active_quoting import core
from active_quoting.clock import Clock
from active_quoting.errors import UnitsError
from active_quoting.model import CONFIRMED, FAILED, FINAL_STATUSES, MATCHED, MINED, RETRYING, Fill
from active_quoting.strategy.balances import Balances
from active_quoting.strategy.inventory import InventoryError
from active_quoting.venue.user_codec import FillTracker, FillUpdate, TradeEvent
from active_quoting.windows import WindowLifecycle

_log = logging.getLogger(__name__)

STALE_FOR_MARKOUTS_MS = 1_000  # a fill recovered later than this has no markouts (no mids since)


class FillIntake:
    def __init__(self, windows: WindowLifecycle, alerts: Any, clock: Clock) -> None:
        self.windows = windows
        self.parts = windows.parts
        self.alerts = alerts
        self.clock = clock
        self.known: dict[str, dict[tuple[str, str], str]] = {}  # market -> fill key -> status
        self._t_ms: dict[tuple[str, str], int] = {}  # fill key -> match time, for the known fills
        self.seen = 0  # fills first seen by this run
        self.recovered = 0  # of which found by reconciliation, not on the channel
        self.unaccounted = 0  # fills the inventory refused (logged)
        self.latest_ms = 0  # newest fill time known
        self.floor_ms = 0  # recovery never asks for trades before this (the store's first run)
        self.balances: Balances | None = None  # set by the bot: live fills move the venue balances

    def restore(self, fills: Iterable[Fill]) -> None:
        """Stored fills of the windows being tracked rebuild their positions."""
        for f in fills:
            self.latest_ms = max(self.latest_ms, f.t_ms)
            if self.windows.get(f.market) is None:
                continue
            self.known.setdefault(f.market, {})[f.key] = f.status
            self._t_ms[f.key] = f.t_ms
            self._apply(f)

    def _apply(self, f: Fill) -> None:
        try:
            self.parts.inventory.apply_fill(f)
        except InventoryError as exc:
            self.unaccounted += 1
            _log.error("fill not accounted: %s", exc)

    def on_fill(self, update: FillUpdate, recovered: bool = False) -> bool:
        """One fill or one settlement step of it. Returns True when it changed anything."""
        f = update.fill
        self.latest_ms = max(self.latest_ms, f.t_ms)
        w = self.windows.get(f.market)
        if w is None:
            # A window already pruned (or never ours to track): kept in the store, nothing live moves.
            return self.parts.store.fill(f)
        known = self.known.setdefault(f.market, {})
        previous = known.get(f.key)
        if previous == f.status or (previous is not None and not _moves_forward(previous, f.status)):
            return False  # a repeat, or a settlement step older than what is known
        known[f.key] = f.status
        self._t_ms[f.key] = f.t_ms
        self.parts.store.fill(f)
        self._apply(f)
        if self.balances is not None:
            self.balances.apply_fill(f)  # the venue's balances move with it until the next read
        now_ms = self.clock.ms()
        if previous is None:
            self.seen += 1
            self.recovered += recovered
            text = f"{w.info.slug}: {f.side} {core.format_size(f.size)} @ {core.format_price(f.price)}"
            if recovered and now_ms - f.t_ms > STALE_FOR_MARKOUTS_MS:
                # Found late (the channel missed it, or the bot was down): the mids since the fill
                # are gone, so its markouts would be measured from now. It is counted, not analysed.
                self.parts.analytics.add_known([f])
                self.alerts.fill(text + " (recovered)")
            elif self.parts.analytics.on_fill(f, now_ms):  # counted now (not a ghost seen first as FAILED)
                self.alerts.fill(text)
        elif f.status == FAILED:
            self.parts.analytics.on_fill(f, now_ms)  # a ghost fill: analytics drops what it counted
        return True

    def forget(self, market: str, tracker: FillTracker | None = None) -> None:
        """A pruned window's fills leave memory (the store keeps them)."""
        keys = self.known.pop(market, {})
        for key in keys:
            self._t_ms.pop(key, None)
        self.parts.store.forget_fills(keys)
        if tracker is not None:
            tracker.forget(keys)

    # -- recovery -----------------------------------------------------------------------

    def updates_from_trades(self, tracker: FillTracker, trades: list[dict[str, Any]]) -> list[FillUpdate]:
        """Our fills in ``/data/trades`` records (the user channel's codec, record by record:
        one unusable record is counted and skipped, never the end of the recovery)."""
        out: list[FillUpdate] = []
        for raw in trades:
            try:
                event = msgspec.convert(dict(raw, event_type="trade"), TradeEvent)
                out += [FillUpdate("fill", f) for f in tracker.fills_in(event)]
            except (msgspec.ValidationError, UnitsError) as exc:
                _log.warning("unusable trade record %s: %s", raw.get("id"), exc)
        return out

    def recovery_from_ms(self) -> int:
        """Where recovery asks ``/data/trades`` from: the oldest fill whose settlement is not
        final yet (a MINED, CONFIRMED or FAILED the channel missed must come back), else the
        newest fill, never before the store's first run (not the account's whole history)."""
        unsettled = [
            t_ms for keys in self.known.values() for key, status in keys.items()
            if status not in FINAL_STATUSES and (t_ms := self._t_ms.get(key, 0))
        ]  # fmt: skip
        return max(self.floor_ms, min(unsettled) if unsettled else self.latest_ms)

    def unknown_markets(self, updates: Iterable[FillUpdate]) -> set[str]:
        """Markets of recovered fills that no window tracks and that were never retired (a
        window already pruned keeps its fills in the store; it is not tracked again)."""
        return {
            u.fill.market for u in updates
            if self.windows.get(u.fill.market) is None and not self.windows.is_retired(u.fill.market)
        }  # fmt: skip

    def take(self, updates: Iterable[FillUpdate]) -> int:
        """Apply recovered fills; returns how many changed something."""
        return sum(self.on_fill(u, recovered=True) for u in updates)


# Settlement only moves forward: MATCHED -> (RETRYING) -> MINED -> CONFIRMED, or FAILED.
_STEP = {MATCHED: 0, RETRYING: 1, MINED: 2, CONFIRMED: 3, FAILED: 3}


def _moves_forward(previous: str, new: str) -> bool:
    if previous in FINAL_STATUSES:
        return False
    return _STEP.get(new, 0) >= _STEP.get(previous, 0)
