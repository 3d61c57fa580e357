"""Markout arithmetic: worked examples by hand, no fake markouts, twins agreeing under random streams."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from active_quoting.errors import UnitsError

NO = -1
SH = 1_000_000


def test_worked_example(impl):
    t = impl.MarkoutTracker([1000, 5000])
    t.on_mid(0, 10_000)  # mid 0.50
    buy = t.add_fill(100, 0, 4900, 10 * SH)  # BUY 10 @ 0.49
    sell = t.add_fill(200, 1, 5100, 4 * SH)  # SELL 4 @ 0.51
    assert t.at_fill(buy) == 200 and t.at_fill(sell) == 200  # 0.01 edge each (half units)
    t.on_mid(800, 10_400)  # mid 0.52
    t.on_mid(1150, 9_600)  # mid 0.48: the 1 s horizon of the BUY (1100) resolves at 0.52
    assert t.markout(buy, 0) == 10_400 - 9_800  # +0.03
    assert t.markout(sell, 0) == impl.PENDING  # its horizon is 1200
    t.on_mid(1300, 10_000)
    assert t.markout(sell, 0) == 10_200 - 9_600  # SELL @0.51, mid 0.48: +0.03
    t.flush(6000)
    assert t.markout(buy, 1) == 10_000 - 9_800 and t.markout(sell, 1) == 10_200 - 10_000
    assert t.resolved(0) == t.resolved(1) == 2
    assert t.weighted_sum(1) == 200 * 10 * SH + 200 * 4 * SH
    assert t.resolved_size(1) == 14 * SH
    assert t.toxic_count(1, 0) == 0


def test_one_sided_book_gives_no_fake_markout(impl):
    t = impl.MarkoutTracker([1000])
    i = t.add_fill(0, 0, 5000, SH)
    assert t.at_fill(i) == impl.UNAVAILABLE
    t.on_mid(500, NO)  # empty side: ignored
    t.on_mid(2000, 9000)  # first mid arrives after the horizon: no mid was known at 1000
    assert t.markout(i, 0) == impl.UNAVAILABLE and t.unavailable(0) == 1 and t.resolved(0) == 0
    j = t.add_fill(2100, 0, 5000, SH)
    t.on_mid(2500, NO)
    t.flush(3100)  # the mid stayed 0.45 through the one-sided spell
    assert t.markout(j, 0) == 9000 - 10_000


def test_toxicity_threshold(impl):
    t = impl.MarkoutTracker([5000])
    t.on_mid(0, 10_000)
    for k, px in enumerate((5000, 5050, 5200)):
        t.add_fill(k, 0, px, SH)
    t.flush(10_000)
    # markouts: 0, -0.005, -0.02 (in price); worse than -0.01 is only the last
    assert t.toxic_count(0, 100) == 1
    assert t.toxic_count(0, 0) == 2


def test_time_never_goes_back(impl):
    t = impl.MarkoutTracker([1000])
    t.on_mid(5000, 10_000)
    i = t.add_fill(100, 0, 5000, SH)  # stamped before the last event: taken at 5000
    t.on_mid(5900, 12_000)
    assert t.markout(i, 0) == impl.PENDING
    t.flush(6000)
    assert t.markout(i, 0) == 2000


@pytest.mark.parametrize("horizons", [[], [0], [5, 1], [1, 1], list(range(1, 10))])
def test_bad_horizons(impl, horizons):
    with pytest.raises(UnitsError):
        impl.MarkoutTracker(horizons)


def test_bad_inputs(impl):
    t = impl.MarkoutTracker([1000])
    for args in ((0, 2, 5000, 1), (0, 0, 10_001, 1), (0, 0, 5000, 0), (-1, 0, 5000, 1)):
        with pytest.raises(UnitsError):
            t.add_fill(*args)
    with pytest.raises(UnitsError):
        t.markout(0, 0)  # no fill yet


events = st.lists(
    st.one_of(
        st.tuples(
            st.just("fill"), st.integers(0, 400), st.integers(0, 1), st.integers(0, 10_000), st.integers(1, 10**9)
        ),
        st.tuples(st.just("mid"), st.integers(0, 400), st.one_of(st.just(NO), st.integers(0, 20_000))),
        st.tuples(st.just("flush"), st.integers(0, 400)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(events)
def test_compiled_tracker_matches_twin(c_core, py_core, stream):
    trackers = [c_core.MarkoutTracker([100, 500, 1500]), py_core.MarkoutTracker([100, 500, 1500])]
    now = 0
    for ev in stream:
        now += ev[1]
        for t in trackers:
            if ev[0] == "fill":
                t.add_fill(now, ev[2], ev[3], ev[4])
            elif ev[0] == "mid":
                t.on_mid(now, ev[2])
            else:
                t.flush(now)
    c, p = trackers
    assert c.fill_count == p.fill_count and c.mid_x2 == p.mid_x2
    for h in range(3):
        assert (c.resolved(h), c.unavailable(h), c.weighted_sum(h), c.resolved_size(h)) == (
            p.resolved(h),
            p.unavailable(h),
            p.weighted_sum(h),
            p.resolved_size(h),
        )
        assert c.toxic_count(h, 50) == p.toxic_count(h, 50)
        for i in range(p.fill_count):
            assert c.markout(i, h) == p.markout(i, h)
    for i in range(p.fill_count):
        assert c.at_fill(i) == p.at_fill(i) and c.size_of(i) == p.size_of(i)
