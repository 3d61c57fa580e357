"""Strategy configuration: design defaults, TOML and environment loading, validation by key."""

from __future__ import annotations

from decimal import Decimal

import pytest

from active_quoting.strategy.config import Config, ConfigError, load_config


def test_defaults_are_the_design_parameter_defaults():
    c = load_config(env={})
    assert (c.quote.offset_ticks, c.quote.improve_when_spread_ticks, c.quote.max_spread_ticks) == (0, 4, 10)
    assert (c.refresh.threshold_ticks, c.refresh.min_interval_ms, c.refresh.global_cap_per_sec) == (2, 500, 10)
    assert (c.momentum.threshold_ticks, c.momentum.window_ms) == (3, 500)
    assert c.momentum.cooldown_seconds == 2 and c.momentum.sweep_depth_threshold == Decimal("0.5")
    assert c.inventory.max_position_per_market == 100
    assert c.inventory.max_liability_per_market_usdc == 50 and c.inventory.max_total_liability_usdc == 500
    assert c.inventory.skew_coefficient == Decimal("0.1")
    assert c.risk.max_drawdown_per_market_usdc == 20 and c.risk.max_drawdown_global_usdc == 100
    assert c.risk.max_consecutive_errors == 5
    assert c.orders.order_size_usdc == 10 and c.orders.batch_size == 15
    assert c.orders.cancel_on_momentum is True and c.orders.post_only is True
    assert c.fees.cache_ttl_seconds == 300
    assert c.analytics.markout_horizons_seconds == (1, 5, 15, 30, 60)
    assert c == Config()


def test_toml_then_env(tmp_path):
    path = tmp_path / "aq.toml"
    path.write_text(
        "[quote]\nimprove_when_spread_ticks = 6\n[inventory]\nskew_coefficient = 0.05\n"
        "[orders]\norder_size_usdc = 12.5\n[analytics]\nmarkout_horizons_seconds = [1, 5, 60]\n"
        "toxicity_horizon_seconds = 5\n"
    )
    c = load_config(
        path,
        env={
            "AQ_QUOTE_IMPROVE_WHEN_SPREAD_TICKS": "5",
            "AQ_NO_EXTENSIONS": "1",
            "AQ_MOMENTUM_ACTION": "widen",
            "AQ_ORDERS_CANCEL_ON_MOMENTUM": "false",
        },
    )
    assert c.quote.improve_when_spread_ticks == 5  # env wins over the file
    assert c.inventory.skew_coefficient == Decimal("0.05")  # exactly as written, no float residue
    assert c.orders.order_size_usdc == Decimal("12.5")
    assert c.momentum.action == "widen" and c.orders.cancel_on_momentum is False
    assert c.analytics.markout_horizons_seconds == (1, 5, 60)


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("[quote]\nimprove_when_spread_ticks = 0\n", {}, "quote.improve_when_spread_ticks: must be at least 1 tick"),
        ("[inventory]\nmax_position_per_market = -1\n", {}, "inventory.max_position_per_market: must not be negative"),
        ("[risk]\nmax_drawdown_global_usdc = -5\n", {}, "risk.max_drawdown_global_usdc: must not be negative"),
        ("[quote]\nofset_ticks = 1\n", {}, "quote.ofset_ticks: unknown key"),
        ("[quotes]\noffset_ticks = 1\n", {}, "quotes: unknown section"),
        ("[quote]\noffset_ticks = 'one'\n", {}, "quote.offset_ticks: expected an integer"),
        ("[quote]\noffset_ticks = true\n", {}, "quote.offset_ticks: expected an integer"),
        ("[orders]\npost_only = false\n", {}, "orders.post_only: must be true"),
        ("[orders]\nbatch_size = 16\n", {}, "orders.batch_size: must be between 1 and 15"),
        ("[momentum]\naction = 'panic'\n", {}, "momentum.action: must be 'pull' or 'widen'"),
        ("[momentum]\nsweep_depth_threshold = 1.5\n", {}, "momentum.sweep_depth_threshold"),
        ("[analytics]\nmarkout_horizons_seconds = [5, 1]\n", {}, "must be strictly increasing"),
        ("", {"AQ_QUOTE_MAX_SPREAD": "3"}, "quote.max_spread: unknown key"),
        ("", {"AQ_REFRESH_MIN_INTERVAL_MS": "-1"}, "refresh.min_interval_ms: must not be negative"),
        ("", {"AQ_INVENTORY_SKEW_COEFFICIENT": "lots"}, "inventory.skew_coefficient: expected a number"),
        ("[quote\n", {}, "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path, toml, env, message):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(path, env=env)
    assert message in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml", env={})
