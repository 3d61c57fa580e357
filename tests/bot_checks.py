"""Invariants of a running bot against the embedded exchange, shared by the bot-level tests.

Each check reads the venue's side (the exchange engine) and the bot's, and can fail:
- every order the venue holds for us is one the bot manages as live - watched *while the bot
  runs* (:class:`LiveOrdersWatch`), not only after a cancel-all that would hide a violation;
- positions equal what the venue owes us (settled tokens, tokens reserved by our resting
  SELLs, and tokens of trades matched but not yet mined);
- nothing of ours rests after shutdown.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from active_quoting.exchange.flow import MARKETS
from active_quoting.execution.order_manager import LIVE_STATES
from active_quoting.sim.invariants import venue_owes

# Bot tests run the bot with its default configuration (momentum on); those that need resting
# orders to act on run it against a calm market instead of blinding the detector.
CALM_MARKET = dict(MARKETS["calm"])


def check_positions(bot: Any) -> None:
    me = bot.signer.address
    engine = bot.exchange.engine
    for cid, w in bot.windows.windows.items():
        held = bot.inventory.held(cid)
        owed = venue_owes(engine, me, bot.rest.creds.api_key, {w.info.up, w.info.down})
        venue = (owed[w.info.up], owed[w.info.down])
        if w.winner:
            continue  # resolved: the venue redeemed the winner for collateral
        assert held == venue, f"{w.info.slug}: bot holds {held}, the venue owes {venue}"


def unmanaged(bot: Any) -> list[str]:
    """Orders the venue holds for us that the bot does not manage as live."""
    me = bot.signer.address
    out = []
    for o in bot.exchange.engine.live_orders(account=me):
        t = bot.orders.orders.get(o.id)
        if t is None or t.status not in LIVE_STATES:
            out.append(f"{o.id[:10]} {o.side} {o.price} ({'unknown' if t is None else t.status})")
    return out


@dataclass
class LiveOrdersWatch:
    """Checks, every ``every_s`` while the bot runs, that every order the venue holds for us
    is managed as live by the bot; an order may be unmanaged for at most ``grace_s`` (a
    submit's answer in flight). Records the first violation with its time and the orders."""

    bot: Any
    grace_s: float = 2.0
    every_s: float = 0.1
    checks: int = 0
    violations: list[str] = field(default_factory=list)
    _since: dict[str, float] = field(default_factory=dict)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while getattr(self.bot, "exchange", None) is None or not hasattr(self.bot, "orders"):
            await asyncio.sleep(0.02)
        while not self.bot.stopping:
            now = loop.time()
            bad = set(unmanaged(self.bot))
            self.checks += 1
            for key in bad:
                first = self._since.setdefault(key.split()[0], now)
                if now - first > self.grace_s and not self.violations:
                    self.violations.append(f"after {now - first:.1f}s: {key}")
            for key in list(self._since):
                if not any(b.startswith(key) for b in bad):
                    del self._since[key]
            await asyncio.sleep(self.every_s)

    def assert_held(self) -> None:
        assert self.checks > 10, "the invariant was hardly checked"
        assert not self.violations, f"the venue held orders the bot did not manage: {self.violations[0]}"


def quickly_cancelled(
    db: str, within_ms: int, before_ms: int | None = None, excused: Callable[[str, int, int], bool] | None = None
) -> dict[str, Any]:
    """Of the orders a bot placed, the share it cancelled within ``within_ms`` of placing them
    (from its store: the order row's creation and its CANCELED event). With ``before_ms``, only
    cancellations before that time count as quick: shutdown cancels everything, and an order a
    last pass placed just before it says nothing about how the bot reads the book. ``excused``
    (market, created ms, cancelled ms) names quick cancels with a cause of the market's own."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT o.order_id, o.market, o.created_ms, MIN(e.t_ms) FROM orders o LEFT JOIN order_events e "
            "ON e.order_id = o.order_id AND e.status = 'CANCELED' GROUP BY o.order_id"
        ).fetchall()
    finally:
        con.close()
    quick = [
        r for r in rows
        if r[3] is not None and r[3] - r[2] <= within_ms and (before_ms is None or r[3] < before_ms)
    ]  # fmt: skip
    counted = [r for r in quick if excused is None or not excused(r[1], r[2], r[3])]
    return {"orders": len(rows), "quick": len(counted), "share": len(counted) / max(1, len(rows)),
            "quick_rows": counted, "excused_rows": [r for r in quick if r not in counted]}  # fmt: skip
