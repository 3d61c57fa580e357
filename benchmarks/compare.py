"""Regression check on ratios measured within one run (issue 11 item 6): ``make bench-compare``.

Absolute times on these shared machines move by 2x between runs; the ratio of two paths timed in
the same run moves far less. So the saved baseline (``benchmarks/baseline.json``) holds ratios,
each "slow path / fast path" (higher is better):

* core pairs: the pure-Python twin against the compiled core (``py`` / ``c``) for every core
  benchmark parametrized over ``impl``, and py-clob-client-v2 against ours (``sdk`` / ``ours``)
  for signing, from one pytest-benchmark run (medians);
* latency: the stock pipeline against the bot (``stock`` / ``ours``, p50) for the black-box
  harness's cases, from one ``latency.py --json`` run.

A ratio below its baseline by more than the margin (``--margin``, default 25%, or the entry's
own in the baseline's ``margins``) is a regression; a baseline entry the run did not produce
is an error (a renamed or deleted benchmark must be removed from the baseline on purpose).
Either exits 1 after the table. ``--save`` writes the run's ratios as the new baseline.

Run: ``python benchmarks/compare.py [--results PYTEST_BENCHMARK.json] [--latency LATENCY.json]``;
without ``--results`` it runs the core benchmark files itself (about a minute).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "baseline.json"
CORE_FILES = ("test_bench_book.py", "test_bench_strategy.py", "test_bench_fair.py", "test_bench_signing.py")
DEFAULT_MARGIN = 0.25
# parameter value of the fast path -> its slow counterpart in the same benchmark
PAIRS = {"c": "py", "ours": "sdk"}
LATENCY_PREFIX = "latency: "
MIN_LATENCY_SAMPLES = 5  # a latency case timed fewer times than this gives no ratio


class CompareError(Exception):
    """A results or baseline file that cannot be read as one."""


@dataclass(frozen=True)
class Row:
    name: str
    baseline: float | None
    current: float | None
    margin: float
    verdict: str  # "ok", "REGRESSION", "MISSING", "new", "improved", "not run"

    @property
    def failed(self) -> bool:
        return self.verdict in ("REGRESSION", "MISSING")


def pair_ratios(results: dict[str, Any]) -> dict[str, float]:
    """``{"file.py::test": slow median / fast median}`` for every benchmark whose ``c``/``py``
    (or ``ours``/``sdk``) variants are both in a pytest-benchmark JSON report."""
    try:
        benchmarks = results["benchmarks"]
        medians: dict[str, dict[str, float]] = {}
        for b in benchmarks:
            param = b.get("param")
            if param not in PAIRS and param not in PAIRS.values():
                continue
            name = re.sub(r"\[[^\]]*\]$", "", b["fullname"]).split("/")[-1]
            medians.setdefault(name, {})[param] = float(b["stats"]["median"])
    except (KeyError, TypeError) as exc:
        raise CompareError(f"not a pytest-benchmark JSON report: {exc!r}") from None
    out = {}
    for name, by_param in medians.items():
        for fast, slow in PAIRS.items():
            if fast in by_param and slow in by_param and by_param[fast] > 0:
                out[name] = by_param[slow] / by_param[fast]
    return out


def latency_ratios(latency: dict[str, Any]) -> dict[str, float]:
    """``{"latency: case": stock p50 / ours p50}`` from ``latency.py --json`` for every case both
    pipelines answered at least ``MIN_LATENCY_SAMPLES`` times."""
    try:
        cases = latency["cases"]
        out = {}
        for case, samples in cases.items():
            ours, stock = samples.get("ours") or [], samples.get("stock") or []
            if len(ours) >= MIN_LATENCY_SAMPLES and len(stock) >= MIN_LATENCY_SAMPLES:
                out[LATENCY_PREFIX + case] = statistics.median(stock) / statistics.median(ours)
    except (KeyError, TypeError, AttributeError) as exc:
        raise CompareError(f"not a latency.py --json report: {exc!r}") from None
    return out


def compare(
    baseline: dict[str, Any], current: dict[str, float], margin: float = DEFAULT_MARGIN, not_run: tuple[str, ...] = ()
) -> list[Row]:
    """One row per ratio in the baseline or the run, baseline order first. ``baseline`` is
    ``{"ratios": {name: ratio}, "margins": {name: margin}}`` (margins optional). Baseline
    entries whose name starts with one of ``not_run`` were not measured on purpose (the latency
    harness not run): reported, not failed; any other one the run lacks is MISSING."""
    try:
        ratios = {str(k): float(v) for k, v in baseline["ratios"].items()}
        margins = {str(k): float(v) for k, v in (baseline.get("margins") or {}).items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CompareError(f"baseline: {exc!r}") from None
    rows = []
    for name, base in ratios.items():
        m = margins.get(name, margin)
        now = current.get(name)
        if now is None and name.startswith(not_run):
            verdict = "not run"
        elif now is None:
            verdict = "MISSING"
        elif now < base * (1 - m):
            verdict = "REGRESSION"
        elif now > base * (1 + m):
            verdict = "improved"
        else:
            verdict = "ok"
        rows.append(Row(name, base, now, m, verdict))
    rows += [Row(name, None, now, margin, "new") for name, now in current.items() if name not in ratios]
    return rows


def render(rows: list[Row]) -> str:
    width = max([len(r.name) for r in rows] + [9])
    head = f"{'benchmark':{width}}  {'baseline':>9}  {'now':>9}  {'change':>8}  {'margin':>6}  verdict"
    lines = [head, "-" * len(head)]
    for r in rows:
        base = f"{r.baseline:8.2f}x" if r.baseline is not None else f"{'-':>9}"
        now = f"{r.current:8.2f}x" if r.current is not None else f"{'-':>9}"
        change = (
            f"{(r.current / r.baseline - 1) * 100:+7.1f}%" if r.current is not None and r.baseline else f"{'-':>8}"
        )
        lines.append(f"{r.name:{width}}  {base}  {now}  {change}  {r.margin * 100:5.0f}%  {r.verdict}")
    failed = [r for r in rows if r.failed]
    regress = sum(r.verdict == "REGRESSION" for r in failed)
    lines.append(
        f"{len(rows)} ratios: {regress} regressed beyond the margin, {len(failed) - regress} missing"
        + ("" if failed else " (ratio = slow path / fast path within one run; higher is better)")
    )
    return "\n".join(lines)


def run_core_benchmarks(out: Path) -> None:
    """The core benchmark files once, pytest-benchmark's JSON report to ``out``."""
    env = dict(os.environ, AQ_REQUIRE_EXTENSIONS="1")
    env.pop("AQ_NO_EXTENSIONS", None)
    files = [str(HERE / f) for f in CORE_FILES]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files, f"--benchmark-json={out}",
           "--benchmark-columns=median,rounds", "--benchmark-group-by=group"]  # fmt: skip
    done = subprocess.run(cmd, env=env, cwd=HERE.parent)
    if done.returncode != 0:
        raise CompareError(f"the benchmarks failed (exit {done.returncode})")


def _load(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CompareError(f"{what} {path}: {exc}") from None
    if not isinstance(data, dict):
        raise CompareError(f"{what} {path}: not a JSON object")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, help="a pytest-benchmark --benchmark-json report (default: run them)")
    parser.add_argument("--latency", type=Path, help="a latency.py --json report (its stock/ours ratios)")
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument("--margin", type=float, default=None, help="allowed drop of a ratio (default: the baseline's)")
    parser.add_argument("--save", action="store_true", help="write this run's ratios as the baseline")
    args = parser.parse_args(argv)
    try:
        if args.results is None:
            tmp = Path(tempfile.mkdtemp(prefix="aq-bench-")) / "core.json"
            run_core_benchmarks(tmp)
            args.results = tmp
        current = pair_ratios(_load(args.results, "results"))
        if args.latency is not None:
            current.update(latency_ratios(_load(args.latency, "latency results")))
        if args.save:
            old = _load(args.baseline, "baseline") if args.baseline.exists() else {}
            saved = {
                "note": old.get("note", "slow path / fast path within one run; written by compare.py --save"),
                "measured": datetime.date.today().isoformat(),
                "margin": args.margin if args.margin is not None else old.get("margin", DEFAULT_MARGIN),
                "margins": {k: v for k, v in (old.get("margins") or {}).items() if k in current},
                "ratios": {k: round(v, 3) for k, v in sorted(current.items())},
            }
            args.baseline.write_text(json.dumps(saved, indent=2) + "\n")
            print(f"baseline written: {args.baseline} ({len(current)} ratios)")
            return 0
        baseline = _load(args.baseline, "baseline")
        margin = args.margin if args.margin is not None else float(baseline.get("margin", DEFAULT_MARGIN))
        if not 0 < margin < 1:
            raise CompareError(f"--margin must be between 0 and 1 (a fraction), not {margin}")
        rows = compare(baseline, current, margin, () if args.latency is not None else (LATENCY_PREFIX,))
    except CompareError as exc:
        print(f"bench-compare: {exc}", file=sys.stderr)
        return 2
    print(render(rows))
    return 1 if any(r.failed for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
