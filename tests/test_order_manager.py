"""The order manager against the embedded exchange: the grid an order is signed on is the one
the venue last stated (snapshot or tick_size_change), checked strictly; an order whose grid
changed between decision and send is not sent."""

from __future__ import annotations

import contextlib

import pytest

from active_quoting import core
from active_quoting.execution.order_manager import MarketRef, OrderManager, Tracked
from active_quoting.model import ASK, BID, BUY, OrderIntent
from active_quoting.strategy.quoting import MarketDecision, SideDecision
from active_quoting.venue.orders import build_order
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner
from exchange_peer import CID, DOWN, MAKER_KEY, SH, UP, derive

NONE = SideDecision(core.NO_PRICE, 0, core.KEEP)


@contextlib.asynccontextmanager
async def _manager(ex):
    """An order manager for the exchange's market and our address; its REST client is closed after."""
    signer = OrderSigner(MAKER_KEY)
    rest = RestClient(ex.clob_url, signer, await derive(ex, MAKER_KEY))
    om = OrderManager(rest, signer, min_refresh_ms=0, global_cap_per_sec=1000)
    om.add_market(MarketRef(CID, UP, DOWN, 100))  # discovery said 0.01
    try:
        yield om, signer.address
    finally:
        await rest.close()


def _bid(price: int) -> tuple[MarketDecision, list[OrderIntent]]:
    size = 10 * SH
    return MarketDecision(CID, SideDecision(price, size, core.PLACE), NONE, False, 100), [
        OrderIntent(CID, UP, BUY, price, size, BID, price)
    ]


@pytest.mark.asyncio
async def test_an_order_on_the_finer_grid_a_snapshot_stated_is_signed_on_that_grid(ex):
    async with _manager(ex) as (om, me):
        ex.force_tick_size(CID, 10)  # the venue's book says 0.001
        assert om.cancel_off_grid(CID, 10) == 0  # what the bot does on that snapshot: nothing rests yet
        assert om.stage(*_bid(4870), 0.0)
        await om.flush()
        (live,) = ex.engine.live_orders(account=me)
        assert (live.token, live.price, live.size) == (UP, 4870, 10 * SH)
        assert om.counts["placed"] == 1 and om.counts["rejected"] == 0


@pytest.mark.asyncio
async def test_an_order_off_a_grid_that_coarsened_before_the_send_is_not_sent(ex):
    async with _manager(ex) as (om, me):
        assert om.stage(*_bid(4900), 0.0)  # decided on the 0.01 grid
        ex.force_tick_size(CID, 1000)  # then the venue moves the market to 0.1
        om.cancel_off_grid(CID, 1000)
        await om.flush()
        assert ex.engine.live_orders(account=me) == []
        assert om.counts.get("off_grid_dropped") == 1
        assert om.counts["placed"] == 0 and om.counts["rejected"] == 0  # never reached the venue
        assert om.stage(*_bid(5000), 1.0)  # the next decision, on the new grid, goes out
        await om.flush()
        (live,) = ex.engine.live_orders(account=me)
        assert live.price == 5000 and om.counts["placed"] == 1


@pytest.mark.asyncio
async def test_nothing_is_sent_for_a_market_risk_no_longer_lets_us_quote(ex):
    halted = {CID}
    async with _manager(ex) as (om, me):
        om.may_place = lambda market: market not in halted
        assert om.stage(*_bid(4900), 0.0)  # decided before the halt
        await om.flush()  # sent after it
        assert ex.engine.live_orders(account=me) == [] and om.counts["held_by_risk"] == 1
        halted.clear()  # recovered
        assert om.stage(*_bid(4900), 1.0)
        await om.flush()
        assert len(ex.engine.live_orders(account=me)) == 1 and om.counts["placed"] == 1


@pytest.mark.asyncio
async def test_an_order_the_cancel_all_missed_stays_ours_to_cancel(ex):
    """A submit still in flight when the cancel-all ran lands after it: the cancel-all did not
    cancel it, so no cancel is outstanding and the next pass sees it resting and cancels it."""
    async with _manager(ex) as (om, me):
        assert om.stage(*_bid(4800), 0.0)
        await om.flush()
        (held,) = om.live()
        in_flight = Tracked("", CID, UP, BUY, 4700, 10 * SH, BID, 4700)
        om._register(in_flight, "0x" + "ee" * 32)  # signed and sent, not yet at the venue
        await om.cancel_all()
        assert held.status == "CANCELED" and ex.engine.live_orders(account=me) == []
        assert in_flight.status == "SENT" and not in_flight.cancel_requested
        assert om.resting(CID, BID).price == 4700  # what the next (halted) pass will cancel


@pytest.mark.asyncio
async def test_orders_found_on_the_venue_are_adopted_in_up_terms(ex):
    async with _manager(ex) as (om, me):
        (r,) = await om.rest.post_orders([build_order(om.signer, DOWN, 0, 4700, 10 * SH, 100)])  # BUY Down @ 0.47
        await om.reconcile()
        t = om.orders[r.order_hash]
        assert (t.token, t.side, t.price, t.status) == (DOWN, "BUY", 4700, "LIVE")
        assert (t.quote, t.quote_price) == (ASK, 5300)  # an ask on Up at 0.53
        assert om.resting(CID, ASK).price == 5300 and om.counts["adopted"] == 1 and om.adopted == [r.order_hash]


@pytest.mark.asyncio
async def test_an_order_wrongly_concluded_finished_is_managed_again_when_the_venue_holds_it(ex):
    """Whatever made the bot think an order finished (a stale listing, a submit that seemed to
    fail), an open-orders answer newer than that conclusion that holds it makes it live again:
    every order the venue holds for us is one we manage, and a cancel we wanted goes out."""
    async with _manager(ex) as (om, me):
        assert om.stage(*_bid(4800), 0.0)
        await om.flush()
        (t,) = om.live()
        om._set(t, "DONE", reason="test: concluded gone")  # the wrong conclusion
        assert om.live() == []
        await om.reconcile()
        assert [o.order_id for o in om.live()] == [t.order_id] and t.status == "LIVE"
        assert om.counts["revived"] == 1
        # and one we had asked to cancel is cancelled for real
        t.cancel_requested = True
        om._set(t, "DONE", reason="test: concluded gone")
        await om.reconcile()
        assert ex.engine.live_orders(account=me) == [] and t.status == "CANCELED"
