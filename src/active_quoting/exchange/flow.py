"""Market flow for the embedded exchange: rolling up/down windows and the traders in them.

For each asset a latent underlying price follows a random walk with volatility regimes and
jumps. Each window (``{asset}-updown-{minutes}m-{start}``) has the underlying at its start as
strike K; the fair value of Up is ``Phi(ln(S/K) / (sigma * sqrt(tau)))`` with tau the time
left. Background makers keep a few levels around fair value (depth thinning near the ends),
noise takers arrive as a Poisson process, and informed takers sweep after jumps. Windows are
listed one ahead, resolved at their end (winner pays 1) and replaced. Deterministic for a seed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from active_quoting import core
from active_quoting.aio import cancel_and_wait
from active_quoting.discovery import window_slug
from active_quoting.exchange.engine import BUY, SCALE, EngineError, FeeSchedule, Market, Order, Result
from active_quoting.exchange.rtds import spot_units
from active_quoting.exchange.server import Exchange
from active_quoting.exchange.spot import SCALE_18
from active_quoting.venue.spot_feed import SPOT_SCALE

_log = logging.getLogger(__name__)

HOUSE = "0x0000000000000000000000000000000000000001"  # background makers' account
TAKER = "0x0000000000000000000000000000000000000002"  # noise and informed takers' account
START_PRICES = {"btc": 97_000.0, "eth": 3_400.0, "sol": 190.0, "xrp": 2.3, "doge": 0.32}


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@dataclass
class FlowConfig:
    assets: tuple[str, ...] = ("btc", "eth", "sol")
    window_s: int = 900
    step_ms: int = 200
    # Calibrated on the real BTC day (shared/data/real-btc-2026-06-08, 1-second Chainlink ticks):
    # annualised vol 0.37, 461 seconds beyond 5 sigma, kurtosis 36, 1 window in 7 flipping sign in
    # its last minute. 0.22 diffusion with regime changes plus small frequent jumps gives ~0.39,
    # ~430, ~60 and ~0.14 (the defaults before, 0.6 with 0.4% jumps every 100 s, gave 2.4 and 250).
    annual_vol: float = 0.22
    # The volatility the house prices the window with; 0: the realised one. Pricing with more
    # than is realised keeps the fair value (and so the book) near the middle: a calm market.
    pricing_vol: float = 0.0
    # The venue holds marketable orders on crypto markets this long before matching them (makers
    # can cancel meanwhile); the takers of the flow are subject to it. 0: matched at once.
    taker_delay_ms: int = 0
    # Informed takers act on a jump only this long after it (they watch the same underlying the
    # RTDS socket publishes); their orders are then held taker_delay_ms like any taker's. A maker
    # that sees the tick and cancels within reaction + taker delay is out of their way.
    informed_reaction_ms: int = 150
    # The background makers price off the underlying as it was this long ago: the venue's book
    # lags spot (its makers are slower than the informed takers), so after a jump it is stale
    # for a moment and only a maker watching spot itself gets out of the way. 0: at once.
    house_lag_ms: int = 0
    # Recorded spot paths (asset -> exchange.spot.SpotPath) replacing the random walk for those
    # assets: strikes and resolutions then follow the venue's rule on the real feed.
    spot_paths: dict[str, Any] = field(default_factory=dict)
    jump_prob_per_s: float = 0.012
    jump_sigma: float = 0.00045
    noise_takers_per_s: float = 0.6
    informed_share: float = 0.7
    levels: int = 4
    level_size_shares: int = 150
    half_spread_ticks: int = 2
    fee_rate: Fraction = Fraction(7, 100)
    rebate_share: Fraction = Fraction(1, 5)
    seed: int = 7



# Named markets for demos and tests: "lively" is the default flow; "calm" prices windows with
# more volatility than the path realises (the fair value stays near the middle) and has no
# jumps and no informed takers, for sessions that test plumbing, not momentum protection.
MARKETS: dict[str, dict[str, float]] = {
    "lively": {},
    "calm": {"annual_vol": 0.05, "pricing_vol": 1.0, "jump_prob_per_s": 0.0, "informed_share": 0.0},
}


def _merge(into: Result, other: Result) -> None:
    into.changes += other.changes
    into.trades += other.trades
    into.touched += other.touched
    into.canceled += other.canceled


@dataclass
class Window:
    asset: str
    start: int
    end: int
    market: Market
    strike: float
    slug: str
    resolved: bool = False
    quotes: dict[tuple[str, int], str] = field(default_factory=dict)  # (side, price) -> order id
    quoted_at: tuple[int, int] = (0, 0)  # (center, tick) of the last requote


class MarketFlow:
    def __init__(self, exchange: Exchange, cfg: FlowConfig | None = None) -> None:
        self.ex = exchange
        self.cfg = cfg or FlowConfig()
        self.rng = random.Random(self.cfg.seed)
        self.spot = {a: START_PRICES.get(a, 100.0) for a in self.cfg.assets}
        self.vol = {a: self.cfg.annual_vol for a in self.cfg.assets}
        for a, path in self.cfg.spot_paths.items():
            self.spot[a] = path.price_at(path.start_s)
        self.windows: list[Window] = []
        self.last_jump: dict[str, float] = {}
        self._seen: dict[str, deque[tuple[float, float]]] = {a: deque() for a in self.cfg.assets}  # (t, spot)
        self.informed_orders = 0
        # (jump time, order id) of the newest informed orders, for tests and diagnostics.
        self.informed_log: deque[tuple[float, str]] = deque(maxlen=256)
        self._seq = 0
        self._task: asyncio.Task[None] | None = None
        exchange.engine.credit(HOUSE, collateral=10**15)
        exchange.engine.credit(TAKER, collateral=10**15)

    # -- windows ------------------------------------------------------------------------

    def _ids(self, asset: str, start: int) -> tuple[str, str, str]:
        h = hashlib.sha256(f"{asset}:{start}:{self.cfg.seed}".encode()).digest()
        cid = "0x" + h.hex()
        up = str(int.from_bytes(hashlib.sha256(h + b"up").digest(), "big"))
        down = str(int.from_bytes(hashlib.sha256(h + b"down").digest(), "big"))
        return cid, up, down

    def open_window(self, asset: str, start: int) -> Window:
        cid, up, down = self._ids(asset, start)
        fees = FeeSchedule(self.cfg.fee_rate, 1, self.cfg.rebate_share, True)
        m = Market(cid, up, down, tick=100, base_tick=100, min_size=5_000_000, fees=fees)
        minutes = max(1, self.cfg.window_s // 60)
        slug = window_slug(asset, self.cfg.window_s, start)
        iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
        self._seq += 1
        gamma = {
            "id": str(1_000_000 + self._seq),
            "slug": slug,
            "conditionId": cid,
            "question": f"{asset.upper()} Up or Down - {minutes} minutes from {iso(start)}",
            "clobTokenIds": f'["{up}", "{down}"]',
            "outcomes": '["Up", "Down"]',
            "eventStartTime": iso(start),
            "startDate": iso(start - self.cfg.window_s),
            "endDate": iso(start + self.cfg.window_s),
            "orderPriceMinTickSize": 0.01,
            "orderMinSize": 5,
            "active": True,
            "closed": False,
            "acceptingOrders": True,
            "feesEnabled": True,
            "feeSchedule": {
                "exponent": 1,
                "rate": float(self.cfg.fee_rate),
                "takerOnly": True,
                "rebateRate": float(self.cfg.rebate_share),
            },
        }
        w = Window(asset, start, start + self.cfg.window_s, m, self.spot[asset], slug)
        self.ex.add_market(m, gamma)
        self.ex.announce_market(m, slug, gamma["question"])
        self.windows.append(w)
        return w

    def ensure_windows(self, now: float) -> None:
        """Current and next window per asset exist; finished ones are resolved."""
        length = self.cfg.window_s
        current = int(now) // length * length
        for asset in self.cfg.assets:
            have = {w.start for w in self.windows if w.asset == asset}
            for start in (current, current + length):
                if start not in have:
                    self.open_window(asset, start)
        for w in self.windows:
            path = self.cfg.spot_paths.get(w.asset)
            if w.start > now:
                w.strike = self.spot[w.asset]  # the strike is set when the window opens
            elif path is not None and not w.resolved:
                w.strike = path.price_at(w.start)  # the feed at the start: the price to beat
            if not w.resolved and now >= w.end:
                up_wins = path.up_wins(w.start, w.end) if path is not None else None
                if up_wins is None:
                    up_wins = self.spot[w.asset] >= w.strike
                winner = w.market.up if up_wins else w.market.down
                w.resolved = True
                for g in self.ex.gamma_markets:
                    if g["conditionId"] == w.market.condition_id:
                        g.update(closed=True, active=False, acceptingOrders=False)
                self.ex.resolve_market(w.market.condition_id, winner)
        self.windows = [w for w in self.windows if not w.resolved or now - w.end < 3 * length]

    # -- prices -------------------------------------------------------------------------

    def step_underlying(self, dt: float, now: float) -> None:
        for a, path in self.cfg.spot_paths.items():
            previous = self.spot.get(a)
            self.spot[a] = path.price_at(now)
            if previous and abs(math.log(self.spot[a] / previous)) > 4 * self.vol[a] * math.sqrt(
                max(dt, 1.0) / (365 * 24 * 3600)
            ):
                self.last_jump[a] = now  # a real jump: informed takers act on it
        for a in self.cfg.assets:
            if a in self.cfg.spot_paths:
                continue
            if self.rng.random() < dt * 0.02:  # regime change
                self.vol[a] = self.cfg.annual_vol * self.rng.choice((0.5, 1.0, 1.0, 2.0))
            sigma = self.vol[a] * math.sqrt(dt / (365 * 24 * 3600))
            shock = self.rng.gauss(0.0, sigma)
            if self.rng.random() < self.cfg.jump_prob_per_s * dt:
                shock += self.rng.gauss(0.0, self.cfg.jump_sigma)
                self.last_jump[a] = now
            self.spot[a] *= math.exp(shock)
        if self.cfg.house_lag_ms:
            keep = now - self.cfg.house_lag_ms / 1000
            for a, seen in self._seen.items():
                seen.append((now, self.spot[a]))
                while len(seen) > 1 and seen[1][0] <= keep:
                    seen.popleft()  # the first entry stays the one in force at now - lag

    def house_spot(self, asset: str, now: float) -> float:
        """The underlying as the background makers see it (``house_lag_ms`` ago)."""
        seen = self._seen.get(asset)
        return seen[0][1] if self.cfg.house_lag_ms and seen else self.spot[asset]  # the oldest kept: lag ago

    def fair_up(self, w: Window, now: float, spot: float | None = None) -> float:
        tau = max(w.end - now, 1e-3) / (365 * 24 * 3600)
        sigma = (self.cfg.pricing_vol or self.vol[w.asset]) * math.sqrt(tau)
        s = self.spot[w.asset] if spot is None else spot
        return _phi(math.log(s / w.strike) / sigma) if sigma > 0 else 0.5

    # -- traders ------------------------------------------------------------------------

    def _order(self, account: str, m: Market, token: str, side: str, price: int, size: int, kind: str = "GTC") -> Order:
        self._seq += 1
        oid = "0x" + hashlib.sha256(f"{account}:{self._seq}:{self.cfg.seed}".encode()).hexdigest()
        return Order(oid, account, f"house-{account[-4:]}", m.condition_id, token, side, price, size, kind)

    def _submit(self, order: Order, batch: Result | None = None) -> None:
        try:
            result = self.ex.engine.place(order, self.ex.clock.ms())
        except EngineError:
            return  # a background order the book refuses (e.g. would cross after a move): skip it
        if batch is None:
            self.ex._publish(result)
        else:
            _merge(batch, result)

    def requote(self, w: Window, now: float) -> None:
        m = w.market
        if m.resolved or not m.accepting or now < w.start - self.cfg.window_s:
            return
        fair = self.fair_up(w, now, self.house_spot(w.asset, now))
        tick = m.tick
        center = min(max(round(fair * SCALE / tick) * tick, tick), SCALE - tick)
        live = self.ex.engine.live
        if w.quoted_at == (center, tick) and all(oid in live for oid in w.quotes.values()):
            return  # nothing moved and nothing of the house's was taken: its quotes stand
        left = max(0.05, min(1.0, (w.end - now) / self.cfg.window_s))
        size = max(5, int(self.cfg.level_size_shares * left)) * 1_000_000
        wanted: dict[tuple[str, int], int] = {}
        for i in range(self.cfg.levels):
            bid = center - (self.cfg.half_spread_ticks + i) * tick
            ask = center + (self.cfg.half_spread_ticks + i) * tick
            if tick <= bid:
                wanted[("bid", bid)] = size * (i + 1)
            if ask <= SCALE - tick:
                wanted[("ask", ask)] = size * (i + 1)
        # One requote is one venue event: its cancels and places go out as one message per
        # market, as a batch of order operations would.
        batch = Result()
        for key, oid in list(w.quotes.items()):
            order = self.ex.engine.orders.get(oid)
            if key not in wanted or order is None or order.status != "LIVE":
                if order is not None and order.status == "LIVE":
                    _merge(batch, self.ex.engine.cancel(oid)[2])
                del w.quotes[key]
        for key, qty in wanted.items():
            if key in w.quotes:
                continue
            side, price = key
            # Bids as BUY Up; asks as BUY Down at 1 - p (the house holds no tokens).
            order = (
                self._order(HOUSE, m, m.up, BUY, price, qty)
                if side == "bid"
                else self._order(HOUSE, m, m.down, BUY, SCALE - price, qty)
            )
            best_ask, best_bid = m.best(1), m.best(0)
            if side == "bid" and best_ask != core.NO_PRICE and price >= best_ask:
                continue
            if side == "ask" and best_bid != core.NO_PRICE and price <= best_bid:
                continue
            self._submit(order, batch)
            if order.status == "LIVE":
                w.quotes[key] = order.id
        self.ex._publish(batch)
        w.quoted_at = (center, tick)

    def takers(self, w: Window, now: float, dt: float) -> None:
        m = w.market
        if m.resolved or not m.accepting or now < w.start:
            return
        reaction = self.cfg.informed_reaction_ms / 1000
        jumped = self.last_jump.get(w.asset, -1e9)
        informed = reaction <= now - jumped < reaction + 2.0
        if self.rng.random() >= self.cfg.noise_takers_per_s * dt * (4 if informed else 1):
            return
        fair = self.fair_up(w, now)
        acts_informed = informed and self.rng.random() < self.cfg.informed_share
        if acts_informed:
            buy_up = fair * SCALE > (m.best(0) + m.best(1)) / 2
        else:
            buy_up = self.rng.random() < 0.5
        size = self.rng.choice((5, 10, 20, 40, 80)) * 1_000_000
        if buy_up:
            order = self._order(TAKER, m, m.up, BUY, SCALE - m.tick, size, "FAK")
        else:
            order = self._order(TAKER, m, m.down, BUY, SCALE - m.tick, size, "FAK")
        if acts_informed:
            self.informed_orders += 1
            self.informed_log.append((jumped, order.id))
        if self.cfg.taker_delay_ms:
            asyncio.get_running_loop().call_later(self.cfg.taker_delay_ms / 1000, self._submit, order)
        else:
            self._submit(order)

    # -- running ------------------------------------------------------------------------

    def publish_spot(self, now: float) -> None:
        """The underlying to the RTDS socket, in units of 1e-8 (a recorded path's exact value)."""
        rtds = self.ex.rtds
        if not rtds.active:
            return
        for a in self.cfg.assets:
            path = self.cfg.spot_paths.get(a)
            exact = path.exact_at(now) if path is not None else None
            units = round(Fraction(exact, SCALE_18 // SPOT_SCALE)) if exact is not None else spot_units(self.spot[a])
            rtds.publish(a, units, now)

    def step(self, now: float, dt: float) -> None:
        self.step_underlying(dt, now)
        self.publish_spot(now)
        self.ensure_windows(now)
        for w in self.windows:
            if not w.resolved:
                self.requote(w, now)
                self.takers(w, now, dt)

    async def run(self) -> None:
        last = self.ex.clock.time()
        while True:
            now = self.ex.clock.time()
            self.step(now, max(0.0, now - last))
            last = now
            await self.ex.clock.sleep(self.cfg.step_ms / 1000)

    def start(self) -> None:
        self.step(self.ex.clock.time(), 0.0)
        self._task = asyncio.get_running_loop().create_task(self.run(), name="aq-exchange-flow")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
