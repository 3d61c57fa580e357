"""The flood harness (benchmarks/flood.py): its depth changes stay away from the touch on a real
engine book, the CPU accounting from /proc samples, the probe answers and their slicing, and a
short black-box run (venue and bot in their own processes, 2 markets, a low rate) that must count
frames, answer a probe and leave no process behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, load_benchmark

HARNESS = ROOT / "benchmarks" / "flood.py"


def _harness():
    return load_benchmark("flood.py", "aq_flood_harness")


f = _harness()
TICK = 100
CENTER = 5000


def test_deep_prices_are_far_behind_every_touch_the_probes_make():
    bids, asks = f.deep_prices(CENTER, TICK)
    # the house touch is HALF ticks from the centre, and a probe moves the whole book PROBE_MOVE
    # ticks either way: the best bid is at most CENTER - (HALF - PROBE_MOVE) ticks, and so on
    best_bid_hi = CENTER + (f.PROBE_MOVE - f.lat.HALF) * TICK
    best_ask_lo = CENTER - (f.PROBE_MOVE - f.lat.HALF) * TICK
    assert max(bids) <= best_bid_hi - 8 * TICK
    assert min(asks) >= best_ask_lo + 8 * TICK
    # and beyond the momentum detector's near-touch depth (3 ticks) from the house's deepest level
    assert max(bids) < CENTER - (f.lat.HALF + f.lat.LEVELS + 3) * TICK
    assert min(asks) > CENTER + (f.lat.HALF + f.lat.LEVELS + 3) * TICK


def test_depth_flood_changes_depth_but_never_the_touch_of_a_real_book():
    from active_quoting.exchange.engine import BUY, SCALE, Engine, FeeSchedule, Market, Order

    engine = Engine()
    m = Market("0xc1", "111", "222", tick=TICK, base_tick=TICK, min_size=5_000_000,
               fees=FeeSchedule(0, 1, 0, True))  # fmt: skip
    engine.add_market(m)
    engine.credit(f.lat.HOUSE, collateral=10**15)
    seq = [0]

    def place(side: int, price: int) -> tuple[str, list]:
        seq[0] += 1
        token, limit = (m.up, price) if side == 0 else (m.down, SCALE - price)
        o = Order(f"0x{seq[0]:064x}", f.lat.HOUSE, "house", m.condition_id, token, BUY, limit, f.FLOOD_SIZE)
        return o.id, engine.place(o, 0).changes

    for i in range(f.lat.LEVELS):  # the house book the venue starts with
        place(0, CENTER - (f.lat.HALF + i) * TICK)
        place(1, CENTER + (f.lat.HALF + i) * TICK)
    touch = (m.best(0), m.best(1))
    bids, asks = f.deep_prices(CENTER, TICK)
    flood = f.DepthFlood(CENTER, TICK, seed=3)
    changed: set[tuple[int, int]] = set()
    places = cancels = 0
    for step in range(3000):
        op = flood.next()
        if op[0] == "place":
            oid, changes = place(op[1], op[2])
            flood.placed(oid)
            places += 1
        else:
            _, _, result = engine.cancel(op[1])
            changes = result.changes
            cancels += 1
        assert len(changes) == 1, "one level per change: one price_change frame of two entries"
        changed |= {(c.side, c.price) for c in changes}
        assert (m.best(0), m.best(1)) == touch
        assert len(flood.held) <= f.DEEP_MAX
        assert len(flood.held) >= min(step + 1, f.DEEP_MIN)  # never below the floor once reached
    assert places > 1000 and cancels > 1000
    assert changed == {(0, p) for p in bids} | {(1, p) for p in asks}  # every deep level, nothing else


def test_read_cpu_counts_this_process_burning_cpu():
    t0, ns0, _ = f.read_cpu(os.getpid())
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    t1, ns1, _ = f.read_cpu(os.getpid())
    assert ns1 - ns0 >= 40_000_000  # 50 ms of CPU, schedstat in ns
    assert t1 >= t0


def test_cpu_per_frame_subtracts_the_scaled_baseline():
    s = 1_000_000_000
    hz = 100
    # (t, ticks, run ns, wait ns): baseline 0..10 s at 2% of a core, flood 10..20 s at 52%
    samples = [(0, 0, 0, 0), (10 * s, 20, 200_000_000, 0), (20 * s, 540, 5_400_000_000, 1_000_000_000)]
    out = f.cpu_per_frame(samples, (0, 10 * s), (10 * s, 20 * s), 100_000, hz)
    # (5.2 s - 0.2 s) / 100k frames = 50 us
    assert out["schedstat_us_per_frame"] == pytest.approx(50.0)
    assert out["ticks_us_per_frame"] == pytest.approx(50.0)
    assert out["schedstat_gross_us_per_frame"] == pytest.approx(52.0)
    assert out["schedstat_flood_share"] == pytest.approx(0.52)
    assert out["wait_flood_share"] == pytest.approx(0.1)
    # a baseline half as long is scaled to the flood's length
    half = f.cpu_per_frame(samples, (5 * s, 10 * s), (10 * s, 20 * s), 100_000, hz)
    assert half["schedstat_us_per_frame"] == pytest.approx(50.0)


def test_at_interpolates_between_samples_and_clamps_at_the_ends():
    samples = [(100, 10, 1000), (200, 20, 3000)]
    assert f.at(samples, 150, 2) == pytest.approx(2000)
    assert f.at(samples, 50, 1) == 10
    assert f.at(samples, 250, 1) == 20
    with pytest.raises(ValueError):
        f.at([], 1, 1)


def test_frame_quantiles_read_the_bots_own_histogram_between_two_scrapes():
    from active_quoting.observability.metrics import Metrics

    m = Metrics()
    h = m.histograms["market_frame"]
    for us in (3.5,) * 10:  # before the window: not counted
        h.observe(us / 1e6)
    before = f.frame_histogram(m.render())
    for us in [4.5] * 60 + [9.5] * 30 + [60.0] * 9 + [5000.0]:
        h.observe(us / 1e6)
    after = f.frame_histogram(m.render())
    assert after["count"] == 110 and after["buckets"][float("inf")] == 110
    q = f.frame_quantiles(before, after)
    assert q["n"] == 100
    assert q["mean"] == pytest.approx((60 * 4.5 + 30 * 9.5 + 9 * 60 + 5000) / 100)
    # p50: the 50th of 60 frames in the (4, 5] us bucket, linear within it
    assert q["p50"] == pytest.approx(4 + 50 / 60)
    assert 9 < q["p90"] <= 10  # the (9, 10] bucket
    assert 50 < q["p99"] <= 75  # the 99th frame is one of the 60 us ones
    assert f.frame_quantiles(after, after) == {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None}
    # the first bucket is read from 0, the open-ended last one as its lower bound
    first = f.frame_histogram(m.render())
    for _ in range(4):
        h.observe(0.5e-6)
    q = f.frame_quantiles(first, f.frame_histogram(m.render()), (50,))
    assert q["p50"] == pytest.approx(0.5)  # 2 of 4 frames in (0, 1] us
    last = f.frame_histogram(m.render())
    for _ in range(3):
        h.observe(5.0)  # beyond every finite bound (1 s)
    assert f.frame_quantiles(last, f.frame_histogram(m.render()), (50, 99))["p99"] == pytest.approx(1e6)
    # a scrape without the histogram (an older bot) reads as empty, not as an error
    assert f.frame_histogram("aq_windows 3\n") == {"buckets": {}, "sum": 0.0, "count": 0}


def test_tcp_queues_finds_the_socket_by_its_ports():
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:A1B2 0100007F:1F90 01 00000000:0001E240 00:00000000 00000000  0 0 1 1\n"
        "   1: 0100007F:1F90 0100007F:A1B2 01 00000010:00000000 00:00000000 00000000  0 0 2 1\n"
    )
    assert f.tcp_queues(text, 0xA1B2, 0x1F90) == (0, 123456)
    assert f.tcp_queues(text, 0x1F90, 0xA1B2) == (16, 0)
    assert f.tcp_queues(text, 1, 2) is None


def test_answers_take_the_first_request_naming_the_probed_market_within_the_horizon():
    ms = 1_000_000
    probes = [[1000 * ms, "A", "up 3", "flood"], [2000 * ms, "B", "down 3", "flood"],
              [3000 * ms, "A", "down 3", "flood"], [0, "B", "up 3", "flood"]]  # fmt: skip
    requests = [
        [1000 * ms + 300_000, "DELETE", "/orders", "0xbot", 0, "B", ""],  # another market: not an answer
        [1000 * ms + 900_000, "DELETE", "/orders", "0xbot", 0, "A", ""],
        [1000 * ms + 950_000, "POST", "/order", "0xbot", 1, "A", ""],
        [2000 * ms + 400_000, "POST", "/orders", "0xbot", 2, "A,B", ""],
        [3000 * ms + 2000 * ms, "DELETE", "/orders", "0xbot", 0, "A", ""],  # past the horizon
    ]
    out = f.answers(probes, requests, horizon_ns=1000 * ms)
    assert [a["latency_ns"] for a in out] == [900_000, 400_000, None, None]
    other = f.unprompted(out, requests, {"flood": [0, 10_000 * ms]}, 1000 * ms)
    assert other == {"flood": 2}  # B's request before B was probed, and A's late one


def test_slices_group_probes_by_phase_and_flood_time():
    s = 1_000_000_000
    phases = {"baseline": [0, 10 * s], "flood": [10 * s, int(25.2 * s)], "drain": [int(25.2 * s), 29 * s]}

    def a(t: float, latency_us: float | None, phase: str) -> dict:
        return {"t": int(t * s), "market": "A", "kind": "", "phase": phase,
                "latency_ns": None if latency_us is None else int(latency_us * 1000)}  # fmt: skip

    answered = [a(1, 100, "baseline"), a(2, 300, "baseline"), a(11, 1000, "flood"), a(12, 2000, "flood"),
                a(13, None, "flood"), a(16, 5000, "flood"), a(21, 9000, "flood"), a(0, None, "flood"),
                a(26, 7000, "flood"), a(27, 200, "drain")]  # fmt: skip
    rows = {r["slice"]: r for r in f.slices(answered, phases, 5.0)}
    assert list(rows) == ["baseline", "flood 0-5 s", "flood 5-10 s", "flood 10-15 s", "drain"]
    assert rows["baseline"]["n"] == 2 and rows["baseline"]["p50"] == 200
    first = rows["flood 0-5 s"]
    assert (first["n"], first["unanswered"], first["p50"], first["max"]) == (2, 1, 1500, 2000)
    assert rows["flood 5-10 s"]["p90"] == 5000
    # the last slice: t 21, the probe written only after the flood (t 26) and the one never written
    last = rows["flood 10-15 s"]
    assert (last["n"], last["unanswered"], last["p50"], last["max"]) == (2, 1, 8000, 9000)
    assert rows["drain"]["n"] == 1


def _alive_with(needle: str) -> list[int]:
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if needle.encode() in cmd:
            pids.append(int(pid))
    return pids


def test_a_short_flood_counts_frames_answers_a_probe_and_stops_everything(tmp_path):
    out = tmp_path / "flood.json"
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, str(HARNESS), "--markets", "2", "--rate", "300", "--seconds", "3", "--probe-every", "1",
         "--json", str(out)],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())
    assert r["frames_written"] > 300  # 3 s at 300/s, plus the probes' frames
    assert r["frames_read"] > 0 and r["flood_changes"] > 0
    assert any(a["latency_ns"] is not None for a in r["answers"]), r["probes"]
    assert "us (schedstat)" in proc.stdout
    # the bot's own per-frame histogram was scraped around the flood and counted its frames
    handled = r["handled"]["flood"]
    assert handled["n"] > 0 and handled["p50"] is not None and 0 < handled["p50"] <= handled["p99"]
    # the venue (its --out is in the run's directory) and the bot (its --db too) are gone
    assert _alive_with(r["tmp"]) == []
    assert not Path(r["tmp"]).exists(), "a finished run's directory (tens of MB) is removed without --keep"
