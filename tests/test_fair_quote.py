"""The quote engine with a fair value: bounded by fair -/+ margin, pulled on a wide band, twins agreeing."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from active_quoting.errors import UnitsError

NO = -1
SH = 1_000_000
BIG = 10**12
BIGU = 10**13
NONE, KEEP, PLACE, REPLACE, CANCEL = 0, 1, 2, 3, 4


def decide(engine, bid, ask, *fair_args, tick=100, rest_bid=(NO, 0), rest_ask=(NO, 0), position=0):
    return engine.decide(bid, ask, tick, 5 * SH, position, False, *rest_bid, *rest_ask, BIG, BIG, BIGU, BIGU, *fair_args)


def test_without_fair_the_decision_is_unchanged(impl):
    e = impl.QuoteEngine()
    assert e.max_fair_band == 0
    assert decide(e, 4900, 5100) == decide(e, 4900, 5100, NO, 0, 0) == (4900, 20_400_000, PLACE, 5100, 20_400_000, PLACE)
    # a band with max_fair_band 0 never pulls
    assert decide(e, 4900, 5100, NO, 0, 10_000)[::3] == (4900, 5100)


def test_fair_above_the_book_lifts_the_ask(impl):
    e = impl.QuoteEngine()
    # fair 0.5350, margin 1 tick: never ask below 0.5450 -> 0.55 on the 0.01 grid; the bid stays
    out = decide(e, 4900, 5100, 5350, 100, 0)
    assert out[::3] == (4900, 5500)
    assert out[4] == 22_220_000  # the ask is sized for its own liability (1 - 0.55)


def test_fair_below_the_book_lowers_the_bid(impl):
    e = impl.QuoteEngine()
    out = decide(e, 4900, 5100, 4650, 100, 0)  # bid at most 0.4550 -> 0.45
    assert out[::3] == (4500, 5100)
    # a resting bid at the touch is beyond the bound: exposed, cancelled now (not replaced: a
    # cancel is never held back by the refresh limits); the bounded one follows on a later pass
    out = decide(e, 4900, 5100, 4650, 100, 0, rest_bid=(4900, 20 * SH))
    assert out[:3] == (4500, 22_220_000, CANCEL)
    # a resting bid inside the bound but off target is replaced as usual
    out = decide(e, 4900, 5100, 4650, 100, 0, rest_bid=(4200, 20 * SH))
    assert out[:3] == (4500, 22_220_000, REPLACE)


def test_fair_inside_the_margin_leaves_both_sides(impl):
    e = impl.QuoteEngine()
    assert decide(e, 4900, 5100, 5000, 100, 0)[::3] == (4900, 5100)


def test_pushed_beyond_the_price_range_is_not_quoted(impl):
    e = impl.QuoteEngine()
    # fair near 0: bid bound below one tick; fair near 1: ask bound above 1 - tick
    assert decide(e, 4900, 5100, 50, 100, 0)[:3] == (NO, 0, NONE)
    assert decide(e, 4900, 5100, 9950, 100, 0)[3:] == (NO, 0, NONE)
    assert decide(e, 4900, 5100, 9950, 100, 0, rest_ask=(5100, 10 * SH))[3:] == (NO, 0, CANCEL)


def test_a_wide_band_pulls_both_sides(impl):
    e = impl.QuoteEngine(max_fair_band=300)
    assert e.max_fair_band == 300
    rest = dict(rest_bid=(4900, 20 * SH), rest_ask=(5100, 20 * SH))
    assert decide(e, 4900, 5100, 5000, 0, 300, **rest) == (4900, 20_400_000, KEEP, 5100, 20_400_000, KEEP)
    assert decide(e, 4900, 5100, 5000, 0, 301, **rest) == (NO, 0, CANCEL, NO, 0, CANCEL)
    assert decide(e, 4900, 5100, 5000, 0, 301) == (NO, 0, NONE, NO, 0, NONE)


@pytest.mark.parametrize(
    "args",
    [(-2, 0, 0), (10_001, 0, 0), (5000, -1, 0), (5000, 10_001, 0), (5000, 0, -1), (5000.0, 0, 0)],
)
def test_bad_fair_inputs_raise(impl, args):
    with pytest.raises(UnitsError):
        decide(impl.QuoteEngine(), 4900, 5100, *args)


def test_bad_max_fair_band_raises(impl):
    for bad in (-1, 10_001, 1.0):
        with pytest.raises(UnitsError):
            impl.QuoteEngine(max_fair_band=bad)


ticks = st.sampled_from([1, 10, 25, 50, 100, 1000])
prices = st.one_of(st.just(NO), st.integers(0, 10_000))
book_inputs = st.tuples(
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
    st.integers(0, 1_000),
)
fair_inputs = st.tuples(prices, st.integers(0, 1_000), st.integers(0, 2_000))


@settings(max_examples=600, deadline=None)
@given(engines, book_inputs, fair_inputs)
# found by CI: the book-only bid (improving to 2) does not fit 1 micro-USDC of room; the fair
# value's bound (1) costs less, so that bid fits - a worse price than the book-only one would be
@example((0, 1, 1, 1, 0, 1, False, 0), (1, 4, 1, 0, 0, False, NO, 0, NO, 0, 10_000, 0, 1, 0), (1, 0, 0))
def test_never_bid_above_fair_minus_margin_nor_ask_below_fair_plus_margin(c_core, py_core, params, args, fair_args):
    c = c_core.QuoteEngine(*params)
    p = py_core.QuoteEngine(*params)
    out = c.decide(*args, *fair_args)
    assert out == p.decide(*args, *fair_args)
    fair, margin, band = fair_args
    bid, bid_size, _, ask, ask_size, _ = out
    tick = args[2]
    plain = p.decide(*args)
    if params[7] > 0 and band > params[7]:
        assert bid == ask == NO
        return
    for price, size in ((bid, bid_size), (ask, ask_size)):
        assert (price == NO) == (size == 0)
        if price != NO:
            assert tick <= price <= 10_000 - tick and price % tick == 0
    if fair == NO:
        assert out == plain  # no fair value: exactly the book-only decision
        return
    if bid != NO:  # never better than the book-only bid (which a lower price's cost may let exist)
        assert bid <= fair - margin and (plain[0] == NO or bid <= plain[0])
    if ask != NO:
        assert ask >= fair + margin and (plain[3] == NO or ask >= plain[3])
    # a side is dropped only when its bound leaves the price range (a worse price never shrinks the size)
    if plain[0] != NO and bid == NO:
        assert fair - margin < tick
    if plain[3] != NO and ask == NO:
        assert fair + margin > 10_000 - tick
