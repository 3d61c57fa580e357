"""Quote engine: the design's quoting rules on worked examples, invariants, and the twins agreeing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from active_quoting.errors import UnitsError

NO = -1
SH = 1_000_000  # one share in micro-shares
BIG = 10**12
BIGU = 10**13
NONE, KEEP, PLACE, REPLACE, CANCEL = 0, 1, 2, 3, 4


def decide(
    engine,
    bid,
    ask,
    tick=100,
    position=0,
    momentum=False,
    rest_bid=(NO, 0),
    rest_ask=(NO, 0),
    rooms=(BIG, BIG, BIGU, BIGU),
    min_size=5 * SH,
):
    return engine.decide(bid, ask, tick, min_size, position, momentum, *rest_bid, *rest_ask, *rooms)


def test_quotes_at_best_by_default(impl):
    e = impl.QuoteEngine()
    out = decide(e, 4900, 5100)  # spread 2 ticks < 4: no improvement
    # 10 USDC of risk per side: 10 / 0.49 = 20.40 shares bid; the ask risks 1 - 0.51 per share
    assert out == (4900, 20_400_000, PLACE, 5100, 20_400_000, PLACE)


def test_improves_one_tick_only_when_spread_is_wide(impl):
    e = impl.QuoteEngine()
    assert decide(e, 4600, 5000)[::3] == (4700, 4900)  # 4 ticks: improve
    assert decide(e, 4700, 5000)[::3] == (4700, 5000)  # 3 ticks: stay at best
    # improving a 2-tick spread would put both sides on one price: stay at the touch
    assert decide(impl.QuoteEngine(improve_when_spread_ticks=2), 4800, 5000)[::3] == (4800, 5000)
    assert decide(impl.QuoteEngine(improve_when_spread_ticks=2), 4700, 5000)[::3] == (4800, 4900)


def test_improvement_never_crosses(impl):
    e = impl.QuoteEngine(improve_when_spread_ticks=1)
    # a one-tick spread: improving would cross, so both stay at the touch
    assert decide(e, 4900, 5000)[::3] == (4900, 5000)


def test_offset_quotes_behind_the_touch(impl):
    assert decide(impl.QuoteEngine(offset_ticks=2), 4900, 5100)[::3] == (4700, 5300)


def test_inventory_skew_shifts_both_sides(impl):
    e = impl.QuoteEngine()  # 0.1 tick per share
    long = decide(e, 4500, 5000, position=30 * SH)  # 3 ticks down; improve first: 4600/4900
    assert long[::3] == (4300, 4600)
    short = decide(e, 4500, 5000, position=-30 * SH)  # 3 ticks up, ask clamped above the bid
    assert short[::3] == (4900, 5200)
    assert decide(e, 4500, 5000, position=-29 * SH)[::3] == (4800, 5100)  # 2.9 ticks truncates to 2


def test_skew_never_crosses_the_book(impl):
    e = impl.QuoteEngine()
    bid, _, _, ask, _, _ = decide(e, 4900, 5000, position=-90 * SH)  # 9 ticks up
    assert bid == 4900 and ask == 5900
    bid, _, _, ask, _, _ = decide(e, 4900, 5000, position=90 * SH)
    assert bid == 4000 and ask == 5000


def test_clamped_to_tick_and_one_minus_tick(impl):
    e = impl.QuoteEngine(skew_coef_ppm=10_000_000)  # 10 ticks per share
    bid, _, _, ask, _, _ = decide(e, 300, 500, position=2 * SH)  # 20 ticks down
    assert bid == 100 and ask == 400
    bid, _, _, ask, _, _ = decide(e, 9500, 9700, position=-2 * SH)
    assert bid == 9600 and ask == 9900


def test_no_quotes_without_a_two_sided_book(impl):
    e = impl.QuoteEngine()
    for bid, ask in ((NO, 5000), (4900, NO), (NO, NO), (5000, 5000), (5100, 5000)):
        assert decide(e, bid, ask) == (NO, 0, NONE, NO, 0, NONE)


def test_momentum_pulls_or_widens(impl):
    pull = impl.QuoteEngine()
    assert decide(pull, 4900, 5100, momentum=True, rest_bid=(4900, 20 * SH)) == (NO, 0, CANCEL, NO, 0, NONE)
    widen = impl.QuoteEngine(widen_on_momentum=True, max_spread_ticks=10)
    bid, _, _, ask, _, _ = decide(widen, 4900, 5100, momentum=True)
    assert (bid, ask) == (4500, 5500)  # 10 ticks around the 0.50 mid
    bid, _, _, ask, _, _ = decide(widen, 4900, 5000, momentum=True)  # mid 0.495: rounds outward
    assert (bid, ask) == (4400, 5500)


def test_hysteresis_keeps_orders_within_threshold(impl):
    e = impl.QuoteEngine()  # refresh at 2 ticks
    out = decide(e, 4900, 5100, rest_bid=(4800, 20 * SH), rest_ask=(5300, 19 * SH))
    assert (out[2], out[5]) == (KEEP, REPLACE)  # 1 tick off: keep; 2 ticks off: replace
    # a resting order larger than now allowed is replaced whatever its price
    out = decide(e, 4900, 5100, rest_bid=(4900, 30 * SH))
    assert out[2] == REPLACE


def test_sizes_follow_venue_rules_and_limits(impl):
    e = impl.QuoteEngine(order_size_usdc=1_000_000)  # 1 USDC: 2.04 shares at 0.49, under min size
    out = decide(e, 4900, 5100)
    assert out[1] == 5 * SH and out[4] == 5 * SH  # raised to the market minimum
    e = impl.QuoteEngine()
    out = decide(e, 4900, 5100, rooms=(12_345_678, BIG, BIGU, BIGU))
    assert out[1] == 12_340_000  # cut to the position room, on the 0.01 lot
    out = decide(e, 4900, 5100, rooms=(BIG, BIG, 3_000_000, BIGU))  # 3 USDC at 0.49 -> 6.12 shares
    assert out[1] == 6_120_000
    out = decide(e, 4900, 5100, rooms=(BIG, BIG, BIGU, 2_000_000))  # ask: liability 0.49 per share
    assert out[4] == 0 and out[3] == NO  # 4.08 shares < min size: no ask
    out = decide(e, 4900, 5100, rooms=(4 * SH, BIG, BIGU, BIGU))
    assert out[:3] == (NO, 0, NONE)


def test_tick_change_regrids_targets(impl):
    e = impl.QuoteEngine()
    # book still on the 0.001 grid after a change to 0.01: bid rounds down, ask up
    bid, _, _, ask, _, _ = decide(e, 4950, 5050, tick=100)
    assert (bid, ask) == (4900, 5100)


def test_venue_leg(impl):
    assert impl.venue_leg(True, 5200, 10 * SH, 0) == (impl.DOWN, impl.BUY, 4800, 10 * SH)
    assert impl.venue_leg(True, 5200, 10 * SH, 10 * SH) == (impl.UP, impl.SELL, 5200, 10 * SH)
    assert impl.venue_leg(False, 4800, 10 * SH, 3 * SH) == (impl.UP, impl.BUY, 4800, 10 * SH)
    assert impl.venue_leg(False, 4800, 10 * SH, 10 * SH) == (impl.DOWN, impl.SELL, 5200, 10 * SH)


@pytest.mark.parametrize(
    "args",
    [
        dict(bid=10_001, ask=5000),
        dict(bid=4900, ask=5100, tick=0),
        dict(bid=4900, ask=5100, position=10**12),
        dict(bid=4900, ask=5100, rooms=(-1, 0, 0, 0)),
        dict(bid=4900, ask=5100, rest_bid=(4900.0, 1)),
        dict(bid=4900, ask=5100, min_size=-5),
    ],
)
def test_bad_inputs_raise(impl, args):
    with pytest.raises(UnitsError):
        decide(impl.QuoteEngine(), **args)


# -- properties and the compiled engine against its twin ---------------------------------

ticks = st.sampled_from([1, 10, 25, 50, 100, 1000])
prices = st.one_of(st.just(NO), st.integers(0, 10_000))
inputs = st.tuples(
    prices,
    prices,
    ticks,
    st.integers(0, 50 * SH),
    st.integers(-(10**9), 10**9),
    st.booleans(),
    prices,
    st.integers(0, 100 * SH),
    prices,
    st.integers(0, 100 * SH),
    st.integers(0, 200 * SH),
    st.integers(0, 200 * SH),
    st.integers(0, 100 * SH),
    st.integers(0, 100 * SH),
)
engines = st.tuples(
    st.integers(0, 5),
    st.integers(1, 8),
    st.integers(1, 20),
    st.integers(1, 5),
    st.integers(0, 2_000_000),
    st.integers(1, 50_000_000),
    st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(engines, inputs)
def test_compiled_engine_matches_twin_and_invariants(c_core, py_core, params, args):
    c = c_core.QuoteEngine(*params)
    p = py_core.QuoteEngine(*params)
    out = c.decide(*args)
    assert out == p.decide(*args)
    best_bid, best_ask, tick = args[0], args[1], args[2]
    bid, bid_size, _, ask, ask_size, _ = out
    for price, size in ((bid, bid_size), (ask, ask_size)):
        assert (price == NO) == (size == 0)
        if price != NO:
            assert tick <= price <= 10_000 - tick and price % tick == 0  # on grid, inside (0, 1)
            assert size % 10_000 == 0 and size >= args[3]  # venue lot, at least the minimum
    if bid != NO:
        assert bid < best_ask and bid_size <= args[10]  # never crosses, within the room
    if ask != NO:
        assert ask > best_bid and ask_size <= args[11]
    if bid != NO and ask != NO:
        assert bid < ask


@given(st.integers(0, 10_000_000), st.integers(-9 * 10**11, 9 * 10**11))
def test_skew_twins_agree(c_core, py_core, coef, position):
    assert c_core.skew_ticks(coef, position) == py_core.skew_ticks(coef, position)
    assert py_core.skew_ticks(coef, -position) == -py_core.skew_ticks(coef, position)
