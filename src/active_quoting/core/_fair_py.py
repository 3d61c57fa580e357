"""Window fair value from the underlying's price: the executable specification (twin of ``_fair_c``).

An up/down window is a digital option: Up pays 1 when the settlement value is at or above the
strike (the price to beat). :func:`fair_up` prices it under a driftless log-normal model with
the volatility of :class:`VolEstimator`.

Units: spot, strike and averages in 1e-8 USD (``SPOT_SCALE``), times in ms, probabilities and
half-bands in the core's price units (1e-4, ``MAX_PRICE`` = certain), volatility annualised in
ppm (370_000 = 0.37 a year).

Exactness between the twins: the arithmetic is IEEE double, written here in the exact order the
compiled twin uses (every integer is turned into a float first, never ``int / int``, whose
Python result is rounded once where C rounds each operand), with ``math.log/exp/sqrt/erfc`` (the
platform libm, the same functions the compiled module calls). A probability becomes an integer
by rounding half away from zero (``floor(x + 0.5)``, x >= 0), clamped to 0..10000.
"""

from __future__ import annotations

import math

from active_quoting.core._units_py import MAX_PRICE
from active_quoting.core._units_py import check_int as _check

SPOT_SCALE = 10**8  # spot prices in 1e-8 USD
MS_PER_YEAR = 365 * 24 * 3600 * 1000
MS_PER_DAY = 24 * 3600 * 1000
MAX_SPOT = 10**16  # 1e8 USD: every product below stays far inside a double's range
MAX_SIGMA_PPM = 100_000_000  # 10000% a year
MAX_TAU_MS = MS_PER_YEAR

_YEAR = float(MS_PER_YEAR)
_PPM = 1_000_000.0
_INV_SQRT2 = 0.7071067811865476
_LN2 = 0.6931471805599453  # a literal: a compiler may fold log(2.0) differently from libm


def _to_units(p: float, scale: float, high: int) -> int:
    """Round half away from zero (p >= 0) and clamp to 0..high."""
    v = math.floor(p * scale + 0.5)
    return 0 if v < 0 else high if v > high else v


def _prob(spot: float, strike: int, sigma: float, tau: int, twap: int, known: int, avg: int) -> float:
    """P(settlement >= strike) in [0, 1] for tau > 0 (see :func:`fair_up`); ``known`` <= twap - tau."""
    if twap == 0 or tau >= twap:
        kf = float(strike)
        if twap == 0:
            t_eff = float(tau)
        else:
            t_eff = float(tau) - 2.0 * float(twap) / 3.0
    else:
        # The future average A_f over the last tau ms must clear what the observed part leaves.
        gap = twap - tau - known
        num = float(strike) * float(twap) - float(known) * float(avg) - float(gap) * spot
        if num <= 0.0:
            return 1.0
        kf = num / float(tau)
        t_eff = float(tau) / 3.0
    x = math.log(spot / kf)
    s = sigma * math.sqrt(t_eff / _YEAR)
    if s > 0.0:
        z = x / s
    elif x >= 0.0:
        return 1.0
    else:
        return 0.0
    return 0.5 * math.erfc(-z * _INV_SQRT2)


def fair_up(
    spot: int,
    strike: int,
    sigma_ppm: int,
    tau_ms: int,
    twap_ms: int,
    avg_known: int,
    known_ms: int,
    horizon_ms: int,
) -> tuple[int, int]:
    """Probability that Up wins (1e-4 units, 0..10000) and a half-band (1e-4 units, 0..5000).

    Up wins iff the settlement value >= ``strike``. ``twap_ms == 0``: the settlement value is
    the last price at the end (the point rule). ``twap_ms > 0``: it is the average price over
    the last ``twap_ms`` before the end (the 2026-08 TWAP rule); when ``tau_ms < twap_ms`` the
    first ``known_ms`` of that stretch (at most ``twap_ms - tau_ms``; more is clipped) has been
    observed with average ``avg_known``, and any unobserved past part is taken at ``spot``.

    Model: the underlying is a driftless geometric Brownian motion with volatility ``sigma``,
    taken with median = the current price (at the money is exactly 5000; the convexity term
    -s^2/2 of the log-normal mean is neglected: it moves the probability by at most
    phi(0) s / 2, under 1% while s < 0.05, e.g. 37% a year over up to 6 days).
    - point rule: ln S_T ~ N(ln spot, sigma^2 tau);
    - TWAP, tau >= L: the average over the last L is taken log-normal with log-variance
      sigma^2 (tau - 2L/3) (tau - L of free diffusion, then L/3 for an average of Brownian
      motion over L) around spot;
    - TWAP, tau < L: settlement = (known avg_known + gap spot + tau A_f) / L, with the future
      part's average A_f log-normal around spot with log-variance sigma^2 tau / 3; Up wins iff
      A_f >= (strike L - known avg_known - gap spot) / tau (certain when that is <= 0). To first
      order the settlement's variance is spot^2 sigma^2 tau^3 / (3 L^2) around
      ((L - tau) avg_known + tau spot) / L, and the probability is exactly monotone in spot and
      strike. Continuous at tau = L (both give sigma^2 L / 3).
    ``tau_ms <= 0``: settled, 10000 or 0 by the rule (the TWAP one on the observed average),
    with a half-band of 0.

    The half-band is half the change of the probability when spot moves by one sigma over
    ``horizon_ms`` either way (``spot * exp(+-sigma sqrt(horizon))``): how far fair value can
    move before we can react. It is wide near expiry with spot near the strike.

    Bad input (``spot`` or ``strike`` < 1, ``sigma_ppm`` < 0, a value out of its range,
    ``known_ms`` outside 0..twap_ms, ``avg_known`` < 1 when an observed part counts) raises
    :class:`~active_quoting.errors.UnitsError`, a ``ValueError``.
    """
    _check(spot, 1, MAX_SPOT, "spot")
    _check(strike, 1, MAX_SPOT, "strike")
    _check(sigma_ppm, 0, MAX_SIGMA_PPM, "sigma_ppm")
    _check(tau_ms, -MAX_TAU_MS, MAX_TAU_MS, "tau_ms")
    _check(twap_ms, 0, MS_PER_DAY, "twap_ms")
    _check(avg_known, 0, MAX_SPOT, "avg_known")
    _check(known_ms, 0, twap_ms, "known_ms")
    _check(horizon_ms, 0, MS_PER_DAY, "horizon_ms")
    if twap_ms == 0:
        if tau_ms <= 0:
            return (MAX_PRICE if spot >= strike else 0), 0
        known = 0
    else:
        tau_c = tau_ms if tau_ms > 0 else 0
        if tau_c >= twap_ms:
            known = 0  # nothing of the averaging stretch has started
        else:
            known = known_ms if known_ms <= twap_ms - tau_c else twap_ms - tau_c
        if known > 0:
            _check(avg_known, 1, MAX_SPOT, "avg_known")
        if tau_ms <= 0:
            gap = twap_ms - known
            num = float(strike) * float(twap_ms) - float(known) * float(avg_known) - float(gap) * float(spot)
            return (MAX_PRICE if num <= 0.0 else 0), 0
    sigma = sigma_ppm / _PPM
    p = _prob(float(spot), strike, sigma, tau_ms, twap_ms, known, avg_known)
    fair = _to_units(p, float(MAX_PRICE), MAX_PRICE)
    d = sigma * math.sqrt(float(horizon_ms) / _YEAR)
    if d <= 0.0:
        return fair, 0
    hi = _prob(float(spot) * math.exp(d), strike, sigma, tau_ms, twap_ms, known, avg_known)
    lo = _prob(float(spot) * math.exp(-d), strike, sigma, tau_ms, twap_ms, known, avg_known)
    return fair, _to_units(hi - lo, MAX_PRICE / 2.0, MAX_PRICE // 2)


class VolEstimator:
    """Online annualised volatility of one asset from irregular ticks.

    An exponentially weighted mean of squared log returns per unit time: a return r over dt ms
    is the observation r^2 / dt (annualised), weighted 1 - 2^(-dt / half_life), so the weights
    follow elapsed time, not the tick count. ``sigma_ppm`` never falls below ``floor_ppm``.
    Fat tails: one return is clipped at ``clip_sigmas`` x the current sigma over its dt before
    it counts, so a single jump moves the estimate by a bounded step instead of blowing it up
    for minutes (0 = no clipping; nothing is clipped while the current sigma is 0).

    Ticks not after the last one are ignored (counted in neither ``count`` nor the estimate);
    a price < 1 or a value out of range raises :class:`~active_quoting.errors.UnitsError`.
    """

    def __init__(self, half_life_ms: int, floor_ppm: int, initial_ppm: int, clip_sigmas: int = 6) -> None:
        self._half_life_ms = _check(half_life_ms, 1, MS_PER_DAY, "half_life_ms")
        self._floor_ppm = _check(floor_ppm, 0, MAX_SIGMA_PPM, "floor_ppm")
        self._initial_ppm = _check(initial_ppm, 0, MAX_SIGMA_PPM, "initial_ppm")
        self._clip_sigmas = _check(clip_sigmas, 0, 1000, "clip_sigmas")
        sd = initial_ppm / _PPM
        self._var = sd * sd  # annualised variance
        self._last_price = 0
        self._last_ts_ms = 0
        self._count = 0

    @property
    def half_life_ms(self) -> int:
        return self._half_life_ms

    @property
    def floor_ppm(self) -> int:
        return self._floor_ppm

    @property
    def initial_ppm(self) -> int:
        return self._initial_ppm

    @property
    def clip_sigmas(self) -> int:
        return self._clip_sigmas

    @property
    def sigma_ppm(self) -> int:
        """The current estimate, annualised, in ppm (at least ``floor_ppm``)."""
        v = math.floor(math.sqrt(self._var) * _PPM + 0.5)
        return v if v > self._floor_ppm else self._floor_ppm

    @property
    def last_price(self) -> int:
        """The last accepted price (0 before the first)."""
        return self._last_price

    @property
    def last_ts_ms(self) -> int:
        """The time of the last accepted price (0 before the first)."""
        return self._last_ts_ms

    @property
    def count(self) -> int:
        """Prices accepted so far."""
        return self._count

    def update(self, price: int, ts_ms: int) -> None:
        """Take one price at ``ts_ms``; ignored unless after the last accepted one."""
        _check(price, 1, MAX_SPOT, "price")
        _check(ts_ms, 0, 2**62, "ts_ms")
        if self._count == 0:
            self._last_price, self._last_ts_ms, self._count = price, ts_ms, 1
            return
        if ts_ms <= self._last_ts_ms:
            return
        dt = float(ts_ms - self._last_ts_ms)
        r = math.log(float(price) / float(self._last_price))
        sd = math.sqrt(self._var)
        floor = self._floor_ppm / _PPM
        if sd < floor:
            sd = floor
        if self._clip_sigmas > 0 and sd > 0.0:
            limit = float(self._clip_sigmas) * sd * math.sqrt(dt / _YEAR)
            if r > limit:
                r = limit
            elif r < -limit:
                r = -limit
        obs = r * r / dt * _YEAR
        alpha = 1.0 - math.exp(-dt * _LN2 / float(self._half_life_ms))
        self._var = self._var + alpha * (obs - self._var)
        self._last_price, self._last_ts_ms = price, ts_ms
        self._count += 1
