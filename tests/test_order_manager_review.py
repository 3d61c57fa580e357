"""Holes a review found in the order manager's bookkeeping, each against the embedded exchange:
a late order event cannot bring a confirmed cancel back to life; a listing taken before a
cancel-all answered cannot revive what it cancelled; a SELL the venue refuses for balance (its
balance lags the chain) is not a breaker error and holds that token's SELLs off for a while."""

from __future__ import annotations

import pytest

from active_quoting.model import BUY, SELL
from active_quoting.venue.user_codec import LIVE, OrderUpdate
from exchange_peer import CID, DOWN, UP
from test_order_manager_intents import _decision, _intent, _manager


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
