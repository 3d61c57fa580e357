"""Live status: one row per market (window, book top, our quotes, position, P&L, markout,
state, protocol version and fee state), the venue's state and our balances and allowances,
written to the store for ``active-quoting status``, exported as metrics, and printed when
asked. Rendering only: every number comes from the component that owns it. The publisher also
points the bot's metrics at the components whose counters they export at scrape time."""

from __future__ import annotations

import json
import sys
from typing import Any

from active_quoting import core
from active_quoting.observability.metrics import RISK_CODES, Sources
from active_quoting.windows import RESOLVED, WindowLifecycle

__all__ = ["RISK_CODES", "StatusPublisher", "render_status"]


def render_status(snapshot: dict[str, Any]) -> str:
    """The live status: one line per market (also what ``active-quoting status`` prints)."""
    head = (
        f"{'market':30} {'left':>5} {'book':>13} {'quotes':>13} {'pos up':>9} {'pos down':>9} {'pnl':>9} "
        f"{'mk5s':>8} {'ver':>3} {'fee':>6} state"
    )
    lines = [
        f"risk {snapshot['risk']}{' KILLED' if snapshot.get('killed') else ''}  fills {snapshot['fills']}  "
        f"orders {snapshot['orders']}",
    ]
    # A snapshot written before these fields existed (an older bot's store) has none of them.
    venue = snapshot.get("venue")
    if venue:
        left = f" for {venue['seconds_left']:.0f} s more" if venue.get("seconds_left") else ""
        lines.append(f"venue {venue['state']}{left}  refresh cap {venue.get('refresh_cap_per_sec', '-')}/s")
    ladders = snapshot.get("presigned")
    if ladders:
        lines.append(f"pre-signed: {ladders.get('hits', 0)} taken, {ladders.get('misses', 0)} signed at send time "
                     f"({ladders.get('stale', 0)} too old), {ladders.get('signed', 0)} signed ahead")  # fmt: skip
    for asset, b in (snapshot.get("balances") or {}).items():
        spenders = ", ".join(f"{s} {a}" for s, a in b["allowances"].items()) or "none reported"
        lines.append(f"balance {asset}: {b['balance']}  allowances: {spenders}")
    lines.append(head)
    for r in snapshot["markets"]:
        lines.append(
            f"{r['market'][:30]:30} {r['left_s']:>5} {r['book']:>13} {r['quotes']:>13} {r['position_up']:>9} "
            f"{r['position_down']:>9} {r['pnl']:>9} {r['markout_5s']:>8} {r.get('version', '-'):>3} "
            f"{_fee_text(r):>6} {r['state']}"
        )
    return "\n".join(lines)


def _fee_text(row: dict[str, Any]) -> str:
    if "fee_rate" not in row:
        return "-"
    return row["fee_rate"] if row.get("fees_enabled") else "off"


def _fmt(price: int | None) -> str:
    return core.format_price(price) if price not in (None, core.NO_PRICE) else "-"


class StatusPublisher:
    def __init__(self, bot: Any) -> None:
        self.bot = bot  # the wiring: windows, orders, inventory, analytics, momentum, risk, market, store, metrics
        bot.metrics.watch(
            Sources(
                orders=bot.orders, venue=bot.orders, rest=bot.rest, market=bot.market, user=bot.user, fills=bot.fills,
                risk=bot.risk, windows=bot.windows, store=bot.store, journal=bot.journal,
            )
        )  # fmt: skip

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
                "state": state, "version": info.version, "fee_rate": str(info.fee_rate),
                "fees_enabled": info.fees_enabled,
            })  # fmt: skip
        return rows

    def publish(self, now: float, show: bool) -> dict[str, Any]:
        b = self.bot
        m = b.metrics
        rows = self.rows(now)
        snapshot = {
            "t": now, "risk": b.risk.state, "killed": b.risk.killed, "fills": b.fills.seen,
            "orders": dict(b.orders.counts), "markets": rows, "windows": len(b.windows.windows),
            "pruned": b.windows.pruned, "store_errors": b.store.errors, "journal_errors": b.journal.errors,
            "venue": b.orders.venue_status(), "balances": m.balance_rows(),
            "presigned": dict(b.orders.presigned.counts) if b.orders.presigned is not None else {},
        }  # fmt: skip
        b.store.put("status", json.dumps(snapshot))
        # Per-market numbers the status computes; every other series is read from its
        # component at scrape time (see the metrics' Sources).
        for r in rows:
            for key in ("position_up", "position_down", "pnl"):
                m.set(f"aq_{key}", float(r[key]), market=r["market"])
        if show:
            text = render_status(snapshot)
            sys.stderr.write(("\x1b[H\x1b[2J" if sys.stderr.isatty() else "") + text + "\n")
            sys.stderr.flush()
        return snapshot
