"""Risk manager: state machine, multipliers, stale-feed logic, error counting, drawdowns, kill switch."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from active_quoting.strategy.config import RiskConfig
from active_quoting.strategy.risk import HALTED, NORMAL, RECOVERING, WARNING, RiskManager


def rm(**kw):
    return RiskManager(RiskConfig(circuit_breaker_recovery_seconds=Decimal(10), **kw))


def test_multipliers_by_state():
    r = rm()
    assert r.state == NORMAL and r.multiplier_pct() == 100
    r.on_market_channel(0, False)
    assert r.state == WARNING and r.multiplier_pct() == 50
    r.on_user_channel(1, False)
    assert r.state == HALTED and r.multiplier_pct() == 0 and not r.can_quote()
    events = r.drain_events()
    assert [(e.old, e.new, e.cancel_all) for e in events] == [(NORMAL, WARNING, False), (WARNING, HALTED, True)]
    assert "user channel lost" in events[1].reason


def test_recovery_steps_back_gradually_once_causes_clear():
    r = rm()
    r.on_user_channel(0, False)
    r.tick(60_000)
    assert r.state == HALTED  # the user channel is still down
    r.on_user_channel(60_000, True)
    r.tick(65_000)
    assert r.state == HALTED  # calm for 5 s only
    r.tick(70_000)
    assert r.state == RECOVERING and r.multiplier_pct() == 25
    r.tick(75_000)
    assert r.state == RECOVERING
    r.tick(80_000)
    assert r.state == WARNING
    r.tick(90_000)
    assert r.state == NORMAL
    assert [e.new for e in r.drain_events()] == [HALTED, RECOVERING, WARNING, NORMAL]


def test_trouble_during_recovery_restarts_the_clock():
    r = rm()
    r.on_user_channel(0, False)
    r.on_user_channel(1, True)
    r.tick(10_001)
    assert r.state == RECOVERING
    r.on_market_channel(12_000, False)
    r.tick(30_000)
    assert r.state == WARNING  # steps back only to what the open cause allows
    r.tick(50_000)
    assert r.state == WARNING
    r.on_market_channel(50_000, True)
    r.tick(60_000)
    assert r.state == NORMAL


def test_stale_is_per_market_silence_without_confirmation():
    r = rm(stale_feed_seconds=Decimal(30))
    assert r.check_stale(60_000, {"A": 50_000, "B": 40_000}) == []  # recent events or confirmations
    assert r.check_stale(100_000, {"A": 50_000, "B": 90_000}) == ["A"]
    assert r.state == NORMAL and not r.can_quote("A") and r.can_quote("B")
    assert "stale feed" in r.market_halt_reason("A")
    assert r.check_stale(101_000, {"A": 100_500, "B": 90_000}) == []  # fresh again
    assert r.can_quote("A")
    assert [(e.scope, e.new, e.cancel_all) for e in r.drain_events()] == [("A", HALTED, True), ("A", NORMAL, False)]


def test_consecutive_errors_exclude_venue_restarts_post_only_and_rate_limits():
    r = RiskManager(RiskConfig(circuit_breaker_recovery_seconds=Decimal(10), max_consecutive_errors=3),
                    error_window_s=1)  # fmt: skip
    for _ in range(10):
        r.on_error(0, "engine_restart")
        r.on_error(0, "post_only_reject")
        r.on_error(0, "rate_limited")
    assert r.state == NORMAL and r.consecutive_errors == 0 and r.errors_by_kind["rate_limited"] == 10
    r.on_error(0, "http_500")
    r.on_error(0, "timeout")
    r.on_success(1)
    r.on_error(2_000, "http_500")
    r.on_error(2_000, "http_500")
    assert r.state == NORMAL
    r.on_error(3_000, "http_500")
    assert r.state == HALTED and r.errors_by_kind["http_500"] == 4
    r.tick(20_000)
    assert r.state == HALTED  # no success yet
    r.on_success(20_000)
    r.tick(30_000)
    assert r.state == RECOVERING


def test_market_drawdown_stops_that_market_only():
    r = rm(max_drawdown_per_market_usdc=Decimal(20), max_drawdown_global_usdc=Decimal(100))
    r.on_pnl(0, "A", Fraction(15))
    r.on_pnl(1, "A", Fraction(-4))  # 19 from the peak
    assert r.can_quote("A")
    r.on_pnl(2, "A", Fraction(-5))  # 20 from the peak
    assert not r.can_quote("A") and r.can_quote("B") and r.state == NORMAL
    assert "drawdown" in r.market_halt_reason("A")
    r.clear_market(3, "A", "ops")
    assert r.can_quote("A")


def test_global_drawdown_trips_kill_switch_until_cleared():
    r = rm(max_drawdown_per_market_usdc=Decimal(1000), max_drawdown_global_usdc=Decimal(100))
    r.on_pnl(0, "A", Fraction(-60))
    r.on_pnl(0, "B", Fraction(-39))
    assert not r.killed
    r.on_pnl(1, "B", Fraction(-40))
    assert r.killed and r.state == HALTED and r.multiplier_pct("A") == 0
    r.tick(10**9)
    assert r.killed and r.state == HALTED  # never recovers by itself
    r.clear_kill_switch(10**9, "ops")
    r.tick(10**9 + 10_000)
    assert not r.killed and r.state == RECOVERING
    assert any("kill switch" in e.reason and e.cancel_all for e in r.drain_events())


def test_a_cleared_drawdown_kill_switch_measures_from_where_it_was_cleared():
    """The operator accepts the loss: the same P&L does not trip it again at the next update (a
    simulated day stayed killed for 17 hours); a further 100 USDC down does."""
    r = rm(max_drawdown_per_market_usdc=Decimal(1000), max_drawdown_global_usdc=Decimal(100))
    r.on_pnl(0, "A", Fraction(-105))
    assert r.killed
    r.clear_kill_switch(1_000, "ops")
    r.drain_events()
    r.on_pnl(2_000, "A", Fraction(-105))
    r.on_pnl(3_000, "A", Fraction(-150))
    assert not r.killed and not [e for e in r.drain_events() if "kill switch" in e.reason]
    r.on_pnl(4_000, "A", Fraction(-205))
    assert r.killed


def test_manual_kill():
    r = rm()
    r.kill(5, "operator")
    assert r.killed and not r.can_quote()
