"""Live status: one row per market (window, book top, our quotes, position, P&L, markout,
state), written to the store for ``active-quoting status``, exported as metrics, and printed
when asked. Rendering only: every number comes from the component that owns it."""

from __future__ import annotations

import json
import sys
from typing import Any

from active_quoting import core
from active_quoting.windows import RESOLVED, WindowLifecycle

RISK_CODES = {"NORMAL": 0, "WARNING": 1, "RECOVERING": 2, "HALTED": 3}


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


def _fmt(price: int | None) -> str:
    return core.format_price(price) if price not in (None, core.NO_PRICE) else "-"


class StatusPublisher:
    def __init__(self, bot: Any) -> None:
        self.bot = bot  # the wiring: windows, orders, inventory, analytics, momentum, risk, market, store, metrics

    def rows(self, now: float) -> list[dict[str, Any]]:
        b = self.bot
        windows: WindowLifecycle = b.windows
        books = b.market.md.books
        rows = []
        for w in sorted(windows.windows.values(), key=lambda w: (w.info.start, w.info.slug)):
            info, cid = w.info, w.cid
            if now >= info.end + 5 or now < info.start - 5:
                continue
            book = books.get(info.up)
            bid, ask = b.orders.resting(cid, "bid"), b.orders.resting(cid, "ask")
            up, down = b.inventory.held(cid)
            marks = {t: bk.mid_x2() for t in (info.up, info.down) if (bk := books.get(t)) is not None}
            pnl = b.inventory.realized(cid) + b.inventory.unrealized(cid, marks)
            mk = b.analytics.market_report(cid)["markouts"].get(5, {}).get("avg_per_share")
            state = (
                "resolved" if w.phase == RESOLVED
                else "cooldown" if b.momentum.is_active(cid, int(now * 1000))
                else b.risk.state
            )  # fmt: skip
            rows.append({
                "market": info.slug, "left_s": max(0, int(info.end - now)),
                "book": f"{_fmt(book.best_bid() if book else None)}/{_fmt(book.best_ask() if book else None)}",
                "quotes": f"{_fmt(bid.price)}/{_fmt(ask.price)}",
                "position_up": core.format_size(up), "position_down": core.format_size(down),
                "pnl": f"{float(pnl):.4f}", "markout_5s": f"{float(mk):.4f}" if mk is not None else "-",
                "state": state,
            })  # fmt: skip
        return rows

    def publish(self, now: float, show: bool) -> dict[str, Any]:
        b = self.bot
        rows = self.rows(now)
        snapshot = {
            "t": now, "risk": b.risk.state, "killed": b.risk.killed, "fills": b.fills.seen,
            "orders": dict(b.orders.counts), "markets": rows, "windows": len(b.windows.windows),
            "pruned": b.windows.pruned, "store_errors": b.store.errors, "journal_errors": b.journal.errors,
        }  # fmt: skip
        b.store.put("status", json.dumps(snapshot))
        m = b.metrics
        for r in rows:
            for key in ("position_up", "position_down", "pnl"):
                m.set(f"aq_{key}", float(r[key]), market=r["market"])
        m.set("aq_circuit_state", RISK_CODES[b.risk.state])
        m.set("aq_fills_total", b.fills.seen)
        m.set("aq_windows", len(b.windows.windows))
        m.set("aq_store_errors", b.store.errors)
        m.set("aq_journal_errors", b.journal.errors)
        m.set("aq_feed_connected", sum(1 for c in b.market.shards if c.connected))
        m.set("aq_user_connected", 1 if b.user.conn.connected else 0)
        if show:
            text = render_status(snapshot)
            sys.stderr.write(("\x1b[H\x1b[2J" if sys.stderr.isatty() else "") + text + "\n")
            sys.stderr.flush()
        return snapshot
