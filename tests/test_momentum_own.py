"""Momentum signals read the market without our own orders (issue 9, item 6).

The book update that carries our own new order (and the one removing our cancelled order) must
not read as a sweep or one-sided thinning, whichever of the book and our order tracker learns
of the change first; the market's own moves still fire. Also the per-market lifecycle of the
detector: forget() and the incremental cooldown drain.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from active_quoting import core
from active_quoting.strategy.config import MomentumConfig
from active_quoting.strategy.momentum import MomentumDetector

SH = 1_000_000
BID, ASK = core.BID, core.ASK
# The calm market (others only): two levels a side around 0.50, 100 shares each.
CALM_BIDS = {4900: 100 * SH, 4800: 100 * SH}
CALM_ASKS = {5100: 100 * SH, 5200: 100 * SH}


def feed(d: MomentumDetector, now: int, book: object, own_bids: Mapping[int, int], own_asks: Mapping[int, int]) -> bool:
    """on_book with our own levels; a detector whose on_book has no own arguments (before the
    fix) is fed the same books without them, which is what the bot did."""
    if "own_bids" in inspect.signature(d.on_book).parameters:
        return d.on_book("m", now, book, own_bids, own_asks)
    return d.on_book("m", now, book)


def make_book(others: tuple[dict[int, int], dict[int, int]], own: tuple[dict[int, int], dict[int, int]]) -> object:
    """The venue's Up book: others' levels plus ours at the same prices."""
    sides = []
    for side in (BID, ASK):
        levels = dict(others[side])
        for p, q in own[side].items():
            levels[p] = levels.get(p, 0) + q
        sides.append([(p, q) for p, q in levels.items() if q])
    b = core.Book("up", 100)
    b.apply_snapshot(sides[0], sides[1])
    return b


class Run:
    """Replays a sequence where our own orders and the book change at separate moments."""

    def __init__(self, d: MomentumDetector, others=(CALM_BIDS, CALM_ASKS)) -> None:
        self.d = d
        self.others = (dict(others[0]), dict(others[1]))
        self.in_book: tuple[dict[int, int], dict[int, int]] = ({}, {})  # ours, as the venue shows it
        self.known: tuple[dict[int, int], dict[int, int]] = ({}, {})  # ours, as the tracker reports it
        self.now = 0
        self.fired: list[int] = []
        self.max_raw_depth = [0, 0]

    def step(self, dt: int = 5) -> None:
        self.now += dt
        book = make_book(self.others, self.in_book)
        for side in (BID, ASK):
            self.max_raw_depth[side] = max(self.max_raw_depth[side], book.depth_within(side, 300))
        if feed(self.d, self.now, book, dict(self.known[BID]), dict(self.known[ASK])):
            self.fired.append(self.now)
        assert self.d.is_active("m", self.now) == bool(self.fired and self.now < self.d.cooldown_until("m"))


def _add(levels: dict[int, int], price: int, size: int) -> None:
    levels[price] = levels.get(price, 0) + size
    if not levels[price]:
        del levels[price]


# (side, price): at the touch, and alone inside the spread (improving the touch)
PLACEMENTS = [(BID, 4900), (BID, 5000), (ASK, 5100), (ASK, 5000)]
# Our tracker counts an order from before it is sent and stops counting it when we ask for its
# cancel, so it leads the book (or, on a fast feed, the two agree at the next update).
TIMINGS = ["in step", "tracker first"]


@pytest.mark.parametrize("size", [200 * SH, 1000 * SH])
@pytest.mark.parametrize("side,price", PLACEMENTS)
@pytest.mark.parametrize("timing", TIMINGS)
def test_own_order_added_then_cancelled_fires_nothing(size: int, side: int, price: int, timing: str) -> None:
    """Calm book; our order of size S at the touch (or improving it); cancelled 5 ms later."""
    r = Run(MomentumDetector(MomentumConfig()))
    for _ in range(3):
        r.step(100)  # calm: nothing fires
    assert not r.fired
    # placement
    if timing == "tracker first":
        _add(r.known[side], price, size)
        r.step()
        _add(r.in_book[side], price, size)
    else:
        _add(r.in_book[side], price, size)
        _add(r.known[side], price, size)
    r.step()
    # our order really is in the book the detector reads
    assert r.max_raw_depth[side] >= 200 * SH + size
    # cancel 5 ms later: the tracker drops it when we ask (it leads), the book follows
    _add(r.known[side], price, -size)
    if timing == "tracker first":
        r.step()
    _add(r.in_book[side], price, -size)
    for _ in range(5):
        r.step()
    r.step(2000)
    assert r.fired == [] and sum(r.d.triggers.values()) == 0, dict(r.d.triggers)
    assert r.d.cooldown_ms_total["m"] == 0

    # the same books read blind (no own levels) do fire: the scenario is the one the issue saw
    blind = MomentumDetector(MomentumConfig())
    t = 0
    for in_book in ({}, {price: size}, {}):
        t += 5
        own = ({}, {})
        own[side].update(in_book)
        blind.on_book("m", t, make_book((CALM_BIDS, CALM_ASKS), own))
    assert blind.triggers["sweep"] + blind.triggers["imbalance"] >= 1


def test_market_sweep_of_the_same_size_still_fires() -> None:
    """Others take 200 shares off the bid (half the near-touch bid depth) while our order rests
    on the ask: a sweep, as without our order."""
    others = ({4900: 200 * SH, 4800: 200 * SH}, {5100: 200 * SH, 5200: 200 * SH})
    r = Run(MomentumDetector(MomentumConfig()), others)
    _add(r.in_book[ASK], 5100, 200 * SH)
    _add(r.known[ASK], 5100, 200 * SH)
    for _ in range(15):
        r.step(100)  # our order has long settled
    assert not r.fired
    del r.others[BID][4900]
    r.step()
    assert r.fired == [r.now] and r.d.triggers["sweep"] == 1 and r.d.is_active("m", r.now)


def test_others_leaving_the_level_we_rest_on_is_a_sweep() -> None:
    """Our 200 rest beside others' 200 at 0.49 (settled); others pull theirs: the market's
    near-touch bid depth halves even though the book still shows our 200 there."""
    others = ({4900: 200 * SH, 4800: 200 * SH}, {5100: 200 * SH, 5200: 200 * SH})
    r = Run(MomentumDetector(MomentumConfig()), others)
    _add(r.in_book[BID], 4900, 200 * SH)
    _add(r.known[BID], 4900, 200 * SH)
    for _ in range(15):
        r.step(100)
    assert not r.fired
    del r.others[BID][4900]
    r.step()
    assert r.d.triggers["sweep"] == 1 and r.d.is_active("m", r.now)


def test_our_resting_size_does_not_hide_a_thin_side() -> None:
    """Our 100 have rested on the bid for a while; others thin their bid from 100 to 10 against
    90 on the ask: thin, although the book still shows 110 bid against 90."""
    r = Run(MomentumDetector(MomentumConfig()), ({4900: 100 * SH}, {5100: 90 * SH}))
    _add(r.in_book[BID], 4900, 100 * SH)
    _add(r.known[BID], 4900, 100 * SH)
    for _ in range(15):
        r.step(100)
    assert not r.fired
    r.others[BID][4900] = 10 * SH
    r.step(600)  # slow enough not to be a sweep
    assert r.max_raw_depth[BID] == 200 * SH  # the detector read our 100 in the book all along
    assert r.fired == [r.now] and r.d.triggers["imbalance"] == 1 and r.d.triggers["sweep"] == 0


# -- property: only our own liquidity moves, in any timing the venue allows -------------------

_add_op = st.tuples(
    st.just("add"),
    st.sampled_from([BID, ASK]),
    st.integers(0, 5),  # ticks from the spread outward (0 = improving the touch)
    st.one_of(st.integers(1, 5000 * SH), st.integers(1, 100).map(lambda k: k * 10 * SH)),
    st.booleans(),  # the book shows it at once, or up to five updates later
    st.integers(1, 5),
)
_cancel_op = st.tuples(st.just("cancel"), st.integers(0, 20), st.integers(0, 5))
# adds and cancels more often than long quiet spells
_op = st.one_of(_add_op, _cancel_op, _add_op, _cancel_op, st.tuples(st.just("wait"), st.integers(1, 3000)))


@settings(max_examples=300, deadline=None)
# two of our orders at one level: one cancelled but still shown, the other new
@example(ops=[("add", BID, 0, 200 * SH, False, 1), ("cancel", 0, 3), ("add", BID, 0, 200 * SH, False, 1), ("cancel", 0, 0)], dts=[0])
@given(ops=st.lists(_op, max_size=30), dts=st.lists(st.integers(0, 40), min_size=1, max_size=30))
def test_only_our_own_liquidity_moving_never_signals(ops: list[tuple], dts: list[int]) -> None:
    """Our orders come and go at any level near the touch, with sizes up to 50x the calm depth;
    the tracker counts an order before the book shows it (up to five updates, at most 200 ms,
    earlier) and stops counting it when we ask for its cancel, before the book drops it; some
    orders never reach the book (refused). Nothing fires."""
    # a calm market two ticks wide, so that our orders can also improve either touch
    r = Run(MomentumDetector(MomentumConfig()), ({4800: 100 * SH, 4700: 100 * SH}, {5200: 100 * SH, 5300: 100 * SH}))
    live: list[tuple[int, int, int, int]] = []  # (side, price, size, step the book shows it) of ours
    pending: list[tuple[int, dict[int, int], int, int]] = []  # (due step, levels, price, delta)
    steps = 0

    def tick(dt: int, flush: bool = False) -> None:
        nonlocal steps
        steps += 1
        for _, levels, price, delta in [x for x in pending if flush or x[0] <= steps]:
            _add(levels, price, delta)
        pending[:] = [x for x in pending if not flush and x[0] > steps]
        r.step(dt)

    for i, op in enumerate(ops):
        dt = dts[i % len(dts)]
        if op[0] == "add":
            _, side, away, size, at_once, lag = op
            price = 4900 - 100 * away if side == BID else 5100 + 100 * away
            _add(r.known[side], price, size)
            if size % 7 == 0:
                # refused by the venue: never in the book, counted out when the refusal comes
                pending.append((steps + lag, r.known[side], price, -size))
            else:
                due = steps if at_once else steps + lag
                if at_once:
                    _add(r.in_book[side], price, size)
                else:
                    pending.append((due, r.in_book[side], price, size))
                live.append((side, price, size, due))
        elif op[0] == "cancel" and live:
            side, price, size, due = live.pop(op[1] % len(live))
            _add(r.known[side], price, -size)  # counted out when we ask for the cancel
            if op[2] == 0 and due <= steps:
                _add(r.in_book[side], price, -size)
            else:
                pending.append((max(due, steps + op[2]), r.in_book[side], price, -size))
        elif op[0] == "wait":
            tick(dt, flush=True)  # the views agree again before a long quiet spell
            dt = op[1]
        tick(dt)
    tick(10, flush=True)
    tick(10)
    assert r.known == r.in_book
    assert r.fired == [] and sum(r.d.triggers.values()) == 0, dict(r.d.triggers)


@pytest.mark.parametrize("side,price", [(BID, 4900), (ASK, 5100)])  # beside others at the touch
def test_our_cancel_the_book_shows_before_the_venue_confirms_it_fires_nothing(side: int, price: int) -> None:
    """Our order stays in the tracker until the venue confirms its cancel (an order being
    cancelled still counts against every limit), but the book may drop it first: read with the
    part of our size whose cancel is out as possibly gone, that is not a sweep."""

    def run(with_leaving: bool) -> dict[str, int]:
        d = MomentumDetector(MomentumConfig())
        ours: tuple[dict[int, int], dict[int, int]] = ({}, {})
        ours[side][price] = 1000 * SH
        none: tuple[dict[int, int], dict[int, int]] = ({}, {})
        t = 0
        for _ in range(4):  # resting, known, placed longer ago than the settle time
            t += 1000
            d.on_book("m", t, make_book((CALM_BIDS, CALM_ASKS), ours), *ours)
        leaving = ours if with_leaving else none
        for _ in range(3):  # cancel sent; the book shows it gone; the venue has not confirmed yet
            t += 5
            d.on_book("m", t, make_book((CALM_BIDS, CALM_ASKS), none), *ours, *leaving)
        t += 5
        d.on_book("m", t, make_book((CALM_BIDS, CALM_ASKS), none), *none)  # confirmed
        return dict(d.triggers)

    assert sum(run(with_leaving=True).values()) == 0
    assert sum(run(with_leaving=False).values()) >= 1  # read without it, the same books fire


def _plain_bounds(history: list[tuple[int, dict[int, int]]], leaving: Mapping[int, int], now_ms: int, settle_ms: int):
    """The definition the detector's incremental bookkeeping must give: our size now, and per
    level the changes of the last ``settle_ms`` (every update that moved it, recomputed here
    from the whole history of updates) widening it to (least, most)."""
    now: dict[int, int] = {}
    changes: dict[int, list[tuple[int, int]]] = {}
    for t, own in history:
        current = {p: q for p, q in own.items() if q > 0}
        for price in now.keys() | current.keys():
            delta = current.get(price, 0) - now.get(price, 0)
            if delta:
                changes.setdefault(price, []).append((t, delta))
        now = current
    least, most = dict(now), dict(now)
    for price, hist in changes.items():
        recent = [d for t, d in hist if t >= now_ms - settle_ms]
        if recent:
            cur = now.get(price, 0)
            least[price] = max(cur - sum(d for d in recent if d > 0), 0)
            most[price] = cur - sum(d for d in recent if d < 0)
    for price, size in leaving.items():
        least[price] = max(least.get(price, 0) - size, 0)
    return least, most


_levels = st.dictionaries(st.sampled_from([4800, 4900, 5000]), st.integers(0, 3).map(lambda k: k * SH), max_size=3)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 700), st.none() | _levels, _levels), min_size=1, max_size=40))
def test_own_bounds_kept_incrementally_equal_the_definition(steps: list[tuple]) -> None:
    """The detector reads our levels on every book frame and keeps their recent changes and the
    (least, most) bounds between frames instead of recomputing them (issue 11: CPU per frame):
    after any sequence of updates - our levels unchanged, changed, changes expiring, a cancel
    going out and confirmed - the bounds are the definition's, and an unchanged reading with no
    change in the settle time is our levels themselves (the detector then reads the book once)."""
    from active_quoting.strategy.momentum import _Own

    own, settle, t = _Own(), 1000, 0
    history: list[tuple[int, dict[int, int]]] = []
    levels: dict[int, int] = {}
    leaving: dict[int, int] = {}  # one mapping, changed in place between frames
    for dt, new_levels, leaving_levels in steps:  # None: our levels as they were (most frames)
        t += dt
        levels = dict(levels if new_levels is None else new_levels)
        leaving.clear()
        leaving.update({p: min(q, levels.get(p, 0)) for p, q in leaving_levels.items() if levels.get(p, 0)})
        own.update(levels, t, settle, leaving)
        history.append((t, levels))
        least, most = own.bounds()
        assert (least, most) == _plain_bounds(history, leaving, t, settle)
        if least == most and not leaving:
            assert least is most
