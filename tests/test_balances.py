"""Balances against the embedded exchange over real sockets: read from /balance-allowance, kept
current from our fills (MATCHED pays, MINED delivers, FAILED reverts) exactly as the venue moves
them, free amounts after what our resting orders reserve (the venue refuses a BUY beyond them),
allowances that cap them, and reconciliation against the inventory."""

from __future__ import annotations

import pytest

from active_quoting.clock import ManualClock
from active_quoting.model import BUY, SELL, Fill, OrderIntent, PendingOrder
from active_quoting.strategy.balances import COLLATERAL, Asset, Balances, Difference, QuoteCaps
from active_quoting.strategy.inventory import InventoryManager
from active_quoting.venue.orders import build_order
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import CONTRACTS
from exchange_peer import CID, DOWN, SH, UP
from loopback_ws import wait_for
from test_exchange import maker_and_taker

EXCHANGE = CONTRACTS[137].exchange_v2
PAPER = 10_000 * SH  # the exchange's paper balance for a new account, micro-USDC
BALANCE = "not enough balance / allowance: the balance is not enough"


def balances_for(rest: RestClient, clock: ManualClock | None = None) -> Balances:
    published: list[tuple[str, int]] = []
    b = Balances(
        rest, clock or ManualClock(), publish=lambda asset, bal, allow, market="": published.append((asset, bal))
    )
    b.register_market(CID, UP, DOWN, spender=EXCHANGE, label="btc-updown-15m-1780000000")
    b.published = published  # type: ignore[attr-defined]
    return b


@pytest.mark.asyncio
async def test_balances_are_read_and_free_collateral_follows_resting_buys(ex):
    async with maker_and_taker(ex, [UP, DOWN], [CID]) as (maker, taker, rest, trest, rec, md, market, _):
        b = balances_for(rest)
        assert b.free_collateral({}) == 0 and b.quote_caps(CID, {}) == QuoteCaps(0, 0, 0)  # nothing read yet
        assert await b.refresh() == 3 and b.reads == 3 and b.read_errors == 0
        assert b.balance() == PAPER and b.balance(UP) == 0 and b.allowances()[EXCHANGE.lower()] == 2**256 - 1
        assert sorted(b.published) == sorted([(COLLATERAL, PAPER), (UP, 0), (DOWN, 0)])  # to the metrics
        # A resting BUY of 15,000 Up at 0.50 reserves 7,500 pUSD: the venue's balance does not move
        # (orders move nothing on chain), what is free does.
        (big,) = await rest.post_orders([build_order(maker, UP, 0, 5000, 15_000 * SH, 100)])
        assert big.accepted and big.status == "live"
        pending = {CID: [PendingOrder(UP, BUY, 5000, 15_000 * SH)]}
        await b.refresh()
        assert b.balance() == PAPER
        assert b.free_collateral(pending) == 2_500 * SH
        assert b.quote_caps(CID, pending) == QuoteCaps(2_500 * SH, 0, 0)
        # The venue agrees to the micro-USDC: a BUY of one lot more than is free is refused, one of
        # exactly what is free is accepted (BUY Down at 0.40: 6,250 shares are 2,500 pUSD).
        (over,) = await rest.post_orders([build_order(maker, DOWN, 0, 4000, 6_250 * SH + 10_000, 100)])
        assert not over.accepted and over.error_kind == "balance" and over.error == BALANCE
        (exact,) = await rest.post_orders([build_order(maker, DOWN, 0, 4000, 6_250 * SH, 100)])
        assert exact.accepted, exact.error
        pending[CID].append(PendingOrder(DOWN, BUY, 4000, 6_250 * SH))
        assert b.free_collateral(pending) == 0
        # Cancelled: the reservations are gone, the collateral is free again.
        cancel = await rest.cancel_orders([big.order_hash, exact.order_hash])
        assert sorted(cancel.canceled) == sorted([big.order_hash, exact.order_hash])
        await b.refresh()
        assert b.balance() == PAPER and b.free_collateral({}) == PAPER


@pytest.mark.asyncio
async def test_a_zero_allowance_leaves_nothing_to_quote_with(ex):
    async with maker_and_taker(ex, [UP, DOWN], [CID]) as (maker, taker, rest, trest, rec, md, market, _):
        ex.engine.credit(maker.address, token=UP, shares=10 * SH)
        ex.set_allowance(maker.address, EXCHANGE, 0)
        ex.set_approval(maker.address, EXCHANGE, False)
        b = balances_for(rest)
        await b.refresh()
        assert b.balance() == PAPER and b.balance(UP) == 10 * SH
        assert b.free_collateral({}) == PAPER  # no spender named: the balance alone
        assert b.quote_caps(CID, {}) == QuoteCaps(0, 0, 0)  # the market's exchange may take nothing
        (bid,) = await rest.post_orders([build_order(maker, UP, 0, 4800, 10 * SH, 100)])
        (ask,) = await rest.post_orders([build_order(maker, UP, 1, 5500, 10 * SH, 100)])
        assert not bid.accepted and not ask.accepted  # the exchange refuses what the caps forbid
        assert "the allowance is not enough" in bid.error and "the allowance is not enough" in ask.error
        ex.set_allowance(maker.address, EXCHANGE, 3 * SH)
        ex.set_approval(maker.address, EXCHANGE, True)
        await b.refresh()
        assert b.quote_caps(CID, {}) == QuoteCaps(3 * SH, 10 * SH, 0)


@pytest.mark.asyncio
async def test_fills_move_the_balances_as_the_venue_does_and_differences_find_a_mismatch(ex):
    async with maker_and_taker(ex, [UP, DOWN], [CID]) as (maker, taker, rest, trest, rec, md, market, _):
        ex.cfg.settle_delays_ms = (600, 1200)  # MATCHED long enough to look at it
        await wait_for(lambda: market.is_readable(UP) and ex.user_sockets)
        inv = InventoryManager()
        inv.register_market(CID, UP, DOWN)
        b = balances_for(rest)
        await b.refresh()
        (bid,) = await rest.post_orders([build_order(maker, UP, 0, 4800, 20 * SH, 100)])  # BUY Up 20 @ 0.48
        (t,) = await trest.post_orders([build_order(taker, DOWN, 0, 5300, 8 * SH, 100)], post_only=False)
        assert t.status == "matched"
        await wait_for(lambda: len(rec.fills) >= 1)
        matched = rec.fills[0].fill
        assert matched.status == "MATCHED" and b.apply_fill(matched) and not b.apply_fill(matched)  # repeat: no-op
        inv.apply_fill(matched)
        assert b.balance() == PAPER - 3_840_000 and b.balance(UP) == 0  # paid 8 x 0.48, nothing delivered
        local = (b.balance(), b.balance(UP))
        await b.refresh()
        assert (b.balance(), b.balance(UP)) == local  # the venue says the same
        assert b.differences(inv) == []
        await wait_for(lambda: [f.fill.status for f in rec.fills][:2] == ["MATCHED", "MINED"])
        mined = rec.fills[1].fill
        assert b.apply_fill(mined)
        inv.apply_fill(mined)
        assert b.balance(UP) == 8 * SH
        await b.refresh()
        assert (b.balance(), b.balance(UP)) == (PAPER - 3_840_000, 8 * SH)
        assert b.differences(inv) == []
        # The resting remainder (12 @ 0.48) reserves 5.76 of it; a SELL of 5 Up would offer 5.
        pending = {CID: [PendingOrder(UP, BUY, 4800, 12 * SH), PendingOrder(UP, SELL, 5500, 5 * SH)]}
        assert b.quote_caps(CID, pending) == QuoteCaps(PAPER - 3_840_000 - 5_760_000, 3 * SH, 0)
        # Shares appear at the venue that no fill of ours explains: reported, once read.
        ex.engine.credit(maker.address, token=UP, shares=7 * SH)
        assert b.differences(inv) == []
        await b.refresh()
        assert b.differences(inv) == [Difference(CID, UP, 8 * SH, 15 * SH)]
        assert b.differences(inv)[0].diff == 7 * SH
        b.tolerance = 7 * SH
        assert b.differences(inv) == []  # within tolerance
        await rest.cancel_orders([bid.order_hash])


@pytest.mark.asyncio
async def test_a_failed_settlement_gives_back_what_the_fill_took(ex):
    async with maker_and_taker(ex, [UP, DOWN], [CID]) as (maker, taker, rest, trest, rec, md, market, _):
        ex.cfg.ghost_share = 1.0  # every trade goes RETRYING -> FAILED
        await wait_for(lambda: market.is_readable(UP) and ex.user_sockets)
        b = balances_for(rest)
        await b.refresh()
        await rest.post_orders([build_order(maker, UP, 0, 4800, 20 * SH, 100)])
        await trest.post_orders([build_order(taker, DOWN, 0, 5300, 8 * SH, 100)], post_only=False)
        await wait_for(lambda: "FAILED" in [f.fill.status for f in rec.fills], timeout=5)
        statuses = [f.fill.status for f in rec.fills]
        assert statuses[0] == "MATCHED" and "MINED" not in statuses  # the fault took effect
        for f in rec.fills:
            b.apply_fill(f.fill)
            if f.fill.status == "MATCHED":
                assert b.balance() == PAPER - 3_840_000
        assert b.balance() == PAPER and b.balance(UP) == 0
        await b.refresh()
        assert b.balance() == PAPER and b.balance(UP) == 0  # the venue gave it back too


@pytest.mark.asyncio
async def test_a_pass_budget_does_not_promise_the_same_collateral_twice(ex):
    async with maker_and_taker(ex, [UP, DOWN], [CID]) as (maker, taker, rest, trest, rec, md, market, _):
        ex.engine.credit(maker.address, token=DOWN, shares=10 * SH)
        b = balances_for(rest)
        await b.refresh()
        budget = b.budget({})
        assert budget.caps(CID) == QuoteCaps(PAPER, 0, 10 * SH)
        budget.spend([
            OrderIntent(CID, UP, BUY, 5000, 4_000 * SH, "bid", 5000),
            OrderIntent(CID, DOWN, SELL, 4000, 6 * SH, "bid", 6000),
        ])  # fmt: skip
        assert budget.caps(CID) == QuoteCaps(PAPER - 2_000 * SH, 0, 4 * SH)


@pytest.mark.asyncio
async def test_a_read_racing_a_fill_never_overstates_the_balance(ex):
    """A payment applied while a read is in flight is taken from the read's answer again (the
    answer may predate it); the next read is exact."""
    async with maker_and_taker(ex, [UP, DOWN], [CID]) as (maker, taker, rest, trest, rec, md, market, _):
        await wait_for(lambda: market.is_readable(UP) and ex.user_sockets)
        await rest.post_orders([build_order(maker, UP, 0, 4800, 20 * SH, 100)])
        await trest.post_orders([build_order(taker, DOWN, 0, 5300, 8 * SH, 100)], post_only=False)
        await wait_for(lambda: len(rec.fills) >= 1)
        b = balances_for(rest)

        class Racing:
            """The real client; the fill arrives while the collateral read is on the wire."""

            async def balance_allowance(self, token_id: str = "", signature_type: int | None = None):
                if not token_id:
                    b.apply_fill(rec.fills[0].fill)
                return await rest.balance_allowance(token_id, signature_type)

        b.source = Racing()
        await b.refresh([])
        assert b.balance() == PAPER - 2 * 3_840_000  # the venue's answer (paid) minus the payment again
        b.source = rest
        await b.refresh([])
        assert b.balance() == PAPER - 3_840_000


def test_a_pass_budget_gives_each_market_what_its_own_caps_say_across_spenders() -> None:
    """CapsBudget sums the free collateral once per spender for the pass's pending orders: each
    market's caps equal ``quote_caps`` computed alone (two markets on one exchange, one on
    another with a smaller allowance), and staged BUYs draw the shared collateral down."""
    other = CONTRACTS[137].exchange_v3
    b = Balances(None, ManualClock())  # type: ignore[arg-type]  # nothing is read: balances set below
    markets = {"0xa": ("1", "2", EXCHANGE), "0xb": ("3", "4", EXCHANGE), "0xc": ("5", "6", other)}
    for cid, (up, down, spender) in markets.items():
        b.register_market(cid, up, down, spender=spender)
    b.assets[COLLATERAL] = Asset(PAPER, {EXCHANGE.lower(): PAPER, other.lower(): 1_000 * SH}, read_at=1.0)
    for token in "12":
        b.assets[token] = Asset(50 * SH, {EXCHANGE.lower(): 1}, read_at=1.0)
    pending = {"0xa": [PendingOrder("1", BUY, 5000, 400 * SH), PendingOrder("2", SELL, 5000, 20 * SH)],
               "0xc": [PendingOrder("5", BUY, 2500, 1_000 * SH)]}  # fmt: skip
    budget = b.budget(pending)
    for cid in markets:
        assert budget.caps(cid) == b.quote_caps(cid, pending), cid
    # every market's pending BUYs reserve collateral: 200 + 250 pUSD
    assert budget.caps("0xc").buy_usdc == 1_000 * SH - 450 * SH  # the other exchange's allowance caps it
    assert budget.caps("0xa") == QuoteCaps(PAPER - 450 * SH, 50 * SH, 30 * SH)
    budget.spend([OrderIntent("0xb", "3", BUY, 5000, 100 * SH, "bid", 5000)])
    assert budget.caps("0xa").buy_usdc == PAPER - 500 * SH and budget.caps("0xc").buy_usdc == 500 * SH


@pytest.mark.asyncio
async def test_many_markets_are_read_within_the_venue_limit_what_matters_first(ex):
    """Twelve markets (24 tokens) and four reads a refresh: the collateral every time, the tokens
    never read first, in turn; then a token holding shares at every refresh and the others in
    turn, least recently read first; never more than four reads a refresh."""
    from active_quoting.venue.signing import OrderSigner
    from exchange_peer import MAKER_KEY, derive

    maker = OrderSigner(MAKER_KEY)
    rest = RestClient(ex.clob_url, maker, await derive(ex, MAKER_KEY))
    clock = ManualClock(1_000.0)
    try:
        b = Balances(rest, clock, max_reads=4)
        tokens = [f"{9_000 + i}" for i in range(24)]
        for i in range(12):
            b.register_market(f"0x{i:02x}", tokens[2 * i], tokens[2 * i + 1], spender=EXCHANGE)
        held = tokens[5]
        ex.engine.credit(maker.address, token=held, shares=7 * SH)
        seen: list[set[str]] = []
        for _ in range(12):
            before = {t: b.assets[t].read_at for t in tokens}
            clock.advance(10)
            assert await b.refresh() == 4  # the collateral and three tokens
            seen.append({t for t in tokens if b.assets[t].read_at != before[t]})
        assert seen[:8] == [set(tokens[3 * i : 3 * i + 3]) for i in range(8)]  # every token once, in turn
        assert b.balance(held) == 7 * SH
        assert all(held in s for s in seen[8:])  # holding shares: read at every refresh
        rotated = [t for s in seen[8:] for t in s if t != held]
        assert sorted(rotated, key=tokens.index) == [t for t in tokens[:9] if t != held]  # the oldest reads
        assert b.reads_deferred == 12 * (24 - 3)
        # a fill of ours in the last market: its tokens are read at every refresh from now on
        assert b.apply_fill(Fill("t1", "o1", "0x0b", tokens[22], BUY, 5000, 2 * SH, "MATCHED", 0))
        for _ in range(2):
            before = {t: b.assets[t].read_at for t in tokens}
            clock.advance(10)
            await b.refresh()
            assert {t for t in tokens if b.assets[t].read_at != before[t]} == {held, tokens[22], tokens[23]}
        with pytest.raises(ValueError, match="max_reads"):
            Balances(rest, clock, max_reads=1)
    finally:
        await rest.close()
