# cython: language_level=3
"""Window fair value from the underlying's price, compiled. The behaviour is defined by _fair_py.py.

The twins agree to the bit: the same IEEE double operations in the same order (every int64 is
cast to double before it takes part, as the twin calls float() first), and the same libm
log/exp/sqrt/erfc that Python's math module calls. Two things keep the C compiler from changing
a result: constants the twin computes are written as literals here (GCC folds log(2.0) with
MPFR, not libm), and the build does not enable FMA contraction (x86-64 baseline has no FMA;
a -march with FMA would need -ffp-contract=off).
"""

cimport cython
from libc.math cimport erfc, exp, floor, log, sqrt

cimport active_quoting.core.ticks as t
from active_quoting.core.ticks cimport int64_t
from active_quoting.core._units_c cimport _check_int as _check


SPOT_SCALE = 10 ** 8
MS_PER_YEAR = 365 * 24 * 3600 * 1000
MS_PER_DAY = 24 * 3600 * 1000
MAX_SPOT = 10 ** 16
MAX_SIGMA_PPM = 100000000
MAX_TAU_MS = MS_PER_YEAR

cdef int64_t _C_MAX_SPOT = 10 ** 16
cdef int64_t _C_MAX_SIGMA_PPM = 100000000
cdef int64_t _C_MS_PER_DAY = 24 * 3600 * 1000
cdef int64_t _C_MAX_TAU_MS = 365 * 24 * 3600 * 1000
cdef double _YEAR = 31536000000.0
cdef double _PPM = 1000000.0
cdef double _INV_SQRT2 = 0.7071067811865476
cdef double _LN2 = 0.6931471805599453


cdef inline int64_t _to_units(double p, double scale, int64_t high) noexcept:
    cdef int64_t v = <int64_t>floor(p * scale + 0.5)
    return 0 if v < 0 else (high if v > high else v)


cdef double _prob(double spot, int64_t strike, double sigma, int64_t tau, int64_t twap, int64_t known,
                  int64_t avg) noexcept:
    cdef double kf, t_eff, num, x, s
    cdef int64_t gap
    if twap == 0 or tau >= twap:
        kf = <double>strike
        if twap == 0:
            t_eff = <double>tau
        else:
            t_eff = <double>tau - 2.0 * <double>twap / 3.0
    else:
        gap = twap - tau - known
        num = <double>strike * <double>twap - <double>known * <double>avg - <double>gap * spot
        if num <= 0.0:
            return 1.0
        kf = num / <double>tau
        t_eff = <double>tau / 3.0
    x = log(spot / kf)
    s = sigma * sqrt(t_eff / _YEAR)
    if s > 0.0:
        return 0.5 * erfc(-(x / s) * _INV_SQRT2)
    return 1.0 if x >= 0.0 else 0.0


def fair_up(spot, strike, sigma_ppm, tau_ms, twap_ms, avg_known, known_ms, horizon_ms):
    """Probability that Up wins (1e-4 units, 0..10000) and a half-band (1e-4 units, 0..5000)."""
    cdef int64_t sp = _check(spot, 1, _C_MAX_SPOT, "spot")
    cdef int64_t k = _check(strike, 1, _C_MAX_SPOT, "strike")
    cdef int64_t sg = _check(sigma_ppm, 0, _C_MAX_SIGMA_PPM, "sigma_ppm")
    cdef int64_t tau = _check(tau_ms, -_C_MAX_TAU_MS, _C_MAX_TAU_MS, "tau_ms")
    cdef int64_t twap = _check(twap_ms, 0, _C_MS_PER_DAY, "twap_ms")
    cdef int64_t avg = _check(avg_known, 0, _C_MAX_SPOT, "avg_known")
    cdef int64_t kn = _check(known_ms, 0, twap, "known_ms")
    cdef int64_t h = _check(horizon_ms, 0, _C_MS_PER_DAY, "horizon_ms")
    cdef int64_t known, tau_c, fair
    cdef double sigma, p, d, hi, lo, num
    if twap == 0:
        if tau <= 0:
            return (t.MAX_PRICE if sp >= k else 0), 0
        known = 0
    else:
        tau_c = tau if tau > 0 else 0
        if tau_c >= twap:
            known = 0
        else:
            known = kn if kn <= twap - tau_c else twap - tau_c
        if known > 0:
            _check(avg_known, 1, _C_MAX_SPOT, "avg_known")
        if tau <= 0:
            num = <double>k * <double>twap - <double>known * <double>avg - <double>(twap - known) * <double>sp
            return (t.MAX_PRICE if num <= 0.0 else 0), 0
    sigma = <double>sg / _PPM
    p = _prob(<double>sp, k, sigma, tau, twap, known, avg)
    fair = _to_units(p, <double>t.MAX_PRICE, t.MAX_PRICE)
    d = sigma * sqrt(<double>h / _YEAR)
    if d <= 0.0:
        return fair, 0
    hi = _prob(<double>sp * exp(d), k, sigma, tau, twap, known, avg)
    lo = _prob(<double>sp * exp(-d), k, sigma, tau, twap, known, avg)
    return fair, _to_units(hi - lo, <double>t.MAX_PRICE / 2.0, t.MAX_PRICE // 2)


@cython.auto_pickle(False)
cdef class VolEstimator:
    """Online annualised volatility of one asset from irregular ticks (see the twin)."""

    cdef readonly int64_t half_life_ms
    cdef readonly int64_t floor_ppm
    cdef readonly int64_t initial_ppm
    cdef readonly int64_t clip_sigmas
    cdef readonly int64_t last_price
    cdef readonly int64_t last_ts_ms
    cdef readonly int64_t count
    cdef double _var

    def __init__(self, half_life_ms, floor_ppm, initial_ppm, clip_sigmas=6):
        cdef double sd
        self.half_life_ms = _check(half_life_ms, 1, _C_MS_PER_DAY, "half_life_ms")
        self.floor_ppm = _check(floor_ppm, 0, _C_MAX_SIGMA_PPM, "floor_ppm")
        self.initial_ppm = _check(initial_ppm, 0, _C_MAX_SIGMA_PPM, "initial_ppm")
        self.clip_sigmas = _check(clip_sigmas, 0, 1000, "clip_sigmas")
        sd = <double>self.initial_ppm / _PPM
        self._var = sd * sd
        self.last_price = 0
        self.last_ts_ms = 0
        self.count = 0

    @property
    def sigma_ppm(self):
        """The current estimate, annualised, in ppm (at least ``floor_ppm``)."""
        cdef int64_t v = <int64_t>floor(sqrt(self._var) * _PPM + 0.5)
        return v if v > self.floor_ppm else self.floor_ppm

    def update(self, price, ts_ms):
        """Take one price at ``ts_ms``; ignored unless after the last accepted one."""
        cdef int64_t pr = _check(price, 1, _C_MAX_SPOT, "price")
        cdef int64_t ts = _check(ts_ms, 0, 2 ** 62, "ts_ms")
        cdef double dt, r, sd, fl, limit, obs, alpha
        if self.count == 0:
            self.last_price = pr
            self.last_ts_ms = ts
            self.count = 1
            return
        if ts <= self.last_ts_ms:
            return
        dt = <double>(ts - self.last_ts_ms)
        r = log(<double>pr / <double>self.last_price)
        sd = sqrt(self._var)
        fl = <double>self.floor_ppm / _PPM
        if sd < fl:
            sd = fl
        if self.clip_sigmas > 0 and sd > 0.0:
            limit = <double>self.clip_sigmas * sd * sqrt(dt / _YEAR)
            if r > limit:
                r = limit
            elif r < -limit:
                r = -limit
        obs = r * r / dt * _YEAR
        alpha = 1.0 - exp(-dt * _LN2 / <double>self.half_life_ms)
        self._var = self._var + alpha * (obs - self._var)
        self.last_price = pr
        self.last_ts_ms = ts
        self.count += 1
