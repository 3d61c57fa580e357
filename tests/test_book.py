"""The L2 book core: behaviour of each operation, and the compiled book against its twin."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from active_quoting.errors import UnitsError

BID, ASK, NO = 0, 1, -1


def test_empty_book(impl):
    b = impl.Book("tok")
    assert (b.best_bid(), b.best_ask(), b.spread(), b.mid_x2()) == (NO, NO, NO, NO)
    assert (b.best_bid_size(), b.best_ask_size()) == (0, 0)
    assert b.top_levels(BID, 5) == [] and b.depth_within(ASK, 100) == 0
    assert not b.is_crossed() and not b.is_locked() and not b.desynced


def test_snapshot_order_irrelevant_and_zero_levels_dropped(impl):
    a, b = impl.Book("a"), impl.Book("b")
    bids = [(4800, 30), (4900, 20), (5000, 15), (4000, 0)]
    asks = [(5400, 10), (5300, 60), (5200, 25), (6000, 0)]
    a.apply_snapshot(bids, asks)
    b.apply_snapshot(list(reversed(bids)), list(reversed(asks)))
    for book in (a, b):
        assert book.best_bid() == 5000 and book.best_bid_size() == 15
        assert book.best_ask() == 5200 and book.best_ask_size() == 25
        assert book.level_count(BID) == 3 and book.level_count(ASK) == 3
        assert book.spread() == 200 and book.mid_x2() == 10_200
        assert book.top_levels(ASK, 2) == [(5200, 25), (5300, 60)]
        assert book.top_levels(BID, 10) == [(5000, 15), (4900, 20), (4800, 30)]


def test_snapshot_replaces_previous_levels(impl):
    b = impl.Book("t")
    b.apply_snapshot([(4000, 1), (4100, 2)], [(6000, 3)])
    b.apply_snapshot([(4500, 9)], [])
    assert b.top_levels(BID, 10) == [(4500, 9)]
    assert b.best_ask() == NO and b.size_at(BID, 4000) == 0


def test_level_updates_are_absolute_and_zero_removes(impl):
    b = impl.Book("t")
    b.apply_snapshot([(4800, 30), (4900, 20)], [(5100, 10)])
    b.set_level(BID, 4900, 5)
    assert b.best_bid_size() == 5
    b.set_level(BID, 4900, 0)
    assert b.best_bid() == 4800
    b.set_level(BID, 4800, 0)
    assert b.best_bid() == NO and b.level_count(BID) == 0
    b.set_level(ASK, 5000, 7)
    assert b.best_ask() == 5000
    b.set_level(ASK, 4000, 0)  # delete of an absent level is a no-op
    assert b.level_count(ASK) == 2


def test_best_price_search_across_words(impl):
    """Removing the best level finds the next one however far away it is."""
    b = impl.Book("t")
    b.apply_snapshot([(0, 1), (9999, 2)], [(10_000, 3), (1, 4)])
    b.set_level(BID, 9999, 0)
    assert b.best_bid() == 0
    b.set_level(ASK, 1, 0)
    assert b.best_ask() == 10_000
    b.set_level(BID, 0, 0)
    b.set_level(ASK, 10_000, 0)
    assert (b.best_bid(), b.best_ask()) == (NO, NO)


def test_depth_within_units_of_touch(impl):
    b = impl.Book("t")
    b.apply_snapshot([(5000, 10), (4990, 20), (4950, 40)], [(5010, 1), (5020, 2), (5100, 4)])
    assert b.depth_within(BID, 0) == 10
    assert b.depth_within(BID, 10) == 30
    assert b.depth_within(BID, 50) == 70
    assert b.depth_within(ASK, 10) == 3
    assert b.depth_within(ASK, 10_000) == 7


def test_depth_without_takes_our_own_sizes_out(impl):
    b = impl.Book("t")
    b.apply_snapshot([(5000, 10), (4990, 20), (4950, 40)], [(5010, 5), (5020, 2), (5100, 4)])
    assert b.depth_without(BID, 10, {}) == b.depth_within(BID, 10) == 30
    # ours alone at the best: the touch is 4990, and 10 units behind it reach 4980
    assert b.depth_without(BID, 10, {5000: 10}) == 20
    assert b.depth_without(BID, 40, {5000: 15}) == 60  # more than the book shows: still ours alone
    assert b.depth_without(BID, 10, {5000: 4}) == 6 + 20  # others rest there too: the touch stays
    assert b.depth_without(BID, 50, {5000: 10, 4990: 5}) == 15 + 40  # a level within reach counts what is beyond ours
    assert b.depth_without(BID, 50, {5000: 10, 4990: 20, 4950: 40}) == 0  # only we rest
    assert b.depth_without(ASK, 10, {5010: 5, 6000: 7}) == 2  # a level we hold that the book lacks reads nothing
    assert b.depth_without(ASK, 80, {5010: 1}) == 4 + 2 and b.depth_without(ASK, 90, {5010: 1}) == 4 + 2 + 4
    own = {5000: 10}
    b.depth_without(BID, 10, own)
    assert own == {5000: 10} and b.depth_without(BID, 0, {}) == 10  # nothing of the call stays behind


def test_crossed_and_locked(impl):
    b = impl.Book("t")
    b.apply_snapshot([(5000, 1)], [(5000, 1)])
    assert b.is_locked() and not b.is_crossed()
    b.set_level(BID, 5100, 1)
    assert b.is_crossed() and not b.is_locked()
    assert b.spread() == -100


def test_tick_is_stored_and_changeable_without_regrid(impl):
    b = impl.Book("t", 100)
    b.apply_snapshot([(4900, 1)], [(5100, 1)])
    b.set_tick(10)
    assert b.tick == 10
    assert b.best_bid() == 4900
    for bad in (0, 1001, -1, 0.01):
        with pytest.raises(UnitsError):
            b.set_tick(bad)


def test_stated_top_desyncs_after_threshold_in_a_row(impl):
    b = impl.Book("t", 100, 3)
    b.apply_snapshot([(4900, 1)], [(5100, 1)])
    assert b.check_top(4900, 5100)
    assert not b.check_top(4800, 5100)
    assert not b.check_top(4800, 5100)
    assert b.check_top(4900, 5100)  # agreement resets the streak
    assert b.disagreement_streak == 0 and not b.desynced
    for _ in range(3):
        b.check_top(4900, NO)
    assert b.desynced and b.disagreements == 5
    b.apply_snapshot([(4900, 1)], [])
    assert not b.desynced
    assert b.check_top(4900, NO)  # NO_PRICE states an empty side


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("set_level", (2, 5000, 1)),
        ("set_level", (BID, 10_001, 1)),
        ("set_level", (BID, -1, 1)),
        ("set_level", (BID, 5000, -1)),
        ("set_level", (BID, 5000, 900_000_000_000_001)),
        ("set_level", (BID, 5000.0, 1)),
        ("depth_within", (BID, -1)),
        ("top_levels", (3, 1)),
        ("depth_without", (BID, 10, {10_001: 1})),
        ("depth_without", (BID, 10, {5000: -1})),
        ("depth_without", (BID, 10, {5000.0: 1})),
        ("depth_without", (3, 10, {})),
    ],
)
def test_bad_arguments_raise_units_error(impl, call, args):
    b = impl.Book("t")
    with pytest.raises(UnitsError):
        getattr(b, call)(*args)
    assert b.level_count(BID) == 0


def test_bad_snapshot_leaves_book_untouched(impl):
    b = impl.Book("t")
    b.apply_snapshot([(4900, 1)], [(5100, 1)])
    with pytest.raises(UnitsError):
        b.apply_snapshot([(4800, 5)], [(20_000, 1)])
    assert b.top_levels(BID, 5) == [(4900, 1)] and b.best_ask() == 5100


# -- differential: compiled book against the twin after every operation -------------------

prices = st.one_of(st.sampled_from([0, 1, 63, 64, 4999, 5000, 9999, 10_000]), st.integers(0, 10_000))
sizes = st.one_of(st.just(0), st.integers(1, 1000), st.just(900_000_000_000_000))
level = st.tuples(prices, sizes)
ops = st.one_of(
    st.tuples(st.just("set"), st.sampled_from([BID, ASK]), prices, sizes),
    st.tuples(st.just("snapshot"), st.lists(level, max_size=12), st.lists(level, max_size=12)),
    st.tuples(st.just("clear")),
    st.tuples(st.just("check"), st.one_of(st.just(NO), prices), st.one_of(st.just(NO), prices)),
    st.tuples(st.just("tick"), st.sampled_from([1, 10, 25, 50, 100, 1000])),
)


def observe(b):
    top = b.top_state()
    assert top == (b.best_bid(), b.best_ask(), b.tick, b.desynced)  # the one-call reading
    assert [type(x) for x in top] == [int, int, int, bool]  # trust is a bool, not 0/1
    return (
        b.top_state(),
        b.best_bid(),
        b.best_ask(),
        b.best_bid_size(),
        b.best_ask_size(),
        b.spread(),
        b.mid_x2(),
        b.level_count(BID),
        b.level_count(ASK),
        b.is_crossed(),
        b.is_locked(),
        b.top_levels(BID, 4),
        b.top_levels(ASK, 4),
        b.top_levels(BID, 10_001),
        b.top_levels(ASK, 10_001),
        b.depth_within(BID, 0),
        b.depth_within(ASK, 0),
        b.depth_within(BID, 150),
        b.depth_within(ASK, 10_000),
        b.tick,
        b.desynced,
        b.disagreements,
        b.disagreement_streak,
        b.updates,
        b.snapshots,
    )


def apply_op(b, op):
    kind = op[0]
    if kind == "set":
        b.set_level(op[1], op[2], op[3])
    elif kind == "snapshot":
        b.apply_snapshot(op[1], op[2])
    elif kind == "clear":
        b.clear()
    elif kind == "check":
        return b.check_top(op[1], op[2])
    else:
        b.set_tick(op[1])
    return None


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, max_size=60))
def test_compiled_book_matches_twin(c_core, py_core, operations):
    c, p = c_core.Book("t", 100, 2), py_core.Book("t", 100, 2)
    assert observe(c) == observe(p)
    for op in operations:
        assert apply_op(c, op) == apply_op(p, op), op
        assert observe(c) == observe(p), op
        for side in (BID, ASK):
            for price in (0, 10_000, op[2] if op[0] == "set" else 5000):
                assert c.size_at(side, price) == p.size_at(side, price)


def _market_depth_before(book, side, units, own):
    """The detector's reading before it moved into the core (momentum.market_depth, 0ed15ab):
    the touch skipped past levels holding no more than ours, the depth within reach of it from
    the side's best, less our size at each level within reach (never more than the level)."""
    if not own:
        return book.depth_within(side, units)
    best = book.best_bid() if side == BID else book.best_ask()
    if own.get(best, 0) and book.size_at(side, best) <= own[best]:
        best = next((p for p, q in book.top_levels(side, len(own) + 1) if q > own.get(p, 0)), NO)
    if best == NO:
        return 0
    raw_best = book.best_bid() if side == BID else book.best_ask()
    span = min((raw_best - best if side == BID else best - raw_best) + units, 10_000)
    depth = book.depth_within(side, span)
    for price, size in own.items():
        if (price >= best - units) if side == BID else (price <= best + units):
            depth -= min(size, book.size_at(side, price))
    return depth


_price = st.one_of(st.integers(4800, 5200), st.sampled_from((0, 1, 9999, 10_000)))  # the grid's ends too
levels = st.lists(st.tuples(_price, st.integers(1, 50)), max_size=12)


@settings(max_examples=400, deadline=None)
@given(levels, levels, st.dictionaries(st.one_of(_price, st.integers(4780, 5220)), st.integers(0, 60), max_size=5),
       st.one_of(st.integers(0, 300), st.sampled_from((9_999, 10_000))), st.sampled_from((BID, ASK)),
       st.booleans())  # fmt: skip
def test_depth_without_agrees_across_twins_and_with_the_reading_before(
    c_core, py_core, bids, asks, own, units, side, proxy
):
    c, p = c_core.Book("t"), py_core.Book("t")
    for b in (c, p):
        b.apply_snapshot(bids, asks)
    want = _market_depth_before(p, side, units, own)
    mine = MappingProxyType(own) if proxy else own  # the detector's empty levels are a read-only mapping
    assert c.depth_without(side, units, mine) == p.depth_without(side, units, mine) == want
    assert _market_depth_before(c, side, units, own) == want


def test_depth_without_refuses_a_bad_level_before_reading_any(impl):
    b = impl.Book("t")
    b.apply_snapshot([(5000, 10), (4990, 20)], [(5010, 5)])
    for bad in ({5000: 10, 10_001: 1}, {4990: 3, 5000: -1}, {5000: 10, 4990: 2.0}):
        with pytest.raises(UnitsError):
            b.depth_without(BID, 10, bad)
        # nothing of the refused call stays behind (the compiled scratch is written only when all are good)
        assert b.depth_without(BID, 10, {}) == 30 and b.depth_without(BID, 10, {5000: 4}) == 26
