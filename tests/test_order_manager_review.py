"""Holes a review found in the order manager's bookkeeping, each against the embedded exchange:
a late order event cannot bring a confirmed cancel back to life; a listing taken before a
cancel-all answered cannot revive what it cancelled; a SELL the venue refuses for balance (its
balance lags the chain) is not a breaker error and holds that token's SELLs off for a while."""

from __future__ import annotations

import pytest

from active_quoting import core
from active_quoting.model import BUY, SELL
from active_quoting.strategy.quoting import MarketDecision, SideDecision
from active_quoting.venue.user_codec import LIVE, OrderUpdate
from exchange_peer import CID, DOWN, SH, UP
from test_order_manager_intents import KEEP, _decision, _intent, _manager


@pytest.mark.asyncio
async def test_a_late_order_event_does_not_revive_a_confirmed_cancel(ex):
    async with _manager(ex) as (om, _clock, me):
        om.stage(*_decision(_intent(UP, BUY, 4000)), 0.0)
        await om.flush()
        (t,) = om.live()
        await om.cancel_all()
        assert t.status == "CANCELED" and ex.engine.live_orders(account=me) == []
        late = OrderUpdate(t.order_id, "UPDATE", LIVE, "", CID, UP, BUY, 4000, t.size, 0, 0)
        om.on_order(late)
        assert t.status == "CANCELED" and om.live() == [] and om.own_levels(CID) == ({}, {})
        assert om.counts["late_order_events"] == 1


@pytest.mark.asyncio
async def test_a_listing_older_than_a_cancel_all_answer_does_not_revive_it(ex):
    async with _manager(ex) as (om, _clock, _me):
        om.stage(*_decision(_intent(UP, BUY, 4000)), 0.0)
        await om.flush()
        (t,) = om.live()
        listing = om.rest.open_orders

        async def listing_then_cancel(*args, **kwargs):
            held = await listing(*args, **kwargs)  # the venue lists the order ...
            await om.cancel_all()  # ... and the cancel-all's answer arrives before the listing's
            return held

        om.rest.open_orders = listing_then_cancel  # type: ignore[method-assign]
        await om.reconcile()
        assert t.status == "CANCELED" and om.counts["revived"] == 0 and om.counts["cancel_refused"] == 0


@pytest.mark.asyncio
async def test_a_sell_refused_for_balance_is_held_off_not_an_error(ex):
    errors: list[str] = []
    async with _manager(ex, on_error=errors.append) as (om, clock, _me):
        om.stage(*_decision(_intent(UP, SELL, 6000)), 0.0)  # no Up delivered yet: the venue refuses
        await om.flush()
        assert om.counts["sell_balance_refusals"] == 1 and errors == []
        assert not om.may_sell(UP) and om.may_sell(DOWN)
        clock.advance(om.sell_hold_s)
        assert om.may_sell(UP)


@pytest.mark.asyncio
async def test_each_order_is_signed_for_its_markets_version(ex):
    """One bot, two generations of market: a Protocol-V2 market (Gamma version "v2") takes
    ExchangeV3 orders, the other V2 orders, in the same batch; a market whose version this
    program cannot sign is a counted refusal for its order alone."""
    from active_quoting.exchange.engine import FeeSchedule, Market
    from active_quoting.execution.order_manager import MarketRef
    from active_quoting.model import OrderIntent

    v3 = Market("0x" + "cd" * 32, "2001", "2002", fees=FeeSchedule(), order_version=3)
    ex.add_market(v3)
    odd = Market("0x" + "ef" * 32, "3001", "3002", fees=FeeSchedule())
    ex.add_market(odd)
    async with _manager(ex) as (om, _clock, me):
        om.add_market(MarketRef(v3.condition_id, v3.up, v3.down, 100, "v2"))
        om.add_market(MarketRef(odd.condition_id, odd.up, odd.down, 100, "v7"))
        om.stage(*_decision(_intent(UP, BUY, 4000)), 0.0)
        for m in (v3, odd):
            intent = OrderIntent(m.condition_id, m.up, BUY, 4000, 10 * SH, "bid", 4000)
            om.stage(MarketDecision(m.condition_id, SideDecision(4000, 10 * SH, core.PLACE), KEEP, False, 100), [intent], 0.0)
        await om.flush()
        live = {o.market for o in ex.engine.live_orders(account=me)}
        assert live == {"0x" + "ab" * 32, v3.condition_id}  # the V2 and the ExchangeV3 order rest
        assert om.counts["signing_refused"] == 1 and om.counts["placed"] == 2
        assert ex.signature_checks.get("verified_v3") == 1
