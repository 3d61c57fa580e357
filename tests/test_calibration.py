"""``active-quoting calibrate``: the fair-value model scored on a day of real markets, run as a
user runs it (a subprocess). Synthetic files with answers worked out by hand check the scores;
malformed or missing files exit 2 naming the problem; a recorded outcome the feed contradicts
exits 1; on the real day the feed reproduces all 284 recomputable outcomes."""

from __future__ import annotations

import gzip
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

EXE = shutil.which("active-quoting") or str(Path(sys.executable).parent / "active-quoting")
DAY = ROOT.parent / "shared" / "data" / "real-btc-2026-06-08"
E18 = 10**18
T0 = 1_780_000_200  # a multiple of 300: three 5-minute markets from here
HORIZONS = (240, 180, 120, 60, 30, 10, 5)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, "calibrate", *args], capture_output=True, text=True, timeout=120, check=False)


def _write_day(tmp_path: Path, flip_b: bool = True, wrong_outcome: bool = False) -> tuple[Path, Path]:
    """A feed of one tick a second over T0..T0+900 (USD prices, exact 1e18 integers) and five markets:

    A [T0, T0+300]:      strike 100000, the price is 100100 from T0+10 on: Up, "S >= K" right throughout.
    B [T0+300, T0+600]:  strike 100100, the price is 100050 from T0+310 and 100200 from T0+598: Up,
                         "S >= K" wrong at every horizon (even 5 s before the end) when ``flip_b``.
    C [T0+600, T0+900]:  strike 100200, the price is 100150 from T0+610 on: Down, "S >= K" right.
    D: no strike recorded (not scored); E: after the feed (every horizon skipped).
    """

    def price(t: int) -> int:
        if t < T0 + 10:
            return 100_000
        if t < T0 + 310:
            return 100_100
        if t < T0 + 598:
            return 100_050
        if t < T0 + 610:
            return 100_200 if flip_b else 100_050
        return 100_150

    rows = ["feed_ts_ms,value,full_accuracy_value,server_ts_ms,recv_ms"]
    for t in range(T0, T0 + 901):
        rows.append(f"{t * 1000},{price(t)},{price(t) * E18},{t * 1000 + 500},{t * 1000 + 700}")
    prices = tmp_path / "prices.csv.gz"
    with gzip.open(prices, "wt") as f:
        f.write("\n".join(rows) + "\n")

    def market(slug: str, start: int, strike: int | None, up: bool) -> str:
        return json.dumps({
            "slug": slug, "start_sec": start, "end_sec": start + 300, "interval_sec": 300, "resolved": True,
            "outcome_prices": ["1", "0"] if up else ["0", "1"],
            "strike_value": None if strike is None else str(strike * E18),
        })  # fmt: skip

    lines = [
        market("a", T0, 100_000, True),
        market("b", T0 + 300, 100_100, flip_b),
        market("c", T0 + 600, 100_200, wrong_outcome),
        market("d", T0 + 300, None, True),
        market("e", T0 + 3000, 100_000, False),
    ]
    markets = tmp_path / "markets.jsonl"
    markets.write_text("\n".join(lines) + "\n")
    return prices, markets


def test_scores_on_a_synthetic_day_match_the_hand_computed_baselines(tmp_path):
    prices, markets = _write_day(tmp_path)
    run = _run("--prices", str(prices), "--markets", str(markets), "--json")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    oc = out["outcomes"]
    # a, b, c have a strike and an end inside the feed (d has no strike, e lies after the feed)
    assert (oc["markets"], oc["with_strike"], oc["recomputable"], oc["reproduced"]) == (5, 4, 3, 3)
    assert oc["mismatches"] == []
    assert [h["horizon_s"] for h in out["horizons"]] == list(HORIZONS)
    for h in out["horizons"]:
        assert h["n"] == 3 and h["skipped"] == 1  # market e, at every horizon
        assert h["brier_naive"] == 0.25  # (0.5 - 1)^2, (0.5 - 1)^2, (0.5 - 0)^2 over 3
        assert h["brier_at_or_above"] == pytest.approx(1 / 3, abs=1e-15)  # b wrong: (0 - 1)^2 over 3
        assert h["logloss_naive"] == pytest.approx(math.log(2))
        # paired differences: their means are the differences of the scores
        assert h["model_minus_naive"][0] == pytest.approx(h["brier_model"] - 0.25)
        assert h["model_minus_at_or_above"][0] == pytest.approx(h["brier_model"] - 1 / 3)
        assert h["model_minus_naive"][1] > 0 and h["model_minus_at_or_above"][1] >= 0  # 0 where model == S >= K
    points = out["points"]
    assert len(points) == 3 * len(HORIZONS)
    by = {(p["slug"], p["horizon_s"]): p for p in points}
    for h in HORIZONS:
        a, b, c = by["a", h], by["b", h], by["c", h]
        # the feed as of end - h, converted exactly to 1e-8 USD; the recorded strike likewise
        assert (a["spot"], a["strike"], a["at_or_above"], a["up_won"]) == (100_100 * 10**8, 100_000 * 10**8, 1, 1)
        assert (b["spot"], b["strike"], b["at_or_above"], b["up_won"]) == (100_050 * 10**8, 100_100 * 10**8, 0, 1)
        assert (c["spot"], c["strike"], c["at_or_above"], c["up_won"]) == (100_150 * 10**8, 100_200 * 10**8, 0, 0)
        assert a["prob"] > 5000 > b["prob"] and c["prob"] < 5000  # the model leans with the price
    assert by["a", 5]["prob"] > 9000  # 0.1% above the strike with 5 s left: near certain
    for h in out["horizons"]:
        pts = [p for p in points if p["horizon_s"] == h["horizon_s"]]
        # the model's Brier is the mean squared error of its 1e-4 probabilities, nothing else
        assert h["brier_model"] == pytest.approx(sum((p["prob"] / 1e4 - p["up_won"]) ** 2 for p in pts) / 3)
        fav = [max(p["prob"], 10_000 - p["prob"]) / 1e4 for p in pts]
        won = [int((p["prob"] >= 5000) == bool(p["up_won"])) for p in pts]
        assert h["favourite_predicted"] == pytest.approx(sum(fav) / 3)
        assert h["favourite_realised"] == pytest.approx(sum(won) / 3)
        buckets = h["reliability"]
        assert len(buckets) == 10 and sum(k["count"] for k in buckets) == 3
        for p in pts:
            k = buckets[min(p["prob"] // 1000, 9)]
            assert k["lo"] <= p["prob"] and k["count"] >= 1
    # the text table (the default output) says the same
    text = _run("--prices", str(prices), "--markets", str(markets))
    assert text.returncode == 0, text.stderr
    assert "reproduced by the feed's rule: 3 of 3 recomputable" in text.stdout
    assert "      240s     3" in text.stdout and "0.3333" in text.stdout and "0.2500" in text.stdout


def test_html_and_svg_carry_the_reliability_chart(tmp_path):
    prices, markets = _write_day(tmp_path)
    html, svg = tmp_path / "cal.html", tmp_path / "cal.svg"
    run = _run("--prices", str(prices), "--markets", str(markets), "--html", str(html), "--svg", str(svg), "--json")
    assert run.returncode == 0, run.stderr
    filled = sum(1 for h in json.loads(run.stdout)["horizons"] for k in h["reliability"] if k["count"])
    page, chart = html.read_text(), svg.read_text()
    assert chart.startswith("<svg") and chart.count("<circle") == filled >= 2 * len(HORIZONS)  # a dot a filled bucket
    assert chart in page and "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")
    assert "240 s left: Brier" in chart and "Brier score" in chart and "stroke-dasharray" in chart  # the diagonal


def test_a_recorded_outcome_the_feed_contradicts_fails_loudly(tmp_path):
    prices, markets = _write_day(tmp_path, wrong_outcome=True)  # c recorded as Up; the feed ends below its strike
    run = _run("--prices", str(prices), "--markets", str(markets))
    assert run.returncode == 1
    assert "OUTCOME CHECK FAILED" in run.stderr and "c: recorded Up, the feed's rule gives Down" in run.stderr
    assert run.stdout == ""


@pytest.mark.parametrize(
    "which, content, message",
    [
        ("prices", None, "no such prices file"),
        ("markets", None, "no such markets file"),
        ("prices", b"feed_ts_ms,value\n1,2\n", "missing column"),
        ("prices", b"feed_ts_ms,value,full_accuracy_value,server_ts_ms,recv_ms\n1000,1,abc,0,0\n", "not a readable"),
        ("prices", b"\x1f\x8b\x08garbage", "not a readable"),
        ("markets", b'{"slug": "a"\n', ":1: not JSON"),
        ("markets", b'{"slug": "a", "start_sec": 1}\n', ":1: missing field"),
        ("markets", b"", "no markets"),
    ],
)
def test_missing_or_malformed_files_exit_2_naming_the_problem(tmp_path, which, content, message):
    prices, markets = _write_day(tmp_path)
    target = prices if which == "prices" else markets
    if content is None:
        target.unlink()
    elif which == "prices" and not content.startswith(b"\x1f\x8b"):
        target.write_bytes(gzip.compress(content))  # the file is named .csv.gz
    else:
        target.write_bytes(content)
    run = _run("--prices", str(prices), "--markets", str(markets))
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and str(target) in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize(
    "record, message",
    [
        ({"strike_value": "1.5"}, "strike_value must be"),
        ({"outcome_prices": ["0.5", "0.5"]}, "outcome_prices must be"),
        ({"end_sec": T0}, "start_sec < end_sec"),
    ],
)
def test_a_malformed_market_record_exits_2(tmp_path, record, message):
    prices, markets = _write_day(tmp_path)
    good = {"slug": "x", "start_sec": T0, "end_sec": T0 + 300, "outcome_prices": ["1", "0"], "strike_value": "1"}
    markets.write_text(markets.read_text() + json.dumps(good | record) + "\n")
    run = _run("--prices", str(prices), "--markets", str(markets))
    assert run.returncode == 2 and message in run.stderr and f"{markets}:6" in run.stderr, run.stderr


def test_the_volatility_flags_reach_the_estimator(tmp_path):
    prices, markets = _write_day(tmp_path)
    default = json.loads(_run("--prices", str(prices), "--markets", str(markets), "--json").stdout)
    run = _run(
        "--prices", str(prices), "--markets", str(markets), "--json", "--vol-floor", "0.3", "--vol-half-life-s", "60"
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert (default["half_life_s"], default["floor_ppm"]) == (300, 100_000)
    assert (out["half_life_s"], out["floor_ppm"]) == (60, 300_000)
    # the synthetic feed is flat most of the time: the estimate decays to its floor (fast with 60 s)
    assert 100_000 <= min(p["sigma_ppm"] for p in default["points"]) < 300_000
    assert min(p["sigma_ppm"] for p in out["points"]) == 300_000
    # a higher floor means less certainty far from the end: the favourite's probability falls
    assert out["horizons"][0]["favourite_predicted"] < default["horizons"][0]["favourite_predicted"]


@pytest.mark.parametrize("flag", [["--vol-half-life-s", "0"], ["--vol-floor", "-0.1"], ["--vol-floor", "abc"]])
def test_bad_volatility_flags_exit_2(tmp_path, flag):
    prices, markets = _write_day(tmp_path)
    run = _run("--prices", str(prices), "--markets", str(markets), *flag)
    assert run.returncode == 2 and flag[0] in run.stderr, run.stderr


def test_the_real_day_reproduces_every_recomputable_outcome_and_beats_both_baselines(tmp_path):
    if not (DAY / "BTCUSD-prices-2026-06-08.csv.gz").is_file():
        pytest.fail(f"the real day's data is missing at {DAY}")
    run = _run("--json")  # the default files: ../shared/data/real-btc-2026-06-08 beside the checkout
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    oc = out["outcomes"]
    assert (oc["markets"], oc["with_strike"], oc["recomputable"], oc["reproduced"]) == (292, 288, 284, 284)
    for h in out["horizons"]:
        assert h["n"] >= 284
        assert h["brier_model"] < h["brier_at_or_above"] and h["brier_model"] < h["brier_naive"]
