"""Review of issue 13: the fair_value section refuses, at load time, values the core would
refuse later. A volatility half-life beyond a day passed validation and then raised inside
every reference tick (the estimator is built at an asset's first tick): fair value never came,
only a logged handler error per tick; a price finer than 1e-4 failed with a UnitsError at bot
construction instead of the config's own error."""

from __future__ import annotations

import pytest

from active_quoting.strategy.config import ConfigError, load_config
from active_quoting.strategy.fair_value import FairValues


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("VOL_HALF_LIFE_SECONDS", "86401"),
        ("MARGIN", "0.00005"),
        ("MAX_BAND", "0.01005"),
        ("GUARD_MOVE", "0.00015"),
    ],
)
def test_values_the_core_refuses_are_config_errors(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"fair_value.{key.lower()}"):
        load_config(env={f"AQ_FAIR_VALUE_{key}": value})


def test_the_limits_themselves_load_and_work() -> None:
    cfg = load_config(env={"AQ_FAIR_VALUE_VOL_HALF_LIFE_SECONDS": "86400", "AQ_FAIR_VALUE_MARGIN": "0.0125"})
    fv = FairValues(cfg.fair_value)
    fv.on_tick("btc", 100_000 * 10**8, 1_000, 1_000)  # builds the estimator with the day-long half-life
    assert fv.ticks == 1 and fv.sigma_ppm("btc") == 400_000 and fv.margin_extra == 125
