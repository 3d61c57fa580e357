"""Market flow: windows listed ahead, resolved and rolled, fair value, takers; deterministic per seed;
and the `exchange` command recording a session that `inspect` reads."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from active_quoting.exchange.flow import FlowConfig, MarketFlow
from active_quoting.exchange.server import Exchange

T0 = 1_780_000_020.0  # a 60-s window boundary


def simulate(seed: int, steps: int = 400, dt: float = 0.25):
    ex = Exchange()
    flow = MarketFlow(ex, FlowConfig(assets=("btc", "eth"), window_s=60, seed=seed, noise_takers_per_s=2.0))
    now = T0
    for _ in range(steps):
        flow.step(now, dt)
        now += dt
    return ex, flow


def test_windows_roll_and_resolve():
    ex, flow = simulate(3)
    slugs = [w.slug for w in flow.windows]
    assert slugs[:2] == ["btc-updown-1m-1780000020", "btc-updown-1m-1780000080"]  # current and next listed together
    assert "btc-updown-1m-1780000140" in slugs  # rolled: the next one after the first resolved
    resolved = [w for w in flow.windows if w.resolved]
    assert resolved and all(ex.engine.markets[w.market.condition_id].resolved for w in resolved)
    g = {m["slug"]: m for m in ex.gamma_markets}
    assert g[resolved[0].slug]["closed"] is True
    assert orjson.loads(g[slugs[-1]]["clobTokenIds"]) == [flow.windows[-1].market.up, flow.windows[-1].market.down]
    assert len(ex.engine.trades) > 10  # takers traded against the background makers


def test_fair_value_and_book_around_it():
    ex, flow = simulate(4, steps=20)
    w = next(w for w in flow.windows if not w.resolved and w.start <= T0 + 5)
    fair = flow.fair_up(w, T0 + 5)
    m = w.market
    assert 0 < fair < 1
    assert m.best(0) < round(fair * 10_000) + 200 and m.best(1) > round(fair * 10_000) - 200
    assert m.best(0) < m.best(1)


def test_deterministic_for_a_seed():
    a, _ = simulate(11)
    b, _ = simulate(11)
    c, _ = simulate(12)
    sig = lambda ex: [(t.market, t.price, t.size) for t in ex.engine.trades]  # noqa: E731
    assert sig(a) == sig(b) and sig(a) != sig(c)


def test_exchange_command_records_a_session_inspect_can_read(tmp_path):
    exe = shutil.which("active-quoting") or str(Path(sys.executable).parent / "active-quoting")
    rec = tmp_path / "session.jsonl"
    out = subprocess.run([exe, "exchange", "--duration", "2", "--window-seconds", "60", "--assets", "btc",
                          "--record", str(rec)], capture_output=True, timeout=60, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    urls = orjson.loads(out.stdout.splitlines()[0])
    assert urls["clob"].startswith("http://127.0.0.1:") and urls["ws_market"].endswith("/ws/market")
    summary = orjson.loads(subprocess.run([exe, "inspect", str(rec)], capture_output=True, check=True).stdout)
    assert summary["errors"] == 0 and summary["events"]["book"] >= 2 and summary["events"]["price_change"] > 0
    assert all(b["disagreements"] == 0 and not b["crossed"] for b in summary["books"].values())


def test_exchange_command_rejects_bad_arguments(tmp_path):
    exe = shutil.which("active-quoting") or str(Path(sys.executable).parent / "active-quoting")
    out = subprocess.run([exe, "exchange", "--window-seconds", "1"], capture_output=True, timeout=30, check=False)
    assert out.returncode == 2 and b"window-seconds" in out.stderr
    bad = tmp_path / "s.json"
    bad.write_text('[{"fault": "meteor"}]')
    out = subprocess.run(
        [exe, "exchange", "--scenario", str(bad), "--duration", "1"], capture_output=True, timeout=30, check=False
    )
    assert out.returncode == 2 and b"unknown faults" in out.stderr


@pytest.mark.parametrize("seed", [5])
def test_market_flow_books_parse_cleanly(seed):
    ex, flow = simulate(seed, steps=40)
    assert ex.engine.accounts  # house and takers exist; nothing negative
    assert all(a.collateral >= 0 and all(v >= 0 for v in a.tokens.values()) for a in ex.engine.accounts.values())
