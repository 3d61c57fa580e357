"""Risk rules that must be able to fire and be undone (issue 9, items 11-13): a steady stream of
errors trips the breaker whatever succeeds in between, a silent market stops that market, and
the kill switch and per-market halts survive a restart through export/restore."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

from active_quoting.strategy.config import RiskConfig
from active_quoting.strategy.risk import HALTED, NORMAL, RECOVERING, RiskManager


def rm(**kw):
    return RiskManager(RiskConfig(circuit_breaker_recovery_seconds=Decimal(10), **kw))


def test_heartbeat_successes_do_not_hide_a_stream_of_order_rejects():
    # The bot's heartbeat succeeds every 5 s while every order post fails: before, each
    # heartbeat reset the count and the breaker never tripped.
    r = rm(max_consecutive_errors=5)
    t = 0
    for _ in range(4):
        r.on_error(t, "http_500", path="orders")
        r.on_success(t + 1, path="heartbeat")
        t += 2_000
    assert r.state == NORMAL
    r.on_error(t, "http_500", path="orders")
    assert r.state == HALTED and r.consecutive_errors == 5
    assert "consecutive errors on orders" in r.drain_events()[-1].reason


def test_interleaved_successes_on_the_same_path_cannot_hide_errors_in_the_window():
    # One order of each pair rejected, the other accepted: no streak, but 5 errors in a minute.
    r = rm(max_consecutive_errors=5)
    for i in range(4):
        r.on_error(i * 1_000, "balance")
        r.on_success(i * 1_000 + 1)
    assert r.state == NORMAL and r.consecutive_errors == 0
    r.on_error(4_000, "balance")
    assert r.state == HALTED
    assert "5 errors within 60000 ms" in r.drain_events()[-1].reason
    # The errors leave the window with time: the halt lifts without a success, then recovery.
    r.tick(30_000)
    assert r.state == HALTED
    r.tick(64_000)  # the window has emptied: calm counts from here
    assert r.state == HALTED
    r.tick(74_000)
    assert r.state == RECOVERING


def test_errors_spread_beyond_the_window_do_not_trip():
    r = rm(max_consecutive_errors=3)
    for i in range(10):
        r.on_error(i * 61_000, "timeout")
        r.on_success(i * 61_000 + 1)
    assert r.state == NORMAL


def test_a_silent_market_halts_even_with_the_user_channel_up():
    r = rm(stale_feed_seconds=Decimal(30))
    r.on_user_channel(0, True)
    assert r.check_stale(31_000, {"A": 0}) == ["A"]
    assert not r.can_quote("A") and r.multiplier_pct("A") == 0 and r.can_quote("B")
    ev = r.drain_events()
    assert [(e.scope, e.new, e.cancel_all) for e in ev] == [("A", HALTED, True)]
    assert r.check_stale(32_000, {"A": 0}) == ["A"] and r.drain_events() == []  # reported once
    r.check_stale(33_000, {})  # no longer quoted: forgotten
    assert r.can_quote("A")


def test_halts_survive_a_restart_through_export_and_restore():
    r = rm(max_drawdown_per_market_usdc=Decimal(20), max_drawdown_global_usdc=Decimal(100))
    r.on_pnl(1_000, "A", Fraction(-25))
    r.kill(2_000, "operator: venue incident")
    saved = json.loads(json.dumps(r.export_halts()))  # what the store holds
    assert saved["kill"] == {"reason": "operator: venue incident", "t_ms": 2_000}
    assert saved["markets"]["A"]["t_ms"] == 1_000 and "drawdown" in saved["markets"]["A"]["reason"]

    again = rm(max_drawdown_per_market_usdc=Decimal(20), max_drawdown_global_usdc=Decimal(100))
    again.restore_halts(saved, 9_000)
    assert again.killed and again.state == HALTED and not again.can_quote("B")
    assert not again.can_quote("A") and "drawdown" in again.market_halt_reason("A")
    assert again.export_halts() == saved  # the original reason and time, not the restart's
    events = again.drain_events()
    assert any(e.scope == "global" and e.cancel_all for e in events)
    assert any(e.scope == "A" and e.new == HALTED for e in events)

    again.clear_kill_switch(10_000, "ops")
    again.clear_market(10_000, "A", "ops")
    assert again.export_halts() == {"version": 1, "kill": None, "markets": {}}
    assert again.market_halt_reason("A") is None and not again.killed


def test_forgetting_a_finished_market_keeps_its_pnl_in_the_global_total():
    r = rm(max_drawdown_per_market_usdc=Decimal(1000), max_drawdown_global_usdc=Decimal(100))
    r.on_pnl(0, "A", Fraction(80))
    r.on_pnl(0, "B", Fraction(0))
    r.forget_market("A")
    r.on_pnl(1, "B", Fraction(-30))  # 80 - 30 = 50: 30 from the peak, not 110
    assert not r.killed
    r.on_pnl(2, "B", Fraction(-100))
    assert r.killed
