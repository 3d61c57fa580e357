"""Momentum detection: adverse-selection protection from trades and book depth.

Three causes start (or extend) a cooldown during which the market is not quoted (or quoted
wide, per ``momentum.action``):

* ``trade_move``: last-trade prices moving at least ``threshold_ticks`` within ``window_ms``;
* ``sweep``: near-touch depth of one side falling by at least ``sweep_depth_threshold`` of
  its maximum within the window;
* ``imbalance``: one side holding at most ``imbalance_threshold`` of the near-touch depth.

Pure decision code: the caller passes the clock (milliseconds). Counts are per cause and
counted once per onset (a condition that persists extends the cooldown without recounting).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from decimal import Decimal

from active_quoting import core
from active_quoting.strategy.config import MomentumConfig

CAUSES = ("trade_move", "sweep", "imbalance")
_PPM = 1_000_000


def _ppm(value: Decimal) -> int:
    return int(value * _PPM)


@dataclass
class _State:
    trades: deque[tuple[int, int]] = field(default_factory=deque)
    depths: deque[tuple[int, int, int]] = field(default_factory=deque)
    until_ms: int = 0
    active_causes: set[str] = field(default_factory=set)


class MomentumDetector:
    """Per-key (market or token) momentum state with cooldowns."""

    def __init__(self, cfg: MomentumConfig | None = None) -> None:
        cfg = cfg or MomentumConfig()
        self.window_ms = cfg.window_ms
        self.threshold_ticks = cfg.threshold_ticks
        self.cooldown_ms = int(cfg.cooldown_seconds * 1000)
        self.sweep_ppm = _ppm(cfg.sweep_depth_threshold)
        self.imbalance_ppm = _ppm(cfg.imbalance_threshold)
        self.depth_ticks = cfg.depth_ticks
        self._states: dict[str, _State] = {}
        self.triggers: Counter[str] = Counter()
        self.cooldown_ms_total: Counter[str] = Counter()

    def _state(self, key: str) -> _State:
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = _State()
        return st

    def _trigger(self, key: str, st: _State, cause: str, now_ms: int, holds: bool) -> None:
        if not holds:
            st.active_causes.discard(cause)
            return
        if cause not in st.active_causes:
            st.active_causes.add(cause)
            self.triggers[cause] += 1
        until = now_ms + self.cooldown_ms
        if until > st.until_ms:
            self.cooldown_ms_total[key] += until - max(st.until_ms, now_ms)
            st.until_ms = until

    def on_trade(self, key: str, now_ms: int, price: int, tick: int) -> bool:
        """A last-trade price (units). Returns True when it starts or extends a cooldown."""
        st = self._state(key)
        trades = st.trades
        trades.append((now_ms, price))
        while trades and trades[0][0] < now_ms - self.window_ms:
            trades.popleft()
        prices = [p for _, p in trades]
        holds = max(prices) - min(prices) >= self.threshold_ticks * tick
        self._trigger(key, st, "trade_move", now_ms, holds)
        return holds

    def on_book(self, key: str, now_ms: int, book: object) -> bool:
        """The book after an update: checks sweeps and one-sided thinning near the touch."""
        st = self._state(key)
        units = min(self.depth_ticks * book.tick, core.MAX_PRICE)  # type: ignore[attr-defined]
        bid = book.depth_within(core.BID, units)  # type: ignore[attr-defined]
        ask = book.depth_within(core.ASK, units)  # type: ignore[attr-defined]
        depths = st.depths
        depths.append((now_ms, bid, ask))
        while depths and depths[0][0] < now_ms - self.window_ms:
            depths.popleft()
        max_bid = max(d[1] for d in depths)
        max_ask = max(d[2] for d in depths)
        keep = _PPM - self.sweep_ppm
        swept = (max_bid > 0 and bid * _PPM <= keep * max_bid) or (max_ask > 0 and ask * _PPM <= keep * max_ask)
        total = bid + ask
        thin = total > 0 and min(bid, ask) * _PPM <= self.imbalance_ppm * total
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

    def forget(self, key: str) -> None:
        self._states.pop(key, None)
