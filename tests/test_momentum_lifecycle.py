"""The detector's per-market lifecycle: cooldown time drained as it accrues (persisted by the
caller while running, not at shutdown) and forget() when a window is pruned (issue 9, items 10
and 14)."""

from __future__ import annotations

from active_quoting import core
from active_quoting.strategy.config import MomentumConfig
from active_quoting.strategy.momentum import MomentumDetector

SH = 1_000_000


def book(bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> object:
    b = core.Book("t", 100)
    b.apply_snapshot(bids, asks)
    return b


def start_cooldown(d: MomentumDetector, key: str, now: int) -> None:
    d.on_trade(key, now - 200, 5000, 100)
    assert d.on_trade(key, now, 5300, 100)  # 3 ticks in 200 ms: a 2 s cooldown from now


def test_cooldown_time_is_drained_as_it_accrues() -> None:
    d = MomentumDetector(MomentumConfig())
    start_cooldown(d, "m", 1000)
    assert d.take_cooldown_ms(1000) == {}
    assert d.take_cooldown_ms(1600) == {"m": 600}
    assert d.take_cooldown_ms(1600) == {}  # taken once
    assert d.is_active("m", 2999) and not d.is_active("m", 3000)  # unchanged by taking
    start_cooldown(d, "m", 2500)  # extends to 4500
    assert d.cooldown_until("m") == 4500
    assert d.take_cooldown_ms(4000) == {"m": 2400}
    assert d.take_cooldown_ms(9000) == {"m": 500}
    start_cooldown(d, "m", 10_000)  # a separate cooldown after a calm spell
    assert d.take_cooldown_ms(20_000) == {"m": 2000}
    # what was taken is what was scheduled: 1000..4500 and 10000..12000
    assert d.cooldown_ms_total["m"] == 3500 + 2000


def test_forget_drops_the_market_and_returns_what_was_not_taken() -> None:
    d = MomentumDetector(MomentumConfig())
    start_cooldown(d, "m", 1000)
    start_cooldown(d, "other", 1000)
    assert d.take_cooldown_ms(1500) == {"m": 500, "other": 500}
    d.on_book("m", 1700, book([(4900, 200 * SH)], [(5100, 200 * SH)]))
    assert d.forget("m", 1800) == 300
    assert not d.is_active("m", 1800) and d.cooldown_until("m") == 0
    assert "m" not in d.cooldown_ms_total and d.is_active("other", 1800)
    assert d.take_cooldown_ms(5000) == {"other": 1500}  # nothing of "m" is left to drain
    assert d.forget("m") == 0
    # its sweep history went too: a thinner book for a new window of the same key is no sweep
    assert not d.on_book("m", 1900, book([(4900, 100 * SH)], [(5100, 100 * SH)]))
    assert d.triggers["sweep"] == 0


def test_forget_without_a_time_counts_up_to_the_last_event() -> None:
    d = MomentumDetector(MomentumConfig())
    start_cooldown(d, "m", 1000)
    d.on_book("m", 1700, book([(4900, 100 * SH)], [(5100, 100 * SH)]))
    assert d.forget("m") == 700
