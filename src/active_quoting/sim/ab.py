"""A/B evaluation: the same flow seeds run through several strategies (and parameter sets),
paired by seed, in parallel worker processes; per variant the mean and a 95% confidence
interval over seeds of net P&L and its parts, fill rate, markouts, time in cooldown, kill
switches; and each variant's paired difference against the first one.

A variant is a strategy name with optional config overrides: ``active``, ``only50``,
``naive``, ``spot`` (active + fair value + spot-move guard), or
``active:momentum.cooldown_seconds=1,quote.offset_ticks=1``.
"""

from __future__ import annotations

import html
import logging
import math
import multiprocessing
import statistics
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from active_quoting.sim.runner import SimConfig, run_simulation

METRICS = (
    ("net", "net P&L (USDC): capture + rebates - adverse"),
    ("realized", "realized P&L incl. resolutions (USDC)"),
    ("capture", "spread capture (USDC)"),
    ("rebates", "estimated rebates (USDC)"),
    ("adverse", "adverse selection (USDC)"),
    ("fills", "fills"),
    ("fill_rate", "fills per order"),
    ("mk1", "markout 1 s (USDC/share)"),
    ("mk5", "markout 5 s"),
    ("mk15", "markout 15 s"),
    ("mk30", "markout 30 s"),
    ("mk60", "markout 60 s"),
    ("fv0", "edge vs fair value at the fill (USDC/share)"),
    ("fv1", "markout vs fair value 1 s"),
    ("fv5", "markout vs fair value 5 s"),
    ("cooldown_h", "momentum cooldown (market-hours)"),
    ("kills", "kill switches cleared by the operator"),
)


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``strategy[:section.key=value,...]`` -> (strategy, AQ_* environment overrides)."""
    name, _, params = text.partition(":")
    env: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in params.split(","))):
        key, eq, value = item.partition("=")
        section, dot, field = key.partition(".")
        if not eq or not dot or not section or not field:
            raise ValueError(f"variant {text!r}: parameters are section.key=value, got {item!r}")
        env[f"AQ_{section.upper()}_{field.upper()}"] = value
    return name.strip(), env


def _run(job: tuple[str, SimConfig]) -> tuple[str, int, dict[str, Any]]:
    label, cfg = job
    if multiprocessing.parent_process() is not None:
        logging.getLogger().setLevel(logging.CRITICAL)  # a worker: the parent reports progress
    summary = run_simulation(cfg)
    return label, cfg.seed, summary


def metrics_of(summary: dict[str, Any]) -> dict[str, float]:
    r = summary["report"]
    mk = summary.get("markouts_per_share") or {}
    fv = summary.get("markouts_vs_fair") or {}

    def f(v: Any) -> float:
        return float(v) if v is not None else math.nan

    return {
        "net": f(r.get("net_attribution")),
        "realized": f(r.get("realized_pnl")),
        "capture": f(r.get("spread_capture")),
        "rebates": f(r.get("estimated_rebate")),
        "adverse": f(r.get("adverse_selection")),
        "fills": f(r.get("fills")),
        "fill_rate": f(r.get("fill_rate")),
        "mk1": f(mk.get("1")),
        "mk5": f(mk.get("5")),
        "mk15": f(mk.get("15")),
        "mk30": f(mk.get("30")),
        "mk60": f(mk.get("60")),
        "fv0": f(fv.get("0")),
        "fv1": f(fv.get("1")),
        "fv5": f(fv.get("5")),
        "cooldown_h": f(r.get("cooldown_s")) / 3600,
        "kills": float(summary.get("operator_clears", 0)),
    }


def mean_ci(values: Iterable[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (Student t over seeds)."""
    xs = [v for v in values if not math.isnan(v)]
    if not xs:
        return math.nan, math.nan
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, math.nan
    return m, _t95(len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))


def _t95(df: int) -> float:
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
             10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}  # fmt: skip
    below = [k for k in table if k <= df]  # the nearest tabulated df not above: a wider interval, never narrower
    return table[max(below)] if df <= 30 else 2.042


def run_ab(
    base: SimConfig, variants: list[str], seeds: list[int], workers: int = 2,
    on_done: Callable[[str, int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every variant on every seed (paired), ``workers`` simulations at a time."""
    jobs = []
    for text in variants:
        strategy, env = parse_variant(text)
        for seed in seeds:
            jobs.append((text, replace(base, strategy=strategy, seed=seed, config_env={**base.config_env, **env},
                                       progress=False, db="")))  # fmt: skip
    results: dict[str, dict[int, dict[str, Any]]] = {v: {} for v in variants}
    if workers <= 1:
        done: Iterable[tuple[str, int, dict[str, Any]]] = map(_run, jobs)
        for label, seed, summary in done:
            results[label][seed] = summary
            if on_done:
                on_done(label, seed, summary)
    else:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers, maxtasksperchild=1) as pool:
            for label, seed, summary in pool.imap_unordered(_run, jobs):
                results[label][seed] = summary
                if on_done:
                    on_done(label, seed, summary)
    return tabulate(results, seeds)


def tabulate(results: dict[str, dict[int, dict[str, Any]]], seeds: list[int]) -> dict[str, Any]:
    per = {v: {s: metrics_of(results[v][s]) for s in seeds if s in results[v]} for v in results}
    violations = {
        v: {s: results[v][s]["invariants"]["first"] for s in per[v] if not results[v][s]["invariants"]["ok"]}
        for v in results
    }
    return table_of(per, violations, seeds)


def table_of(
    per: dict[str, dict[int, dict[str, float]]], violations: dict[str, dict[int, Any]], seeds: list[int]
) -> dict[str, Any]:
    """The A/B table from each run's metrics (``per``: variant -> seed -> :func:`metrics_of`) and
    each variant's runs whose invariants failed (seed -> the first violation)."""
    variants = list(per)
    table: dict[str, Any] = {}
    first = variants[0]
    for v in variants:
        row: dict[str, Any] = {}
        for key, _ in METRICS:
            row[key] = mean_ci(m.get(key, math.nan) for m in per[v].values())  # an older output may lack one
        diffs = [per[v][s]["net"] - per[first][s]["net"] for s in seeds if s in per[v] and s in per[first]]
        row["net_vs_" + first] = mean_ci(diffs) if v != first else (0.0, 0.0)
        row["invariants_ok"] = not violations.get(v)
        row["violations"] = dict(violations.get(v, {}))
        row["seeds"] = len(per[v])
        table[v] = row
    return {"variants": variants, "seeds": seeds, "table": table, "runs": {v: per[v] for v in variants}}


class MergeError(ValueError):
    """A/B outputs that cannot be tabulated together."""


def merge(parts: list[tuple[str, dict[str, Any]]]) -> tuple[dict[str, Any], list[str]]:
    """One A/B table from several A/B outputs (``--json`` files, as ``(name, data)``) over
    disjoint seeds of the same variants and run parameters: a long A/B run in pieces, on other
    days or machines. Returns the table, with the parts' shared run parameters (their codes as a
    list, and the parts that recorded none as ``unverified_parts``), and warnings (a part that
    records no run parameters, or parts whose code differs: their runs are not from one version
    of the bot). Raises :class:`MergeError` when the parts do not fit together."""
    if len(parts) < 2:
        raise MergeError("give at least two A/B outputs to merge")
    warnings: list[str] = []
    first_name, first = parts[0]
    per: dict[str, dict[int, dict[str, float]]] = {}
    violations: dict[str, dict[int, Any]] = {}
    seen: dict[int, str] = {}
    params = None
    codes: dict[str, str] = {}
    unverified: list[str] = []
    for name, data in parts:
        try:
            variants, seeds, runs, table = data["variants"], data["seeds"], data["runs"], data["table"]
            seeds = [int(s) for s in seeds]
        except (KeyError, TypeError, ValueError):
            raise MergeError(f"{name}: not an A/B output (variants, seeds, runs and table expected)") from None
        if not isinstance(variants, list) or not variants or not all(isinstance(v, str) for v in variants):
            raise MergeError(f"{name}: no variants")
        if not isinstance(data.get("params", {}), dict):
            raise MergeError(f"{name}: its run parameters are not a mapping")
        if variants != first["variants"]:
            raise MergeError(f"{name}: variants {variants} differ from {first_name}'s {first['variants']}")
        p = data.get("params")
        if p is None:
            warnings.append(f"{name} records no run parameters (written before they were recorded): merged on trust")
            unverified.append(name)
        else:
            p = dict(p)
            code = str(p.pop("code", "unknown"))
            unverified += p.pop("unverified_parts", None) or []  # a merged output merged again
            codes.setdefault(code, name)
            if params is None:
                params = (name, p)
            elif p != params[1]:
                keys = sorted(k for k in set(p) | set(params[1]) if p.get(k) != params[1].get(k))
                raise MergeError(f"{name}: run parameters differ from {params[0]}'s ({', '.join(keys)})")
        for s in seeds:
            if s in seen:
                raise MergeError(f"seed {s} is in both {seen[s]} and {name}: each seed once")
            seen[s] = name
        for v in variants:
            try:
                got = {
                    int(s): {k: math.nan if x is None else float(x) for k, x in m.items()} for s, m in runs[v].items()
                }
                bad = {int(s): f for s, f in (table[v].get("violations") or {}).items()}
                if not table[v]["invariants_ok"] and not bad:
                    bad = {s: "a run's invariants failed" for s in got}
            except (KeyError, TypeError, ValueError, AttributeError):
                raise MergeError(f"{name}: variant {v!r}: its runs or violations cannot be read") from None
            if set(got) != set(seeds):
                raise MergeError(f"{name}: variant {v!r} has runs for seeds {sorted(got)}, its seeds are {seeds}")
            per.setdefault(v, {}).update(got)
            violations.setdefault(v, {}).update(bad)
    if len(codes) > 1:
        warnings.append("the parts ran different code (" + ", ".join(f"{c} in {n}" for c, n in codes.items())
                        + "): each seed's variants are still paired, but the seeds are not of one bot")  # fmt: skip
    out = table_of(per, violations, sorted(seen))
    if params is not None:
        out["params"] = {**params[1], "code": sorted(codes)}
        if unverified:
            out["params"]["unverified_parts"] = unverified
    return out, warnings


def _cell(mc: tuple[float, float], digits: int = 2) -> str:
    m, ci = mc
    if math.isnan(m):
        return "-"
    return f"{m:.{digits}f}" if math.isnan(ci) else f"{m:.{digits}f} ±{ci:.{digits}f}"


def render_table(ab: dict[str, Any]) -> str:
    first = ab["variants"][0]
    cols = [("net", 2), ("net_vs_" + first, 2), ("realized", 2), ("capture", 2), ("rebates", 2), ("adverse", 2),
            ("fills", 0), ("mk1", 4), ("mk5", 4), ("mk60", 4), ("cooldown_h", 1)]  # fmt: skip
    head = f"{'variant':34}" + "".join(f"{c:>18}" for c, _ in cols) + "  invariants"
    lines = [head, "-" * len(head)]
    for v in ab["variants"]:
        row = ab["table"][v]
        lines.append(
            f"{v[:34]:34}" + "".join(f"{_cell(row[c], d):>18}" for c, d in cols)
            + ("  ok" if row["invariants_ok"] else "  VIOLATED")
        )
    lines.append(f"mean ±95% CI over {len(ab['seeds'])} seeds (paired by seed); USDC; markouts per share")
    return "\n".join(lines)


def render_html(ab: dict[str, Any], title: str = "active-quoting A/B") -> str:
    first = ab["variants"][0]
    keys = [k for k, _ in METRICS] + ["net_vs_" + first]
    names = dict(METRICS) | {"net_vs_" + first: f"net P&L minus {first}'s, paired by seed"}
    head = "".join(f"<th>{html.escape(names[k])}</th>" for k in keys)
    rows = []
    for v in ab["variants"]:
        row = ab["table"][v]
        cells = "".join(f"<td>{html.escape(_cell(row[k], 4 if k.startswith('mk') else 2))}</td>" for k in keys)
        rows.append(f"<tr><th>{html.escape(v)}</th>{cells}<td>{'ok' if row['invariants_ok'] else 'VIOLATED'}</td></tr>")
    bars = _net_chart(ab)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}td,th{padding:4px 8px;border:1px solid #ccc;font-size:13px}"
        "table{border-collapse:collapse}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{len(ab['seeds'])} seeds, paired; mean ±95% confidence interval.</p>"
        f"<table><tr><th>variant</th>{head}<th>invariants</th></tr>{''.join(rows)}</table>{bars}</body></html>"
    )


def _net_chart(ab: dict[str, Any]) -> str:
    """Net P&L per seed and variant, as an SVG dot plot."""
    pts = [
        (i, r["net"]) for i, v in enumerate(ab["variants"]) for r in ab["runs"][v].values() if not math.isnan(r["net"])
    ]
    if not pts:
        return "<p>(no data)</p>"
    lo, hi = min(y for _, y in pts), max(y for _, y in pts)
    span = (hi - lo) or 1.0
    w, h = 160 * len(ab["variants"]) + 60, 260

    def y(v: float) -> float:
        return 20 + (hi - v) / span * (h - 60)

    dots = "".join(f"<circle cx='{80 + 160 * i}' cy='{y(v):.1f}' r='4' fill='#36c' opacity='0.6'/>" for i, v in pts)
    labels = "".join(
        f"<text x='{80 + 160 * i}' y='{h - 10}' text-anchor='middle' font-size='12'>{html.escape(v[:22])}</text>"
        for i, v in enumerate(ab["variants"])
    )
    zero = f"<line x1='20' x2='{w}' y1='{y(0):.1f}' y2='{y(0):.1f}' stroke='#999'/>" if lo <= 0 <= hi else ""
    return (
        f"<h2>Net P&amp;L per seed</h2><svg width='{w}' height='{h}'>{zero}{dots}{labels}"
        f"<text x='4' y='16' font-size='11'>{hi:.1f}</text>"
        f"<text x='4' y='{h - 40}' font-size='11'>{lo:.1f}</text></svg>"
    )
