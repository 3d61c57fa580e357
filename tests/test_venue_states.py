"""Venue states as the venue means them (issue 12 item 7), against the embedded exchange over
loopback, on one ManualClock shared by the exchange and the bot's order manager and scheduler:

* 425 (engine restart): nothing is sent until the restart window passes (90 s from the first
  425, or its Retry-After), the quote pass does not wait it out, nothing counts toward a halt,
  a refused submit leaves no tracked order, placing resumes by itself afterwards;
* 503 cancel-only: nothing is placed, cancels still go out, the venue is probed on its
  Retry-After until it takes orders again;
* 429 with a long Retry-After: honoured in full (plus a seeded jitter), cancels still go, the
  refresh cap slows for a while;
* post-only mode refuses nothing of ours (every order is sent post-only).

Each fault is proved to have fired by the exchange's own counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from active_quoting import core
from active_quoting.aio import TaskSet
from active_quoting.clock import ManualClock
from active_quoting.exchange.engine import FeeSchedule, Market
from active_quoting.exchange.server import Exchange, ExchangeConfig
from active_quoting.execution.order_manager import MarketRef, OrderManager
from active_quoting.execution.scheduler import PassScheduler
from active_quoting.model import BID, BUY, OrderIntent
from active_quoting.observability.metrics import Metrics
from active_quoting.store.sqlite import Store
from active_quoting.strategy.quoting import MarketDecision, SideDecision
from active_quoting.strategy.risk import NORMAL, RiskManager
from active_quoting.venue.errors import VenueStates
from active_quoting.venue.orders import build_order
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner
from exchange_peer import CID, DOWN, MAKER_KEY, SH, TAKER_KEY, UP, derive

CID2, UP2, DOWN2 = "0x" + "cd" * 32, "2001", "2002"
NONE = SideDecision(core.NO_PRICE, 0, core.KEEP)
T0 = 1_780_000_000.0


def _gamma(cid: str, up: str, down: str, n: int) -> dict[str, object]:
    return {
        "id": str(1000000 + n), "slug": f"btc-updown-15m-17800000{n}0", "conditionId": cid, "question": "BTC Up or Down",
        "clobTokenIds": json.dumps([up, down]), "outcomes": json.dumps(["Up", "Down"]),
        "eventStartTime": "2026-05-28T00:00:00Z", "startDate": "2026-05-27T23:45:00Z", "endDate": "2026-05-28T00:15:00Z",
        "orderPriceMinTickSize": 0.01, "orderMinSize": 5, "closed": False,
    }  # fmt: skip


class StagingPass:
    """The quote pass's interface (``run(markets, now)``): a bid of 10 shares of Up at
    ``prices[market]`` (0: no bid), placed, replaced or cancelled against what rests."""

    def __init__(self, om: OrderManager) -> None:
        self.om = om
        self.prices: dict[str, int] = {}
        self.decided: list[str] = []

    def run(self, markets: dict[str, float], now: float) -> list[str]:
        for m in markets:
            want, up = self.prices.get(m, 0), self.om.markets[m].up
            resting = self.om.resting(m, BID).price
            if want == resting or (not want and resting == core.NO_PRICE):
                continue
            if not want:
                action = core.CANCEL
            else:
                action = core.REPLACE if resting != core.NO_PRICE else core.PLACE
            side = SideDecision(want or core.NO_PRICE, 10 * SH if want else 0, action)
            intents = [OrderIntent(m, up, BUY, want, 10 * SH, BID, want)] if want else []
            self.om.stage(MarketDecision(m, side, NONE, False, 100), intents, now)
            self.decided.append(m)
        return list(markets)


@dataclass
class Rig:
    clock: ManualClock
    ex: Exchange
    om: OrderManager
    qp: StagingPass
    sched: PassScheduler
    risk: RiskManager
    errors: list[str]
    me: str

    def resting(self) -> dict[str, int]:
        """What the venue holds for us: market -> bid price."""
        return {o.market: o.price for o in self.ex.engine.live_orders(account=self.me)}

    async def decide(self, *markets: str) -> None:
        """Ask for a pass over ``markets`` and wait (real time, loopback) until it is over;
        the ManualClock does not move, so a pass that waited out a venue state never ends."""
        for m in markets:
            self.sched.mark(m)
        self.sched.request()
        await until(lambda: not self.sched.running and not self.sched.dirty, "the quote pass to return")


async def until(cond: Callable[[], bool], what: str, timeout: float = 3.0) -> None:
    for _ in range(int(timeout / 0.01)):
        await asyncio.sleep(0)
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.asynccontextmanager
async def rig(store: Store | None = None, concurrent_replace: bool = False, **om_kw: object) -> AsyncIterator[Rig]:
    clock = ManualClock(T0)
    ex = Exchange(ExchangeConfig(settle_delays_ms=(50, 100)), clock=clock)
    await ex.start()
    ex.add_market(Market(CID, UP, DOWN, fees=FeeSchedule()), _gamma(CID, UP, DOWN, 1))
    ex.add_market(Market(CID2, UP2, DOWN2, fees=FeeSchedule()), _gamma(CID2, UP2, DOWN2, 2))
    signer = OrderSigner(MAKER_KEY)
    rest = RestClient(ex.clob_url, signer, await derive(ex, MAKER_KEY), clock=clock.time, sleep=clock.sleep)
    risk = RiskManager()
    errors: list[str] = []

    def on_error(kind: str) -> None:
        errors.append(kind)
        risk.on_error(clock.ms(), kind, "orders")

    om = OrderManager(
        rest, signer, store, min_refresh_ms=0, global_cap_per_sec=1000, clock=clock, on_error=on_error,
        on_success=lambda: risk.on_success(clock.ms(), "orders"),
        concurrent_replace=concurrent_replace,  # here off by default: one 425 per replace
        **om_kw,  # type: ignore[arg-type]
    )  # fmt: skip
    om.add_market(MarketRef(CID, UP, DOWN, 100))
    om.add_market(MarketRef(CID2, UP2, DOWN2, 100))
    qp = StagingPass(om)
    tasks = TaskSet(logging.getLogger("test"))
    sched = PassScheduler(qp, om, clock, Metrics(), tasks)  # type: ignore[arg-type]
    try:
        yield Rig(clock, ex, om, qp, sched, risk, errors, signer.address)
    finally:
        sched.stopped = True
        tasks.cancel()
        await rest.close()
        await ex.stop()


@pytest.mark.asyncio
async def test_an_engine_restart_is_waited_out_without_holding_the_pass_or_counting_errors():
    async with rig() as r:
        r.qp.prices = {CID: 4800, CID2: 4700}
        await r.decide(CID, CID2)
        assert r.resting() == {CID: 4800, CID2: 4700}
        r.ex.faults.start_restart(r.clock.monotonic(), restart_s=30.0, post_only_s=0.0)
        r.qp.prices[CID] = 4900
        await r.decide(CID)  # the replace's cancel gets a 425: the pass returns at once
        assert r.ex.faults.restart_answers == 1  # the fault fired
        assert r.resting() == {CID: 4800, CID2: 4700}
        r.qp.prices[CID2] = 4600
        await r.decide(CID2)  # a decision in another market proceeds ...
        assert r.qp.decided[-1] == CID2
        assert r.ex.faults.restart_answers == 1  # ... and sends nothing during the restart
        assert r.om.counts["held_by_venue"] == 2 and r.om.counts["cancels_deferred"] >= 1
        assert r.errors == [] and r.risk.state == NORMAL and r.risk.consecutive_errors == 0
        assert (r.om.venue_state, r.om.venue_state_until) == ("restarting", T0 + 90.0)
        assert r.om.venue_status()["counts"] == {"restarting": 1, "restarting_answers": 1}
        r.clock.advance(31.0)  # the exchange is back, but the venue's window is ~90 s: still nothing
        await asyncio.sleep(0.05)
        assert r.ex.faults.restart_answers == 1 and r.sched.venue_wakes == 0
        assert r.resting() == {CID: 4800, CID2: 4700}
        r.clock.advance(60.0)  # the window has passed: the deferred cancel goes, the markets are decided again
        await until(lambda: r.resting() == {CID: 4900, CID2: 4600}, "quoting to resume after the restart")
        assert r.sched.venue_wakes == 1 and r.om.venue_state == "ok"
        assert r.errors == [] and r.risk.state == NORMAL


@pytest.mark.asyncio
async def test_a_submit_refused_by_a_restart_leaves_no_tracked_order_and_follows_retry_after(tmp_path):
    store = Store(tmp_path / "orders.db")
    try:
        async with rig(store) as r:
            r.ex.faults.start_restart(r.clock.monotonic(), restart_s=20.0, post_only_s=0.0, retry_after=True)
            r.qp.prices = {CID: 4800}
            await r.decide(CID)  # the submit gets a 425 with Retry-After: 20
            assert r.ex.faults.restart_answers == 1 and r.resting() == {}
            assert r.om.live() == [] and r.om.orders == {}  # not placed: nothing tracks it
            assert r.om.counts["not_placed"] == 1 and r.om.counts["rejected"] == 0 and r.errors == []
            store.flush()
            assert store.open_orders() == []  # no SENT row left behind for it
            assert (r.om.venue_state, r.om.venue_state_until) == ("restarting", T0 + 20.0)
            r.clock.advance(20.0)
            await until(lambda: r.resting() == {CID: 4800}, "the order to be placed after Retry-After")
            assert r.ex.faults.restart_answers == 1 and r.om.venue_state == "ok"
            (t,) = r.om.live()
            assert t.status == "LIVE" and r.om.counts["placed"] == 1
    finally:
        store.close()


@pytest.mark.asyncio
async def test_cancel_only_places_nothing_keeps_cancelling_and_probes_on_retry_after():
    async with rig() as r:
        r.qp.prices = {CID: 4800, CID2: 4700}
        await r.decide(CID, CID2)
        r.ex.faults.start_cancel_only(r.clock.monotonic(), seconds=25.0, retry_after=10.0)
        r.qp.prices[CID] = 4900
        await r.decide(CID)  # the cancel goes through, the new bid is refused (503)
        assert r.ex.faults.cancel_only_answers == 1
        assert r.resting() == {CID2: 4700}
        r.qp.prices[CID2] = 0
        await r.decide(CID2)  # a cancel in another market goes out during the state
        assert r.resting() == {} and r.ex.faults.cancel_only_answers == 1
        assert (r.om.venue_state, r.om.venue_state_until) == ("cancel_only", T0 + 10.0)
        assert r.om.orders and all(t.status == "CANCELED" for t in r.om.orders.values())  # no phantom bid
        assert r.errors == [] and r.risk.consecutive_errors == 0
        r.clock.advance(10.0)  # Retry-After passed: the venue is probed, still cancel-only
        await until(lambda: r.ex.faults.cancel_only_answers == 2, "the probe")
        await until(lambda: r.om.venue_state_until == T0 + 20.0, "the state to be extended")
        r.clock.advance(10.0)
        await until(lambda: r.ex.faults.cancel_only_answers == 3, "the second probe")
        await until(lambda: not r.sched.running, "the pass")
        assert r.resting() == {}
        r.clock.advance(10.0)  # the venue takes orders again (after 25 s)
        await until(lambda: r.resting() == {CID: 4900}, "placing to resume")
        assert r.ex.faults.cancel_only_answers == 3 and r.om.venue_state == "ok"
        assert r.om.venue_status()["counts"]["cancel_only_answers"] == 3


@pytest.mark.asyncio
async def test_a_long_retry_after_is_honoured_cancels_still_go_and_the_refresh_cap_slows():
    async with rig() as r:
        r.qp.prices = {CID2: 4700}
        await r.decide(CID2)
        r.ex.faults.start_rate_limit(1, retry_after=60.0)
        r.qp.prices[CID] = 4800
        await r.decide(CID)  # 429, Retry-After: 60
        assert r.ex.faults.rate_limit_answers == 1 and r.resting() == {CID2: 4700}
        r.qp.prices[CID2] = 0
        await r.decide(CID2)  # the 429 was on a submit: cancels still go
        assert r.resting() == {}
        r.clock.advance(30.0)
        r.qp.prices[CID] = 4900
        await r.decide(CID)  # the venue would take it now, but its Retry-After has not passed
        assert r.resting() == {} and r.ex.faults.rate_limit_answers == 1
        assert r.om.venue_state == "rate_limited" and T0 + 60.0 <= r.om.venue_state_until <= T0 + 66.0
        assert r.om.limiter.rate == 500 and r.om.counts["refresh_slowed"] == 1  # from 1000/s
        assert r.errors == ["rate_limited"]  # counted by kind ...
        assert r.risk.state == NORMAL and r.risk.consecutive_errors == 0  # ... not toward the circuit breaker
        assert r.om.orders == {} or all(t.status == "CANCELED" for t in r.om.orders.values())
        r.clock.set(r.om.venue_state_until + 0.01)
        await until(lambda: r.resting() == {CID: 4900}, "placing to resume after Retry-After")
        assert r.om.venue_state == "ok" and r.ex.faults.rate_limit_answers == 1
        r.clock.advance(240.0)  # the slow period (4 x Retry-After) ends: the cap comes back
        assert r.om.limiter.take() and r.om.limiter.rate == 1000


@pytest.mark.asyncio
async def test_post_only_mode_refuses_nothing_of_ours():
    async with rig() as r:
        r.ex.faults.start_restart(r.clock.monotonic(), restart_s=0.0, post_only_s=120.0)
        r.qp.prices = {CID: 4800}
        await r.decide(CID)
        assert r.resting() == {CID: 4800} and r.om.venue_state == "ok"
        taker = OrderSigner(TAKER_KEY)
        other = RestClient(r.ex.clob_url, taker, await derive(r.ex, TAKER_KEY), clock=r.clock.time)
        try:  # the mode was on: an order that is not post-only is refused
            (res,) = await other.post_orders([build_order(taker, UP, 0, 4000, 10 * SH, 100)], post_only=False)
        finally:
            await other.close()
        assert res.error_kind == "post_only_mode" and r.ex.faults.post_only_answers == 1


def test_the_rate_limit_jitter_is_reproducible_for_a_seed():
    def until(seed: int) -> float:
        states = VenueStates(random.Random(seed))
        states.note("rate_limited", 60.0, 100.0)
        return states.until["rate_limited"]

    assert until(7) == until(7)
    assert 160.0 < until(7) <= 166.0 and until(7) != until(8)
