"""Momentum detector: trade moves, sweeps, one-sided thinning, cooldown timing and expiry."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from active_quoting import core
from active_quoting.strategy.config import MomentumConfig
from active_quoting.strategy.momentum import MomentumDetector

SH = 1_000_000


def book(bids, asks, tick=100):
    b = core.Book("t", tick)
    b.apply_snapshot(bids, asks)
    return b


def test_trade_move_within_window_triggers_cooldown():
    d = MomentumDetector(MomentumConfig())  # 3 ticks in 500 ms, 2 s cooldown
    assert not d.on_trade("m", 1000, 5000, 100)
    assert not d.on_trade("m", 1200, 5200, 100)  # 2 ticks
    assert d.on_trade("m", 1400, 5300, 100)  # 3 ticks within 400 ms
    assert d.is_active("m", 1400) and d.is_active("m", 3399)
    assert not d.is_active("m", 3400)  # expiry
    assert d.triggers["trade_move"] == 1
    assert d.cooldown_ms_total["m"] == 2000


def test_slow_move_outside_window_does_not_trigger():
    d = MomentumDetector(MomentumConfig())
    d.on_trade("m", 0, 5000, 100)
    d.on_trade("m", 400, 5200, 100)
    assert not d.on_trade("m", 1000, 5300, 100)  # the 0.50 print left the window
    assert not d.is_active("m", 1000) and d.triggers["trade_move"] == 0


def test_tick_matters():
    d = MomentumDetector(MomentumConfig())
    d.on_trade("m", 0, 5000, 10)
    assert d.on_trade("m", 10, 5030, 10)  # 3 ticks of 0.001


def test_sweep_of_near_touch_depth():
    d = MomentumDetector(MomentumConfig())  # 50 % of depth within 3 ticks
    d.on_book("m", 0, book([(4900, 100 * SH), (4800, 100 * SH)], [(5100, 100 * SH), (5200, 100 * SH)]))
    assert not d.is_active("m", 0)
    d.on_book("m", 100, book([(4800, 100 * SH)], [(5100, 100 * SH), (5200, 100 * SH)]))
    # bid depth within 3 ticks of the new touch 0.48 is 100 of a window max of 200: a sweep
    assert d.is_active("m", 100) and d.triggers["sweep"] == 1
    d.on_book("m", 200, book([(4800, 100 * SH)], [(5100, 100 * SH), (5200, 100 * SH)]))
    assert d.triggers["sweep"] == 1  # still swept: extends the cooldown, counted once
    assert d.cooldown_until("m") == 2200


def test_a_sweep_that_clears_and_comes_back_is_a_second_onset():
    """A cause is counted once per onset: it stops being active on the first reading where it no
    longer holds (also when nothing else holds then), so its return counts again."""
    d = MomentumDetector(MomentumConfig())
    full = book([(4900, 100 * SH), (4800, 100 * SH)], [(5100, 100 * SH), (5200, 100 * SH)])
    swept = book([(4800, 100 * SH)], [(5100, 100 * SH), (5200, 100 * SH)])
    d.on_book("m", 0, full)
    assert d.on_book("m", 100, swept) and d.triggers["sweep"] == 1
    assert not d.on_book("m", 700, full)  # the window forgot the drop: nothing holds
    assert d.on_book("m", 800, swept) and d.triggers["sweep"] == 2
    assert d.triggers["imbalance"] == 0


def test_one_sided_thinning():
    d = MomentumDetector(MomentumConfig(imbalance_threshold=Decimal("0.2")))
    d.on_book("m", 0, book([(4900, 10 * SH)], [(5100, 90 * SH)]))
    assert d.is_active("m", 0) and d.triggers["imbalance"] == 1
    d2 = MomentumDetector(MomentumConfig(imbalance_threshold=Decimal("0.2")))
    d2.on_book("m", 0, book([(4900, 30 * SH)], [(5100, 70 * SH)]))
    assert not d2.is_active("m", 0)


def test_keys_are_independent_and_cooldown_extends():
    d = MomentumDetector(MomentumConfig(cooldown_seconds=Decimal("1")))
    d.on_trade("a", 0, 5000, 100)
    d.on_trade("a", 100, 5400, 100)
    assert d.is_active("a", 500) and not d.is_active("b", 500)
    d.on_trade("a", 600, 5000, 100)  # moves back: still a 4-tick range in the window
    assert d.cooldown_until("a") == 1600 and d.cooldown_ms_total["a"] == 1500


@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 10**9)), max_size=200), st.integers(1, 2000))
def test_the_window_maximum_is_the_maximum_over_the_window(steps, window_ms):
    """The sliding-window maximum the sweep check uses equals a scan of every reading kept."""
    from collections import deque

    from active_quoting.strategy.momentum import _window_max

    kept: deque = deque()
    readings: list[tuple[int, int]] = []
    now = 0
    for dt, value in steps:
        now += dt
        readings.append((now, value))
        expected = max(v for t, v in readings if t >= now - window_ms)
        assert _window_max(kept, now, value, now - window_ms) == expected
