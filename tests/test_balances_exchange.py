"""The embedded exchange enforces allowances as the venue does: a BUY needs the collateral
allowance to the market's exchange to cover every resting BUY plus itself, a SELL needs the
exchange approved as CTF operator; refusals carry the venue's text, and ``/balance-allowance``
reports the same allowances the orders are checked against."""

from __future__ import annotations

import pytest

from active_quoting.venue.orders import build_order
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import CONTRACTS, OrderSigner
from exchange_peer import MAKER_KEY, SH, TAKER_KEY, UP, derive

EXCHANGE = CONTRACTS[137].exchange_v2  # the spender of the fixture's (V2) market
ALLOWANCE = "not enough balance / allowance: the allowance is not enough"
BUY, SELL = 0, 1


async def clients(ex):
    maker, taker = OrderSigner(MAKER_KEY), OrderSigner(TAKER_KEY)
    rest = RestClient(ex.clob_url, maker, await derive(ex, MAKER_KEY), order_lane=False)
    trest = RestClient(ex.clob_url, taker, await derive(ex, TAKER_KEY), order_lane=False)
    return maker, taker, rest, trest


async def report(rest: RestClient, token: str = "", path: str = "/balance-allowance") -> dict:
    params = {"asset_type": "CONDITIONAL" if token else "COLLATERAL", "signature_type": "0"}
    if token:
        params["token_id"] = token
    return await rest._request("GET", path, params=params, auth=True)


@pytest.mark.asyncio
async def test_a_revoked_exchange_refuses_orders_with_the_venues_message(ex):
    maker, taker, rest, trest = await clients(ex)
    try:
        ex.engine.credit(maker.address, token=UP, shares=10 * SH)
        ex.revoked_allowances[maker.address.lower()] = {EXCHANGE.lower()}
        (bid,) = await rest.post_orders([build_order(maker, UP, BUY, 4800, 10 * SH, 100)])
        (ask,) = await rest.post_orders([build_order(maker, UP, SELL, 5500, 10 * SH, 100)])
        for refused in (bid, ask):
            assert not refused.accepted and refused.error_kind == "balance"
            assert refused.error == f"{ALLOWANCE} -> spender: {EXCHANGE}, allowance: 0"
        assert not ex.engine.live_orders(maker.address)  # nothing rests, nothing reserved
        assert ex.engine.accounts[maker.address].reserved == 0
        assert (await report(rest))["allowances"][EXCHANGE] == "0"
        assert (await report(rest, UP))["allowances"][EXCHANGE] == "0"
        (other,) = await trest.post_orders([build_order(taker, UP, BUY, 4800, 10 * SH, 100)])
        assert other.accepted  # another account's approvals are its own
    finally:
        await rest.close()
        await trest.close()


@pytest.mark.asyncio
async def test_a_collateral_allowance_covers_resting_buys_plus_the_new_one(ex):
    maker, _, rest, trest = await clients(ex)
    try:
        ex.set_allowance(maker.address, EXCHANGE, 5 * SH)  # approve(exchange, 5 pUSD)
        out = await report(rest)
        assert out["allowances"][EXCHANGE] == str(5 * SH)
        assert await report(rest, path="/balance-allowance/update") == out
        (first,) = await rest.post_orders([build_order(maker, UP, BUY, 4800, 10 * SH, 100)])  # 4.80
        assert first.accepted
        (second,) = await rest.post_orders([build_order(maker, UP, BUY, 1000, 5 * SH, 100)])  # +0.50 > 5
        assert not second.accepted and second.error == f"{ALLOWANCE} -> spender: {EXCHANGE}, allowance: {5 * SH}"
        (third,) = await rest.post_orders([build_order(maker, UP, BUY, 400, 5 * SH, 100)])  # +0.20 = 5.00
        assert third.accepted
        ex.set_allowance(maker.address, EXCHANGE, 0)  # a zero allowance refuses any BUY
        (zero,) = await rest.post_orders([build_order(maker, UP, BUY, 100, 5 * SH, 100)])
        assert not zero.accepted and zero.error_kind == "balance" and zero.error.endswith("allowance: 0")
        ex.set_allowance(maker.address, EXCHANGE, None)  # approve(max): unlimited again
        (after,) = await rest.post_orders([build_order(maker, UP, BUY, 100, 5 * SH, 100)])
        assert after.accepted
    finally:
        await rest.close()
        await trest.close()


@pytest.mark.asyncio
async def test_a_sell_needs_the_ctf_approval_of_the_exchange(ex):
    maker, _, rest, trest = await clients(ex)
    try:
        ex.engine.credit(maker.address, token=UP, shares=10 * SH)
        ex.set_approval(maker.address, EXCHANGE, False)
        out = await report(rest, UP)
        assert out["balance"] == str(10 * SH) and out["allowances"][EXCHANGE] == "0"
        assert (await report(rest))["allowances"][EXCHANGE] == str(2**256 - 1)  # collateral untouched
        (ask,) = await rest.post_orders([build_order(maker, UP, SELL, 5500, 10 * SH, 100)])
        assert not ask.accepted and ask.error == f"{ALLOWANCE} -> spender: {EXCHANGE}, allowance: 0"
        (bid,) = await rest.post_orders([build_order(maker, UP, BUY, 4500, 10 * SH, 100)])
        assert bid.accepted  # collateral is still approved
        ex.set_approval(maker.address, EXCHANGE, True)
        (ask,) = await rest.post_orders([build_order(maker, UP, SELL, 5500, 10 * SH, 100)])
        assert ask.accepted
    finally:
        await rest.close()
        await trest.close()
