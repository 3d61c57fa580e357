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


@pytest.mark.benchmark(group="momentum: an Up-book frame read without our two resting quotes")
def test_momentum_on_book(benchmark, impl):
    """What every frame of a quoted market's Up book costs the detector in steady state (our
    quotes resting unchanged, a change deeper in the book): issue 11's CPU per frame."""
    from active_quoting.strategy.momentum import MomentumDetector

    book = impl.Book("up", 100)
    book.apply_snapshot([(4900, 100 * SH), (4800, 100 * SH), (4700, 80 * SH), (4600, 50 * SH)],
                        [(5100, 100 * SH), (5200, 100 * SH), (5300, 70 * SH)])  # fmt: skip
    detector = MomentumDetector()
    own_bids, own_asks, none = {4900: 5 * SH}, {5100: 5 * SH}, {}
    clock = [0]

    def frame() -> bool:
        t = clock[0] = clock[0] + 50
        book.set_level(impl.BID, 4600, (50 + t % 7) * SH)  # others' size moves behind the touch
        return detector.on_book("m", t, book, own_bids, own_asks, none, none)

    assert benchmark(frame) is False
    assert sum(detector.triggers.values()) == 0
