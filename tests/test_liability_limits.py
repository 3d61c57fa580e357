"""The per-market liability limit holds whatever subset of our orders fills.

The simulator found the naive quoter at 60.12 USDC of worst-case liability against a 50 USDC
limit (issue 10, "no limit ever exceeded"). The cause: the rooms counted every pending order as
filled in one combined figure, so a resting ask (a BUY of Down) paired off the Up held and made
room for a bid of the full order size; the bid filled, the ask did not. A pending SELL (a bid
expressed as a SELL of held Down) was not counted at all. An order that may never fill must not
make room for another: each side's room is what keeps its own outcome's loss within the limit.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from fractions import Fraction

import msgspec
import pytest

from active_quoting import core
from active_quoting.clock import ManualClock
from active_quoting.execution.order_manager import MarketRef, OrderManager
from active_quoting.model import ASK, BID, BUY, SELL, Fill, OrderIntent, PendingOrder, up_terms
from active_quoting.strategy.config import load_config
from active_quoting.strategy.inventory import InventoryManager
from active_quoting.strategy.momentum import MomentumDetector
from active_quoting.strategy.quote_pass import naive_config
from active_quoting.strategy.quoting import MarketDecision, MarketQuoter, SideDecision
from active_quoting.strategy.risk import RiskManager
from active_quoting.venue.orders import build_order
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner
from active_quoting.venue.user_codec import FillTracker, TradeEvent
from exchange_peer import CID, DOWN, MAKER_KEY, SH, TAKER_KEY, UP, derive

LIMIT = Fraction(50)


def _inventory(*fills: tuple[str, str, int, int]) -> InventoryManager:
    inv = InventoryManager()  # the default limits: 50 USDC per market, 100 shares
    inv.register_market("M", "UP", "DOWN")
    for n, (token, side, price, size) in enumerate(fills):
        inv.apply_fill(Fill(f"t{n}", f"o{n}", "M", token, side, price, size, "CONFIRMED"))
    return inv


def _worst_after(inv: InventoryManager, orders: list[PendingOrder]) -> Fraction:
    """The largest liability any subset of ``orders`` leaves once filled (each subset applied
    to a copy of the inventory through its fill path)."""
    worst = Fraction(0)
    base = [f for m in inv._markets.values() for f in m.fills]
    for k in range(len(orders) + 1):
        for subset in itertools.combinations(orders, k):
            copy = _inventory()
            for f in base:
                copy.apply_fill(f)
            for n, (token, side, price, size) in enumerate(subset):
                copy.apply_fill(Fill(f"p{n}", f"q{n}", "M", token, side, price, size, "MATCHED"))
            worst = max(worst, copy.liability("M"))
    return worst


def _new_orders(inv: InventoryManager, pending: list[PendingOrder], bid: int, ask: int) -> list[PendingOrder]:
    """What the engine would add at Up-terms ``bid`` and ``ask`` given the rooms: a BUY of Up
    sized to the bid's room, a BUY of Down sized to the ask's (both at least one share)."""
    bid_room, ask_room, bid_usdc, ask_usdc = inv.rooms("M", {"M": pending})
    out = []
    bid_size = min(bid_room, bid_usdc * core.PRICE_SCALE // bid)
    if bid_size >= SH:
        out.append(PendingOrder("UP", BUY, bid, bid_size))
    ask_size = min(ask_room, ask_usdc * core.PRICE_SCALE // (core.PRICE_SCALE - ask))
    if ask_size >= SH:
        out.append(PendingOrder("DOWN", BUY, core.PRICE_SCALE - ask, ask_size))
    return out


@pytest.mark.parametrize(
    "held, pending, bid, ask",
    [
        # The simulator's case: long Up at 0.85, a 10 USDC ask resting as a BUY of Down at 0.13.
        ([("UP", BUY, 5000, 74_640_000), ("DOWN", BUY, 1300, 21_600_000)],
         [PendingOrder("DOWN", BUY, 1300, 66_920_000)], 8400, 8700),
        # 42.5 USDC of Up; the ask (BUY Down 0.15) would pair off 66 of the 50 held.
        ([("UP", BUY, 8500, 50 * SH)], [PendingOrder("DOWN", BUY, 1500, 66_660_000)], 8400, 8500),
        # A bid resting as a SELL of held Down (a cancel in flight) next to its replacement.
        ([("UP", BUY, 8500, 50 * SH), ("DOWN", BUY, 2000, 30 * SH)],
         [PendingOrder("DOWN", SELL, 1500, 11_760_000), PendingOrder("DOWN", BUY, 1300, 60 * SH)], 8500, 8800),
        # Short Up-terms: long Down, both sides resting.
        ([("DOWN", BUY, 6000, 70 * SH)],
         [PendingOrder("UP", BUY, 3900, 25 * SH), PendingOrder("DOWN", BUY, 5800, 10 * SH)], 4000, 4200),
    ],
)  # fmt: skip
def test_rooms_keep_every_fill_subset_within_the_market_limit(held, pending, bid, ask):
    inv = _inventory(*held)
    assert _worst_after(inv, pending) <= LIMIT  # the starting point respects the limit
    orders = pending + _new_orders(inv, pending, bid, ask)
    assert len(orders) > len(pending)  # the rooms let something new out: the check is not vacuous
    assert _worst_after(inv, orders) <= LIMIT


def test_a_resting_ask_makes_no_room_for_the_bid():
    inv = _inventory(("UP", BUY, 8500, 50 * SH))  # 42.50 USDC if Up loses
    ask = [PendingOrder("DOWN", BUY, 1500, 66_660_000)]  # pairs off the 50 Up only if it fills
    assert inv.rooms("M")[2] == 7_500_000  # 7.50 USDC of bid room
    assert inv.rooms("M", {"M": ask})[2] == 7_500_000  # the ask changes nothing for the bid
    # and liability with pending orders is the worst case over which of them fill
    assert inv.liability("M", ask) == Fraction(85, 2)
    bid_sell = [PendingOrder("UP", SELL, 9000, 10 * SH)]  # sells Up bought at 0.85 for 0.90
    assert inv.liability("M", bid_sell) == Fraction(85, 2)  # lowers the loss if Up loses only
    inv2 = _inventory(("UP", BUY, 8500, 50 * SH), ("DOWN", BUY, 1000, 20 * SH))  # 42.50 + 2.00 - 20 paired
    sell_down = [PendingOrder("DOWN", SELL, 1500, 20 * SH)]  # unpairs them: a bid in Up terms
    assert inv2.liability("M") == Fraction(89, 2) - 20
    assert inv2.liability("M", sell_down) == Fraction(85, 2)  # cost basis 0.10 off, 20 Down gone
    assert inv2.rooms("M", {"M": sell_down})[2] == 7_500_000


# -- the same with the real quoter, order manager and venue ------------------------------


@contextlib.asynccontextmanager
async def _maker(ex) -> AsyncIterator[tuple[OrderManager, RestClient, ManualClock]]:
    clock = ManualClock()
    signer = OrderSigner(MAKER_KEY)
    rest = RestClient(ex.clob_url, signer, await derive(ex, MAKER_KEY))
    om = OrderManager(rest, signer, min_refresh_ms=0, global_cap_per_sec=1000, clock=clock)
    om.add_market(MarketRef(CID, UP, DOWN, 100))
    try:
        yield om, rest, clock
    finally:
        await rest.close()


async def _take(ex, token: str, price: int, size: int) -> None:
    """A taker BUY of ``token`` crossing our resting BUY of the complement (a mint)."""
    signer = OrderSigner(TAKER_KEY)
    async with RestClient(ex.clob_url, signer, await derive(ex, TAKER_KEY)) as taker:
        (r,) = await taker.post_orders([build_order(signer, token, 0, price, size, 100)], post_only=False)
    assert r.accepted, r


async def _sync_fills(rest: RestClient, tracker: FillTracker, inv: InventoryManager) -> int:
    """Our fills from ``/data/trades`` into the inventory (the bot's recovery path)."""
    new = 0
    for raw in await rest.trades(market=CID):
        event = msgspec.convert(dict(raw, event_type="trade"), TradeEvent)
        for f in tracker.fills_in(event):
            new += inv.apply_fill(f) == "new"
    return new


@pytest.mark.asyncio
async def test_the_naive_quoter_stays_within_the_limit_while_only_its_bids_fill(ex):
    cfg = naive_config(load_config(env={}))
    inv = InventoryManager(cfg.inventory)
    inv.register_market(CID, UP, DOWN)
    quoter = MarketQuoter(cfg, inv, MomentumDetector(cfg.momentum), RiskManager(cfg.risk))
    book = core.Book(UP, 100)
    book.apply_snapshot([(8400, 500 * SH)], [(8600, 500 * SH)])  # Up at 0.85: a share risks 0.84+
    async with _maker(ex) as (om, rest, clock):
        tracker = FillTracker(rest.creds.api_key, om.is_ours)  # type: ignore[union-attr]
        # 42.50 USDC of liability to start with: 50 Up bought at 0.85 (our bid, filled by a mint).
        quote, quote_price = up_terms(True, BUY, 8500)
        start = OrderIntent(CID, UP, BUY, 8500, 50 * SH, quote, quote_price)
        keep = SideDecision(core.NO_PRICE, 0, core.KEEP)
        om.stage(MarketDecision(CID, SideDecision(8500, 50 * SH, core.PLACE), keep, False, 100), [start], clock.time())
        await om.flush()
        await _take(ex, DOWN, 1500, 50 * SH)
        assert await _sync_fills(rest, tracker, inv) == 1 and inv.liability(CID) == Fraction(85, 2)
        bid_fills = ask_rested = 0
        for _ in range(4):  # each round: decide, send, and only our bid trades
            clock.advance(1.0)
            d = quoter.decide(CID, book, clock.ms(), om.resting(CID, BID), om.resting(CID, ASK), om.pending())
            om.stage(d, quoter.intents(CID, UP, DOWN, d), clock.time())
            await om.flush()
            ask_rested += any(o.quote == ASK for o in om.live(CID))
            for o in om.live(CID):
                if o.quote == BID and o.side == BUY:
                    await _take(ex, DOWN, core.PRICE_SCALE - o.price, o.remaining)
            bid_fills += await _sync_fills(rest, tracker, inv)
            assert inv.liability(CID) <= LIMIT, f"round {_}: liability {float(inv.liability(CID)):.2f} USDC"
        assert bid_fills >= 1 and ask_rested == 4  # the bid did fill; the ask rested throughout
        assert inv.liability(CID) > LIMIT - 1  # the room was used up to the limit, not beyond


@pytest.mark.asyncio
async def test_an_order_staged_in_a_pass_counts_against_the_total_for_the_markets_decided_after_it(ex):
    inv = InventoryManager()
    inv.max_liability_total = Fraction(15)
    inv.register_market(CID, UP, DOWN)
    inv.register_market("N", "U2", "D2")  # decided later in the same pass
    async with _maker(ex) as (om, rest, clock):
        bid = OrderIntent(CID, UP, BUY, 5000, 20 * SH, BID, 5000)  # 10 USDC if Up loses
        keep = SideDecision(core.NO_PRICE, 0, core.KEEP)
        assert om.stage(MarketDecision(CID, SideDecision(5000, 20 * SH, core.PLACE), keep, False, 100), [bid], 0.0)
        assert om.pending() == {CID: [(UP, BUY, 5000, 20 * SH)]}
        assert inv.rooms("N", om.pending())[2] == 5 * SH  # 15 total - the 10 staged in the other market
        await om.flush()
        (sent,) = om.live(CID)
        assert sent.status == "LIVE" and len(ex.engine.live_orders()) == 1
        assert om.pending() == {CID: [(UP, BUY, 5000, 20 * SH)]}  # sent: counted once, not twice
