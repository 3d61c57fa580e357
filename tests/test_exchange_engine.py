"""The embedded exchange's matching engine: priority, complementary matching, balances, order types."""

from __future__ import annotations

from fractions import Fraction

import pytest

from active_quoting.exchange.engine import ASK, BID, BUY, SELL, Engine, EngineError, FeeSchedule, Market, Order

SH = 1_000_000
A, B, C = "0xa", "0xb", "0xc"


def engine(fees=None):
    e = Engine()
    e.add_market(Market("M", "UP", "DOWN", fees=fees or FeeSchedule()))
    for acct in (A, B, C):
        e.credit(acct, collateral=1000 * SH)
    return e


_n = [0]


def order(acct, token, side, price, size, kind="GTC", post_only=False):
    _n[0] += 1
    return Order(f"o{_n[0]}", acct, "key-" + acct, "M", token, side, price, size * SH, kind, post_only)


def test_price_time_priority_and_maker_price():
    e = engine()
    first = order(A, "UP", SELL, 5200, 10)
    e.credit(A, token="UP", shares=100 * SH)
    e.credit(B, token="UP", shares=100 * SH)
    e.place(first, 0)
    second = order(B, "UP", SELL, 5200, 10)
    e.place(second, 0)
    better = order(B, "UP", SELL, 5100, 5)
    e.place(better, 0)
    r = e.place(order(C, "UP", BUY, 5300, 12), 1)
    (trade,) = r.trades
    e.deliver(trade)  # mined
    assert [(mf.order.id, mf.size, mf.price) for mf in trade.makers] == [
        (better.id, 5 * SH, 5100),
        (first.id, 7 * SH, 5200),
    ]
    assert e.accounts[C].tokens["UP"] == 12 * SH
    assert e.accounts[C].collateral == 1000 * SH - (5 * SH * 5100 + 7 * SH * 5200) // 10_000  # paid maker prices
    assert second.matched == 0 and first.remaining == 3 * SH


def test_both_tokens_are_one_book_and_mint():
    e = engine()
    e.place(order(A, "DOWN", BUY, 4800, 10), 0)  # = an Up ask at 0.52
    m = e.markets["M"]
    assert m.best(ASK) == 5200 and m.token_view("DOWN")[0] == [(4800, 10 * SH)]
    r = e.place(order(B, "UP", BUY, 5500, 10), 1)  # crosses: BUY/BUY mint
    assert r.trades[0].price == 5200
    e.deliver(r.trades[0])
    assert e.accounts[A].tokens["DOWN"] == 10 * SH and e.accounts[B].tokens["UP"] == 10 * SH
    assert e.accounts[A].collateral == 1000 * SH - 4_800_000 and e.accounts[B].collateral == 1000 * SH - 5_200_000


def test_merge_releases_collateral():
    e = engine()
    e.credit(A, token="DOWN", shares=10 * SH)
    e.credit(B, token="UP", shares=10 * SH)
    e.place(order(A, "DOWN", SELL, 5200, 10), 0)  # = an Up bid at 0.48
    e.deliver(e.place(order(B, "UP", SELL, 4500, 10), 1).trades[0])  # SELL/SELL: merge at 0.48 / 0.52
    assert e.accounts[A].collateral == 1000 * SH + 5_200_000 and e.accounts[B].collateral == 1000 * SH + 4_800_000
    assert e.accounts[A].tokens["DOWN"] == 0 and e.accounts[B].tokens["UP"] == 0


def test_post_only_rejected_on_cross_and_order_types():
    e = engine()
    e.place(order(A, "UP", BUY, 5000, 10), 0)
    e.credit(B, token="UP", shares=50 * SH)
    with pytest.raises(EngineError, match="crosses book"):
        e.place(order(B, "UP", SELL, 5000, 5, post_only=True), 1)
    r = e.place(order(B, "UP", SELL, 4900, 20, kind="FOK"), 1)
    assert r.order.status == "CANCELED" and "fully filled" in r.order.reason and not r.trades
    r = e.place(order(B, "UP", SELL, 4900, 20, kind="FAK"), 1)
    assert r.order.matched == 10 * SH and r.order.status == "CANCELED"
    assert e.accounts[B].tokens["UP"] == 40 * SH  # the unfilled 10 came back


def test_validation_and_balances():
    e = engine()
    with pytest.raises(EngineError, match="tick size"):
        e.place(order(A, "UP", BUY, 5050, 10), 0)
    with pytest.raises(EngineError, match="lower than the minimum"):
        e.place(order(A, "UP", BUY, 5000, 1), 0)
    with pytest.raises(EngineError, match="not enough balance"):
        e.place(order(A, "UP", SELL, 5000, 10), 0)
    with pytest.raises(EngineError, match="not enough balance"):
        e.place(order(A, "UP", BUY, 9900, 2000), 0)
    o = order(A, "UP", BUY, 5000, 100)
    e.place(o, 0)
    assert e.accounts[A].reserved == 50 * SH
    _, refusal, _ = e.cancel(o.id)
    assert refusal == "" and e.accounts[A].collateral == 1000 * SH and e.accounts[A].reserved == 0
    assert e.cancel(o.id)[1] == "already canceled or matched"


def test_fees_rebates_and_ghost_rollback():
    e = engine(FeeSchedule(Fraction(7, 100), 1, Fraction(1, 5)))
    e.place(order(A, "DOWN", BUY, 5000, 100), 0)
    before = {k: (a.collateral, dict(a.tokens)) for k, a in e.accounts.items()}
    r = e.place(order(B, "UP", BUY, 5000, 100), 1)
    trade = r.trades[0]
    assert trade.fee == int(100 * Fraction(7, 100) * Fraction(1, 4) * SH)  # C x rate x p(1-p)
    assert e.accounts[A].rebates["M"] == Fraction(1, 5) * 100 * Fraction(7, 100) * Fraction(1, 4)
    e.fail_trade(trade)
    assert trade.status == "FAILED"
    after = {k: (a.collateral + a.reserved, {t: v for t, v in a.tokens.items() if v}) for k, a in e.accounts.items()}
    assert after[A][1] == {} and after[B][1] == {}  # the minted tokens are gone again
    assert after[A][0] == after[B][0] == 1000 * SH  # collateral back, the fee refunded
    assert before[A][0] == 950 * SH  # (A's 50 had been reserved by its resting order)


def test_resolution_pays_winners():
    e = engine()
    e.place(order(A, "DOWN", BUY, 4000, 10), 0)
    e.deliver(e.place(order(B, "UP", BUY, 6000, 10), 0).trades[0])
    e.resolve("M", "UP")
    assert e.accounts[B].collateral == 1000 * SH - 6_000_000 + 10 * SH and "UP" not in e.accounts[B].tokens
    with pytest.raises(EngineError, match="not accepting"):
        e.place(order(C, "UP", BUY, 5000, 10), 1)


def test_no_self_trade():
    e = engine()
    e.credit(A, token="UP", shares=10 * SH)
    resting = order(A, "UP", SELL, 5000, 10)
    e.place(resting, 0)
    r = e.place(order(A, "UP", BUY, 5000, 10), 1)
    assert not r.trades and resting.status == "CANCELED" and e.markets["M"].best(BID) == 5000


def test_gtd_security_threshold_and_expiry():
    e = engine()
    now_ms = 1_780_000_000_000
    soon = order(A, "UP", BUY, 5000, 10, kind="GTD")
    soon.expiration = now_ms // 1000 + 30  # inside the 1-minute security threshold
    with pytest.raises(EngineError, match="at least now \\+ 1 minute"):
        e.place(soon, now_ms)
    ok = order(A, "UP", BUY, 5000, 10, kind="GTD")
    ok.expiration = now_ms // 1000 + 90
    e.place(ok, now_ms)
    assert e.expire(now_ms + 60_000).canceled == []
    r = e.expire(now_ms + 90_000)
    assert r.canceled == [ok] and ok.reason == "expired" and e.accounts[A].reserved == 0


def test_book_hashes_are_40_hex_and_never_repeat_across_messages_or_markets():
    a, b = Market("0xaaa", "UP", "DOWN"), Market("0xbbb", "UP2", "DOWN2")
    seen = [m.next_hash() for _ in range(1000) for m in (a, b)]
    assert len(set(seen)) == len(seen)
    assert all(len(h) == 40 and int(h, 16) >= 0 for h in seen)
    assert Market("0xaaa", "UP", "DOWN").next_hash() == seen[0]  # deterministic for a market
