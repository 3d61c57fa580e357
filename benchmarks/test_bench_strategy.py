"""Quote decision and markout arithmetic, compiled against the pure-Python twin.

Target: a quote decision under 1 us compiled on this 2-core machine.
"""

from __future__ import annotations

import pytest

SH = 1_000_000
ARGS = (4500, 5000, 100, 5 * SH, 30 * SH, False, 4600, 20 * SH, -1, 0, 10**12, 10**12, 10**13, 10**13)


@pytest.mark.benchmark(group="quote decision (both sides, with skew and hysteresis)")
def test_quote_decision(benchmark, impl):
    engine = impl.QuoteEngine()
    out = benchmark(engine.decide, *ARGS)
    assert out == (4300, 23_250_000, impl.REPLACE, 4600, 18_510_000, impl.PLACE)


@pytest.mark.benchmark(group="markout: fill + mid update resolving 5 horizons")
def test_markout_cycle(benchmark, impl):
    tracker = impl.MarkoutTracker([1000, 5000, 15000, 30000, 60000])
    clock = [0]

    def cycle():
        t = clock[0] = clock[0] + 70_000
        tracker.add_fill(t, 0, 4900, 10 * SH)
        tracker.on_mid(t + 1, 10_000)
        tracker.on_mid(t + 61_000, 10_200)  # resolves all five horizons of the fill

    benchmark(cycle)
    assert tracker.resolved(4) == tracker.fill_count
