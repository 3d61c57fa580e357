"""A ghost fill (MATCHED, later FAILED) under later fills: the inventory takes out exactly what
it added, whatever followed, and the report rebuilt from a store holding such fills runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

from active_quoting.model import BUY, FAILED, MATCHED, SELL, Fill
from active_quoting.store.sqlite import Store
from active_quoting.strategy.inventory import InventoryManager

SH = 1_000_000
EXE = shutil.which("active-quoting") or str(Path(sys.executable).parent / "active-quoting")
CID = "0x" + "cd" * 32


def sequence(market: str = "M", up: str = "UP", down: str = "DOWN") -> list[Fill]:
    """BUY 20 Up, SELL 20 Up, BUY 10 Down, then the first BUY settles FAILED."""
    buy = Fill("t1", "o1", market, up, BUY, 4000, 20 * SH, MATCHED, 1_000)
    return [
        buy,
        Fill("t2", "o2", market, up, SELL, 4500, 20 * SH, MATCHED, 2_000),
        Fill("t3", "o3", market, down, BUY, 5000, 10 * SH, MATCHED, 3_000),
        Fill("t1", "o1", market, up, BUY, 4000, 20 * SH, FAILED, 4_000),
    ]


def test_failed_buy_under_a_later_sale_keeps_every_other_fill():
    inv = InventoryManager()
    inv.register_market("M", "UP", "DOWN")
    outcomes = [inv.apply_fill(f) for f in sequence()]
    assert outcomes == ["new", "new", "new", "reversed"] and inv.reversals == 1
    # The 10 Down stay; the sale of 20 Up now has nothing under it: short 20, reported.
    assert inv.held("M") == (-20 * SH, 10 * SH) and inv.oversold("M") == 20 * SH
    assert inv.position("UP").cost == -9  # the sale's 9.00 proceeds
    assert inv.position("DOWN").cost == 5
    assert inv.liability("M") == 16  # Up wins: owe 20, paid 5, received 9
    # Nothing is poisoned: later fills of the market still apply, and a replay agrees.
    assert inv.apply_fill(Fill("t4", "o4", "M", "UP", BUY, 4000, 20 * SH, MATCHED, 5_000)) == "new"
    assert inv.held("M") == (0, 10 * SH) and inv.realized("M") == 1  # sold 20 at 0.45, covered at 0.40
    assert inv.resolve("M", "DOWN") == 5  # the 10 Down pay 10, cost 5


def test_report_runs_on_a_store_with_a_failed_fill_under_later_fills(tmp_path):
    db = tmp_path / "ghost.db"
    store = Store(db)
    store.market(CID, "btc-updown-15m-1780000000", "UP", "DOWN", 1_780_000_000, 1_780_000_900, "0.07", "0.2", 1)
    for f in sequence(CID):
        assert store.fill(f)
    for key in (("t2", "o2"), ("t3", "o3")):
        store.markout(*key, 0, 100)
    store.markout("t1", "o1", 0, 5_000)  # the ghost's markouts must not count
    store.close()
    out = subprocess.run([EXE, "report", "--db", str(db)], capture_output=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    text = out.stdout.decode()
    assert "btc-updown-15m-1780000000" in text and "went short" in text
    out = subprocess.run(
        [EXE, "report", "--db", str(db), "--json", "--html", str(tmp_path / "r.html")],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    report = json.loads(out.stdout)
    row = report["markets"]["btc-updown-15m-1780000000"]
    assert row["fills"] == 2 and row["failed_fills"] == 1 and row["oversold_shares"] == 20
    assert row["volume_shares"] == 30
    assert Fraction(row["spread_capture"]).limit_denominator(10**6) == Fraction(100 * 30, 2 * 10_000)
    assert (tmp_path / "r.html").read_text().startswith("<!doctype html>")
