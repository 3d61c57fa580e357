"""``active-quoting report --db FILE``: what a run did, from its store alone.

Per market and overall: fills, volume, fill rate, spread capture, estimated rebates,
markouts at each horizon, toxicity, realized/unrealized P&L and its attribution, order
counts and the circuit-breaker history. Positions and realized P&L are rebuilt from the
stored fills (FAILED fills excluded) and resolutions, exactly as the bot rebuilds them on a
restart. A market whose remaining fills sell more than they buy (a failed buy under a later
sale) is reported with its short position and a warning, never a crash.
"""

from __future__ import annotations

import json
from collections import defaultdict
from fractions import Fraction
from typing import Any

from active_quoting.model import FAILED, Fill
from active_quoting.store.sqlite import Store
from active_quoting.strategy.inventory import SHARE, InventoryManager

HORIZON_AT_FILL = 0  # markouts stored at horizon 0 are the edge against the mid at the fill


def _f(x: Fraction | None, places: int = 4) -> str:
    return "-" if x is None else f"{float(x):.{places}f}"


def build_report(store: Store, toxicity_horizon_s: int = 5, toxicity_threshold_units: int = 100) -> dict[str, Any]:
    markets = {m["condition_id"]: m for m in store.markets()}
    inv = InventoryManager()
    for m in markets.values():
        inv.register_market(m["condition_id"], m["up"], m["down"])
    fills = store.fills()
    by_market: dict[str, list[Fill]] = defaultdict(list)
    for f in fills:
        if f.market in markets:
            inv.apply_fill(f)  # never raises on a replay: a sale left without shares goes short
            by_market[f.market].append(f)
    for m in markets.values():
        if m["winner"]:
            inv.resolve(m["condition_id"], m["winner"])
    marks: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    for trade_id, order_id, horizon, value in store.markouts():
        marks[(trade_id, order_id)][horizon] = value
    per: dict[str, dict[str, Any]] = {}
    cooldown = json.loads(store.get("cooldown_ms", "{}"))
    run_minutes = Fraction(max(1, int(store.get("run_ms", "0"))), 60_000)
    cancels = dict(
        store.db.execute(
            "SELECT o.market, COUNT(DISTINCT e.order_id) FROM order_events e JOIN orders o USING (order_id) "
            "WHERE e.status = 'CANCELED' GROUP BY o.market"
        ).fetchall()
    )
    horizons = sorted({h for v in marks.values() for h in v if h != HORIZON_AT_FILL})
    for cid, m in markets.items():
        mine = [f for f in by_market[cid] if f.status != FAILED]
        rate, share, exp = Fraction(m["fee_rate"]), Fraction(m["rebate_share"]), int(m["fee_exponent"])
        volume = sum(f.size for f in mine)
        rebate = sum(
            (
                share
                * rate
                * Fraction(f.size, SHARE)
                * (Fraction(f.price, 10_000) * (1 - Fraction(f.price, 10_000))) ** exp
                for f in mine
            ),
            Fraction(0),
        )
        capture = Fraction(0)
        by_h: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for f in mine:
            mk = marks.get(f.key, {})
            if HORIZON_AT_FILL in mk:
                capture += Fraction(mk[HORIZON_AT_FILL] * f.size, 2 * 10_000 * SHARE)
            for h in horizons:
                if h in mk:
                    by_h[h].append((mk[h], f.size))
        markouts = {
            h: (Fraction(sum(v * q for v, q in rows), 2 * 10_000 * sum(q for _, q in rows)) if rows else None)
            for h, rows in ((h, by_h[h]) for h in horizons)
        }
        last = horizons[-1] if horizons else None
        adverse = Fraction(0)
        if last is not None:
            for f in mine:
                mk = marks.get(f.key, {})
                if HORIZON_AT_FILL in mk and last in mk:
                    adverse += Fraction((mk[HORIZON_AT_FILL] - mk[last]) * f.size, 2 * 10_000 * SHARE)
        tox_rows = by_h.get(toxicity_horizon_s, [])
        toxic = sum(1 for v, _ in tox_rows if v < -2 * toxicity_threshold_units)
        per[m["slug"]] = {
            "fills": len(mine),
            "failed_fills": sum(1 for f in by_market[cid] if f.status == FAILED),
            "oversold_shares": Fraction(inv.oversold(cid), SHARE),
            "volume_shares": Fraction(volume, SHARE),
            "spread_capture": capture,
            "estimated_rebate": rebate,
            "markouts_per_share": markouts,
            "toxicity": Fraction(toxic, len(tox_rows)) if tox_rows else None,
            "adverse_selection": adverse,
            "realized_pnl": inv.realized(cid),
            "net_attribution": capture + rebate - adverse,
            "winner": "Up" if m["winner"] == m["up"] else ("Down" if m["winner"] else ""),
            "refresh_rate_per_min": Fraction(cancels.get(cid, 0)) / run_minutes,
            "cooldown_s": Fraction(cooldown.get(cid, 0), 1000),
        }
    counts = store.order_counts()
    placed = sum(counts.values())
    # Against the window's fair value (the reference price): per horizon, volume-weighted over
    # the counted fills that have one (0: the edge at the fill).
    sizes = {f.key: f.size for fs in by_market.values() for f in fs if f.status != FAILED}
    fair_rows: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for trade_id, order_id, horizon, value in store.fair_markouts():
        size = sizes.get((trade_id, order_id))
        if size:
            fair_rows[horizon].append((value, size))
    vs_fair = {
        h: Fraction(sum(v * q for v, q in rows), 2 * 10_000 * sum(q for _, q in rows))
        for h, rows in sorted(fair_rows.items())
    }
    total_fills = sum(r["fills"] for r in per.values())
    return {
        "markets": per,
        "total": {
            "fills": total_fills,
            "orders": placed,
            "fill_rate": Fraction(total_fills, placed) if placed else None,
            "volume_shares": sum((r["volume_shares"] for r in per.values()), Fraction(0)),
            "spread_capture": sum((r["spread_capture"] for r in per.values()), Fraction(0)),
            "estimated_rebate": sum((r["estimated_rebate"] for r in per.values()), Fraction(0)),
            "adverse_selection": sum((r["adverse_selection"] for r in per.values()), Fraction(0)),
            "realized_pnl": sum((r["realized_pnl"] for r in per.values()), Fraction(0)),
            "net_attribution": sum((r["net_attribution"] for r in per.values()), Fraction(0)),
            "refresh_rate_per_min": Fraction(sum(cancels.values())) / run_minutes,
            "cooldown_s": sum((r["cooldown_s"] for r in per.values()), Fraction(0)),
            "run_s": run_minutes * 60,
        },
        "order_counts": counts,
        "horizons_s": horizons,
        "vs_fair_per_share": vs_fair,
        "risk_events": [
            {"t_ms": t, "scope": s, "from": o, "to": n, "reason": r} for t, s, o, n, r in store.risk_events()
        ],
    }


def render_text(report: dict[str, Any]) -> str:
    hs = report["horizons_s"]
    head = (
        f"{'market':34} {'fills':>5} {'volume':>9} {'capture':>9} {'rebate':>8} {'adverse':>9} {'realized':>9} "
        + " ".join(f"{'mk' + str(h) + 's':>8}" for h in hs)
    )
    lines = [head, "-" * len(head)]
    for slug, r in report["markets"].items():
        mk = " ".join(f"{_f(r['markouts_per_share'][h]):>8}" for h in hs)
        lines.append(
            f"{slug[:34]:34} {r['fills']:>5} {_f(r['volume_shares'], 2):>9} {_f(r['spread_capture']):>9} "
            f"{_f(r['estimated_rebate']):>8} {_f(r['adverse_selection']):>9} {_f(r['realized_pnl']):>9} {mk}"
        )
    t = report["total"]
    lines.append("-" * len(head))
    lines.append(
        f"{'TOTAL':34} {t['fills']:>5} {_f(t['volume_shares'], 2):>9} {_f(t['spread_capture']):>9} "
        f"{_f(t['estimated_rebate']):>8} {_f(t['adverse_selection']):>9} {_f(t['realized_pnl']):>9}"
    )
    lines.append(
        f"orders: {report['order_counts']}  fill rate: {_f(t['fill_rate'])}  "
        f"net = capture + rebates - adverse = {_f(t['net_attribution'])} USDC"
    )
    lines.append(
        f"refresh rate: {_f(t['refresh_rate_per_min'], 1)} cancels/min over {_f(t['run_s'], 0)} s  "
        f"momentum cooldown: {_f(t['cooldown_s'], 1)} market-seconds"
    )
    fair = report.get("vs_fair_per_share") or {}
    if fair:
        marks = "  ".join(f"{'at fill' if h == 0 else f'{h}s'} {_f(v)}" for h, v in fair.items())
        lines.append(f"against fair value (USDC/share, from the reference price): {marks}")
    for slug, r in report["markets"].items():
        if r.get("oversold_shares"):
            lines.append(
                f"warning: {slug} sold {_f(r['oversold_shares'], 2)} shares its remaining fills never bought "
                "(a failed buy under a later sale): the position went short"
            )
    for e in report["risk_events"]:
        lines.append(f"risk: {e['scope']} {e['from']} -> {e['to']}: {e['reason']}")
    return "\n".join(lines)


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, Fraction):
        return float(obj)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    return obj


def time_series(store: Store) -> dict[str, list[tuple[int, float]]]:
    """Realized P&L (all markets) and net Up-terms inventory (shares) after each fill."""
    markets = {m["condition_id"]: m for m in store.markets()}
    inv = InventoryManager()
    for m in markets.values():
        inv.register_market(m["condition_id"], m["up"], m["down"])
    pnl: list[tuple[int, float]] = []
    position: list[tuple[int, float]] = []
    realized, net = Fraction(0), 0  # running totals: each fill changes only its own market
    for f in store.fills():
        if f.market not in markets or f.status == FAILED:
            continue
        before_pnl, before_net = inv.realized(f.market), inv.net_up(f.market)
        inv.apply_fill(f)
        realized += inv.realized(f.market) - before_pnl
        net += inv.net_up(f.market) - before_net
        pnl.append((f.t_ms, float(realized)))
        position.append((f.t_ms, net / SHARE))
    return {"pnl": pnl, "inventory": position}


def _svg_line(title: str, points: list[tuple[float, float]], x_label: str, y_label: str) -> str:
    w, h, pad = 560, 220, 40
    if not points:
        return f"<h3>{title}</h3><p>(no data)</p>"
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(min(ys), 0.0), max(max(ys), 0.0)
    y1 = y1 if y1 > y0 else y0 + 1

    def sx(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (w - 2 * pad)

    def sy(y: float) -> float:
        return h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad)

    path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(points))
    dots = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5"/>' for x, y in points)
    return (
        f"<h3>{title}</h3><svg width='{w}' height='{h}' xmlns='http://www.w3.org/2000/svg'>"
        f"<line x1='{pad}' y1='{sy(0):.1f}' x2='{w - pad}' y2='{sy(0):.1f}' stroke='#bbb'/>"
        f"<path d='{path}' fill='none' stroke='#1f6feb' stroke-width='2'/><g fill='#1f6feb'>{dots}</g>"
        f"<text x='{pad}' y='14' font-size='11'>{y_label}: {y0:.4f} .. {y1:.4f}</text>"
        f"<text x='{w - pad}' y='{h - 8}' font-size='11' text-anchor='end'>{x_label}</text></svg>"
    )


def render_html(report: dict[str, Any], series: dict[str, list[tuple[int, float]]]) -> str:
    import html

    rows = "".join(
        f"<tr><td>{html.escape(slug)}</td><td>{r['fills']}</td><td>{_f(r['volume_shares'], 2)}</td>"
        f"<td>{_f(r['spread_capture'])}</td><td>{_f(r['estimated_rebate'])}</td><td>{_f(r['adverse_selection'])}</td>"
        f"<td>{_f(r['realized_pnl'])}</td><td>{_f(r['toxicity'])}</td></tr>"
        for slug, r in report["markets"].items()
    )
    total = report["total"]
    curve: dict[int, list[Fraction]] = defaultdict(list)
    for r in report["markets"].values():
        for h, v in r["markouts_per_share"].items():
            if v is not None:
                curve[h].append(v * r["volume_shares"])
    vol = total["volume_shares"] or Fraction(1)
    markout_points = [(float(h), float(sum(vs) / vol)) for h, vs in sorted(curve.items())]
    t0 = min((t for t, _ in series["pnl"]), default=0)
    charts = (
        _svg_line("Markout by horizon (USDC per share, volume-weighted)", markout_points, "horizon (s)", "markout")
        + _svg_line("Realized P&L over time (USDC)", [((t - t0) / 1000, v) for t, v in series["pnl"]], "seconds", "P&L")
        + _svg_line(
            "Net inventory over time (Up-terms shares)",
            [((t - t0) / 1000, v) for t, v in series["inventory"]],
            "seconds",
            "shares",
        )  # fmt: skip
    )
    events = "".join(
        f"<li>{html.escape(e['scope'])}: {e['from']} &rarr; {e['to']}: {html.escape(e['reason'])}</li>"
        for e in report["risk_events"]
    )
    summary = (
        f"fills {total['fills']} &middot; orders {total['orders']} &middot; fill rate {_f(total['fill_rate'])} "
        f"&middot; net = capture + rebates &minus; adverse = <b>{_f(total['net_attribution'])}</b> USDC "
        f"&middot; realized {_f(total['realized_pnl'])} USDC"
    )
    header = "".join(
        f"<th>{c}</th>" for c in ("market", "fills", "volume", "capture", "rebate", "adverse", "realized", "toxicity")
    )
    return "\n".join(
        [
            '<!doctype html><html><head><meta charset="utf-8"><title>active-quoting report</title>',
            f"<style>{_CSS}</style></head><body><h1>active-quoting report</h1>",
            f"<p>{summary}</p>",
            f"<table><tr>{header}</tr>{rows}</table>",
            charts,
            f"<h3>Circuit breaker</h3><ul>{events or '<li>no transitions</li>'}</ul></body></html>",
        ]
    )


_CSS = (
    "body{font-family:sans-serif;margin:24px}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}"
)
