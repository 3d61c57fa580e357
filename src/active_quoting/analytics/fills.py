"""Fill analytics: markouts, toxicity, spread capture, rebates and P&L attribution.

Markouts come from the core's :class:`MarkoutTracker` (one per token); the rest is exact
rational arithmetic over fills. Definitions (per share, signed so that positive is good):

* spread capture = mid at the fill - fill price (BUY), fill price - mid (SELL);
* markout at h = mid h seconds later - fill price (same sign);
* adverse selection = spread capture - markout at the longest horizon (what the mid took back);
* estimated rebate = rebate share x fee-equivalent, fee-equivalent = rate x p x (1 - p) x shares
  (the market's ``feeSchedule``: ``C x rate x p(1-p)``);
* net = spread capture + rebates - adverse selection - fees;
* against fair value (when the reference price feeds it, :meth:`FillAnalytics.on_fair`): the
  same edge and markouts with the window's fair value (the probability the token wins, from
  the underlying) in place of the mid - whether the fills were good against the price that
  actually settles the market.

A fill is counted once per (trade id, order id): ``on_fill`` returns True only when it counted
it now. A fill that settles FAILED is taken back out of everything it added (counts, volume,
rebate, spread capture, its markouts at every horizon and the toxicity). Fills a previous run
already counted (the store, trades recovered from the venue) are declared with ``add_known`` so
they are never counted again. ``forget(market)`` drops a pruned market's state; later messages
for it are ignored.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from active_quoting import core
from active_quoting.strategy.config import AnalyticsConfig
from active_quoting.strategy.inventory import BUY, FAILED, SHARE, Fill

_HALF_UNIT_SHARE = Fraction(1, 2 * core.PRICE_SCALE * SHARE)  # half price unit x micro-share -> USDC
FORGOTTEN_KEPT = 4096  # pruned markets (and their tokens) remembered, to ignore late messages
_NOT_RESOLVED = (core.PENDING, core.UNAVAILABLE)


@dataclass(frozen=True)
class FeeSchedule:
    """A market's fee schedule: taker rate, exponent, rebate share (decimals as Fractions)."""

    rate: Fraction = Fraction(0)
    exponent: int = 1
    rebate_share: Fraction = Fraction(0)


@dataclass
class _MarketStats:
    fills: int = 0
    reversed: int = 0
    volume_shares: int = 0
    notional: Fraction = Fraction(0)
    rebate: Fraction = Fraction(0)
    fees: Fraction = Fraction(0)
    orders_placed: int = 0
    cancels: int = 0
    tokens: set[str] = field(default_factory=set)
    capture: Fraction = Fraction(0)  # spread capture, USDC
    capture_fills: int = 0
    keys: list[tuple[str, str]] = field(default_factory=list)  # every fill key seen in the market


class FillAnalytics:
    def __init__(self, cfg: AnalyticsConfig | None = None) -> None:
        cfg = cfg or AnalyticsConfig()
        self.horizons_ms = tuple(h * 1000 for h in cfg.markout_horizons_seconds)
        self.horizons_s = cfg.markout_horizons_seconds
        self.toxicity_horizon = cfg.markout_horizons_seconds.index(cfg.toxicity_horizon_seconds)
        self.toxicity_threshold = core.parse_price(format(cfg.toxicity_threshold, "f"), "toxicity_threshold")
        self._trackers: dict[str, object] = {}
        self._markets: dict[str, _MarketStats] = defaultdict(_MarketStats)
        self._fees: dict[str, FeeSchedule] = {}
        self._seen: dict[tuple[str, str], Fill] = {}
        # Fills counted by this process: key -> tracker index (per token) of the fill.
        self._index: dict[tuple[str, str], int] = {}
        self._failed: dict[str, set[int]] = {}  # token -> tracker indices of fills taken back out
        self._taken: dict[str, tuple[int, int]] = {}  # token -> (first fill not fully taken, values taken of it)
        self._forgotten: OrderedDict[str, None] = OrderedDict()  # markets and tokens
        # Per token, the (trade id, order id) of each tracker fill index, to store markouts by fill.
        self.fill_keys: dict[str, list[tuple[str, str]]] = {}
        self._start_ms: int | None = None
        self._last_ms = 0
        # Against fair value: per token a second tracker fed fair values, and per fill its index there.
        self._fair_trackers: dict[str, Any] = {}
        self._fair_index: dict[tuple[str, str], tuple[str, int]] = {}
        self._fair_failed: dict[str, set[int]] = {}
        self._fair_keys: dict[str, list[tuple[str, str]]] = {}  # per token, the fill key of each fair tracker index
        self._fair_taken: dict[str, tuple[int, int]] = {}

    def tracker(self, token: str):  # -> core.MarkoutTracker
        t = self._trackers.get(token)
        if t is None:
            t = self._trackers[token] = core.MarkoutTracker(self.horizons_ms)
        return t

    def set_fee_schedule(self, market: str, schedule: FeeSchedule) -> None:
        self._fees[market] = schedule

    def _clock(self, now_ms: int) -> None:
        if self._start_ms is None:
            self._start_ms = now_ms
        self._last_ms = max(self._last_ms, now_ms)

    # -- inputs -----------------------------------------------------------------------

    def on_mid(self, token: str, now_ms: int, mid_x2: int) -> None:
        """The token's book changed: twice its mid (NO_PRICE when a side is empty)."""
        if token in self._forgotten:
            return
        self._clock(now_ms)
        self.tracker(token).on_mid(now_ms, mid_x2)

    def on_fair(self, token: str, now_ms: int, fair_x2: int) -> None:
        """The token's fair value changed (twice it, in price units)."""
        if token in self._forgotten:
            return
        self._clock(now_ms)
        t = self._fair_trackers.get(token)
        if t is None:
            t = self._fair_trackers[token] = core.MarkoutTracker(self.horizons_ms)
        t.on_mid(now_ms, fair_x2)

    def on_order_placed(self, market: str, now_ms: int, count: int = 1) -> None:
        if market in self._forgotten:
            return
        self._clock(now_ms)
        self._markets[market].orders_placed += count

    def on_cancel(self, market: str, now_ms: int, count: int = 1) -> None:
        if market in self._forgotten:
            return
        self._clock(now_ms)
        self._markets[market].cancels += count

    def add_known(self, fills: Iterable[Fill]) -> None:
        """Fills a previous run already counted (from the store): a later message for one (a
        recovery from the venue's trades, a repeated status) is not counted again."""
        for fill in fills:
            if fill.market in self._forgotten or fill.key in self._seen:
                continue
            self._seen[fill.key] = fill
            self._markets[fill.market].keys.append(fill.key)

    def is_known(self, key: tuple[str, str]) -> bool:
        return key in self._seen

    def on_fill(self, fill: Fill, now_ms: int) -> bool:
        """A fill message; each (trade, order) counts once, a FAILED one is taken back out of
        everything it added. Returns True when the fill was counted now (first sight, not
        failed): the caller's cue for what runs once per fill (alerts); False for a known fill,
        a status change, a reversal or a forgotten market."""
        if fill.market in self._forgotten:
            return False
        self._clock(now_ms)
        st = self._markets[fill.market]
        known = self._seen.get(fill.key)
        if known is not None:
            if fill.status == FAILED and known.status != FAILED:
                self._seen[fill.key] = fill
                self._take_out(st, known)
            elif known.status != FAILED:
                self._seen[fill.key] = fill
            return False
        self._seen[fill.key] = fill
        st.keys.append(fill.key)
        if fill.status == FAILED:
            return False
        tracker = self.tracker(fill.token)
        self.fill_keys.setdefault(fill.token, []).append(fill.key)
        index = tracker.add_fill(fill.t_ms or now_ms, 0 if fill.side == BUY else 1, fill.price, fill.size)
        self._index[fill.key] = index
        fair_tracker = self._fair_trackers.get(fill.token)
        if fair_tracker is not None:
            side = 0 if fill.side == BUY else 1
            at = fair_tracker.add_fill(fill.t_ms or now_ms, side, fill.price, fill.size)
            self._fair_index[fill.key] = (fill.token, at)
            self._fair_keys.setdefault(fill.token, []).append(fill.key)
        edge = tracker.at_fill(index)
        if edge != core.UNAVAILABLE:
            st.capture += edge * fill.size * _HALF_UNIT_SHARE
            st.capture_fills += 1
        st.tokens.add(fill.token)
        self._count(st, fill, +1)
        return True

    def _take_out(self, st: _MarketStats, fill: Fill) -> None:
        """Reverse a FAILED fill counted by this process; one counted by an earlier run (known
        from the store) has nothing here to take out."""
        index = self._index.pop(fill.key, None)
        if index is None:
            return
        self._count(st, fill, -1)
        st.reversed += 1
        edge = self.tracker(fill.token).at_fill(index)
        if edge != core.UNAVAILABLE:
            st.capture -= edge * fill.size * _HALF_UNIT_SHARE
            st.capture_fills -= 1
        self._failed.setdefault(fill.token, set()).add(index)
        fair = self._fair_index.pop(fill.key, None)
        if fair is not None:
            self._fair_failed.setdefault(fair[0], set()).add(fair[1])

    def forget(self, market: str, tokens: Iterable[str] = ()) -> None:
        """Drop a pruned market: its counts, trackers and fill keys, and the trackers of its
        ``tokens`` (mids create one before any fill). Later fills, mids and order counts for it
        are ignored (a bounded memory of forgotten markets)."""
        st = self._markets.pop(market, None)
        self._fees.pop(market, None)
        gone = [market]
        for token in tokens:
            self._trackers.pop(token, None)
            self._taken.pop(token, None)
            self._fair_trackers.pop(token, None)
            self._fair_failed.pop(token, None)
            self._fair_keys.pop(token, None)
            self._fair_taken.pop(token, None)
            gone.append(token)
        if st is not None:
            for key in st.keys:
                self._seen.pop(key, None)
                self._index.pop(key, None)
                self._fair_index.pop(key, None)
            for token in st.tokens:
                self._fair_trackers.pop(token, None)
                self._fair_failed.pop(token, None)
                self._fair_keys.pop(token, None)
                self._fair_taken.pop(token, None)
                self._trackers.pop(token, None)
                self._taken.pop(token, None)
                self.fill_keys.pop(token, None)
                self._failed.pop(token, None)
                gone.append(token)
        for name in gone:
            self._forgotten[name] = None
        while len(self._forgotten) > FORGOTTEN_KEPT:
            self._forgotten.popitem(last=False)

    def _count(self, st: _MarketStats, fill: Fill, sign: int) -> None:
        p = Fraction(fill.price, core.PRICE_SCALE)
        shares = Fraction(fill.size, SHARE)
        fees = self._fees.get(fill.market, FeeSchedule())
        fee_equiv = shares * fees.rate * (p * (1 - p)) ** fees.exponent
        st.fills += sign
        st.volume_shares += sign * fill.size
        st.notional += sign * p * shares
        st.rebate += sign * fees.rebate_share * fee_equiv

    def flush(self, now_ms: int) -> None:
        """Resolve horizons that have passed with no new mid since."""
        self._clock(now_ms)
        for t in self._trackers.values():
            t.flush(now_ms)  # type: ignore[attr-defined]
        for t in self._fair_trackers.values():
            t.flush(now_ms)

    # -- report -----------------------------------------------------------------------

    def _excluded(self, token: str, h: int) -> tuple[int, int, int]:
        """(size, weighted sum, count) of the resolved markouts at horizon h of the token's
        fills taken back out: the tracker's totals include them, the report must not."""
        tracker: Any = self._trackers[token]
        size = wsum = count = 0
        for i in self._failed.get(token, ()):
            v = tracker.markout(i, h)
            if v not in _NOT_RESOLVED:
                q = tracker.size_of(i)
                size, wsum, count = size + q, wsum + v * q, count + 1
        return size, wsum, count

    def _toxic_excluded(self, token: str) -> int:
        tracker: Any = self._trackers[token]
        limit = -2 * self.toxicity_threshold
        marks = [tracker.markout(i, self.toxicity_horizon) for i in self._failed.get(token, ())]
        return sum(1 for v in marks if v not in _NOT_RESOLVED and v < limit)

    def market_report(self, market: str) -> dict[str, object]:
        st = self._markets[market]
        tokens = sorted(st.tokens)
        trackers = [self._trackers[t] for t in tokens]
        markouts = {}
        markout_pnl = {}
        for h, secs in enumerate(self.horizons_s):
            out = [self._excluded(t, h) for t in tokens]
            size = sum(t.resolved_size(h) for t in trackers) - sum(o[0] for o in out)  # type: ignore[attr-defined]
            wsum = sum(t.weighted_sum(h) for t in trackers) - sum(o[1] for o in out)  # type: ignore[attr-defined]
            resolved = sum(t.resolved(h) for t in trackers) - sum(o[2] for o in out)  # type: ignore[attr-defined]
            pnl = wsum * _HALF_UNIT_SHARE
            markout_pnl[secs] = pnl
            markouts[secs] = {
                "fills": resolved,
                "avg_per_share": (pnl / Fraction(size, SHARE)) if size else None,
                "pnl": pnl,
            }
        resolved_tox = sum(t.resolved(self.toxicity_horizon) for t in trackers)  # type: ignore[attr-defined]
        resolved_tox -= sum(self._excluded(t, self.toxicity_horizon)[2] for t in tokens)
        toxic = sum(t.toxic_count(self.toxicity_horizon, self.toxicity_threshold) for t in trackers)  # type: ignore[attr-defined]
        toxic -= sum(self._toxic_excluded(t) for t in tokens)
        adverse = sum((self._adverse(t) for t in tokens), Fraction(0))
        minutes = Fraction(max(1, self._last_ms - (self._start_ms or 0)), 60_000)
        return {
            "fills": st.fills,
            "reversed_fills": st.reversed,
            "volume_shares": Fraction(st.volume_shares, SHARE),
            "notional_usdc": st.notional,
            "orders_placed": st.orders_placed,
            "fill_rate": Fraction(st.fills, st.orders_placed) if st.orders_placed else None,
            "cancels": st.cancels,
            "refresh_rate_per_min": Fraction(st.cancels) / minutes,
            "spread_capture": st.capture,
            "estimated_rebate": st.rebate,
            "fees": st.fees,
            "markouts": markouts,
            "toxicity": Fraction(toxic, resolved_tox) if resolved_tox else None,
            "adverse_selection": adverse,
            "net": st.capture + st.rebate - adverse - st.fees,
            "vs_fair": self._fair_report(tokens),
        }

    def _fair_report(self, tokens: list[str]) -> dict[int, dict[str, object]]:
        """Per horizon (0: at the fill) against fair value: fills resolved, average per share
        (price), P&L (USDC); fills taken back out (ghosts) excluded."""
        out: dict[int, dict[str, object]] = {}
        for h, secs in ((-1, 0), *enumerate(self.horizons_s)):
            size = wsum = count = 0
            for token in tokens:
                tracker = self._fair_trackers.get(token)
                if tracker is None:
                    continue
                failed = self._fair_failed.get(token, ())
                for i in range(tracker.fill_count):
                    v = tracker.at_fill(i) if h < 0 else tracker.markout(i, h)
                    if i in failed or v in _NOT_RESOLVED:
                        continue
                    q = tracker.size_of(i)
                    size, wsum, count = size + q, wsum + v * q, count + 1
            pnl = wsum * _HALF_UNIT_SHARE
            shares = Fraction(size, SHARE)
            out[secs] = {"fills": count, "shares": shares, "avg_per_share": pnl / shares if size else None, "pnl": pnl}
        return out

    def _adverse(self, token: str) -> Fraction:
        """What the mid took back by the longest horizon, over fills that have reached it."""
        tracker: Any = self._trackers[token]
        failed = self._failed.get(token, ())
        last = len(self.horizons_ms) - 1
        total = 0
        for i in range(tracker.fill_count):
            if i in failed:
                continue
            edge = tracker.at_fill(i)
            later = tracker.markout(i, last)
            if edge in (core.UNAVAILABLE, core.PENDING) or later in (core.UNAVAILABLE, core.PENDING):
                continue
            total += (edge - later) * tracker.size_of(i)
        return total * _HALF_UNIT_SHARE

    def markets(self) -> list[str]:
        return list(self._markets)

    def take_resolved(self) -> list[tuple[str, str, int, int]]:
        """The markouts resolved since the last call: (trade id, order id, horizon seconds,
        markout in half price units; horizon 0 is the edge at the fill), each once - persisted
        as they resolve, so a kill -9 loses at most one call's worth. Horizons resolve in time
        order, and so do the fills of a token: a cursor per token skips the finished ones."""
        return _take(self._trackers, self.fill_keys, self._failed, self._taken, self.horizons_s)

    def take_resolved_fair(self) -> list[tuple[str, str, int, int]]:
        """As :meth:`take_resolved`, against fair value."""
        return _take(self._fair_trackers, self._fair_keys, self._fair_failed, self._fair_taken, self.horizons_s)

    def resolved_markouts(self):  # type: ignore[no-untyped-def]
        """(trade id, order id, horizon seconds, markout in half price units) for every resolved
        markout; horizon 0 is the edge against the mid at the fill."""
        for token, tracker in self._trackers.items():
            failed = self._failed.get(token, ())
            for i, (trade_id, order_id) in enumerate(self.fill_keys.get(token, [])[: tracker.fill_count]):
                if i in failed:
                    continue
                values = [(0, tracker.at_fill(i))]
                values += [(secs, tracker.markout(i, h)) for h, secs in enumerate(self.horizons_s)]
                for secs, v in values:
                    if v not in (core.PENDING, core.UNAVAILABLE):
                        yield trade_id, order_id, secs, v

    def report(self) -> dict[str, object]:
        """Per market and aggregate (summed) figures."""
        per = {m: self.market_report(m) for m in self._markets}
        summed = (
            "fills",
            "reversed_fills",
            "volume_shares",
            "notional_usdc",
            "orders_placed",
            "cancels",
            "spread_capture",
            "estimated_rebate",
            "fees",
            "adverse_selection",
            "net",
        )
        total: dict[str, object] = {k: sum((r[k] for r in per.values()), Fraction(0)) for k in summed}
        placed = total["orders_placed"]
        total["fill_rate"] = Fraction(total["fills"]) / placed if placed else None  # type: ignore[arg-type]
        vs_fair: dict[int, dict[str, object]] = {}
        for r in per.values():
            for secs, v in r["vs_fair"].items():  # type: ignore[attr-defined]
                acc = vs_fair.setdefault(secs, {"fills": 0, "shares": Fraction(0), "pnl": Fraction(0)})
                for k in ("fills", "shares", "pnl"):
                    acc[k] += v[k]  # type: ignore[operator]
        for acc in vs_fair.values():
            acc["avg_per_share"] = acc["pnl"] / acc["shares"] if acc["shares"] else None  # type: ignore[operator]
        total["vs_fair"] = vs_fair
        return {"markets": per, "total": total}


def _take(
    trackers: dict[str, Any], fill_keys: dict[str, list[tuple[str, str]]], failed_of: dict[str, set[int]],
    taken: dict[str, tuple[int, int]], horizons_s: tuple[int, ...],
) -> list[tuple[str, str, int, int]]:
    """What :meth:`FillAnalytics.take_resolved` walks: per token tracker, the fills' values not
    yet taken (``taken``: token -> (first unfinished fill, values taken of it))."""
    out: list[tuple[str, str, int, int]] = []
    horizons = (0, *horizons_s)
    for token, tracker in trackers.items():
        keys = fill_keys.get(token, [])
        count = min(tracker.fill_count, len(keys))
        failed = failed_of.get(token, ())
        first, done = taken.get(token, (0, 0))
        i = first
        while i < count:
            values = [tracker.at_fill(i)] + [tracker.markout(i, h) for h in range(len(horizons_s))]
            j = done if i == first else 0
            while j < len(values) and values[j] != core.PENDING:
                if values[j] != core.UNAVAILABLE and i not in failed:
                    out.append((keys[i][0], keys[i][1], horizons[j], values[j]))
                j += 1
            if j < len(values):  # this fill waits for later horizons, and so do the ones after it
                taken[token] = (i, j)
                break
            i += 1
        else:
            taken[token] = (count, 0)
    return out
