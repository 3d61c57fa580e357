"""Each window's fair value from the underlying's reference price (the venue's RTDS feed).

An up/down window is a digital option: Up pays 1 iff the settlement value at the end is at or
above the price to beat. This module keeps, per asset, the recent reference ticks and an online
volatility estimate (:class:`core.VolEstimator`), and per window its strike and the settlement
rule; the probability and its band come from the core (:func:`core.fair_up`).

* Strike: the previous window's settlement value (``priceToBeat(N) == finalPrice(N-1)``,
  POLYMARKET.md §8): under the point rule the latest tick at or before the window's start, under
  a TWAP rule the same average over the ``twap_s`` before the start as the window's own
  settlement; from the ticks kept here, and only when they cover that stretch with no gap
  longer than ``stale_seconds`` (a feed that was down at the start gives no strike rather than
  an old price). Gamma's ``priceToBeat`` (it appears about a minute in) is authoritative when
  known. A bot started mid-window without either has no fair value for it (quotes fall back to
  the book).
* Settlement: the point rule (the last value at the end) or the Chainlink TWAP over the window's
  last ``twap_s`` seconds (Gamma's ``cryptoMarketConfig``); inside the TWAP the observed part's
  average is known and passed to the core.
* Staleness: no tick for ``stale_seconds`` (by the bot's clock): no fair value.
* The guard: :meth:`FairValues.moved` says which markets' fair value moved by the guard's
  threshold since they were last decided (:meth:`decided`), so the feed's frame handler can
  have them decided again at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from active_quoting import core
from active_quoting.discovery import WindowInfo
from active_quoting.strategy.config import FairValueConfig

HISTORY_MS = 180_000  # reference ticks kept per asset: enough for a start second and a 60 s TWAP
FORCED_TWAP_S = 60  # settlement = "twap" on a window Gamma says nothing about


@dataclass(frozen=True, slots=True)
class Fair:
    price: int  # probability that Up wins, price units (0 .. MAX_PRICE)
    band: int  # half-band, price units: how far fair can move within the horizon
    spot: int  # the reference price it was computed from (1e-8 USD)


def vol_ppm(value: Decimal) -> int:
    """An annualised volatility (a decimal, 0.37) in the core's ppm (370_000)."""
    return int(value * 1_000_000)


def spot_units(value: Decimal) -> int:
    """A decimal USD price (Gamma's priceToBeat) in the feed's units, rounded half up."""
    return int((value * core.SPOT_SCALE).to_integral_value(rounding="ROUND_HALF_UP"))


class _Asset:
    __slots__ = ("ticks", "vol", "last_seen_ms")

    def __init__(self, cfg: FairValueConfig) -> None:
        self.ticks: deque[tuple[int, int]] = deque()  # (feed ms, price), feed-time order
        self.vol = core.VolEstimator(
            cfg.vol_half_life_seconds * 1000, vol_ppm(cfg.vol_floor), vol_ppm(cfg.vol_initial)
        )
        self.last_seen_ms = -1  # the bot's clock when the last tick arrived


class FairValues:
    def __init__(self, cfg: FairValueConfig) -> None:
        self.cfg = cfg
        self.stale_ms = int(cfg.stale_seconds * 1000)
        price = lambda d, key: core.parse_price(format(d, "f"), key)  # noqa: E731
        self.margin_extra = price(cfg.margin, "fair_value.margin")
        self.max_band = price(cfg.max_band, "fair_value.max_band")
        self.guard_move = price(cfg.guard_move, "fair_value.guard_move")
        self._assets: dict[str, _Asset] = {}
        self._strikes: dict[str, int] = {}  # market -> strike (1e-8 USD)
        self._decided: dict[str, int] = {}  # market -> fair price when last decided
        self.ticks = 0
        self.out_of_order = 0
        self.strike_mismatches = 0  # Gamma's priceToBeat differed from the feed's start tick

    # -- inputs -----------------------------------------------------------------------------

    def on_tick(self, asset: str, price: int, ts_ms: int, now_ms: int, watch: Iterable[WindowInfo] = ()) -> None:
        """One reference tick (feed time ``ts_ms``) seen at ``now_ms`` on the bot's clock;
        the strikes of the ``watch`` windows are taken as soon as the ticks make them final
        (the ticks around a start are kept only a few minutes)."""
        self._tick(asset, price, ts_ms, now_ms)
        for info in watch:
            if info.asset == asset and info.condition_id not in self._strikes:
                self.strike(info)

    def _tick(self, asset: str, price: int, ts_ms: int, now_ms: int) -> None:
        a = self._assets.get(asset)
        if a is None:
            a = self._assets[asset] = _Asset(self.cfg)
        if a.ticks and ts_ms <= a.ticks[-1][0]:
            if ts_ms == a.ticks[-1][0]:  # a correction of the same second: the later one wins
                a.ticks[-1] = (ts_ms, price)
                a.last_seen_ms = now_ms
            else:
                self.out_of_order += 1
            return
        self.ticks += 1
        a.ticks.append((ts_ms, price))
        a.vol.update(price, ts_ms)
        a.last_seen_ms = now_ms
        while a.ticks and a.ticks[0][0] < ts_ms - HISTORY_MS:
            a.ticks.popleft()

    def forget(self, market: str) -> None:
        self._strikes.pop(market, None)
        self._decided.pop(market, None)

    # -- outputs ----------------------------------------------------------------------------

    def strike(self, info: WindowInfo) -> int | None:
        """The window's price to beat: Gamma's when it says, else the feed's start tick."""
        known = self._strikes.get(info.condition_id)
        if info.price_to_beat is not None:
            gamma = spot_units(info.price_to_beat)
            if known is not None and known != gamma:
                self.strike_mismatches += 1
            self._strikes[info.condition_id] = gamma
            return gamma
        if known is not None:
            return known
        a = self._assets.get(info.asset)
        if a is None:
            return None
        start_ms = info.start * 1000
        if not a.ticks or a.ticks[-1][0] <= start_ms:
            return None  # no tick after the start yet: the start second may still bring one
        twap = self.twap_ms(info)
        from_ms = start_ms - twap  # the previous window's settlement stretch (an instant: the point rule)
        prev_ts = before = None
        for ts, price in a.ticks:
            if ts <= from_ms:
                prev_ts, before = ts, price  # in force at from_ms
                continue
            if ts > start_ms:
                break
            if prev_ts is None or ts - prev_ts > self.stale_ms:
                return None  # the stretch is not covered, or the feed was down inside it
            prev_ts, before = ts, price
        if prev_ts is None or before is None or start_ms - prev_ts > self.stale_ms:
            return None  # the start is not covered (started mid-window, history gone) or the feed was down
        strike = _average(a.ticks, from_ms, start_ms) if twap else before
        self._strikes[info.condition_id] = strike
        return strike

    def twap_ms(self, info: WindowInfo) -> int:
        if self.cfg.settlement == "point":
            return 0
        if self.cfg.settlement == "twap":
            return (info.twap_s or FORCED_TWAP_S) * 1000
        return info.twap_s * 1000

    def fair(self, info: WindowInfo, now_ms: int) -> Fair | None:
        """Up's fair value now, or None (no fresh reference, no strike)."""
        a = self._assets.get(info.asset)
        if a is None or not a.ticks or now_ms - a.last_seen_ms > self.stale_ms:
            return None
        strike = self.strike(info)
        if strike is None:
            return None
        end_ms = info.end * 1000
        spot = a.ticks[-1][1]
        twap = self.twap_ms(info)
        tau = end_ms - now_ms
        avg_known = known_ms = 0
        if twap and 0 < tau < twap:
            known_ms = twap - tau
            avg_known = _average(a.ticks, now_ms - known_ms, now_ms)
        price, band = core.fair_up(
            spot, strike, a.vol.sigma_ppm, tau, twap, avg_known, known_ms, self.cfg.horizon_ms
        )
        return Fair(price, band, spot)

    def margin(self, fair: Fair) -> int:
        """How far inside fair value our quotes must stay: the band plus the configured margin."""
        return fair.band + self.margin_extra

    def sigma_ppm(self, asset: str) -> int | None:
        a = self._assets.get(asset)
        return a.vol.sigma_ppm if a is not None else None

    # -- the guard --------------------------------------------------------------------------

    def decided(self, market: str, fair: Fair | None) -> None:
        """A quote pass decided ``market`` with this fair value."""
        if fair is None:
            self._decided.pop(market, None)
        else:
            self._decided[market] = fair.price

    def moved(self, windows: Iterable[WindowInfo], now_ms: int) -> list[str]:
        """Markets (of the given quoted windows) whose fair value is now at least the guard's
        move from where it was when they were last decided."""
        return [i.condition_id for i in windows if self.moved_since_decided(i.condition_id, self.fair(i, now_ms))]

    def moved_since_decided(self, market: str, fair: Fair | None) -> bool:
        """Whether ``market``, whose fair value is now ``fair``, must be decided again: it moved
        by the guard's threshold, the reference went away, or it was quoted on the book alone."""
        before = self._decided.get(market)
        if before is None:
            return fair is not None
        return fair is None or abs(fair.price - before) >= self.guard_move

    def exposed(self, fair: Fair, tick: int, bid_price: int, ask_price: int) -> tuple[bool, bool]:
        """Which of our resting quotes (NO_PRICE: none) the fair value has left exposed: a bid
        above fair - margin, an ask below fair + margin (the quote engine's bound)."""
        margin = self.margin(fair)
        bid = bid_price != core.NO_PRICE and bid_price > core.floor_to_tick(fair.price - margin, tick)
        ask = ask_price != core.NO_PRICE and ask_price < core.ceil_to_tick(fair.price + margin, tick)
        return bid, ask


def _average(ticks: deque[tuple[int, int]], from_ms: int, to_ms: int) -> int:
    """The time-weighted average of the reference over [from_ms, to_ms]: the value in force at
    each instant (before the first tick kept, the first one), rounded half up."""
    total = 0
    price = ticks[0][1]
    t = from_ms
    for ts, p in ticks:
        if ts <= from_ms:
            price = p
            continue
        if ts >= to_ms:
            break
        total += price * (ts - t)
        t, price = ts, p
    total += price * (to_ms - t)
    span = to_ms - from_ms
    return (total + span // 2) // span
