"""``active-quoting report --db FILE``: what a run did, from its store alone.

Per market and overall: fills, volume, fill rate, spread capture, estimated rebates,
markouts at each horizon, toxicity, realized/unrealized P&L and its attribution, order
counts and the circuit-breaker history. Positions and realized P&L are rebuilt from the
stored fills (FAILED fills excluded) and resolutions, exactly as the bot rebuilds them on a
restart.
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from typing import Any

from active_quoting.model import FAILED
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
    for f in fills:
        if f.market in markets:
            inv.apply_fill(f)
    for m in markets.values():
        if m["winner"]:
            inv.resolve(m["condition_id"], m["winner"])
    marks: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    for trade_id, order_id, horizon, value in store.markouts():
        marks[(trade_id, order_id)][horizon] = value
    per: dict[str, dict[str, Any]] = {}
    horizons = sorted({h for v in marks.values() for h in v if h != HORIZON_AT_FILL})
    for cid, m in markets.items():
        mine = [f for f in fills if f.market == cid and f.status != FAILED]
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
            "failed_fills": sum(1 for f in fills if f.market == cid and f.status == FAILED),
            "volume_shares": Fraction(volume, SHARE),
            "spread_capture": capture,
            "estimated_rebate": rebate,
            "markouts_per_share": markouts,
            "toxicity": Fraction(toxic, len(tox_rows)) if tox_rows else None,
            "adverse_selection": adverse,
            "realized_pnl": inv.realized(cid),
            "net_attribution": capture + rebate - adverse,
            "winner": "Up" if m["winner"] == m["up"] else ("Down" if m["winner"] else ""),
        }
    counts = store.order_counts()
    placed = sum(counts.values())
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
        },
        "order_counts": counts,
        "horizons_s": horizons,
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
