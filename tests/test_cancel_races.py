"""Cancels that race the submit of the order they target (a momentum pull goes out while the
pass that placed the order still waits for its answer; tests/test_hot_path.py): the pull leaves
an unanswered order to the pass after its answer; a cancel the venue refused before it had the
order is sent again when we learn it has it, never concluded DONE while the order rests; an
order re-signed for a new version while a cancel targeted its first hash keeps that cancel.
The venue is a stand-in whose answers the test releases one by one."""

from __future__ import annotations

import asyncio

import pytest

from active_quoting import core
from active_quoting.clock import ManualClock
from active_quoting.execution.order_manager import MarketRef, OrderManager
from active_quoting.model import BID, BUY, OrderIntent
from active_quoting.strategy.quoting import MarketDecision, SideDecision
from active_quoting.venue.rest import CancelResult, OrderResult
from active_quoting.venue.signing import OrderSigner
from exchange_peer import CID, DOWN, MAKER_KEY, SH, UP

NONE = SideDecision(core.NO_PRICE, 0, core.NONE)
CANCEL = SideDecision(core.NO_PRICE, 0, core.CANCEL)


class Venue:
    """``submit`` and ``cancel_orders`` wait for the test's go; the first cancel of an id is
    refused as unknown (it reached the venue before the order), a later one succeeds."""

    order_version = 2
    creds = None

    def __init__(self, resign: bool = False, refuse_first: bool = True, crash: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.submit_go = loop.create_future()
        self.cancel_go = loop.create_future()
        self.resign = resign
        self.refuse_first = refuse_first
        self.crash = crash
        self.cancels: list[list[str]] = []

    def cached_fee_rate(self, token: str) -> int:
        return 0

    async def submit(self, build, *args, rebuild=None, **kw):  # type: ignore[no-untyped-def]
        orders = build(self.order_version)
        await self.submit_go
        if self.resign:  # the first hash refused for its version; the order re-signed, accepted
            orders = rebuild(self.order_version, [0])
        if self.crash:
            raise RuntimeError("a bug while the re-signed submit was out")
        return [OrderResult(o.order_hash, True, "live", "", "") for o in orders]

    async def cancel_orders(self, ids, wait=True):  # type: ignore[no-untyped-def]
        self.cancels.append(list(ids))
        if len(self.cancels) == 1 and self.refuse_first:
            await self.cancel_go
            return CancelResult((), {i: "order not found" for i in ids})
        return CancelResult(tuple(ids), {})


def _manager(venue: Venue) -> OrderManager:
    om = OrderManager(venue, OrderSigner(MAKER_KEY), None, min_refresh_ms=0, clock=ManualClock(1_780_000_000.0))  # type: ignore[arg-type]
    om.add_market(MarketRef(CID, UP, DOWN, 100))
    om.stage(MarketDecision(CID, SideDecision(4800, 10 * SH, core.PLACE), NONE, False, 100),
             [OrderIntent(CID, UP, BUY, 4800, 10 * SH, BID, 4800)], 1.0)  # fmt: skip
    return om


async def _turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def _submitting(venue: Venue):  # type: ignore[no-untyped-def]
    """A manager whose pass has sent a bid and waits for the venue's answer: (manager, that
    flush, the order)."""
    om = _manager(venue)
    flushing = asyncio.ensure_future(om.flush())
    await _turns()
    [t] = om.live(CID)
    return om, flushing, t


@pytest.mark.asyncio
async def test_a_pull_leaves_an_order_whose_submit_is_unanswered_to_the_pass_after_it():
    venue = Venue(refuse_first=False)
    om, flushing, t = await _submitting(venue)
    assert t.status == "SENT" and om.stage_pull(CID) == 0 and not t.cancel_requested
    venue.submit_go.set_result(None)
    await flushing
    assert t.status == "LIVE" and om.stage_pull(CID) == 1 and t.cancel_requested
    assert om.stage_pull(CID) == 0  # already being cancelled
    await om.send_cancels()
    assert venue.cancels == [[t.order_id]] and t.status == "CANCELED"


@pytest.mark.asyncio
async def test_a_cancel_refused_before_the_venue_had_the_order_is_sent_again_not_concluded_done():
    venue = Venue()
    om, flushing, t = await _submitting(venue)
    # a cancel that does not wait for the submit's answer (the spot guard's, an off-grid one)
    om.stage(MarketDecision(CID, CANCEL, NONE, False, 0), [], 1.0)
    cancelling = asyncio.ensure_future(om.send_cancels())
    await _turns()
    venue.submit_go.set_result(None)  # the order is accepted ...
    await flushing
    assert t.status == "CANCELING"
    venue.cancel_go.set_result(None)  # ... and then the cancel's answer: "not found"
    await cancelling
    assert venue.cancels == [[t.order_id], [t.order_id]]  # sent again at once
    assert t.status == "CANCELED" and om.counts["cancel_raced_submit"] == 1
    assert om.live(CID) == []


@pytest.mark.asyncio
async def test_an_order_re_signed_while_a_cancel_targets_its_first_hash_keeps_the_cancel():
    venue = Venue(resign=True)
    om, flushing, t = await _submitting(venue)
    first = t.order_id
    om.stage(MarketDecision(CID, CANCEL, NONE, False, 0), [], 1.0)
    cancelling = asyncio.ensure_future(om.send_cancels())
    await _turns()
    venue.submit_go.set_result(None)  # re-signed under a new hash and accepted
    await flushing
    # the new hash's cancel went with the submit's answer (the first one's is still out)
    assert t.order_id != first and t.cancel_requested
    assert venue.cancels == [[first], [t.order_id]] and t.status == "CANCELED"
    venue.cancel_go.set_result(None)  # the first hash: unknown to the venue
    await cancelling
    assert await om.retry_cancels() == 0 and om.live(CID) == []


@pytest.mark.asyncio
async def test_a_re_signed_order_whose_submit_is_interrupted_keeps_its_cancel_due():
    venue = Venue(resign=True, crash=True)
    om, flushing, t = await _submitting(venue)
    first = t.order_id
    om.stage(MarketDecision(CID, CANCEL, NONE, False, 0), [], 1.0)
    cancelling = asyncio.ensure_future(om.send_cancels())  # the first hash's cancel
    await _turns()
    venue.submit_go.set_result(None)  # re-signed, then the submit fails with no answer
    with pytest.raises(RuntimeError):
        await flushing
    venue.cancel_go.set_result(None)  # the first hash: unknown to the venue
    await cancelling
    # whether the venue got the re-signed order is unknown: answered for, its cancel due now
    assert t.order_id != first and t.status == "CANCELING"
    assert t.known_seq and t.cancel_requested and t.cancel_due <= om.clock.monotonic()
    assert await om.retry_cancels() == 1 and venue.cancels[-1] == [t.order_id] and t.status == "CANCELED"


@pytest.mark.asyncio
async def test_cancel_all_does_not_conclude_done_an_order_accepted_while_it_was_out():
    venue = Venue()
    om, flushing, t = await _submitting(venue)
    cancelling = asyncio.ensure_future(om.cancel_all())  # a halt: everything goes
    await _turns()
    venue.submit_go.set_result(None)  # accepted ...
    await flushing
    venue.cancel_go.set_result(None)  # ... then cancel-all's answer: "not found"
    # still ours: its market is handed back to be decided (and cancelled) again now
    assert await cancelling == {CID}
    assert t.status == "LIVE" and not t.cancel_requested
    assert om.live(CID) == [t] and om.resting(CID, BID).price == 4800


class FeeVenue(Venue):
    """A venue still on order version 1: an order needs its token's fee rate, and the lookup
    waits for the test's go."""

    order_version = 1

    def __init__(self) -> None:
        super().__init__(refuse_first=False)
        self.fee_go = asyncio.get_running_loop().create_future()
        self.rates: dict[str, int] = {}

    def cached_fee_rate(self, token: str) -> int | None:  # type: ignore[override]
        return self.rates.get(token)

    async def fee_rate(self, token: str, wait: bool = True) -> int:
        await self.fee_go
        self.rates[token] = 1000
        return 1000


@pytest.mark.asyncio
async def test_orders_a_flush_waits_to_sign_still_count_as_pending_for_other_passes():
    """Quote passes over other markets run while a flush waits (scheduler): an order the flush
    took but has not signed and tracked yet (its fee rate being looked up) must still count for
    their limits, and once tracked it counts once."""
    venue = FeeVenue()
    om = _manager(venue)
    flushing = asyncio.ensure_future(om.flush())
    await _turns()
    assert om.live(CID) == []  # not signed yet: waiting for the fee rate
    assert om.pending() == {CID: [(UP, BUY, 4800, 10 * SH)]}
    venue.fee_go.set_result(None)
    await _turns()
    [t] = om.live(CID)
    assert t.order_id and om.pending() == {CID: [(UP, BUY, 4800, 10 * SH)]}  # counted once
    venue.submit_go.set_result(None)
    await flushing
    assert t.status == "LIVE" and om.pending() == {CID: [(UP, BUY, 4800, 10 * SH)]}


@pytest.mark.asyncio
async def test_a_halt_while_a_fee_lookup_waits_stops_the_order():
    venue = FeeVenue()
    venue.submit_go.set_result(None)  # a submit would be answered at once
    om = _manager(venue)
    halted: set[str] = set()
    om.may_place = lambda market: market not in halted  # type: ignore[method-assign]
    flushing = asyncio.ensure_future(om.flush())
    await _turns()
    halted.add(CID)  # risk halts the market while the order waits for its fee rate
    venue.fee_go.set_result(None)
    await flushing
    assert om.live(CID) == [] and om.counts["held_by_risk"] == 1 and om.pending() == {}


@pytest.mark.asyncio
async def test_a_rate_limit_episode_slows_the_refresh_cap_once():
    """Concurrent passes have several requests out when the venue starts answering 429: the
    answers of one episode halve the refresh cap once, a new episode again."""
    om = _manager(Venue())
    base = om.limiter.rate
    for _ in range(4):
        assert om._venue_answer("rate_limited", 10.0)
    assert om.limiter.rate == base / 2 and om.counts["refresh_slowed"] == 1
    om.clock.advance(30.0)  # type: ignore[attr-defined]  # the episode is over
    assert om._venue_answer("rate_limited", 10.0)
    assert om.limiter.rate == base / 4 and om.counts["refresh_slowed"] == 2


@pytest.mark.asyncio
async def test_a_cancel_refused_before_the_submit_answered_goes_again_with_the_submits_answer():
    """The cancel reaches the venue first and is refused ("not found"); when the submit's answer
    says the order rests, its cancel goes at once, in the same flush - not at the next tick."""
    venue = Venue()
    om, flushing, t = await _submitting(venue)
    om.stage(MarketDecision(CID, CANCEL, NONE, False, 0), [], 1.0)
    cancelling = asyncio.ensure_future(om.send_cancels())
    await _turns()
    venue.cancel_go.set_result(None)  # refused: the venue did not have the order yet
    await cancelling
    assert t.status == "CANCELING" and venue.cancels == [[t.order_id]]
    venue.submit_go.set_result(None)  # the order is accepted: its cancel goes with this answer
    await flushing
    assert venue.cancels == [[t.order_id], [t.order_id]] and t.status == "CANCELED"
    assert om.live(CID) == []


class ScriptedCancels(Venue):
    """Every cancel request waits for the test's own answer to it."""

    def __init__(self) -> None:
        super().__init__(refuse_first=False)
        self.calls: list[tuple[list[str], asyncio.Future[CancelResult]]] = []

    async def cancel_orders(self, ids, wait=True):  # type: ignore[no-untyped-def]
        answer: asyncio.Future[CancelResult] = asyncio.get_running_loop().create_future()
        self.calls.append((list(ids), answer))
        return await answer


@pytest.mark.asyncio
async def test_cancel_all_does_not_send_a_cancel_again_while_the_orders_own_is_out():
    """The guard's cancel raced the submit (refused), a halt's cancel-all goes out, the submit's
    answer sends the order's own cancel again; cancel-all's late "not found" must not arm a
    third while that one is out (its "already canceled" would turn the CANCELED order DONE)."""
    venue = ScriptedCancels()
    om, flushing, t = await _submitting(venue)
    oid = t.order_id
    om.stage(MarketDecision(CID, CANCEL, NONE, False, 0), [], 1.0)
    guard = asyncio.ensure_future(om.send_cancels())
    await _turns()
    venue.calls[0][1].set_result(CancelResult((), {oid: "not found"}))  # before the venue had it
    await guard
    halt = asyncio.ensure_future(om.cancel_all())
    await _turns()
    venue.submit_go.set_result(None)  # accepted: its own cancel goes again at once
    await _turns(10)
    assert [ids for ids, _ in venue.calls] == [[oid], [oid], [oid]]
    venue.calls[1][1].set_result(CancelResult((), {oid: "not found"}))  # cancel-all's, late
    await halt
    assert t.cancel_due == float("inf")  # nothing re-armed: the order's own cancel is out
    venue.calls[2][1].set_result(CancelResult((oid,), {}))
    await flushing
    assert t.status == "CANCELED" and len(venue.calls) == 3


@pytest.mark.asyncio
async def test_a_late_refusal_does_not_overwrite_an_order_another_cancel_concluded():
    venue = ScriptedCancels()
    om, flushing, t = await _submitting(venue)
    venue.submit_go.set_result(None)
    await flushing
    oid = t.order_id
    first = asyncio.ensure_future(om._cancel([oid]))
    second = asyncio.ensure_future(om._cancel([oid]))  # a duplicate, however it came about
    await _turns()
    venue.calls[0][1].set_result(CancelResult((oid,), {}))
    await first
    assert t.status == "CANCELED"
    venue.calls[1][1].set_result(CancelResult((), {oid: "order already canceled"}))
    await second
    assert t.status == "CANCELED"  # the venue's first word stands
