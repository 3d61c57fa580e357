"""Momentum detection: adverse-selection protection from trades and book depth.

Three causes start (or extend) a cooldown during which the market is not quoted (or quoted
wide, per ``momentum.action``):

* ``trade_move``: last-trade prices moving at least ``threshold_ticks`` within ``window_ms``;
* ``sweep``: near-touch depth of one side falling by at least ``sweep_depth_threshold`` of
  its maximum within the window;
* ``imbalance``: one side holding at most ``imbalance_threshold`` of the near-touch depth.

Book signals read the market without us: the caller passes our own resting sizes per Up-terms
level (``own_bids``/``own_asks``), which are subtracted (never below zero) before the touch and
the near-touch depth are taken (the core book's ``depth_without``). Our own levels and the book
do not change in the same instant: the caller's levels lead the book (an order counts from
before it is sent, and stops counting when its cancel is asked for), and the market channel
shows the change a few ms later. So for ``OWN_SETTLE_MS`` after our size at a level changes,
the book may show it before or after the change (summed over every change there in that time):
the current reading takes the larger market depth, the window's history the smaller, and only a
move that holds under either reading is a signal. A book that shows our order before the caller
counts it cannot be told from the market's own liquidity. Trades (``last_trade_price``) are the
market's own and are not adjusted.

Pure decision code: the caller passes the time (milliseconds), nothing here reads a clock.
Counts are per cause and counted once per onset (a condition that persists extends the
cooldown without recounting).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Protocol

from active_quoting import core
from active_quoting.strategy.config import MomentumConfig
from active_quoting.strategy.own_book import BOOK_ASK, BOOK_BID

# The core's names are bound at import time by its selector, which mypy cannot follow.
BID, ASK = BOOK_BID, BOOK_ASK
_MAX_PRICE: int = core.MAX_PRICE  # type: ignore[attr-defined]

CAUSES = ("trade_move", "sweep", "imbalance")
_PPM = 1_000_000
# How long a change of our own size at a level stays ambiguous (the book may show it late or
# early). At least the signal window, so a reading taken before the book caught up has left
# the sweep history by the time the ambiguity ends.
OWN_SETTLE_MS = 1000
_NO_OWN: Mapping[int, int] = MappingProxyType({})
_NEVER_MS = 1 << 62  # later than any time
_Bounds = tuple[dict[int, int], dict[int, int]]  # (least, most) of our size per level


def _ppm(value: Decimal) -> int:
    return int(value * _PPM)


class BookView(Protocol):
    """What the detector reads from a book (``core.Book`` provides it)."""

    @property
    def tick(self) -> int: ...
    def best_bid(self) -> int: ...
    def best_ask(self) -> int: ...
    def size_at(self, side: int, price: int) -> int: ...
    def depth_within(self, side: int, units: int) -> int: ...
    def depth_without(self, side: int, units: int, own: Mapping[int, int]) -> int: ...
    def top_levels(self, side: int, k: int) -> list[tuple[int, int]]: ...


@dataclass
class _Own:
    """Our size per level of one side, with the recent changes of each level.

    Read on every book frame of the market, and between our own changes nothing here moves:
    :meth:`update` does work only when our levels, what leaves them or the settle horizon
    changed, and :meth:`bounds` is computed once per such change."""

    now: dict[int, int] = field(default_factory=dict)
    # price -> (time, change of our size there), oldest first; pruned after the settle time
    changes: dict[int, deque[tuple[int, int]]] = field(default_factory=dict)
    # of ``now``, what our orders whose cancel is out hold: the venue may show them gone already
    leaving: Mapping[int, int] = field(default_factory=dict)
    # no entry of ``changes`` is older than this (nothing to prune while the horizon is before it)
    oldest_ms: int = field(default=_NEVER_MS, init=False, compare=False, repr=False)
    _bounds: _Bounds | None = field(default=None, init=False, compare=False, repr=False)  # since the last change

    def update(
        self, own: Mapping[int, int], now_ms: int, settle_ms: int, leaving: Mapping[int, int] = _NO_OWN
    ) -> _Bounds:
        """Take our levels now (and what of them is being cancelled); returns :meth:`bounds`."""
        if leaving != self.leaving:
            self.leaving = dict(leaving)  # a copy: the caller may change its mapping in place
            self._bounds = None
        if own != self.now:
            current = {p: q for p, q in own.items() if q > 0}
            if current != self.now:
                for price in self.now.keys() | current.keys():
                    delta = current.get(price, 0) - self.now.get(price, 0)
                    if delta:
                        self.changes.setdefault(price, deque()).append((now_ms, delta))
                        self.oldest_ms = min(self.oldest_ms, now_ms)
                self.now = current
                self._bounds = None
        horizon = now_ms - settle_ms
        if self.oldest_ms < horizon:
            oldest = _NEVER_MS
            for price in list(self.changes):
                hist = self.changes[price]
                while hist and hist[0][0] < horizon:
                    hist.popleft()
                if not hist:
                    del self.changes[price]
                else:
                    oldest = min(oldest, hist[0][0])
            self.oldest_ms = oldest
            self._bounds = None
        return self._bounds or self.bounds()

    def bounds(self) -> _Bounds:
        """(least, most) of our size the book may show per level (read-only: shared between
        calls until the next change).

        An order added within the settle time may not be shown yet, one taken out may still
        be shown (several orders can come and go at one level, so the changes add up), and one
        being cancelled may be shown gone before the venue confirms it.
        """
        if self._bounds is None:
            self._bounds = self._compute_bounds()
        return self._bounds

    def _compute_bounds(self) -> _Bounds:
        if not self.changes and not self.leaving:
            return self.now, self.now
        least = dict(self.now)
        most = dict(self.now)
        for price, hist in self.changes.items():
            cur = self.now.get(price, 0)
            least[price] = max(cur - sum(d for _, d in hist if d > 0), 0)
            most[price] = cur - sum(d for _, d in hist if d < 0)
        for price, size in self.leaving.items():
            least[price] = max(least.get(price, 0) - size, 0)
        return least, most


@dataclass
class _State:
    trades: deque[tuple[int, int]] = field(default_factory=deque)
    # The window's largest (smallest-reading) depth per side: (ms, depth), depths decreasing
    # (a sliding-window maximum: constant cost per update, however many updates the window holds)
    max_depth: tuple[deque[tuple[int, int]], deque[tuple[int, int]]] = field(
        default_factory=lambda: (deque(), deque())
    )
    own: tuple[_Own, _Own] = field(default_factory=lambda: (_Own(), _Own()))
    until_ms: int = 0
    cooldown_start_ms: int = 0
    accounted_ms: int = 0  # cooldown time before this instant is in banked_ms (or was taken)
    banked_ms: int = 0
    last_ms: int = 0
    active_causes: set[str] = field(default_factory=set)


def _depth_range(book: BookView, side: int, units: int, bounds: _Bounds) -> tuple[int, int]:
    """(largest, smallest) market depth of a side over the (least, most) of our own size the
    book may show: one reading when the two are the same."""
    least, most = bounds
    a = book.depth_without(side, units, least)
    if most is least:
        return a, a
    b = book.depth_without(side, units, most)
    return (a, b) if a >= b else (b, a)


def _window_max(window: deque[tuple[int, int]], now_ms: int, value: int, horizon_ms: int) -> int:
    """Add ``value`` at ``now_ms`` and return the largest value since ``horizon_ms``; ``window``
    keeps only the values that can still be the largest (decreasing, newest last)."""
    while window and window[-1][1] <= value:
        window.pop()
    window.append((now_ms, value))
    while window[0][0] < horizon_ms:
        window.popleft()
    return window[0][1]


class MomentumDetector:
    """Per-market momentum state with cooldowns."""

    def __init__(self, cfg: MomentumConfig | None = None) -> None:
        cfg = cfg or MomentumConfig()
        self.window_ms = cfg.window_ms
        self.threshold_ticks = cfg.threshold_ticks
        self.cooldown_ms = int(cfg.cooldown_seconds * 1000)
        self.sweep_ppm = _ppm(cfg.sweep_depth_threshold)
        self.imbalance_ppm = _ppm(cfg.imbalance_threshold)
        self.depth_ticks = cfg.depth_ticks
        self.settle_ms = max(self.window_ms, OWN_SETTLE_MS)
        self._states: dict[str, _State] = {}
        self.triggers: Counter[str] = Counter()
        # Cooldown scheduled per market (counted when it starts or is extended); see
        # take_cooldown_ms for the time actually spent in cooldown.
        self.cooldown_ms_total: Counter[str] = Counter()

    def _state(self, key: str, now_ms: int) -> _State:
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = _State(accounted_ms=now_ms)
        if now_ms > st.last_ms:
            st.last_ms = now_ms
        return st

    @staticmethod
    def _accrue(st: _State, now_ms: int) -> None:
        start = max(st.cooldown_start_ms, st.accounted_ms)
        end = min(st.until_ms, now_ms)
        if end > start:
            st.banked_ms += end - start
        if now_ms > st.accounted_ms:
            st.accounted_ms = now_ms

    def _trigger(self, key: str, st: _State, cause: str, now_ms: int, holds: bool) -> None:
        if not holds:
            st.active_causes.discard(cause)
            return
        if cause not in st.active_causes:
            st.active_causes.add(cause)
            self.triggers[cause] += 1
        until = now_ms + self.cooldown_ms
        if until > st.until_ms:
            self._accrue(st, now_ms)
            if now_ms >= st.until_ms:
                st.cooldown_start_ms = now_ms
            self.cooldown_ms_total[key] += until - max(st.until_ms, now_ms)
            st.until_ms = until

    def on_trade(self, key: str, now_ms: int, price: int, tick: int) -> bool:
        """A last-trade price (units). Returns True when it starts or extends a cooldown."""
        st = self._state(key, now_ms)
        trades = st.trades
        trades.append((now_ms, price))
        while trades and trades[0][0] < now_ms - self.window_ms:
            trades.popleft()
        prices = [p for _, p in trades]
        holds = max(prices) - min(prices) >= self.threshold_ticks * tick
        self._trigger(key, st, "trade_move", now_ms, holds)
        return holds

    def on_book(
        self,
        key: str,
        now_ms: int,
        book: BookView,
        own_bids: Mapping[int, int] = _NO_OWN,
        own_asks: Mapping[int, int] = _NO_OWN,
        leaving_bids: Mapping[int, int] = _NO_OWN,
        leaving_asks: Mapping[int, int] = _NO_OWN,
    ) -> bool:
        """The Up book after an update, with our resting sizes per Up-terms level taken out.

        ``own_bids``/``own_asks``: price (units) -> our remaining size (micro-shares) resting
        there, as the order manager knows it (a BUY of Down at q is an Up ask at 1 - q).
        ``leaving_bids``/``leaving_asks``: the part of those our orders being cancelled hold (the
        book may show them gone before the venue confirms: read either way, as for the settle time).
        Checks sweeps and one-sided thinning near the touch; returns True when either holds.
        """
        st = self._state(key, now_ms)
        units = min(self.depth_ticks * book.tick, _MAX_PRICE)
        # Per side: the largest market depth any timing of our own changes allows (the
        # current reading) and the smallest (what the window remembers).
        own_bid, own_ask = st.own
        settle = self.settle_ms
        high_bid, low_bid = _depth_range(book, BID, units, own_bid.update(own_bids, now_ms, settle, leaving_bids))
        high_ask, low_ask = _depth_range(book, ASK, units, own_ask.update(own_asks, now_ms, settle, leaving_asks))
        t = st.last_ms  # never behind an earlier reading: a wall clock stepped back cannot hide one
        horizon = t - self.window_ms
        max_depth_bid, max_depth_ask = st.max_depth
        max_bid = _window_max(max_depth_bid, t, low_bid, horizon)
        max_ask = _window_max(max_depth_ask, t, low_ask, horizon)
        keep = _PPM - self.sweep_ppm
        swept = (max_bid > 0 and high_bid * _PPM <= keep * max_bid) or (
            max_ask > 0 and high_ask * _PPM <= keep * max_ask
        )
        # A side is thin only if it is thin with it at its largest and the other at its smallest.
        bid_total = high_bid + low_ask
        ask_total = low_bid + high_ask
        thin = (bid_total > 0 and high_bid * _PPM <= self.imbalance_ppm * bid_total) or (
            ask_total > 0 and high_ask * _PPM <= self.imbalance_ppm * ask_total
        )
        if swept or thin or st.active_causes:  # else both would only discard a cause not there
            self._trigger(key, st, "sweep", now_ms, swept)
            self._trigger(key, st, "imbalance", now_ms, thin)
        return swept or thin

    def is_active(self, key: str, now_ms: int) -> bool:
        """True while the key is in cooldown (the cooldown expires by itself)."""
        st = self._states.get(key)
        return st is not None and now_ms < st.until_ms

    def cooldown_until(self, key: str) -> int:
        st = self._states.get(key)
        return st.until_ms if st else 0

    def take_cooldown_ms(self, now_ms: int) -> dict[str, int]:
        """Per market, the cooldown time spent up to ``now_ms`` since the last take (non-zero only).

        Meant to be persisted as it accrues (added to a stored total), so a killed process
        loses at most one interval.
        """
        out: dict[str, int] = {}
        for key, st in self._states.items():
            self._accrue(st, now_ms)
            if st.banked_ms:
                out[key] = st.banked_ms
                st.banked_ms = 0
        return out

    def forget(self, key: str, now_ms: int | None = None) -> int:
        """Drop all of a market's state (its window was pruned).

        Returns the cooldown time spent and not yet taken, up to ``now_ms`` (default: the
        last time the market was seen), so the caller can persist it.
        """
        self.cooldown_ms_total.pop(key, None)
        st = self._states.pop(key, None)
        if st is None:
            return 0
        self._accrue(st, st.last_ms if now_ms is None else now_ms)
        return st.banked_ms
