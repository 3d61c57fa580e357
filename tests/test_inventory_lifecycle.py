"""Inventory over a day of windows: settled (sellable) shares, pruning a resolved market, and
limits whose cost follows the markets that changed, not every market ever registered."""

from __future__ import annotations

from fractions import Fraction

import pytest

from active_quoting.model import BUY, CONFIRMED, FAILED, MATCHED, MINED, RETRYING, SELL, Fill
from active_quoting.strategy.inventory import InventoryManager

SH = 1_000_000


def fill(trade, side, size, status, token="UP", market="M", price=5000):
    return Fill(trade, "o-" + trade, market, token, side, price, size, status)


@pytest.fixture
def inv():
    i = InventoryManager()
    i.register_market("M", "UP", "DOWN")
    return i


def test_sellable_follows_settlement(inv):
    inv.apply_fill(fill("b1", BUY, 20 * SH, MATCHED))
    assert inv.held("M") == (20 * SH, 0) and inv.sellable("M") == (0, 0)  # matched, not delivered
    inv.apply_fill(fill("b1", BUY, 20 * SH, MINED))
    assert inv.sellable("M") == (20 * SH, 0)
    inv.apply_fill(fill("d1", BUY, 10 * SH, MATCHED, token="DOWN"))
    inv.apply_fill(fill("s1", SELL, 5 * SH, MATCHED))  # the venue took these from the balance at once
    assert inv.sellable("M") == (15 * SH, 0)
    inv.apply_fill(fill("d1", BUY, 10 * SH, CONFIRMED, token="DOWN"))
    inv.apply_fill(fill("s1", SELL, 5 * SH, RETRYING))
    assert inv.sellable("M") == (15 * SH, 10 * SH)
    inv.apply_fill(fill("s1", SELL, 5 * SH, FAILED))  # the sale failed: the shares are ours again
    assert inv.sellable("M") == (20 * SH, 10 * SH)
    inv.apply_fill(fill("b2", BUY, 7 * SH, MATCHED))
    inv.apply_fill(fill("b2", BUY, 7 * SH, RETRYING))
    assert inv.sellable("M") == (20 * SH, 10 * SH) and inv.held("M") == (27 * SH, 10 * SH)
    inv.resolve("M", "UP")
    assert inv.sellable("M") == (0, 0)  # redeemed, nothing to sell


def test_forget_drops_a_resolved_market_and_keeps_its_pnl(inv):
    inv.register_market("N", "U2", "D2")
    inv.apply_fill(fill("a", BUY, 10 * SH, MATCHED, price=4000))
    inv.apply_fill(fill("b", BUY, 10 * SH, MATCHED, token="U2", market="N"))
    assert inv.total_liability() == 9
    assert not inv.forget("M")  # unresolved and holding: kept, its risk would vanish from the limits
    assert inv.resolve("M", "UP") == 6
    assert inv.forget("M") and inv.markets() == ["N"]
    assert inv.total_liability() == 5 and inv.realized_total() == 6
    assert inv.apply_fill(fill("a", BUY, 10 * SH, CONFIRMED, price=4000)) == "late" and inv.late == 1
    assert not inv._fills or all(k[0] != "a" for k in inv._fills)  # its fills are gone too
    inv.apply_fill(fill("c", SELL, 10 * SH, MATCHED, token="U2", market="N", price=6000))
    assert inv.realized_total() == 7  # 6 kept from M + 1 realized in N
    assert inv.forget("N", force=False) and inv.markets() == [] and inv.total_liability() == 0


class Counting(InventoryManager):
    """Counts the per-market liability computations the limits ask for."""

    computed = 0

    def _liability_of(self, m, pending):  # type: ignore[no-untyped-def]
        self.computed += 1
        return super()._liability_of(m, pending)


def test_limits_cost_follows_changed_markets_not_all_markets():
    inv = Counting()
    for i in range(500):
        inv.register_market(f"M{i}", f"U{i}", f"D{i}")
        inv.apply_fill(fill(f"t{i}", BUY, 10 * SH, MATCHED, token=f"U{i}", market=f"M{i}"))
    assert inv.total_liability() == 500 * 5
    inv.computed = 0
    pending = {"M7": [("U7", BUY, 5000, 2 * SH)]}
    inv.rooms("M7", pending)
    inv.rooms("M8")
    assert inv.computed <= 4  # the market asked about and its pending orders, never all 500
    inv.apply_fill(fill("x", BUY, 10 * SH, MATCHED, token="D9", market="M9", price=4000))
    assert inv.total_liability() == 499 * 5 + Fraction(0) and inv.computed <= 5
    for i in range(10, 500):
        inv.resolve(f"M{i}", f"D{i}")
        inv.forget(f"M{i}")
    assert inv.total_liability() == 9 * 5 and len(inv.markets()) == 10
