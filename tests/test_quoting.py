"""The market quoter: book + inventory + momentum + risk through the compiled engine into venue orders."""

from __future__ import annotations

from decimal import Decimal

from active_quoting import core
from active_quoting.model import ASK, BID, BUY, SELL, OrderIntent
from active_quoting.strategy.config import Config, MomentumConfig, OrdersConfig, load_config
from active_quoting.strategy.inventory import Fill, InventoryManager
from active_quoting.strategy.momentum import MomentumDetector
from active_quoting.strategy.own_book import touch_without
from active_quoting.strategy.quoting import MarketQuoter, Resting, engine_from_config
from active_quoting.strategy.risk import RiskManager

SH = 1_000_000


def setup(cfg: Config | None = None):
    cfg = cfg or load_config(env={})
    inv = InventoryManager(cfg.inventory)
    inv.register_market("M", "UP", "DOWN")
    q = MarketQuoter(cfg, inv, MomentumDetector(cfg.momentum), RiskManager(cfg.risk))
    book = core.Book("UP", 100)
    book.apply_snapshot([(4900, 50 * SH)], [(5100, 50 * SH)])
    return q, inv, book


def test_engine_from_config_uses_fixed_point():
    e = engine_from_config(load_config(env={}))
    assert (e.skew_coef_ppm, e.order_size_usdc, e.improve_when_spread_ticks) == (100_000, 10_000_000, 4)


def test_two_sided_quote_and_venue_orders():
    q, inv, book = setup()
    d = q.decide("M", book, 0)
    assert (d.bid.price, d.bid.action_name, d.ask.price, d.ask.action_name) == (4900, "place", 5100, "place")
    # no inventory: the ask is a BUY of Down at 1 - 0.51
    assert q.intents("M", "UP", "DOWN", d) == [
        OrderIntent("M", "UP", BUY, 4900, 20_400_000, BID, 4900),
        OrderIntent("M", "DOWN", BUY, 4900, 20_400_000, ASK, 5100),
    ]
    inv.apply_fill(Fill("t", "o", "M", "UP", "BUY", 4900, 30 * SH, "MATCHED"))
    d = q.decide("M", book, 0)
    # long 30: skew 3 ticks down (0.46 / 0.48), the ask clamped a tick above the best bid
    assert (d.bid.price, d.ask.price) == (4600, 5000)
    (bid_leg, ask_leg) = q.intents("M", "UP", "DOWN", d)
    assert bid_leg == OrderIntent("M", "UP", BUY, 4600, 21_730_000, BID, 4600)
    # the 30 Up are matched, not settled: the venue would refuse their SELL, so the ask buys Down
    assert ask_leg == OrderIntent("M", "DOWN", BUY, 5000, 20_000_000, ASK, 5000)
    inv.apply_fill(Fill("t", "o", "M", "UP", "BUY", 4900, 30 * SH, "MINED"))  # delivered on chain
    (_, ask_leg) = q.intents("M", "UP", "DOWN", q.decide("M", book, 0))
    assert ask_leg == OrderIntent("M", "UP", SELL, 5000, 20_000_000, ASK, 5000)  # settled Up shares: sells them


def test_halt_cancels_everything():
    q, _, book = setup()
    q.risk.on_user_channel(0, False)
    d = q.decide("M", book, 1, Resting(4900, 20 * SH), Resting(5100, 19 * SH))
    assert (d.bid.action_name, d.ask.action_name, d.multiplier_pct) == ("cancel", "cancel", 0)


def test_desynced_book_is_not_quoted():
    q, _, book = setup()
    for _ in range(3):
        book.check_top(1, 2)
    d = q.decide("M", book, 0, Resting(4900, 20 * SH))
    assert d.bid.action_name == "cancel" and d.ask.action_name == "none"


def test_momentum_pulls_unless_cancel_on_momentum_is_off():
    q, _, book = setup()
    q.momentum.on_trade("M", 0, 5000, 100)
    q.momentum.on_trade("M", 100, 5400, 100)
    d = q.decide("M", book, 200, Resting(4900, 20 * SH))
    assert d.momentum and d.bid.action_name == "cancel"
    assert not q.decide("M", book, 5000).momentum  # cooldown expired
    cfg = Config(orders=OrdersConfig(cancel_on_momentum=False), momentum=MomentumConfig(cooldown_seconds=Decimal(2)))
    q2, _, book2 = setup(cfg)
    q2.momentum.on_trade("M", 0, 5000, 100)
    q2.momentum.on_trade("M", 100, 5400, 100)
    d = q2.decide("M", book2, 200, Resting(4900, 20 * SH))
    assert d.bid.action_name == "keep" and d.ask.action_name == "none"


def test_only50_places_both_buys_and_pauses_the_heavier_side():
    from active_quoting.strategy.only50 import Only50

    cfg = load_config(env={})
    inv = InventoryManager(cfg.inventory)
    inv.register_market("M", "UP", "DOWN")
    o = Only50(cfg, inv, RiskManager(cfg.risk))
    d, legs = o.decide("M", "UP", "DOWN", Resting(), Resting(), 5 * SH)
    assert legs == [
        OrderIntent("M", "UP", BUY, 5000, 20 * SH, BID, 5000),
        OrderIntent("M", "DOWN", BUY, 5000, 20 * SH, ASK, 5000),
    ]  # 10 USDC at 0.50
    assert (d.bid.action_name, d.ask.action_name) == ("place", "place")
    inv.apply_fill(Fill("t", "o", "M", "UP", "BUY", 5000, 90 * SH, "MATCHED"))  # 90 Up ahead: 90 + 20 > 100
    d, legs = o.decide("M", "UP", "DOWN", Resting(5000, 20 * SH), Resting(5000, 20 * SH), 5 * SH)
    assert (d.bid.action_name, d.ask.action_name) == ("cancel", "keep") and legs == []
    o.risk.kill(0, "test")
    d, _ = o.decide("M", "UP", "DOWN", Resting(), Resting(5000, 20 * SH), 5 * SH)
    assert d.ask.action_name == "cancel" and d.multiplier_pct == 0


def test_touch_without_our_own_sizes():
    book = core.Book("UP", 100)
    book.apply_snapshot([(5000, 20 * SH), (4500, 50 * SH)], [(5500, 10 * SH), (5600, 30 * SH)])
    assert touch_without(book, core.BID, {}) == 5000
    assert touch_without(book, core.BID, {5000: 20 * SH}) == 4500  # only we rest at 0.50
    assert touch_without(book, core.BID, {5000: 5 * SH}) == 5000  # someone else rests there too
    assert touch_without(book, core.BID, {5000: 20 * SH, 4500: 50 * SH}) == core.NO_PRICE
    assert touch_without(book, core.ASK, {5500: 10 * SH, 4000: SH}) == 5600  # a stale own level is ignored


def test_our_own_quote_is_not_the_touch_we_quote_against():
    # We bid 0.50 for 19 (improved on the 0.49 bid when the spread was wide); the 0.49 bid left
    # and the market's best bid is now 0.45. Read with our order in it, the touch is our own bid:
    # the engine would improve on it (0.51) and the hysteresis keeps the quote where the market
    # left it. Read without it, the bid follows the market down.
    q, _, book = setup()
    book.apply_snapshot([(5000, 19 * SH), (4500, 50 * SH)], [(5600, 50 * SH)])
    ours = Resting(5000, 19 * SH)
    blind = q.decide("M", book, 0, ours)
    assert (blind.bid.price, blind.bid.action_name) == (5100, "keep")
    d = q.decide("M", book, 0, ours, own=({5000: 19 * SH}, {}))
    # 0.45 / 0.56 is 11 ticks wide: improve by one on the others' touch
    assert (d.bid.price, d.bid.action_name, d.ask.price) == (4600, "replace", 5500)
    # a resting ask alone at the top is read out the same way: kept where the others' touch puts it
    book.apply_snapshot([(5000, 19 * SH), (4500, 50 * SH)], [(5500, 18 * SH), (5600, 50 * SH)])
    assert q.decide("M", book, 0, ours, Resting(5500, 18 * SH)).ask.price == 5400  # blind: improves on itself
    d = q.decide("M", book, 0, ours, Resting(5500, 18 * SH), own=({5000: 19 * SH}, {5500: 18 * SH}))
    assert (d.bid.price, d.ask.price, d.ask.action_name) == (4600, 5500, "keep")


def test_a_level_showing_less_than_our_size_stays_the_markets():
    # Our tracker and the book learn of our changes at different moments. A level that holds
    # less than our size there does not show all of ours: others may rest there, so the quotes
    # do not skip it (they would replace an order they just placed, and back again).
    q, _, book = setup()
    book.apply_snapshot([(5000, 10 * SH), (4700, 50 * SH)], [(5200, 50 * SH)])
    first = q.decide("M", book, 0)
    assert (first.bid.price, first.bid.action_name) == (5000, "place")
    ours = Resting(5000, first.bid.size)
    own = ({5000: first.bid.size}, {})
    # sent, not shown yet (others' 10 only); shown (10 + ours); partly filled, not yet reported
    for shown in (10 * SH, 10 * SH + first.bid.size, 15 * SH):
        book.apply_snapshot([(5000, shown), (4700, 50 * SH)], [(5200, 50 * SH)])
        d = q.decide("M", book, 1, ours, own=own)
        assert (d.bid.price, d.bid.action_name) == (5000, "keep"), shown
    assert touch_without(book, core.BID, {5000: 15 * SH}, exact=True) == 4700  # exactly ours: ours alone
    assert touch_without(book, core.BID, {5000: 20 * SH}, exact=True) == 5000  # less than ours: not skipped
    assert touch_without(book, core.BID, {5000: 20 * SH}) == 4700  # the signals' reading (they bound the timing)


def test_a_quote_made_on_the_others_touch_stays_clear_of_our_own_opposite_quote():
    # Others 0.40 / 0.45; our ask alone at 0.41. On the others' touch the bid would improve to
    # 0.41 and cross our own ask (post-only refused; with concurrent replaces it can arrive
    # before the ask's cancel): it is held a tick below it.
    q, _, book = setup()
    book.apply_snapshot([(4000, 50 * SH)], [(4100, 20 * SH), (4500, 50 * SH)])
    d = q.decide("M", book, 0, Resting(), Resting(4100, 20 * SH), own=({}, {4100: 20 * SH}))
    assert (d.bid.price, d.bid.action_name) == (4000, "place") and d.bid.size == 25 * SH
    assert (d.ask.price, d.ask.action_name) == (4400, "replace")
    # the mirror image: our bid alone at 0.59 under others' 0.55 / 0.60
    book.apply_snapshot([(5900, 20 * SH), (5500, 50 * SH)], [(6000, 50 * SH)])
    d = q.decide("M", book, 0, Resting(5900, 20 * SH), Resting(), own=({5900: 20 * SH}, {}))
    assert (d.ask.price, d.ask.action_name) == (6000, "place")
    assert (d.bid.price, d.bid.action_name) == (5600, "replace")


def test_a_quote_stays_clear_of_our_opposite_order_whose_cancel_is_out():
    # Our ask at 0.41 is being cancelled (no longer "resting" for the decision, but the venue
    # holds it until the cancel lands): the bid is still held a tick below it.
    q, _, book = setup()
    book.apply_snapshot([(4000, 50 * SH)], [(4100, 20 * SH), (4500, 50 * SH)])
    d = q.decide("M", book, 0, Resting(), Resting(), own=({}, {4100: 20 * SH}))
    assert (d.bid.price, d.bid.action_name) == (4000, "place")
