"""Pre-signed order ladders (issue 11 item 4), with the real signer and order manager against the
embedded exchange over real sockets: a requote that matches a ready entry sends it (the venue
verifies its signature and rests it at the asked price), a tick, version or age change is a
miss and is signed afresh, a ladder entry whose signed fields differ from the decision is never
sent, ladders are bounded and forgotten, nothing is pre-signed ahead of a send, and a pre-signed
body is byte for byte the freshly signed one."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

import orjson
import pytest

from active_quoting import core
from active_quoting.clock import ManualClock
from active_quoting.execution.order_manager import MarketRef, OrderManager
from active_quoting.execution.presign import LadderKey, Ladders, _Entry
from active_quoting.model import ASK, BID, BUY, OrderIntent, up_terms
from active_quoting.strategy.quoting import MarketDecision, SideDecision
from active_quoting.venue.amounts import order_amounts
from active_quoting.venue.orders import build_order, encode, order_body
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner
from exchange_peer import CID, DOWN, MAKER_KEY, SH, TAKER_KEY, UP, derive

KEEP = SideDecision(core.NO_PRICE, 0, core.KEEP)
TICK = 100  # the exchange market's 0.01


def _salts(start: int = 1000):
    return itertools.count(start).__next__


@contextlib.asynccontextmanager
async def _manager(ex, **kw: object) -> AsyncIterator[tuple[OrderManager, ManualClock, str]]:
    clock = ManualClock()
    signer = OrderSigner(MAKER_KEY)
    rest = RestClient(ex.clob_url, signer, await derive(ex, MAKER_KEY))
    om = OrderManager(rest, signer, min_refresh_ms=0, global_cap_per_sec=1000, clock=clock, salts=_salts(), **kw)  # type: ignore[arg-type]
    om.add_market(MarketRef(CID, UP, DOWN, TICK))
    om.enable_presign(depth=2, max_age_s=5.0, budget=64)
    try:
        yield om, clock, signer.address
    finally:
        await rest.close()


def _bid(price: int, action: int = core.PLACE, size: int = 10 * SH) -> tuple[MarketDecision, list[OrderIntent]]:
    quote, quote_price = up_terms(True, BUY, price)
    intent = OrderIntent(CID, UP, BUY, price, size, quote, quote_price)
    return MarketDecision(CID, SideDecision(price, size, action), KEEP, False, TICK), [intent]


async def _requote(om: OrderManager, clock: ManualClock, price: int, action: int = core.REPLACE, **kw: int) -> None:
    clock.advance(1)
    assert om.stage(*_bid(price, action, **kw), clock.time())
    await om.flush()
    await asyncio.sleep(0)  # the idle turn flush scheduled: the ladder is refilled


def _on_venue(ex, me: str) -> dict[int, str]:
    return {o.price: o.id for o in ex.engine.live_orders(account=me)}


@pytest.mark.asyncio
async def test_a_requote_takes_the_ready_order_and_the_venue_rests_it_at_the_asked_price(ex):
    async with _manager(ex) as (om, clock, me):
        lad = om.presigned
        assert lad is not None
        await _requote(om, clock, 4700, core.PLACE)
        assert lad.counts["hits"] == 0 and lad.counts["misses"] == 1  # nothing ready yet: signed fresh
        ready = lad.ready(CID, BID)
        assert sorted(k.price for k in ready) == [4500, 4600, 4700, 4800, 4900]  # +-2 ticks, same size
        assert {(k.token, k.side, k.size, k.tick, k.version) for k in ready} == {(UP, 0, 10 * SH, TICK, 2)}
        up_one = next(o for k, o in ready.items() if k.price == 4800)
        await _requote(om, clock, 4800)
        assert lad.counts["hits"] == 1 and lad.counts["misses"] == 1
        assert _on_venue(ex, me) == {4800: up_one.order_hash}  # the venue verified and rests the ladder's order
        (live,) = om.live(CID)
        assert live.order_id == up_one.order_hash and live.price == 4800 and om.counts["placed"] == 2
        # The ladder moved with the quote: 4600, 4700 and 4900 stayed; 4800 (taken) and 5000 signed.
        assert sorted(k.price for k in lad.ready(CID, BID)) == [4600, 4700, 4800, 4900, 5000]
        await _requote(om, clock, 4600)
        assert lad.counts["hits"] == 2 and set(_on_venue(ex, me)) == {4600}


@pytest.mark.asyncio
async def test_a_tick_change_is_a_miss_and_evicts_the_old_grid(ex):
    async with _manager(ex) as (om, clock, me):
        lad = om.presigned
        assert lad is not None
        await _requote(om, clock, 4700, core.PLACE)
        assert lad.entries(CID) == 5
        om.cancel_off_grid(CID, 10)  # tick_size_change to 0.001: 4700 stays on the grid
        await _requote(om, clock, 4800)
        assert lad.counts["hits"] == 0 and lad.counts["misses"] == 2  # 4800 at tick 0.01 was ready; not taken
        assert {k.tick for k in lad.ready(CID, BID)} == {10}  # the refill evicted the 0.01 ladder
        assert sorted(k.price for k in lad.ready(CID, BID)) == [4780, 4790, 4800, 4810, 4820]
        assert set(_on_venue(ex, me)) == {4800}


@pytest.mark.asyncio
async def test_a_version_change_is_a_miss_and_the_ladder_is_signed_for_the_new_version(ex):
    async with _manager(ex, dry_run=True) as (om, clock, _):
        lad = om.presigned
        assert lad is not None
        await _requote(om, clock, 4700, core.PLACE)
        v2_hashes = {o.order_hash for o in lad.ready(CID, BID).values()}
        assert {k.version for k in lad.ready(CID, BID)} == {2}
        om.add_market(MarketRef(CID, UP, DOWN, TICK, "v2"))  # Protocol V2: orders for ExchangeV3
        await _requote(om, clock, 4800, core.PLACE)
        assert lad.counts["hits"] == 0 and lad.counts["misses"] == 2
        sent = [t for t in om.orders.values() if t.price == 4800]
        assert len(sent) == 1 and sent[0].order_id not in v2_hashes
        assert {k.version for k in lad.ready(CID, BID)} == {3} and lad.entries(CID) == 5
        assert all(o.version == 3 for o in lad.ready(CID, BID).values())


@pytest.mark.asyncio
async def test_an_entry_past_its_age_is_not_sent_and_ladders_are_resigned_at_half_age(ex):
    async with _manager(ex) as (om, clock, me):
        lad = om.presigned
        assert lad is not None
        await _requote(om, clock, 4700, core.PLACE)  # t0+1: ladder signed
        first = {k: o.order_hash for k, o in lad.ready(CID, BID).items()}
        clock.advance(2)
        assert om.presign() == 0  # 2 s old: younger than half of the 5 s max age
        clock.advance(1)
        assert om.presign() == 5 and lad.counts["evicted"] == 5  # 3 s old: all re-signed
        resigned = {o.order_hash for o in lad.ready(CID, BID).values()}
        assert len(resigned) == 5 and not set(first.values()) & resigned
        clock.advance(5.5)  # past max age, and no idle turn refreshed them
        await _requote(om, clock, 4800)
        assert lad.counts["stale"] == 1 and lad.counts["hits"] == 0
        (o,) = ex.engine.live_orders(account=me)
        assert o.price == 4800 and o.id not in first.values() and o.id not in resigned


@pytest.mark.asyncio
async def test_a_ladder_entry_whose_signed_fields_differ_is_never_sent(ex):
    async with _manager(ex) as (om, clock, me):
        lad = om.presigned
        assert lad is not None
        await _requote(om, clock, 4700, core.PLACE)
        key = next(k for k in lad.ready(CID, BID) if k.price == 4800)
        # A fault in the ladder: under 4800's key, an order signed for 4900.
        wrong = build_order(om.signer, UP, 0, 4900, 10 * SH, TICK, salt=1, timestamp_ms=clock.ms())
        lad._ladders[(CID, BID)][key] = _Entry(wrong, clock.ms())
        await _requote(om, clock, 4800)
        assert lad.counts["mismatch"] == 1 and lad.counts["hits"] == 0
        (o,) = ex.engine.live_orders(account=me)
        assert o.price == 4800 and o.id != wrong.order_hash  # signed afresh at the asked price


def _ladder(signer: OrderSigner, clock: ManualClock) -> tuple[Ladders, LadderKey]:
    lad = Ladders(signer, _salts(), depth=1, max_age_s=5.0)
    key = LadderKey(UP, 0, 4700, 10 * SH, TICK, 2)
    lad.fill(CID, BID, key, clock.ms(), 10)
    return lad, key


@pytest.mark.parametrize(
    "field, wrong",
    [
        ("price", dict(price=4800)),
        ("size", dict(size=11 * SH)),
        ("token", dict(token_id=DOWN)),
        ("side", dict(side=1)),
        ("version", dict(version=3)),
        ("signer", dict(signer=OrderSigner(TAKER_KEY))),
    ],
)
def test_each_signed_field_is_compared_before_an_entry_is_used(field: str, wrong: dict[str, object]) -> None:
    clock = ManualClock()
    signer = OrderSigner(MAKER_KEY)
    lad, key = _ladder(signer, clock)
    args: dict[str, object] = dict(signer=signer, token_id=UP, side=0, price=4700, size=10 * SH, tick=TICK, version=2)
    args.update(wrong)
    bad = build_order(
        args["signer"], args["token_id"], args["side"], args["price"], args["size"], args["tick"],  # type: ignore[arg-type]
        version=args["version"], salt=7, timestamp_ms=clock.ms(),  # type: ignore[arg-type]
    )  # fmt: skip
    assert lad.mismatch(bad, key), field
    lad._ladders[(CID, BID)][key] = _Entry(bad, clock.ms())
    assert lad.take(CID, BID, key, clock.ms()) is None
    assert lad.counts["mismatch"] == 1 and lad.counts["hits"] == 0
    # the genuine entry at the same key is used
    lad.fill(CID, BID, key, clock.ms(), 10)
    good = lad.take(CID, BID, key, clock.ms())
    assert good is not None and lad.mismatch(good, key) == "" and lad.counts["hits"] == 1


def test_a_presigned_body_is_byte_identical_to_a_freshly_signed_one() -> None:
    clock = ManualClock()
    signer = OrderSigner(MAKER_KEY)
    for version in (2, 3):
        lad = Ladders(signer, _salts(555), depth=0, max_age_s=5.0)
        key = LadderKey(DOWN, 0, 4600, 12_340_000, TICK, version)
        assert lad.fill(CID, ASK, key, clock.ms(), 1) == 1
        pre = lad.take(CID, ASK, key, clock.ms())
        assert pre is not None
        fresh = build_order(signer, DOWN, 0, 4600, 12_340_000, TICK, version=version, salt=555, timestamp_ms=clock.ms())
        assert pre is not fresh and pre.order_hash == fresh.order_hash
        body = encode(order_body(pre, "owner"))
        assert body == encode(order_body(fresh, "owner"))
        # ... and the bytes the dict path wrote before the order JSON was serialized once
        plain = {"order": fresh.wire, "owner": "owner", "orderType": "GTC", "deferExec": False, "postOnly": True}
        assert body == orjson.dumps(plain)
        maker, taker, _ = order_amounts(0, 4600, 12_340_000, TICK)
        assert orjson.loads(body)["order"]["makerAmount"] == str(maker) and str(taker) in body.decode()
        assert pre.wire_json is pre.wire_json  # serialized once


@pytest.mark.asyncio
async def test_ladders_are_bounded_forgotten_and_never_signed_ahead_of_a_send(ex):
    async with _manager(ex) as (om, clock, me):
        lad = om.presigned
        assert lad is not None
        await _requote(om, clock, 4700, core.PLACE)
        for price in (4900, 5100, 4500, 4300, 4800):
            await _requote(om, clock, price)
            assert lad.entries(CID) <= lad.cap
        assert lad.entries(CID) == lad.cap == 5
        # Staged but not yet sent: the idle work waits for the send.
        signed = lad.counts["signed"]
        clock.advance(3)  # every entry due for re-signing
        assert om.stage(*_bid(4700), clock.time())
        assert om.presign() == 0 and lad.counts["signed"] == signed
        await om.flush()
        await asyncio.sleep(0)
        assert lad.counts["signed"] > signed
        assert om.forget_presigned(CID) == 5 and lad.entries() == 0
        assert om.presign() == 0  # stopped quoting: nothing is signed for it again
        await om.cancel_all()
        assert om.forget_market(CID) and lad.markets() == set()


@pytest.mark.asyncio
async def test_the_same_salt_source_gives_the_same_ladders(ex):
    hashes = []
    for _ in range(2):
        async with _manager(ex, dry_run=True) as (om, clock, _):
            await _requote(om, clock, 4700, core.PLACE)
            assert om.presigned is not None
            hashes.append(sorted(o.order_hash for o in om.presigned.ready(CID, BID).values()))
    assert hashes[0] == hashes[1] and len(hashes[0]) == 5


@pytest.mark.asyncio
async def test_a_tick_change_keeps_the_markets_order_version(ex):
    async with _manager(ex, dry_run=True) as (om, clock, _):
        lad = om.presigned
        assert lad is not None
        om.add_market(MarketRef(CID, UP, DOWN, TICK, "v2"))  # Protocol V2: orders for ExchangeV3
        await _requote(om, clock, 4700, core.PLACE)
        om.cancel_off_grid(CID, 10)
        assert om.markets[CID].version == "v2" and om.markets[CID].tick == 10
        await _requote(om, clock, 4800, core.PLACE)
        assert {(k.tick, k.version) for k in lad.ready(CID, BID)} == {(10, 3)}  # not signed for V2 after the change


@pytest.mark.asyncio
async def test_a_notional_sized_quote_hits_the_ladder_after_a_move_at_its_new_size(ex):
    """The quote engine sizes an order by its risk (a fixed notional): a bid moved up buys fewer
    shares. The ladder signs each rung at the size the quote would have there; a basis whose size
    is not the notional one (cut by a room, say) keeps its own size on every rung."""
    from active_quoting.strategy.config import Config
    from active_quoting.strategy.quoting import notional_size

    size_at = notional_size(Config())
    async with _manager(ex) as (om, clock, me):
        om.enable_presign(depth=4, max_age_s=5.0, budget=64, size_at=size_at)
        lad = om.presigned
        assert lad is not None
        size = size_at(0, 4700)
        assert size != size_at(0, 5000)  # the premise: the size moves with the price
        await _requote(om, clock, 4700, core.PLACE, size=size)
        ready = lad.ready(CID, BID)
        assert {k.price: k.size for k in ready} == {p: size_at(0, p) for p in range(4300, 5200, TICK)}
        await _requote(om, clock, 5000, size=size_at(0, 5000))  # a 3-tick move, the notional's size there
        assert lad.counts["hits"] == 1 and set(_on_venue(ex, me)) == {5000}
        await _requote(om, clock, 5000 + TICK, size=7 * SH)  # a size the notional does not give
        assert lad.counts["hits"] == 1
        assert {k.size for k in lad.ready(CID, BID)} == {7 * SH}  # rungs keep that basis's size
