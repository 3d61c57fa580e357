"""Window fair value and the volatility estimate: known values, properties, and the twins agreeing exactly."""

from __future__ import annotations

import inspect
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from active_quoting import core
from active_quoting.errors import UnitsError

S = 10**8  # one USD in spot units
SEC = 1000
YEAR = 365 * 24 * 3600 * 1000
DAY = 24 * 3600 * 1000


def point(impl, spot, strike, sigma=370_000, tau=300 * SEC, horizon=1 * SEC):
    return impl.fair_up(spot, strike, sigma, tau, 0, 0, 0, horizon)


def phi(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2))


def test_constants(impl):
    assert impl.SPOT_SCALE == 10**8 and impl.MS_PER_YEAR == YEAR and impl.MS_PER_DAY == DAY


def test_at_the_money_is_one_half(impl):
    for tau in (1, 5 * SEC, 300 * SEC, DAY):
        assert point(impl, 100_000 * S, 100_000 * S, tau=tau)[0] == 5000
        assert impl.fair_up(3 * S, 3 * S, 800_000, tau, 60 * SEC, 0, 0, SEC)[0] == 5000  # TWAP, tau >= L


def test_known_value_matches_the_closed_form(impl):
    # BTC 0.1% above the strike, 5 minutes left at 37% a year: Phi(ln(1.001) / (0.37 sqrt(300 s / year)))
    z = math.log(1.001) / (0.37 * math.sqrt(300 * SEC / YEAR))
    fair, _ = point(impl, 100_100 * S, 100_000 * S)
    assert fair == math.floor(phi(z) * 10_000 + 0.5) == 8094


def test_deep_in_and_out_of_the_money(impl):
    assert point(impl, 110_000 * S, 100_000 * S)[0] == 10_000
    assert point(impl, 90_000 * S, 100_000 * S)[0] == 0
    # the Down side mirrors: 1% below with little time is near-certain Down
    assert point(impl, 99_000 * S, 100_000 * S, tau=10 * SEC)[0] == 0


def test_settled_when_no_time_is_left(impl):
    for tau in (0, -1, -60 * SEC):
        assert point(impl, 100_000 * S, 100_000 * S, tau=tau) == (10_000, 0)  # at the strike: Up (>=)
        assert point(impl, 100_000 * S - 1, 100_000 * S, tau=tau) == (0, 0)
        # TWAP rule: the observed average decides, not the last price
        assert impl.fair_up(99_000 * S, 100_000 * S, 370_000, tau, 60 * SEC, 100_001 * S, 60 * SEC, SEC) == (10_000, 0)
        assert impl.fair_up(101_000 * S, 100_000 * S, 370_000, tau, 60 * SEC, 99_999 * S, 60 * SEC, SEC) == (0, 0)


def test_zero_volatility_is_deterministic(impl):
    assert point(impl, 100_000 * S, 100_000 * S, sigma=0) == (10_000, 0)
    assert point(impl, 100_000 * S - 1, 100_000 * S, sigma=0) == (0, 0)


def _z_of(fair: int) -> float:
    # invert the rounded probability (only for comparing spreads of the distribution)
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if phi(mid) * 10_000 < fair else (lo, mid)
    return lo


def test_twap_variance_is_smaller_than_the_point_rule(impl):
    # The same distance from the strike is worth more under the TWAP: less variance at the same tau.
    for tau in (30 * SEC, 60 * SEC, 120 * SEC, 300 * SEC):
        pt = point(impl, 100_050 * S, 100_000 * S, tau=tau)[0]
        tw = impl.fair_up(100_050 * S, 100_000 * S, 370_000, tau, 60 * SEC, 0, 0, SEC)[0]
        assert tw > pt > 5000
        if tau >= 60 * SEC:  # the documented variance: sigma^2 (tau - 2L/3)
            ratio = _z_of(pt) / _z_of(tw)
            assert ratio == pytest.approx(math.sqrt((tau - 40 * SEC) / tau), rel=0.02)


def test_twap_inside_the_window_uses_the_observed_average(impl):
    # 20 s left of a 60 s TWAP, the first 40 s averaged 0.02% above the strike; spot at the strike:
    # the future 20 s must average >= 100000 - 2 x 20 = 99960, spot is above that: Up likely.
    fair, _ = impl.fair_up(100_000 * S, 100_000 * S, 370_000, 20 * SEC, 60 * SEC, 100_020 * S, 40 * SEC, SEC)
    sd = 0.37 * math.sqrt(20 * SEC / 3 / YEAR)
    assert fair == math.floor(phi(math.log(100_000 / 99_960) / sd) * 10_000 + 0.5)
    assert fair > 9000
    # an average already far above the strike settles it whatever the last 20 s do
    assert impl.fair_up(1 * S, 100_000 * S, 370_000, 20 * SEC, 60 * SEC, 160_000 * S, 40 * SEC, SEC)[0] == 10_000
    # known_ms beyond what can have elapsed is clipped to L - tau (the same as passing L - tau)
    a = impl.fair_up(100_000 * S, 100_000 * S, 370_000, 20 * SEC, 60 * SEC, 100_020 * S, 60 * SEC, SEC)
    assert a == (fair, _)


def test_twap_is_continuous_at_the_start_of_the_averaging(impl):
    L = 60 * SEC
    at = impl.fair_up(100_030 * S, 100_000 * S, 370_000, L, L, 0, 0, SEC)[0]
    inside = impl.fair_up(100_030 * S, 100_000 * S, 370_000, L - 1, L, 100_030 * S, 1, SEC)[0]
    assert abs(at - inside) <= 1


def test_band_is_wide_near_expiry_at_the_money(impl):
    near = point(impl, 100_000 * S, 100_000 * S, tau=5 * SEC)[1]
    far = point(impl, 100_000 * S, 100_000 * S, tau=600 * SEC)[1]
    away = point(impl, 100_500 * S, 100_000 * S, tau=5 * SEC)[1]
    assert near > 4 * far and near > 10 * away
    assert point(impl, 100_000 * S, 100_000 * S, horizon=0)[1] == 0
    # one-sigma move over 1 s against 5 s left: Phi(+-sqrt(1/5)) -> half of 2 x 0.1726
    assert near == math.floor((phi(math.sqrt(0.2)) - phi(-math.sqrt(0.2))) * 5000 + 0.5)


@pytest.mark.parametrize(
    "args",
    [
        (0, S, 370_000, SEC, 0, 0, 0, 0),  # spot <= 0
        (-S, S, 370_000, SEC, 0, 0, 0, 0),
        (S, 0, 370_000, SEC, 0, 0, 0, 0),  # strike <= 0
        (S, -1, 370_000, SEC, 0, 0, 0, 0),
        (S, S, -1, SEC, 0, 0, 0, 0),  # negative sigma
        (S, S, 370_000, SEC, -1, 0, 0, 0),  # negative TWAP
        (S, S, 370_000, SEC, 60 * SEC, S, 61 * SEC, 0),  # more known than the TWAP
        (S, S, 370_000, SEC, 60 * SEC, 0, 30 * SEC, 0),  # an observed part without an average
        (S, S, 370_000, SEC, 0, 0, 0, -1),  # negative horizon
        (S, S, 370_000.0, SEC, 0, 0, 0, 0),  # not an int
        (10**17, S, 370_000, SEC, 0, 0, 0, 0),  # beyond MAX_SPOT
    ],
)
def test_bad_inputs_raise_value_error(impl, args):
    with pytest.raises(ValueError) as info:
        impl.fair_up(*args)
    assert isinstance(info.value, UnitsError)


# -- the volatility estimate -------------------------------------------------------------


def _gbm_ticks(seed: int, n: int, sigma: float, dt_ms: int):
    import random

    rng = random.Random(seed)
    x, ts = 100_000 * S, 1_000
    step = sigma * math.sqrt(dt_ms / YEAR)
    for _ in range(n):
        ts += dt_ms
        x = max(1, int(x * math.exp(rng.gauss(0, step))))
        yield x, ts


def test_vol_estimate_converges_to_the_true_sigma(impl):
    v = impl.VolEstimator(half_life_ms=600 * SEC, floor_ppm=10_000, initial_ppm=1_000_000)
    for price, ts in _gbm_ticks(1, 20_000, 0.37, 1_000):
        v.update(price, ts)
    assert v.count == 20_000
    assert v.sigma_ppm == pytest.approx(370_000, rel=0.08)


def test_vol_floor_initial_and_ignored_ticks(impl):
    v = impl.VolEstimator(60 * SEC, 50_000, 370_000)
    assert (v.sigma_ppm, v.count, v.last_price, v.last_ts_ms, v.clip_sigmas) == (370_000, 0, 0, 0, 6)
    v.update(100 * S, 1_000)
    for i in range(1, 1_000):  # a flat price decays toward zero: held at the floor
        v.update(100 * S, 1_000 + i * 1_000)
    assert v.sigma_ppm == 50_000 and v.count == 1_000
    v.update(101 * S, 1_000 + 999 * 1_000)  # same time as the last: ignored
    v.update(101 * S, 500)  # earlier: ignored
    assert (v.count, v.last_price, v.last_ts_ms) == (1_000, 100 * S, 1_000 + 999 * 1_000)
    with pytest.raises(ValueError):
        v.update(0, 10**9)
    with pytest.raises(ValueError):
        v.update(-5, 10**9)
    assert v.count == 1_000


def test_one_jump_is_clipped(impl):
    clipped = impl.VolEstimator(60 * SEC, 10_000, 370_000)
    free = impl.VolEstimator(60 * SEC, 10_000, 370_000, clip_sigmas=0)
    for v in (clipped, free):
        v.update(100_000 * S, 1_000)
        v.update(110_000 * S, 2_000)  # +10% in a second: hundreds of sigmas
    # clipped at 6 sigma: the observation is 36 sigma^2, weighted by 1 - 2^(-1/60)
    w = 1 - 2 ** (-1 / 60)
    assert clipped.sigma_ppm == pytest.approx(370_000 * math.sqrt(1 + w * 35), rel=1e-6)
    assert free.sigma_ppm > 20 * clipped.sigma_ppm


@pytest.mark.parametrize(
    "args", [(0, 0, 0), (1, -1, 0), (1, 0, -1), (1, 0, 0, -1), (DAY + 1, 0, 0), (1.5, 0, 0)]
)
def test_vol_bad_parameters_raise(impl, args):
    with pytest.raises(ValueError):
        impl.VolEstimator(*args)


# -- the twins agree exactly; monotonicity ------------------------------------------------

spots = st.one_of(st.integers(1, 10**15), st.integers(10**12, 10**14))  # 1e-8 .. 1e7 USD, and BTC-like
sigmas = st.integers(10_000, 5_000_000)  # 1% .. 500%
taus = st.one_of(st.integers(-10 * SEC, DAY), st.integers(0, 120 * SEC))
twaps = st.sampled_from([0, 0, 30 * SEC, 60 * SEC, 1, 7 * SEC])
horizons = st.integers(0, 10 * SEC)


@st.composite
def fair_inputs(draw):
    spot = draw(spots)
    strike = draw(st.one_of(spots, st.integers(max(1, spot - spot // 500), spot + spot // 500 + 1)))
    twap = draw(twaps)
    known = draw(st.integers(0, twap))
    avg = draw(st.one_of(spots, st.just(spot))) if known else draw(st.integers(0, 10**15))
    return (spot, strike, draw(sigmas), draw(taus), twap, avg, known, draw(horizons))


@settings(max_examples=1500, deadline=None)
@given(fair_inputs())
def test_fair_twins_agree_and_stay_in_range(c_core, py_core, args):
    out = c_core.fair_up(*args)
    assert out == py_core.fair_up(*args)
    fair, band = out
    assert 0 <= fair <= 10_000 and 0 <= band <= 5_000
    assert type(fair) is int and type(band) is int


@settings(max_examples=600, deadline=None)
@given(fair_inputs(), st.integers(1, 10**13))
def test_fair_is_monotone_in_spot_and_strike(c_core, py_core, args, step):
    spot, strike = args[0], args[1]
    for impl in (c_core, py_core):
        base = impl.fair_up(*args)[0]
        if spot + step <= 10**16:
            assert impl.fair_up(spot + step, *args[1:])[0] >= base
        if strike + step <= 10**16:
            assert impl.fair_up(spot, strike + step, *args[2:])[0] <= base


@settings(max_examples=300, deadline=None)
@given(
    st.tuples(st.integers(1, DAY), st.integers(0, 500_000), st.integers(0, 5_000_000), st.integers(0, 12)),
    st.lists(st.tuples(st.integers(-10, 10**12), st.integers(-2_000, 60_000)), max_size=60),
    st.integers(1, 10**15),
)
def test_vol_twins_agree_after_every_update(c_core, py_core, params, moves, start):
    c, p = c_core.VolEstimator(*params), py_core.VolEstimator(*params)
    price, ts = start, 0
    for dp, dt in moves:
        price = max(1, min(10**16, price + dp * (1 if dt % 2 else -1)))
        ts = max(0, ts + dt)
        c.update(price, ts)
        p.update(price, ts)
        assert (c.sigma_ppm, c.count, c.last_price, c.last_ts_ms) == (p.sigma_ppm, p.count, p.last_price, p.last_ts_ms)
        assert c.sigma_ppm >= params[1]


def test_selected_core_exports_fair_value():
    assert core.fair_up is core.load(core.IMPL).fair_up
    assert core.VolEstimator.__module__ == f"active_quoting.core._fair_{core.IMPL}"


def test_vol_estimator_exposes_the_same_api(c_core, py_core):
    def public(cls):
        return {n for n in dir(cls) if not n.startswith("_")}

    assert public(c_core.VolEstimator) == public(py_core.VolEstimator)
    for name in ("update",):  # a cdef class's __init__ has no introspectable signature
        c_params = list(inspect.signature(getattr(c_core.VolEstimator, name)).parameters)
        assert c_params == list(inspect.signature(getattr(py_core.VolEstimator, name)).parameters)
