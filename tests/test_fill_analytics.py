"""Fill analytics on small worked examples: markouts, toxicity, rebates, attribution, rates."""

from __future__ import annotations

from fractions import Fraction

from active_quoting.analytics.fills import FeeSchedule, FillAnalytics
from active_quoting.strategy.inventory import Fill

SH = 1_000_000


def f(trade, side, price, size, t, status="MATCHED", token="UP"):
    return Fill(trade, "o-" + trade, "M", token, side, price, size, status, t)


def test_worked_example():
    a = FillAnalytics()  # horizons 1, 5, 15, 30, 60 s; toxicity at 5 s worse than -0.01
    a.set_fee_schedule("M", FeeSchedule(rate=Fraction(7, 100), exponent=1, rebate_share=Fraction(1, 5)))
    a.on_order_placed("M", 0, 4)
    a.on_mid("UP", 0, 10_000)  # mid 0.50
    a.on_fill(f("t1", "BUY", 4900, 100 * SH, 1_000), 1_000)  # edge +0.01 x 100 = 1.00
    a.on_fill(f("t2", "SELL", 5100, 50 * SH, 2_000), 2_000)  # edge +0.01 x 50 = 0.50
    a.on_fill(f("t1", "BUY", 4900, 100 * SH, 1_000, "CONFIRMED"), 3_000)  # a status change: no recount
    a.on_mid("UP", 4_000, 9_600)  # mid 0.48
    a.on_cancel("M", 30_000, 3)
    a.flush(70_000)
    r = a.market_report("M")
    assert r["fills"] == 2 and r["volume_shares"] == 150
    assert r["notional_usdc"] == Fraction(49) + Fraction(51, 2)
    assert r["fill_rate"] == Fraction(1, 2)
    assert r["spread_capture"] == Fraction(3, 2)
    # 5 s: BUY 0.49 vs 0.48 = -0.01 x 100; SELL 0.51 vs 0.48 = +0.03 x 50
    assert r["markouts"][5]["pnl"] == Fraction(-1) + Fraction(3, 2)
    assert r["markouts"][5]["avg_per_share"] == Fraction(1, 2) / 150
    assert r["markouts"][1]["pnl"] == Fraction(3, 2)  # both 1 s marks fell before 4 s: at 0.50
    # toxic: worse than -0.01 -> the BUY is exactly -0.01, not worse
    assert r["toxicity"] == 0
    # rebate: 0.2 x 0.07 x p(1-p) x shares = 0.2 x 0.07 x (0.2499 x 100 + 0.2499 x 50)
    assert r["estimated_rebate"] == Fraction(1, 5) * Fraction(7, 100) * Fraction(2499, 10_000) * 150
    assert r["adverse_selection"] == Fraction(3, 2) - (Fraction(-1) + Fraction(3, 2))
    assert r["net"] == r["spread_capture"] + r["estimated_rebate"] - r["adverse_selection"]
    assert r["refresh_rate_per_min"] == Fraction(3) / Fraction(70_000, 60_000)


def test_toxicity_counts_bad_fills():
    a = FillAnalytics()
    a.on_mid("UP", 0, 10_000)
    a.on_fill(f("a", "BUY", 5000, SH, 0), 0)
    a.on_fill(f("b", "BUY", 5000, SH, 0), 0)
    a.on_mid("UP", 1_000, 9_000)  # mid 0.45: both BUYs at 0.50 are -0.05 at 5 s
    a.flush(10_000)
    assert a.market_report("M")["toxicity"] == 1


def test_failed_fill_is_taken_back_out():
    a = FillAnalytics()
    a.on_fill(f("a", "BUY", 5000, 10 * SH, 0), 0)
    a.on_fill(f("a", "BUY", 5000, 10 * SH, 0, "FAILED"), 1)
    a.on_fill(f("a", "BUY", 5000, 10 * SH, 0, "FAILED"), 2)
    r = a.market_report("M")
    assert r["fills"] == 0 and r["reversed_fills"] == 1 and r["volume_shares"] == 0


def test_no_mid_no_fake_numbers():
    a = FillAnalytics()
    a.on_mid("UP", 0, -1)
    a.on_fill(f("a", "BUY", 5000, 10 * SH, 0), 0)
    a.flush(100_000)
    r = a.market_report("M")
    assert r["spread_capture"] == 0 and r["markouts"][5]["fills"] == 0 and r["toxicity"] is None


def test_aggregate_report():
    a = FillAnalytics()
    a.on_fill(Fill("x", "o", "A", "UA", "BUY", 5000, SH, "MATCHED", 0), 0)
    a.on_fill(Fill("y", "o", "B", "UB", "BUY", 5000, 2 * SH, "MATCHED", 0), 0)
    total = a.report()["total"]
    assert total["fills"] == 2 and total["volume_shares"] == 3


def test_resolved_markouts_per_fill():
    a = FillAnalytics()
    a.on_mid("UP", 0, 10_000)
    a.on_fill(f("t1", "BUY", 4900, SH, 0), 0)
    a.on_mid("UP", 500, 10_400)
    a.on_mid("UP", 1_500, 10_000)  # resolves the 1 s horizon at 0.52
    rows = sorted(a.resolved_markouts())
    assert rows == [("t1", "o-t1", 0, 200), ("t1", "o-t1", 1, 600)]  # later horizons still pending


def test_markouts_are_taken_once_each_as_they_resolve():
    """What the bot persists every second: each resolved markout exactly once, in any cadence,
    and together exactly what resolved_markouts() lists at the end (a kill -9 loses at most one
    second of them, not the run's)."""
    a = FillAnalytics()
    taken: list[tuple[str, str, int, int]] = []
    a.on_mid("UP", 0, 10_000)
    t = 0
    for i in range(12):
        t += 700
        a.on_fill(f(f"t{i}", "BUY" if i % 2 else "SELL", 4900 + i, 10 * SH, t), t)
        a.on_mid("UP", t + 50, 10_000 + (i % 3) * 100)
        if i % 3 == 0:
            a.flush(t + 100)
            taken += a.take_resolved()
    early = len(taken)
    assert 0 < early < 12 * 6  # some resolved while fills were still coming in, not all
    for step in range(1, 80):
        a.flush(t + step * 1000)
        taken += a.take_resolved()
    assert a.take_resolved() == []  # nothing twice
    assert len(taken) == len(set(taken)) and sorted(taken) == sorted(a.resolved_markouts())
    assert len(taken) == 12 * 6  # every fill: at the fill and at 1, 5, 15, 30, 60 s
