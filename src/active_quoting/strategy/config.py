"""One typed configuration for the strategy, at the design's "Parameter Defaults".

Loaded from a TOML file (sections as below) and then from environment variables named
``AQ_<SECTION>_<KEY>`` (``AQ_QUOTE_IMPROVE_WHEN_SPREAD_TICKS=3``), and validated whole at load:
an unknown key, a wrong type or an out-of-range value is a :class:`ConfigError` naming the key.

Decimal quantities (USDC, prices, coefficients) are read as written (TOML text, env text)
and turned into the core's integers here, never through float arithmetic.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from active_quoting.errors import ActiveQuotingError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ENV_PREFIX = "AQ_"


class ConfigError(ActiveQuotingError, ValueError):
    """A configuration value that cannot be used; the message names the key."""


@dataclasses.dataclass(frozen=True)
class QuoteConfig:
    offset_ticks: int = 0
    improve_when_spread_ticks: int = 4
    max_spread_ticks: int = 10


@dataclasses.dataclass(frozen=True)
class RefreshConfig:
    threshold_ticks: int = 2
    min_interval_ms: int = 500
    global_cap_per_sec: int = 10


@dataclasses.dataclass(frozen=True)
class MomentumConfig:
    threshold_ticks: int = 3
    window_ms: int = 500
    cooldown_seconds: Decimal = Decimal("2")
    sweep_depth_threshold: Decimal = Decimal("0.5")
    # How many ticks from the touch count as "near-touch depth" for sweeps and imbalance.
    depth_ticks: int = 3
    # One side holding at most this share of the near-touch depth is one-sided thinning.
    imbalance_threshold: Decimal = Decimal("0.2")
    # "pull" cancels both sides during momentum; "widen" quotes at max_spread_ticks.
    action: str = "pull"


@dataclasses.dataclass(frozen=True)
class InventoryConfig:
    max_position_per_market: Decimal = Decimal("100")
    max_liability_per_market_usdc: Decimal = Decimal("50")
    max_total_liability_usdc: Decimal = Decimal("500")
    skew_coefficient: Decimal = Decimal("0.1")


@dataclasses.dataclass(frozen=True)
class RiskConfig:
    max_drawdown_per_market_usdc: Decimal = Decimal("20")
    max_drawdown_global_usdc: Decimal = Decimal("100")
    max_consecutive_errors: int = 5
    circuit_breaker_recovery_seconds: Decimal = Decimal("60")
    # "No market events for this long" is one half of a stale feed (the other: order
    # state cannot be confirmed).
    stale_feed_seconds: Decimal = Decimal("30")


@dataclasses.dataclass(frozen=True)
class OrdersConfig:
    order_size_usdc: Decimal = Decimal("10")
    batch_size: int = 15
    cancel_on_momentum: bool = True
    # Live orders on the venue in our markets that neither memory nor the store knows: "adopt"
    # (managed, cancelled at shutdown: a dedicated account, where they can only be ours, e.g. sent
    # just before a crash), "cancel" (at startup) or "ignore" (an account shared with other tools).
    unknown_orders: str = "adopt"
    # Send a requote's cancels and new orders together on separate connections (one round trip
    # less; the order being cancelled counts against every limit until the venue confirms it
    # gone); false: cancels first, the new orders after their answer.
    concurrent_replace: bool = True
    # Pre-signed order ladders: in idle time, sign each market side's likely next orders (its
    # last price and presign_ticks ticks either side, same token, side, tick and version, and the
    # size the quote would have there: a fixed notional buys fewer shares higher up); a requote
    # that matches one exactly sends it without signing (4 ticks: a whole-book move of 3 ticks
    # is still on the ladder; 2 x 9 signatures per market every 2.5 s). Entries are re-signed after
    # half of presign_max_age_seconds and never sent older (the order timestamp is its creation
    # time); presign_budget bounds the signatures per idle loop turn (each ~20 us: a frame that
    # arrives during that turn waits for it, so the turns stay short and there are more of them).
    presign: bool = True
    presign_ticks: int = 4
    presign_max_age_seconds: Decimal = Decimal("5")
    presign_budget: int = 2
    post_only: bool = True
    # The venue's dead-man switch: with heartbeats sent, the venue cancels every order of the
    # account ~10 s after they stop (a crashed bot leaves nothing resting - but after a clean
    # stop, other tools' orders on the same account go too). false on a shared account.
    heartbeat: bool = True


@dataclasses.dataclass(frozen=True)
class FeesConfig:
    cache_ttl_seconds: int = 300


@dataclasses.dataclass(frozen=True)
class AnalyticsConfig:
    markout_horizons_seconds: tuple[int, ...] = (1, 5, 15, 30, 60)
    toxicity_horizon_seconds: int = 5
    # A fill whose toxicity-horizon markout is worse than minus this price is toxic.
    toxicity_threshold: Decimal = Decimal("0.01")


@dataclasses.dataclass(frozen=True)
class AlertsConfig:
    telegram_token: str = ""
    telegram_chat_id: str = ""
    webhook_url: str = ""
    telegram_api: str = "https://api.telegram.org"
    min_interval_seconds: Decimal = Decimal("60")  # the same alert again within this is suppressed
    max_per_minute: int = 20  # non-critical alerts beyond this are dropped (counted)
    fill_batch_seconds: Decimal = Decimal("10")

    def __repr__(self) -> str:  # the token and the webhook URL are secrets
        return (
            f"AlertsConfig(telegram={'on' if self.telegram_token else 'off'}, "
            f"webhook={'on' if self.webhook_url else 'off'}, min_interval_seconds={self.min_interval_seconds})"
        )


@dataclasses.dataclass(frozen=True)
class FairValueConfig:
    """The window's fair value from the underlying's reference price (the venue's RTDS feed).
    Off by default: the A/B compares with and without (strategy ``spot`` turns both on)."""

    enabled: bool = False
    # Read the feed and measure fills against fair value (markouts) without quoting on it: the
    # simulator's A/B turns it on for every strategy so they are compared on the same yardstick.
    observe: bool = False
    source: str = "chainlink"  # the RTDS topic read: "chainlink" (settles the markets) or "binance"
    # Never bid above fair - margin nor ask below fair + margin: margin = the model's half-band
    # (how far fair can move before we can react) + this price.
    margin: Decimal = Decimal("0.01")
    # Both sides pulled while the half-band is wider than this price (near the end with spot
    # near the strike); 0: never pulled on the band.
    max_band: Decimal = Decimal("0.06")
    vol_half_life_seconds: int = 300
    vol_floor: Decimal = Decimal("0.1")  # annualised
    vol_initial: Decimal = Decimal("0.4")
    horizon_ms: int = 1000  # the band: fair's move under a one-sigma spot move over this
    stale_seconds: Decimal = Decimal("5")  # no tick for this long: no fair value (quotes fall back to the book)
    settlement: str = "auto"  # "point", "twap" (the venue since 2026-08) or "auto" (twap on the real venue)
    # The spot-move guard: fair moved this much (a price) since a market was last decided -> it
    # is decided again at once, from the feed's frame handler (the exposed side is cancelled first).
    guard: bool = False
    guard_move: Decimal = Decimal("0.01")


@dataclasses.dataclass(frozen=True)
class Config:
    quote: QuoteConfig = QuoteConfig()
    refresh: RefreshConfig = RefreshConfig()
    momentum: MomentumConfig = MomentumConfig()
    inventory: InventoryConfig = InventoryConfig()
    risk: RiskConfig = RiskConfig()
    orders: OrdersConfig = OrdersConfig()
    fees: FeesConfig = FeesConfig()
    analytics: AnalyticsConfig = AnalyticsConfig()
    alerts: AlertsConfig = AlertsConfig()
    fair_value: FairValueConfig = FairValueConfig()


SECTIONS: dict[str, type] = {
    "quote": QuoteConfig,
    "refresh": RefreshConfig,
    "momentum": MomentumConfig,
    "inventory": InventoryConfig,
    "risk": RiskConfig,
    "orders": OrdersConfig,
    "fees": FeesConfig,
    "analytics": AnalyticsConfig,
    "alerts": AlertsConfig,
    "fair_value": FairValueConfig,
}


# -- value coercion (from TOML values or environment text) --------------------------------


def _as_int(key: str, value: object) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            pass
    raise ConfigError(f"{key}: expected an integer, got {value!r}")


def _as_decimal(key: str, value: object) -> Decimal:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    # A TOML float is taken as the shortest decimal that reads back as it (what was written).
    text = repr(value) if isinstance(value, float) else value
    if isinstance(value, int):
        text = str(value)
    if isinstance(text, str):
        try:
            d = Decimal(text.strip())
        except InvalidOperation:
            pass
        else:
            if d.is_finite():
                return d
    raise ConfigError(f"{key}: expected a number, got {value!r}")


def _as_bool(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        return value.strip().lower() in ("true", "1", "yes", "on")
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def _as_str(key: str, value: object) -> str:
    if isinstance(value, str):
        return value.strip()
    raise ConfigError(f"{key}: expected a string, got {value!r}")


def _as_int_tuple(key: str, value: object) -> tuple[int, ...]:
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    if isinstance(value, list | tuple):
        return tuple(_as_int(key, v) for v in value)
    raise ConfigError(f"{key}: expected a list of integers, got {value!r}")


# Field annotations are strings (postponed evaluation); one coercion per annotation.
_COERCE = {
    "int": _as_int,
    "Decimal": _as_decimal,
    "bool": _as_bool,
    "str": _as_str,
    "tuple[int, ...]": _as_int_tuple,
}


def _build_section(name: str, cls: type, values: Mapping[str, object]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        field = fields.get(key)
        if field is None:
            raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(sorted(fields))})")
        kwargs[key] = _COERCE[field.type](f"{name}.{key}", value)  # type: ignore[index]
    return cls(**kwargs)


# -- validation --------------------------------------------------------------------------


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def validate(cfg: Config) -> Config:
    q, r, m, i, k, o, f, a = (
        cfg.quote,
        cfg.refresh,
        cfg.momentum,
        cfg.inventory,
        cfg.risk,
        cfg.orders,
        cfg.fees,
        cfg.analytics,
    )
    _require(0 <= q.offset_ticks <= 100, "quote.offset_ticks", "must be between 0 and 100")
    _require(q.improve_when_spread_ticks >= 1, "quote.improve_when_spread_ticks", "must be at least 1 tick")
    _require(q.max_spread_ticks >= 1, "quote.max_spread_ticks", "must be at least 1 tick")
    _require(r.threshold_ticks >= 1, "refresh.threshold_ticks", "must be at least 1 tick")
    _require(r.min_interval_ms >= 0, "refresh.min_interval_ms", "must not be negative")
    _require(r.global_cap_per_sec >= 1, "refresh.global_cap_per_sec", "must be at least 1")
    _require(m.threshold_ticks >= 1, "momentum.threshold_ticks", "must be at least 1 tick")
    _require(m.window_ms >= 1, "momentum.window_ms", "must be positive")
    _require(m.cooldown_seconds >= 0, "momentum.cooldown_seconds", "must not be negative")
    _require(0 < m.sweep_depth_threshold <= 1, "momentum.sweep_depth_threshold", "must be in (0, 1]")
    _require(m.depth_ticks >= 0, "momentum.depth_ticks", "must not be negative")
    _require(0 <= m.imbalance_threshold < Decimal("0.5"), "momentum.imbalance_threshold", "must be in [0, 0.5)")
    _require(m.action in ("pull", "widen"), "momentum.action", "must be 'pull' or 'widen'")
    for name in ("max_position_per_market", "max_liability_per_market_usdc", "max_total_liability_usdc"):
        _require(getattr(i, name) >= 0, f"inventory.{name}", "must not be negative")
    _require(0 <= i.skew_coefficient <= 10, "inventory.skew_coefficient", "must be between 0 and 10 ticks per share")
    _require(k.max_drawdown_per_market_usdc >= 0, "risk.max_drawdown_per_market_usdc", "must not be negative")
    _require(k.max_drawdown_global_usdc >= 0, "risk.max_drawdown_global_usdc", "must not be negative")
    _require(k.max_consecutive_errors >= 1, "risk.max_consecutive_errors", "must be at least 1")
    _require(k.circuit_breaker_recovery_seconds >= 0, "risk.circuit_breaker_recovery_seconds", "must not be negative")
    _require(k.stale_feed_seconds > 0, "risk.stale_feed_seconds", "must be positive")
    _require(Decimal("0.01") <= o.order_size_usdc <= 1_000_000, "orders.order_size_usdc", "must be in [0.01, 1000000]")
    policies = ("adopt", "cancel", "ignore")
    _require(o.unknown_orders in policies, "orders.unknown_orders", "must be 'adopt', 'cancel' or 'ignore'")
    _require(1 <= o.batch_size <= 15, "orders.batch_size", "must be between 1 and 15 (the venue's batch limit)")
    _require(o.post_only, "orders.post_only", "must be true: a maker never sends an order that can take")
    _require(0 <= o.presign_ticks <= 10, "orders.presign_ticks", "must be between 0 and 10")
    _require(1 <= o.presign_max_age_seconds <= 60, "orders.presign_max_age_seconds", "must be between 1 and 60 seconds")
    _require(1 <= o.presign_budget <= 64, "orders.presign_budget", "must be between 1 and 64")
    _require(f.cache_ttl_seconds >= 0, "fees.cache_ttl_seconds", "must not be negative")
    _require(
        bool(a.markout_horizons_seconds) and all(h > 0 for h in a.markout_horizons_seconds),
        "analytics.markout_horizons_seconds",
        "must be a non-empty list of positive seconds",
    )
    _require(
        list(a.markout_horizons_seconds) == sorted(set(a.markout_horizons_seconds)),
        "analytics.markout_horizons_seconds",
        "must be strictly increasing",
    )
    _require(
        a.toxicity_horizon_seconds in a.markout_horizons_seconds,
        "analytics.toxicity_horizon_seconds",
        "must be one of markout_horizons_seconds",
    )
    _require(0 <= a.toxicity_threshold <= 1, "analytics.toxicity_threshold", "must be a price in [0, 1]")
    al = cfg.alerts
    _require(bool(al.telegram_token) == bool(al.telegram_chat_id), "alerts.telegram_chat_id",
             "telegram needs both telegram_token and telegram_chat_id")  # fmt: skip
    _require(not al.webhook_url or al.webhook_url.startswith(("http://", "https://")), "alerts.webhook_url",
             "must be an http(s) URL")  # fmt: skip
    _require(al.min_interval_seconds >= 0, "alerts.min_interval_seconds", "must not be negative")
    _require(al.max_per_minute >= 1, "alerts.max_per_minute", "must be at least 1")
    _require(al.fill_batch_seconds > 0, "alerts.fill_batch_seconds", "must be positive")
    fv = cfg.fair_value
    _require(fv.source in ("chainlink", "binance"), "fair_value.source", "must be 'chainlink' or 'binance'")
    _require(fv.settlement in ("auto", "point", "twap"), "fair_value.settlement", "must be 'auto', 'point' or 'twap'")
    _require(0 <= fv.margin <= Decimal("0.5"), "fair_value.margin", "must be a price in [0, 0.5]")
    _require(0 <= fv.max_band <= 1, "fair_value.max_band", "must be a price in [0, 1]")
    # the estimator takes up to a day; it is built at an asset's first tick, so a bad value must stop here
    _require(1 <= fv.vol_half_life_seconds <= 86_400, "fair_value.vol_half_life_seconds", "must be in [1, 86400] s")
    for key in ("margin", "max_band", "guard_move"):  # prices: on the core's 1e-4 grid
        _require(getattr(fv, key) % Decimal("0.0001") == 0, f"fair_value.{key}", "must be a multiple of 0.0001")
    _require(Decimal("0.001") <= fv.vol_floor <= 50, "fair_value.vol_floor", "must be in [0.001, 50] (annualised)")
    _require(fv.vol_floor <= fv.vol_initial <= 50, "fair_value.vol_initial", "must be in [vol_floor, 50]")
    _require(1 <= fv.horizon_ms <= 600_000, "fair_value.horizon_ms", "must be in [1, 600000] ms")
    _require(fv.stale_seconds > 0, "fair_value.stale_seconds", "must be positive")
    _require(Decimal("0.0001") <= fv.guard_move <= 1, "fair_value.guard_move", "must be a price in [0.0001, 1]")
    return cfg


# -- loading -----------------------------------------------------------------------------


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        for section in SECTIONS:
            if rest.startswith(section + "_"):
                out.setdefault(section, {})[rest[len(section) + 1 :]] = value
                break
    return out


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Build the configuration: defaults, then the TOML file, then ``AQ_<SECTION>_<KEY>`` variables."""
    data: dict[str, dict[str, object]] = {}
    if path is not None:
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML ({exc})") from None
        for section, values in raw.items():
            if section not in SECTIONS:
                raise ConfigError(f"{section}: unknown section (known: {', '.join(SECTIONS)})")
            if not isinstance(values, dict):
                raise ConfigError(f"{section}: expected a table of keys")
            data[section] = dict(values)
    for section, values in _env_overrides(os.environ if env is None else env).items():
        data.setdefault(section, {}).update(values)
    sections = {name: _build_section(name, cls, data.get(name, {})) for name, cls in SECTIONS.items()}
    return validate(Config(**sections))
