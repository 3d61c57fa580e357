"""The black-box latency harness (benchmarks/latency.py): how a move's answers are attributed and
classified, and one short run of the real thing (venue process, `active-quoting run`, the stock
pipeline) that must produce timed answers from both."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT, load_benchmark

HARNESS = ROOT / "benchmarks" / "latency.py"


def _harness():
    return load_benchmark("latency.py", "aq_latency_harness")


MS = 1_000_000  # ns
US = 1_000


def test_answers_are_classified_per_move_and_bounded_by_the_horizon():
    h = _harness()
    moves = [(0, "up 3"), (1000 * MS, "down 3"), (2000 * MS, "ask in 2"), (3000 * MS, "ask out 2"), (4000 * MS, "x")]
    ours, stock = "0xours", "0xstock"
    requests = [
        # up 3: a cancel, then a batch of two -> a two-sided requote timed at the batch
        (500 * US, "DELETE", "/orders", ours, 0),
        (900 * US, "POST", "/orders", ours, 2),
        # down 3: cancels alone -> a pure cancel timed at the first one
        (1000 * MS + 300 * US, "DELETE", "/orders", ours, 0),
        (1000 * MS + 700 * US, "DELETE", "/order", ours, 0),
        # ask in 2: one order after a cancel -> one order, timed at the POST
        (2000 * MS + 400 * US, "DELETE", "/orders", ours, 0),
        (2000 * MS + 800 * US, "POST", "/order", ours, 1),
        # ask out 2: only an answer past the horizon (a cooldown ending) -> unanswered
        (3000 * MS + 400 * MS, "POST", "/orders", ours, 2),
        # x: two single orders -> a requote timed at the second
        (4000 * MS + 100 * US, "POST", "/order", ours, 1),
        (4000 * MS + 600 * US, "POST", "/order", ours, 1),
        # another sender's requests are never ours
        (50 * US, "POST", "/order", stock, 1),
    ]
    out = h.classify(moves, requests, lambda a: a == ours, 100 * MS)
    assert out["two-sided requote"] == [900 * US, 600 * US]
    assert out["pure cancel"] == [300 * US]
    assert out["one order"] == [800 * US]
    assert out["first request"] == [500 * US, 300 * US, 400 * US, 100 * US]
    assert out["unanswered"] == 1
    theirs = h.classify(moves, requests, lambda a: a == stock, 100 * MS)
    assert theirs["one order"] == [50 * US] and theirs["unanswered"] == 4
    table = h.table(out, theirs)
    row = next(line for line in table.splitlines() if line.startswith("one order"))
    assert row.split()[-1] == "0.06x"  # the ratio is stock/ours: 50 us against 800 us


def test_a_short_black_box_run_times_both_pipelines(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, str(HARNESS), "--moves", "4", "--period", "3.0"],
        capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    first = next(line.split() for line in run.stdout.splitlines() if line.startswith("first request"))
    # [case, case, n, p50, p90, p99, n, p50, p90, p99, ratio]: both pipelines answered moves
    assert int(first[2]) >= 1 and int(first[6]) >= 1, run.stdout
    assert float(first[3]) > 0 and float(first[7]) > 0
    assert "touch-moving frames" in run.stdout
