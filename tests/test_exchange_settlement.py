"""Settlement as on chain: the embedded exchange delivers bought tokens and sale collateral when
a trade is mined, so selling shares that are only MATCHED is refused with the venue's message,
and the inventory's sellable() follows the same MATCHED -> MINED steps."""

from __future__ import annotations

import pytest

from active_quoting.exchange.engine import BUY, SELL, Engine, EngineError, Market, Order
from active_quoting.strategy.inventory import InventoryManager
from active_quoting.venue.orders import build_order
from exchange_peer import CID, DOWN, SH, UP
from loopback_ws import wait_for
from test_exchange import maker_and_taker

A, B = "0xa", "0xb"
BALANCE = "not enough balance / allowance: the balance is not enough"
_n = [0]


def order(acct: str, token: str, side: str, price: int, size: int) -> Order:
    _n[0] += 1
    return Order(f"s{_n[0]}", acct, "key-" + acct, "M", token, side, price, size * SH)


def engine() -> Engine:
    e = Engine()
    e.add_market(Market("M", "UP", "DOWN"))
    for acct in (A, B):
        e.credit(acct, collateral=1000 * SH)
    return e


def test_tokens_and_sale_collateral_arrive_when_mined():
    e = engine()
    e.place(order(A, "UP", BUY, 4000, 10), 0)
    (mint,) = e.place(order(B, "DOWN", BUY, 6000, 10), 1).trades  # BUY/BUY: a pair is minted
    assert e.accounts[A].tokens.get("UP", 0) == 0 and e.accounts[B].tokens.get("DOWN", 0) == 0
    assert e.accounts[A].collateral == 996 * SH  # paid at the match
    with pytest.raises(EngineError) as refused:
        e.place(order(A, "UP", SELL, 4500, 10), 2)  # sells tokens not delivered yet
    assert refused.value.message == BALANCE and refused.value.code == "INVALID_ORDER_NOT_ENOUGH_BALANCE"
    e.deliver(mint)
    e.deliver(mint)  # idempotent (MINED, then CONFIRMED)
    assert e.accounts[A].tokens["UP"] == 10 * SH and e.accounts[B].tokens["DOWN"] == 10 * SH
    ask = order(A, "UP", SELL, 4500, 10)
    e.place(ask, 3)
    assert e.accounts[A].reserved_tokens["UP"] == 10 * SH  # the resting SELL keeps its reservation
    (sale,) = e.place(order(B, "UP", BUY, 4500, 10), 4).trades
    assert e.accounts[A].collateral == 996 * SH and e.accounts[A].reserved_tokens["UP"] == 0  # not yet paid
    e.deliver(sale)
    assert e.accounts[A].collateral == 1000 * SH + 500_000 and e.accounts[B].tokens["UP"] == 10 * SH


def test_a_failed_trade_gives_back_what_it_took_and_delivers_nothing():
    e = engine()
    e.credit(A, token="UP", shares=10 * SH)
    e.place(order(A, "UP", SELL, 5000, 10), 0)
    (trade,) = e.place(order(B, "UP", BUY, 5000, 10), 1).trades
    assert e.accounts[A].tokens["UP"] == 0 and e.accounts[B].collateral == 995 * SH
    e.fail_trade(trade)
    e.deliver(trade)  # a late MINED for a failed trade changes nothing
    assert e.accounts[A].tokens["UP"] == 10 * SH and e.accounts[A].collateral == 1000 * SH
    assert e.accounts[B].collateral == 1000 * SH and e.accounts[B].tokens.get("UP", 0) == 0


def test_a_trade_mined_after_resolution_is_redeemed():
    e = engine()
    e.place(order(A, "UP", BUY, 4000, 10), 0)
    (mint,) = e.place(order(B, "DOWN", BUY, 6000, 10), 1).trades
    e.resolve("M", "UP")
    e.deliver(mint)
    assert e.accounts[A].collateral == 1006 * SH and e.accounts[B].collateral == 994 * SH  # 1 per Up share
    assert not e.accounts[A].tokens.get("UP") and not e.accounts[B].tokens.get("DOWN")


@pytest.mark.asyncio
async def test_selling_matched_shares_is_refused_until_mined(ex):
    ex.cfg.settle_delays_ms = (800, 1600)  # MATCHED long enough to try the sale
    inv = InventoryManager()
    inv.register_market(CID, UP, DOWN)
    async with maker_and_taker(ex, [UP, DOWN], [CID]) as (maker, taker, rest, trest, rec, md, market, _):
        await wait_for(lambda: market.is_readable(UP) and ex.user_sockets)
        (bid,) = await rest.post_orders([build_order(maker, UP, 0, 4800, 20 * SH, 100)])  # BUY Up 20 @ 0.48
        assert bid.accepted
        (t,) = await trest.post_orders([build_order(taker, DOWN, 0, 5300, 8 * SH, 100)], post_only=False)
        assert t.status == "matched"
        await wait_for(lambda: [f.fill.status for f in rec.fills] == ["MATCHED"])
        (early,) = await rest.post_orders([build_order(maker, UP, 1, 5500, 8 * SH, 100)])  # SELL the 8 Up now
        assert not early.accepted and early.error_kind == "balance" and BALANCE in early.error
        assert [f.fill.status for f in rec.fills] == ["MATCHED"]  # refused before MINED, not after
        inv.apply_fill(rec.fills[0].fill)
        assert inv.held(CID) == (8 * SH, 0) and inv.sellable(CID) == (0, 0)
        await wait_for(lambda: [f.fill.status for f in rec.fills][:2] == ["MATCHED", "MINED"])
        inv.apply_fill(rec.fills[1].fill)
        assert inv.sellable(CID) == (8 * SH, 0)
        assert ex.engine.accounts[maker.address].tokens[UP] == 8 * SH
        (late,) = await rest.post_orders([build_order(maker, UP, 1, 5500, 8 * SH, 100)])
        assert late.accepted and late.status == "live", late.error
