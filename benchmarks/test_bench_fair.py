"""Window fair value (issue 13), compiled against the pure-Python twin: ``core.fair_up`` (one
probability and its band: three normal CDFs, logs and a square root) and one
``core.VolEstimator.update`` (a reference tick into the volatility estimate). Both run on every
reference tick for every window of the asset, ahead of the spot-move guard's cancel.
"""

from __future__ import annotations

import pytest

S = 100_000_000  # 1 USD in the core's spot units (1e-8)
SEC = 1000


@pytest.mark.benchmark(group="fair value: fair_up, point rule, 10 minutes left")
def test_fair_up_point(benchmark, impl):
    fair, band = benchmark(impl.fair_up, 100_050 * S, 100_000 * S, 370_000, 600 * SEC, 0, 0, 0, SEC)
    assert 5000 < fair < 10_000 and 0 < band < 5000


@pytest.mark.benchmark(group="fair value: fair_up, inside a 60 s TWAP")
def test_fair_up_twap(benchmark, impl):
    # 20 s left of a 60 s averaging stretch, its first 40 s observed
    fair, band = benchmark(impl.fair_up, 100_000 * S, 100_000 * S, 370_000, 20 * SEC, 60 * SEC, 100_020 * S,
                           40 * SEC, SEC)  # fmt: skip
    assert fair > 5000 and band > 0


@pytest.mark.benchmark(group="fair value: VolEstimator.update (one tick, 1 s apart)")
def test_vol_update(benchmark, impl):
    vol = impl.VolEstimator(300 * SEC, 100_000, 400_000)
    state = [0]
    prices = (100_000 * S, 100_040 * S, 99_980 * S, 100_010 * S)  # deterministic, returns of a few bp

    def tick() -> None:
        i = state[0] = state[0] + 1
        vol.update(prices[i & 3], i * SEC)

    benchmark(tick)
    assert vol.count == state[0] and vol.sigma_ppm >= 100_000
