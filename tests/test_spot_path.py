"""The real day as the exchange's underlying: the recorded Chainlink feed reproduces every
recomputable outcome of the day's 292 real 5-minute markets under the venue's rule, and a
simulation driven by it resolves its windows exactly as the venue did."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

from active_quoting.exchange.spot import SpotPath
from conftest import ROOT

DAY = ROOT.parent / "shared" / "data" / "real-btc-2026-06-08"
FEED = DAY / "BTCUSD-prices-2026-06-08.csv.gz"
EXE = shutil.which("active-quoting") or str(Path(sys.executable).parent / "active-quoting")


def _markets() -> dict[str, dict]:
    return {m["slug"]: m for m in map(json.loads, gzip.open(DAY / "BTC-5m-markets-2026-06-08.jsonl.gz"))}


def test_the_feed_reproduces_every_recomputable_outcome_and_strike():
    path = SpotPath.from_chainlink_csv(FEED)
    markets = _markets()
    assert len(markets) == 292 and path.start_s == 1780876800
    recomputable = [
        m for m in markets.values()
        if m["strike_value"] is not None and path.start_s <= m["start_sec"] and m["end_sec"] <= path.end_s
    ]  # fmt: skip
    assert len(recomputable) >= 283
    for m in recomputable:
        assert path.exact_at(m["start_sec"]) == int(m["strike_value"]), m["slug"]
        assert path.up_wins(m["start_sec"], m["end_sec"]) == (m["outcome_prices"] == ["1", "0"]), m["slug"]


def test_a_correction_in_the_same_second_wins_by_receive_time(tmp_path):
    csv = tmp_path / "feed.csv"
    csv.write_text(
        "feed_ts_ms,value,full_accuracy_value,server_ts_ms,recv_ms\n"
        "1000,1,1000000000000000000,0,5\n"
        "1000,2,2000000000000000000,0,9\n"  # the correction, received later
        "2000,3,3000000000000000000,0,7\n"
    )
    path = SpotPath.from_chainlink_csv(csv)
    assert path.exact_at(1) == 2 * 10**18 and path.exact_at(1.5) == 2 * 10**18 and path.exact_at(0.5) is None
    assert path.up_wins(1, 2) is True and path.price_at(2) == 3.0


def test_a_simulation_on_the_real_path_resolves_its_windows_as_the_venue_did(tmp_path):
    out = tmp_path / "real.json"
    run = subprocess.run(
        [EXE, "sim", "--hours", "0.5", "--assets", "btc", "--window-seconds", "300", "--spot-csv", str(FEED),
         "--quiet", "--json", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    resolved = json.loads(out.read_text())["resolutions"]
    markets = _markets()
    assert len(resolved) >= 5
    for r in resolved:
        assert r["up_won"] == (markets[r["slug"]]["outcome_prices"] == ["1", "0"]), r["slug"]
