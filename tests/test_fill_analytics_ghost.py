"""Fill analytics drop a FAILED fill entirely (a run with a ghost fill reports what a run
without it reports), count a fill known from an earlier run never again, and forget a pruned
market."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

from active_quoting.analytics.fills import FeeSchedule, FillAnalytics
from active_quoting.model import BUY, FAILED, MATCHED, RETRYING, SELL, Fill

SH = 1_000_000
FEES = FeeSchedule(rate=Fraction(7, 100), exponent=1, rebate_share=Fraction(1, 5))


def run(fills: list[tuple[Fill, int]]) -> FillAnalytics:
    """Mids move around the fills; every horizon (1..60 s) resolves by 70 s."""
    a = FillAnalytics()
    a.set_fee_schedule("M", FEES)
    a.on_order_placed("M", 0, 4)
    mids = [(0, 10_000), (1_500, 9_000), (2_500, 10_400), (7_000, 8_800), (20_000, 10_200)]
    events = [(t, 0, ("mid", m)) for t, m in mids] + [(t, 1, ("fill", f)) for f, t in fills]
    for t, _, (kind, value) in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == "mid":
            a.on_mid("UP", t, value)  # type: ignore[arg-type]
        else:
            a.on_fill(value, t)  # type: ignore[arg-type]
    a.flush(70_000)
    return a


GOOD = Fill("t2", "o2", "M", "UP", SELL, 5200, 30 * SH, MATCHED, 2_000)
GHOST = Fill("t1", "o1", "M", "UP", BUY, 4400, 50 * SH, MATCHED, 1_000)  # bought 0.06 under the mid


def test_a_failed_fill_leaves_no_trace():
    ghost = run([(GHOST, 1_000), (GOOD, 2_000), (replace(GHOST, status=RETRYING), 3_000),
                 (replace(GHOST, status=FAILED), 8_000)])  # fmt: skip
    clean = run([(GOOD, 2_000)])
    r, want = ghost.market_report("M"), clean.market_report("M")
    assert r["reversed_fills"] == 1 and want["reversed_fills"] == 0
    for k in want:
        if k != "reversed_fills":
            assert r[k] == want[k], k
    assert r["spread_capture"] != 0 and r["markouts"][60]["fills"] == 1  # the good fill is measured
    assert sorted(ghost.resolved_markouts()) == sorted(clean.resolved_markouts())
    assert {row[:2] for row in ghost.resolved_markouts()} == {("t2", "o2")}


def test_a_fill_known_from_an_earlier_run_is_not_counted_again():
    a = FillAnalytics()
    a.add_known([GHOST, GOOD])  # from the store, after a restart
    a.on_mid("UP", 0, 10_000)
    assert a.on_fill(GOOD, 5_000) is False  # recovered again from the venue's trades
    assert a.on_fill(Fill("t3", "o3", "M", "UP", BUY, 4900, 10 * SH, MATCHED, 5_000), 5_000) is True
    assert a.on_fill(replace(GHOST, status=FAILED), 6_000) is False
    r = a.market_report("M")
    assert r["fills"] == 1 and r["volume_shares"] == 10 and r["reversed_fills"] == 0
    assert a.is_known(GOOD.key) and a.is_known(("t3", "o3"))


def test_forget_drops_the_market_and_ignores_late_messages():
    a = FillAnalytics()
    a.on_mid("UP", 0, 10_000)
    assert a.on_fill(GOOD, 1_000)
    a.on_fill(Fill("x", "o", "N", "UN", BUY, 5000, SH, MATCHED, 0), 0)
    a.forget("M")
    assert a.markets() == ["N"] and not a.is_known(GOOD.key)
    assert a.on_fill(GOOD, 2_000) is False  # a late repeat for a pruned market
    a.on_mid("UP", 3_000, 9_000)
    a.on_order_placed("M", 3_000)
    assert a.markets() == ["N"] and "UP" not in a.fill_keys
    assert a.report()["total"]["fills"] == 1
