"""The operator's halts (issue 9, item 12): the kill switch and per-market drawdown halts are
stored together, survive a restart, and ``active-quoting halts`` lists and clears them, both on
a stopped bot's store and through a request a running bot applies (run as a subprocess)."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
import time
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from active_quoting import halts
from active_quoting.store.sqlite import Store
from active_quoting.strategy.config import RiskConfig
from active_quoting.strategy.risk import HALTED, RiskManager

EXE = shutil.which("active-quoting") or str(Path(sys.executable).parent / "active-quoting")
MARKET = "0xabc123"


def risk() -> RiskManager:
    return RiskManager(RiskConfig(max_drawdown_per_market_usdc=Decimal(20), max_drawdown_global_usdc=Decimal(100)))


def halted_store(db: Path) -> RiskManager:
    """A store holding a market halt (t=1_700_000_000_000) and the kill switch (t=...5_000)."""
    r = risk()
    r.on_pnl(1_700_000_000_000, MARKET, Fraction(-25))
    r.kill(1_700_000_005_000, "operator: venue incident")
    store = Store(db)
    halts.save(store, r)
    store.close()
    return r


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, "halts", *args], capture_output=True, text=True, check=False, timeout=timeout)


def test_both_halts_survive_a_restart_through_the_store(tmp_path):
    db = tmp_path / "run.db"
    halted_store(db)
    store = Store(db)
    again = risk()
    halts.restore(store, again, 1_800_000_000_000)
    assert again.killed and again.state == HALTED and "drawdown" in again.market_halt_reason(MARKET)
    assert again.kill_reason == "operator: venue incident" and again.kill_t_ms == 1_700_000_005_000
    assert store.get("kill_switch") == "1"  # the key earlier versions read agrees
    store.close()


def test_a_store_of_an_earlier_version_keeps_its_kill_switch(tmp_path):
    store = Store(tmp_path / "old.db")
    store.put("kill_switch", "1")
    r = risk()
    halts.restore(store, r, 5)
    assert r.killed
    store.close()


def test_list_and_clear_a_stopped_bots_store(tmp_path):
    db = tmp_path / "run.db"
    halted_store(db)
    out = cli("--db", str(db))
    assert out.returncode == 0, out.stderr
    assert "kill switch: SET since 2023-11-14 22:13:25 UTC: operator: venue incident" in out.stdout
    assert "market halts: 1" in out.stdout and MARKET in out.stdout and "drawdown" in out.stdout
    assert "bot: not running" in out.stdout

    nope = cli("--db", str(db), "--clear", "0xnot-halted")
    assert nope.returncode == 1 and "no halt for market" in nope.stdout

    cleared = cli("--db", str(db), "--clear", MARKET)
    assert cleared.returncode == 0 and f"market {MARKET} cleared" in cleared.stdout
    left = cli("--db", str(db))
    assert "market halts: 0" in left.stdout and "kill switch: SET" in left.stdout

    assert cli("--db", str(db), "--clear", "kill").returncode == 0
    store = Store(db)
    assert halts.load(store) == {"version": 1, "kill": None, "markets": {}} and store.get("kill_switch") == "0"
    r = risk()
    halts.restore(store, r, 10)  # the next start is not killed
    assert not r.killed and r.can_quote(MARKET)
    store.close()
    assert cli("--db", str(tmp_path / "absent.db")).returncode == 2


def test_a_running_bot_applies_the_clear_request(tmp_path):
    db = tmp_path / "run.db"
    bot_risk = halted_store(db)
    bot_risk.drain_events()
    store = Store(db)
    with open(str(db) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running bot holds
        listing = cli("--db", str(db))
        assert "bot: running" in listing.stdout
        proc = subprocess.Popen([EXE, "halts", "--db", str(db), "--clear", "all", "--wait", "20"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        applied: list[str] = []
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            applied += halts.apply_requests(store, bot_risk, 1_800_000_000_000)  # the bot's periodic call
            time.sleep(0.05)
        out, err = proc.communicate(timeout=5)
    assert proc.returncode == 0, (out, err)
    assert applied == ["request 1: kill switch cleared", f"request 1: market {MARKET} cleared"]
    assert "clear request 1 applied by the running bot" in out and "market halts: 0" in out
    assert not bot_risk.killed and bot_risk.market_halt_reason(MARKET) is None
    reasons = [e.reason for e in bot_risk.drain_events()]
    assert any("kill switch cleared by operator" in x for x in reasons) and any(
        "cleared by operator" in x for x in reasons
    )
    assert halts.load(store) == {"version": 1, "kill": None, "markets": {}}
    assert halts.apply_requests(store, bot_risk, 1_800_000_001_000) == []  # applied once only
    store.close()


def test_a_request_the_bot_has_not_applied_yet_is_kept_for_it(tmp_path):
    db = tmp_path / "run.db"
    bot_risk = halted_store(db)
    store = Store(db)
    with open(str(db) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        out = cli("--db", str(db), "--clear", "kill", "--wait", "0.3")
        assert out.returncode == 3 and "queued" in out.stdout
        assert bot_risk.killed
        assert halts.apply_requests(store, bot_risk, 1_800_000_000_000) == ["request 1: kill switch cleared"]
    assert not bot_risk.killed and "drawdown" in bot_risk.market_halt_reason(MARKET)
    stored = halts.load(store)
    assert stored["kill"] is None and MARKET in stored["markets"]
    store.close()
