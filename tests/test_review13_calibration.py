"""Review of issue 13: the calibration scores the model on what the live bot would know at each
moment. A Chainlink tick arrives about 1.3 s after its own timestamp (recv_ms - feed_ts_ms on
the real day: p10 1.0 s, median 1.3 s), so at 5 s before the end the tick stamped at that
moment has not arrived yet; scoring on feed timestamps would hand the model and the
"price >= strike" baseline the future."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

EXE = shutil.which("active-quoting") or str(Path(sys.executable).parent / "active-quoting")
E18 = 10**18
T0 = 1_780_000_200  # a multiple of 300
LAG_MS = 1300  # every tick arrives this long after its feed timestamp


def _price(t: int) -> int:
    """Strike 100000 at the start; below it until the tick stamped 5 s before the end, above after."""
    if t == T0:
        return 100_000
    return 99_900 if t < T0 + 295 else 100_100


def _day(tmp_path: Path) -> tuple[Path, Path]:
    rows = ["feed_ts_ms,value,full_accuracy_value,server_ts_ms,recv_ms"]
    for t in range(T0, T0 + 301):
        rows.append(f"{t * 1000},{_price(t)},{_price(t) * E18},{t * 1000 + 900},{t * 1000 + LAG_MS}")
    prices = tmp_path / "prices.csv.gz"
    with gzip.open(prices, "wt") as f:
        f.write("\n".join(rows) + "\n")
    markets = tmp_path / "markets.jsonl"
    markets.write_text(json.dumps({
        "slug": "a", "start_sec": T0, "end_sec": T0 + 300, "interval_sec": 300, "resolved": True,
        "outcome_prices": ["1", "0"], "strike_value": str(100_000 * E18),
    }) + "\n")  # fmt: skip
    return prices, markets


def test_the_model_and_baseline_see_only_ticks_received_by_the_moment(tmp_path):
    prices, markets = _day(tmp_path)
    run = subprocess.run(
        [EXE, "calibrate", "--prices", str(prices), "--markets", str(markets), "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["outcomes"]["reproduced"] == 1  # the settlement check still runs on feed time: Up won
    by = {p["horizon_s"]: p for p in out["points"]}
    # 5 s before the end the tick stamped then (100100, above the strike) arrives 1.3 s later:
    # what is known is 99900, below the strike.
    p5 = by[5]
    assert p5["t_s"] == T0 + 295
    assert (p5["spot"], p5["at_or_above"], p5["up_won"]) == (99_900 * 10**8, 0, 1)
    assert p5["prob"] < 5000
    # 10 s before: nothing differs (the jump is later either way)
    assert (by[10]["spot"], by[10]["at_or_above"]) == (99_900 * 10**8, 0)
    # so the "price >= strike" baseline is wrong at 5 s too, not right by look-ahead
    h5 = next(h for h in out["horizons"] if h["horizon_s"] == 5)
    assert h5["brier_at_or_above"] == 1.0
