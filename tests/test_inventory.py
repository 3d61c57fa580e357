"""Inventory: positions from fills through the settlement states, liability, limits, P&L by hand."""

from __future__ import annotations

from fractions import Fraction

import pytest

from active_quoting.strategy.inventory import Fill, InventoryError, InventoryManager

SH = 1_000_000


def fill(trade, side, price, size, status="MATCHED", token="UP", order="o1"):
    return Fill(trade, order, "M", token, side, price, size, status)


@pytest.fixture
def inv():
    i = InventoryManager()
    i.register_market("M", "UP", "DOWN")
    return i


def test_status_progression_counts_once(inv):
    assert inv.apply_fill(fill("t1", "BUY", 5000, 10 * SH)) == "new"
    assert inv.apply_fill(fill("t1", "BUY", 5000, 10 * SH)) == "duplicate"
    assert inv.apply_fill(fill("t1", "BUY", 5000, 10 * SH, "MINED")) == "status"
    assert inv.apply_fill(fill("t1", "BUY", 5000, 10 * SH, "CONFIRMED")) == "confirmed"
    assert inv.apply_fill(fill("t1", "BUY", 5000, 10 * SH, "CONFIRMED")) == "duplicate"
    assert inv.position("UP").shares == 10 * SH and inv.is_final(("t1", "o1"))


def test_failed_fill_is_reversed_by_replay(inv):
    inv.apply_fill(fill("t1", "BUY", 4000, 10 * SH))
    inv.apply_fill(fill("t2", "BUY", 6000, 10 * SH))
    inv.apply_fill(fill("t3", "SELL", 7000, 5 * SH))  # avg 0.50: realized +1.00
    assert inv.realized("M") == 1
    assert inv.apply_fill(fill("t1", "BUY", 4000, 10 * SH, "RETRYING")) == "status"
    assert inv.apply_fill(fill("t1", "BUY", 4000, 10 * SH, "FAILED")) == "reversed"
    # without t1: bought 10 @ 0.60, sold 5 @ 0.70 -> realized 0.50, 5 left at 0.60
    pos = inv.position("UP")
    assert pos.shares == 5 * SH and pos.cost == 3 and inv.realized("M") == Fraction(1, 2)
    assert inv.reversals == 1
    assert inv.apply_fill(fill("t1", "BUY", 4000, 10 * SH, "CONFIRMED")) == "duplicate"  # FAILED is final


def test_average_entry_and_exact_money(inv):
    inv.apply_fill(fill("a", "BUY", 4560, 219_217_767))  # 219.217767 @ 0.456
    inv.apply_fill(fill("b", "BUY", 4570, 100 * SH))
    pos = inv.position("UP")
    assert pos.cost == Fraction(4560 * 219_217_767 + 4570 * 100 * SH, 10**10)
    assert pos.avg_price() == Fraction(4560 * 219_217_767 + 4570 * 100 * SH, 319_217_767)


def test_liability_nets_pairs(inv):
    inv.apply_fill(fill("a", "BUY", 5000, 100 * SH))
    assert inv.liability("M") == 50  # 100 shares @ 0.50
    inv.apply_fill(fill("b", "BUY", 4500, 100 * SH, token="DOWN"))
    assert inv.liability("M") == 0  # a full pair costs 0.95 and pays 1
    assert inv.net_up("M") == 0
    inv.apply_fill(fill("c", "BUY", 4000, 10 * SH, token="DOWN"))
    assert inv.liability("M") == 0  # 99 paid for 100 Up / 110 Down: every outcome pays >= 100


def test_liability_counts_pending_buys(inv):
    inv.apply_fill(fill("a", "BUY", 5000, 40 * SH))
    pending = [("UP", "BUY", 5000, 20 * SH), ("DOWN", "SELL", 5000, 5 * SH)]
    assert inv.liability("M", pending) == 30


def test_rooms_for_the_quote_engine(inv):
    inv.apply_fill(fill("a", "BUY", 5000, 60 * SH))  # long 60 Up, liability 30
    bid, ask, bid_usdc, ask_usdc = inv.rooms("M")
    assert bid == 40 * SH and ask == 160 * SH
    assert bid_usdc == 20 * SH  # 50 - 30 USDC
    assert ask_usdc == 20 * SH + 60 * SH  # pairing off the 60 Up held frees them
    # a pending BUY of 30 Up counts as filled
    bid, _, bid_usdc, _ = inv.rooms("M", {"M": [("UP", "BUY", 5000, 30 * SH)]})
    assert bid == 10 * SH and bid_usdc == 5 * SH
    # the circuit breaker halves the limits
    bid, ask, bid_usdc, _ = inv.rooms("M", multiplier_pct=50)
    assert bid == 0 and ask == 110 * SH and bid_usdc == 0


def test_total_liability_limit(inv):
    inv.register_market("N", "U2", "D2")
    inv.max_liability_total = Fraction(40)
    inv.apply_fill(Fill("x", "o", "N", "U2", "BUY", 5000, 60 * SH, "MATCHED"))  # N: 30
    _, _, bid_usdc, _ = inv.rooms("M")
    assert bid_usdc == 10 * SH  # 40 total - 30 used elsewhere


def test_unrealized_marks_and_resolution(inv):
    inv.apply_fill(fill("a", "BUY", 4000, 10 * SH))
    assert inv.unrealized("M", {"UP": 9000}) == Fraction(1, 2)  # mid 0.45 (mid_x2 9000)
    assert inv.unrealized("M", {"UP": 8001}) == Fraction(8001 - 8000, 20_000) * 10  # mid 0.40005
    assert inv.unrealized("M", {"UP": -1}) == 0  # no two-sided book: carried at cost
    assert inv.unrealized("M", {}) == 0
    assert inv.resolve("M", "UP") == 6  # pays 10, cost 4
    assert inv.position("UP").shares == 0 and inv.realized("M") == 6


def test_bad_fills_are_refused(inv):
    with pytest.raises(InventoryError, match="unknown market"):
        inv.apply_fill(Fill("t", "o", "X", "UP", "BUY", 5000, SH, "MATCHED"))
    with pytest.raises(InventoryError, match="unknown status"):
        inv.apply_fill(fill("t", "BUY", 5000, SH, "PENDING"))
    with pytest.raises(InventoryError, match="side"):
        inv.apply_fill(fill("t", "HOLD", 5000, SH))
    with pytest.raises(InventoryError, match="token"):
        inv.apply_fill(fill("t", "BUY", 5000, SH, token="OTHER"))
    assert inv.markets() == ["M"] and inv.held("M") == (0, 0)  # nothing half-applied


def test_a_sell_beyond_holdings_goes_short_and_is_reported(inv):
    assert inv.apply_fill(fill("t", "SELL", 6000, 10 * SH)) == "new"  # no exception: a state to report
    assert inv.held("M") == (-10 * SH, 0) and inv.oversold("M") == 10 * SH
    assert inv.position("UP").cost == -6  # the proceeds, carried as negative cost
    assert inv.liability("M") == 4  # Up wins: pay 10, received 6
    inv.apply_fill(fill("u", "BUY", 5000, 4 * SH))  # covers 4 at 0.50 against a 0.60 average: +0.40
    assert inv.held("M") == (-6 * SH, 0) and inv.realized("M") == Fraction(2, 5)
    assert inv.resolve("M", "DOWN") == Fraction(18, 5)  # the short's 3.60 is kept
