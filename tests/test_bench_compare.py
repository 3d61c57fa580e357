"""``make bench-compare`` (benchmarks/compare.py, issue 11 item 6): ratios measured within one run
against a saved baseline. The compare logic on synthetic pytest-benchmark and latency reports,
through the command as a user types it; and the committed baseline names real benchmark pairs."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "compare.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_compare", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_compare"] = mod  # dataclasses resolve the module by name
    spec.loader.exec_module(mod)
    return mod


cmp = _module()


def _report(medians: dict[str, dict[str, float]]) -> dict:
    """A pytest-benchmark JSON report: fullname -> {param: median seconds}."""
    out = []
    for fullname, by_param in medians.items():
        for param, median in by_param.items():
            out.append({"fullname": f"{fullname}[{param}]", "name": fullname.split("::")[1] + f"[{param}]",
                        "param": param, "params": {"impl": param}, "group": "g",
                        "stats": {"median": median, "min": median, "rounds": 100}})  # fmt: skip
    return {"benchmarks": out}


BASE_RESULTS = {
    "benchmarks/test_bench_book.py::test_level_update": {"c": 60e-9, "py": 240e-9},  # 4x
    "benchmarks/test_bench_signing.py::test_sign_one": {"ours": 20e-6, "sdk": 300e-6},  # 15x
    "benchmarks/test_bench_book.py::test_decode_only": {"x": 900e-9},  # no pair: no ratio
}
RATIOS = {"test_bench_book.py::test_level_update": 4.0, "test_bench_signing.py::test_sign_one": 15.0}
BASELINE: dict[str, Any] = {"margin": 0.25, "ratios": RATIOS}


def _run(tmp_path: Path, results: dict, baseline: dict, *extra: str) -> subprocess.CompletedProcess[str]:
    r, b = tmp_path / "results.json", tmp_path / "baseline.json"
    r.write_text(json.dumps(results))
    b.write_text(json.dumps(baseline))
    return subprocess.run([sys.executable, str(SCRIPT), "--results", str(r), "--baseline", str(b), *extra],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def _verdicts(stdout: str) -> dict[str, str]:
    """benchmark -> verdict, from the printed table (columns are 2+ spaces apart)."""
    rows = [re.split(r"\s{2,}", line.strip()) for line in stdout.splitlines() if "::" in line or "latency:" in line]
    return {r[0]: r[-1] for r in rows}


def test_pair_ratios_are_slow_over_fast_per_benchmark() -> None:
    ratios = cmp.pair_ratios(_report(BASE_RESULTS))
    assert ratios == pytest.approx({"test_bench_book.py::test_level_update": 4.0,
                                    "test_bench_signing.py::test_sign_one": 15.0})  # fmt: skip
    half = _report({"benchmarks/test_bench_fair.py::test_vol_update": {"c": 1e-7}})  # its twin did not run
    assert cmp.pair_ratios(half) == {}
    with pytest.raises(cmp.CompareError):
        cmp.pair_ratios({"benchmarks": [{"param": "c"}]})


def test_noise_within_the_margin_passes(tmp_path: Path) -> None:
    noisy = {
        "benchmarks/test_bench_book.py::test_level_update": {"c": 70e-9, "py": 231e-9},  # 3.3x: -17.5%
        "benchmarks/test_bench_signing.py::test_sign_one": {"ours": 18e-6, "sdk": 330e-6},  # 18.3x: better
    }
    done = _run(tmp_path, _report(noisy), BASELINE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _verdicts(done.stdout) == {"test_bench_book.py::test_level_update": "ok",
                                      "test_bench_signing.py::test_sign_one": "ok"}  # fmt: skip
    assert "0 regressed" in done.stdout and "-17.5%" in done.stdout


def test_a_regression_beyond_the_margin_fails(tmp_path: Path) -> None:
    slower = dict(BASE_RESULTS)
    slower["benchmarks/test_bench_book.py::test_level_update"] = {"c": 90e-9, "py": 240e-9}  # 2.67x: -33%
    done = _run(tmp_path, _report(slower), BASELINE)
    assert done.returncode == 1
    verdicts = _verdicts(done.stdout)
    assert verdicts["test_bench_book.py::test_level_update"] == "REGRESSION"
    assert verdicts["test_bench_signing.py::test_sign_one"] == "ok"
    assert "1 regressed beyond the margin" in done.stdout
    # the same drop passes under a margin stated wider for that entry, or given on the command line
    wide = dict(BASELINE, margins={"test_bench_book.py::test_level_update": 0.4})
    assert _run(tmp_path, _report(slower), wide).returncode == 0
    assert _run(tmp_path, _report(slower), BASELINE, "--margin", "0.35").returncode == 0


def test_a_missing_benchmark_is_an_error(tmp_path: Path) -> None:
    gone = {k: v for k, v in BASE_RESULTS.items() if "sign_one" not in k}
    done = _run(tmp_path, _report(gone), BASELINE)
    assert done.returncode == 1
    assert _verdicts(done.stdout)["test_bench_signing.py::test_sign_one"] == "MISSING"
    assert "1 missing" in done.stdout
    # a benchmark the baseline does not know yet is shown, not failed
    more = dict(BASE_RESULTS, **{"benchmarks/test_bench_fair.py::test_vol_update": {"c": 1e-7, "py": 5e-7}})
    done = _run(tmp_path, _report(more), BASELINE)
    assert done.returncode == 0 and _verdicts(done.stdout)["test_bench_fair.py::test_vol_update"] == "new"


def test_latency_ratios_stock_over_ours(tmp_path: Path) -> None:
    us = 1000
    latency = {"cases": {
        "pure cancel": {"ours": [2000 * us] * 8, "stock": [4000 * us] * 8},  # 2x
        "first request": {"ours": [3000 * us] * 9, "stock": [3000 * us] * 9},  # 1x: was 2x
        "one order": {"ours": [5000 * us] * 2, "stock": [2000 * us] * 15},  # too few of ours: no ratio
    }}  # fmt: skip
    assert cmp.latency_ratios(latency) == pytest.approx({"latency: pure cancel": 2.0, "latency: first request": 1.0})
    lat_ratios = {"latency: pure cancel": 2.0, "latency: first request": 2.0, "latency: one order": 0.4}
    base = {"margin": 0.25, "ratios": {**RATIOS, **lat_ratios}}
    # without a latency report its entries are not run (not failed)
    done = _run(tmp_path, _report(BASE_RESULTS), base)
    assert done.returncode == 0, done.stdout
    assert [v for k, v in _verdicts(done.stdout).items() if k.startswith("latency:")] == ["not run"] * 3
    lat = tmp_path / "latency.json"
    lat.write_text(json.dumps(latency))
    done = _run(tmp_path, _report(BASE_RESULTS), base, "--latency", str(lat))
    assert done.returncode == 1
    rows = {k: v for k, v in _verdicts(done.stdout).items() if k.startswith("latency:")}
    assert rows == {"latency: pure cancel": "ok", "latency: first request": "REGRESSION", "latency: one order": "MISSING"}


def test_save_writes_the_runs_ratios(tmp_path: Path) -> None:
    out = tmp_path / "new-baseline.json"
    r = tmp_path / "results.json"
    r.write_text(json.dumps(_report(BASE_RESULTS)))
    done = subprocess.run([sys.executable, str(SCRIPT), "--results", str(r), "--baseline", str(out), "--save"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    saved = json.loads(out.read_text())
    assert saved["ratios"] == {"test_bench_book.py::test_level_update": 4.0, "test_bench_signing.py::test_sign_one": 15.0}
    assert saved["margin"] == 0.25
    assert _run(tmp_path, _report(BASE_RESULTS), saved).returncode == 0


def test_unreadable_input_is_a_usage_error(tmp_path: Path) -> None:
    done = _run(tmp_path, {"no": "benchmarks"}, BASELINE)
    assert done.returncode == 2 and "not a pytest-benchmark JSON report" in done.stderr
    done = _run(tmp_path, _report(BASE_RESULTS), {"ratios": 3})
    assert done.returncode == 2 and "baseline" in done.stderr


def test_the_committed_baseline_names_real_benchmark_pairs() -> None:
    """Every core entry of benchmarks/baseline.json is a benchmark the core files define with both
    of its variants (collected, not run), and the fair-value core is in it."""
    baseline = json.loads((ROOT / "benchmarks" / "baseline.json").read_text())
    files = [str(ROOT / "benchmarks" / f) for f in cmp.CORE_FILES]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", *files],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
    collected = {line.strip().split("/")[-1] for line in done.stdout.splitlines() if "::" in line}
    core = [name for name in baseline["ratios"] if not name.startswith(cmp.LATENCY_PREFIX)]
    assert "test_bench_fair.py::test_fair_up_point" in core and "test_bench_fair.py::test_vol_update" in core
    for name in core:
        fast, slow = ("ours", "sdk") if "signing" in name else ("c", "py")
        assert f"{name}[{fast}]" in collected and f"{name}[{slow}]" in collected, name
    assert 0 < baseline["margin"] < 1
