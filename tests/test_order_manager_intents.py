"""The order manager's interface for the split bot, against the embedded exchange: typed order
intents in, our own liquidity per Up-terms level out, a market forgotten once finished, the
crossing hook, and backoffs on the injected clock (no sleeping)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from active_quoting import core
from active_quoting.clock import ManualClock
from active_quoting.execution.order_manager import MarketRef, OrderManager, RefreshLimiter, Tracked
from active_quoting.model import ASK, BID, BUY, OrderIntent, up_terms
from active_quoting.strategy.quoting import MarketDecision, SideDecision
from active_quoting.venue.orders import build_order
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner
from exchange_peer import CID, DOWN, MAKER_KEY, SH, TAKER_KEY, UP, derive

KEEP = SideDecision(core.NO_PRICE, 0, core.KEEP)


@contextlib.asynccontextmanager
async def _manager(ex, **kw: object) -> AsyncIterator[tuple[OrderManager, ManualClock, str]]:
    clock = ManualClock()
    signer = OrderSigner(MAKER_KEY)
    rest = RestClient(ex.clob_url, signer, await derive(ex, MAKER_KEY))
    om = OrderManager(rest, signer, min_refresh_ms=0, global_cap_per_sec=1000, clock=clock, **kw)  # type: ignore[arg-type]
    om.add_market(MarketRef(CID, UP, DOWN, 100))
    try:
        yield om, clock, signer.address
    finally:
        await rest.close()


def _intent(token: str, side: str, price: int, size: int = 10 * SH) -> OrderIntent:
    quote, quote_price = up_terms(token == UP, side, price)
    return OrderIntent(CID, token, side, price, size, quote, quote_price)


def _decision(*intents: OrderIntent, cancel: str = "") -> tuple[MarketDecision, list[OrderIntent]]:
    sides = {BID: KEEP, ASK: KEEP}
    for i in intents:
        sides[i.quote] = SideDecision(i.quote_price, i.size, core.PLACE)
    if cancel:
        sides[cancel] = SideDecision(core.NO_PRICE, 0, core.CANCEL)
    return MarketDecision(CID, sides[BID], sides[ASK], False, 100), list(intents)


async def _taker_order(ex, token: str, side: int, price: int) -> str:
    signer = OrderSigner(TAKER_KEY)
    async with RestClient(ex.clob_url, signer, await derive(ex, TAKER_KEY)) as taker:
        (r,) = await taker.post_orders([build_order(signer, token, side, price, 10 * SH, 100)])
    assert r.accepted
    return r.order_hash


@pytest.mark.asyncio
async def test_typed_intents_go_out_as_venue_orders_and_come_back_as_own_levels(ex):
    async with _manager(ex) as (om, clock, me):
        bid = _intent(UP, BUY, 4700)
        ask = _intent(DOWN, BUY, 4600)  # a BUY of Down at 0.46 is an Up ask at 0.54
        assert (ask.quote, ask.quote_price) == (ASK, 5400)
        assert om.stage(*_decision(bid, ask), clock.time())
        await om.flush()
        venue = {(o.token, o.side, o.price) for o in ex.engine.live_orders(account=me)}
        assert venue == {(UP, BUY, 4700), (DOWN, BUY, 4600)}
        assert om.own_levels(CID) == ({4700: 10 * SH}, {5400: 10 * SH})
        assert om.own_and_leaving(CID)[2:] == ({}, {})
        assert om.resting(CID, ASK).price == 5400 and om.resting(CID, BID).price == 4700
        assert om.stage(*_decision(cancel=ASK), clock.time())  # a cancel-only change
        (canceling,) = [o for o in om.live() if o.quote == ASK]
        assert om.own_levels(CID)[1] == {5400: 10 * SH}  # still resting until the venue confirms
        assert om.own_and_leaving(CID)[2:] == ({}, {5400: 10 * SH})  # and on its way out
        await om.flush()
        assert canceling.status == "CANCELED" and om.own_levels(CID) == ({4700: 10 * SH}, {})


@pytest.mark.asyncio
async def test_a_market_is_forgotten_only_once_nothing_of_it_is_live(ex):
    async with _manager(ex) as (om, clock, me):
        assert om.stage(*_decision(_intent(UP, BUY, 4700)), clock.time())
        await om.flush()
        assert len(om.live(CID)) == 1 and not om.forget_market(CID)  # a live order: refused
        await om.cancel_all()
        assert om.live() == [] and om.forget_market(CID)
        assert om.orders == {} and CID not in om.markets and om.live(CID) == [] and om.pending() == {}


@pytest.mark.asyncio
async def test_a_price_that_crosses_our_view_of_the_book_is_not_sent(ex):
    crossing = {5000}
    async with _manager(ex, crosses=lambda i: i.quote_price in crossing) as (om, clock, me):
        assert om.stage(*_decision(_intent(UP, BUY, 5000)), clock.time())
        await om.flush()
        assert om.counts["would_cross"] == 1 and om.counts["placed"] == 0
        assert ex.engine.live_orders(account=me) == [] and om.live() == []
        crossing.clear()  # the book moved
        clock.advance(1)
        assert om.stage(*_decision(_intent(UP, BUY, 5000)), clock.time())
        await om.flush()
        assert om.counts["placed"] == 1 and len(ex.engine.live_orders(account=me)) == 1


@pytest.mark.asyncio
async def test_a_post_only_backoff_ends_when_the_book_moves_away_or_when_it_expires(ex):
    view = {"cross": False}  # our view of the book lags the venue's
    async with _manager(ex, crosses=lambda i: view["cross"] and i.quote_price >= 5000) as (om, clock, me):
        taker_ask = await _taker_order(ex, DOWN, 0, 5200)  # an Up ask at 0.48 the view misses
        await om._place([_tracked(om, 5000)], 0.0)
        assert om.counts["post_only_rejects"] == 1
        await om._place([_tracked(om, 5000)], 0.0)
        assert om.counts["post_only_backoff"] == 1  # held: the venue just refused this price
        view["cross"] = True  # the view catches up: it crosses
        await om._place([_tracked(om, 5000)], 0.0)
        assert om.counts["post_only_backoff"] == 2
        ex.engine.cancel(taker_ask)
        view["cross"] = False  # the book moved away: released before the backoff ends
        t = _tracked(om, 5000)
        await om._place([t], 0.0)
        assert t.status == "LIVE" and om.counts["post_only_backoff"] == 2
        await om.cancel_all()
        # Without the view ever showing the cross, the hold expires; each refusal in a row doubles it.
        await _taker_order(ex, DOWN, 0, 5200)
        for _ in range(2):
            await om._place([_tracked(om, 5000)], 0.0)
        assert (om.counts["post_only_rejects"], om.counts["post_only_backoff"]) == (2, 3)
        clock.advance(om.cross_backoff_s)
        await om._place([_tracked(om, 5000)], 0.0)  # the hold expired: sent, refused again
        assert (om.counts["post_only_rejects"], om.counts["post_only_backoff"]) == (3, 3)
        clock.advance(om.cross_backoff_s)
        await om._place([_tracked(om, 5000)], 0.0)  # the second hold is twice as long
        assert (om.counts["post_only_rejects"], om.counts["post_only_backoff"]) == (3, 4)
        clock.advance(om.cross_backoff_s)
        await om._place([_tracked(om, 5000)], 0.0)
        assert om.counts["post_only_rejects"] == 4


def _tracked(om: OrderManager, price: int) -> Tracked:
    return Tracked("", CID, UP, BUY, price, 10 * SH, BID, price)


@pytest.mark.asyncio
async def test_a_failing_cancel_is_retried_with_backoff_on_the_injected_clock(ex):
    async with _manager(ex) as (om, clock, me):
        assert om.stage(*_decision(_intent(UP, BUY, 4700)), clock.time())
        await om.flush()
        (t,) = [o for o in om.live() if o.status == "LIVE"]
        for _ in range(3):
            ex.faults.http_status_queue.append((500, {"error": "could not run the execution"}, {}))
        assert om.stage(*_decision(cancel=BID), clock.time())
        await om.flush()  # 1st attempt: 500
        assert om.rest.counts["server_error"] == 1 and t.status == "CANCELING"
        assert await om.retry_cancels() == 0  # not yet due
        clock.advance(om.cancel_retry_s)
        assert await om.retry_cancels() == 1  # 2nd attempt: 500
        clock.advance(om.cancel_retry_s)
        assert await om.retry_cancels() == 0  # the wait doubled
        clock.advance(om.cancel_retry_s)
        assert await om.retry_cancels() == 1  # 3rd attempt: 500
        assert om.rest.counts["server_error"] == 3 and len(ex.engine.live_orders(account=me)) == 1
        clock.advance(om.cancel_retry_max_s)
        assert await om.retry_cancels() == 1  # 4th: confirmed
        assert t.status == "CANCELED" and ex.engine.live_orders(account=me) == []
        assert om.counts["cancel_retries"] == 3


def test_the_refresh_limiter_runs_on_the_injected_clock():
    clock = ManualClock()
    limiter = RefreshLimiter(2, clock)
    assert limiter.take() and limiter.take() and not limiter.take()
    clock.advance(0.5)
    assert limiter.take() and not limiter.take()


@pytest.mark.asyncio
async def test_the_refresh_limits_hold_back_new_orders_never_a_side_that_must_go(ex):
    """Within the refresh interval a decision that replaces one side and pulls the other is held
    back as a whole, except the pull: a quote left exposed (the spot-move guard) goes at once."""
    async with _manager(ex) as (om, clock, me):
        om.min_refresh_ms = 500
        assert om.stage(*_decision(_intent(UP, BUY, 4700), _intent(DOWN, BUY, 4600)), clock.time())
        await om.flush()
        clock.advance(0.1)  # inside the refresh interval
        decision, intents = _decision(_intent(UP, BUY, 4600), cancel=ASK)
        decision = MarketDecision(CID, SideDecision(4600, 10 * SH, core.REPLACE), decision.ask, False, 100)
        assert not om.stage(decision, intents, clock.time())  # held back ...
        await om.flush()
        live = {(o.token, o.price) for o in ex.engine.live_orders(account=me)}
        assert live == {(UP, 4700)}  # ... but the ask was cancelled; the bid not replaced yet
        assert om.counts["placed"] == 2
