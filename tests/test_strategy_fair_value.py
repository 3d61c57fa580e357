"""The strategy's fair value from the reference price: strikes, staleness, the TWAP rule, the
guard's trigger, the quote clamp, markouts against fair value, and the config's checks."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest

from active_quoting import core
from active_quoting.analytics.fills import FillAnalytics
from active_quoting.discovery import WindowInfo
from active_quoting.model import BUY, CONFIRMED, FAILED, Fill
from active_quoting.strategy.config import ConfigError, FairValueConfig, load_config
from active_quoting.strategy.fair_value import Fair, FairValues, spot_units
from active_quoting.strategy.inventory import InventoryManager
from active_quoting.strategy.momentum import MomentumDetector
from active_quoting.strategy.quoting import MarketQuoter
from active_quoting.strategy.risk import RiskManager

START = 1_780_000_200
USD = core.SPOT_SCALE


def window(start: int = START, length: int = 900, twap_s: int = 0, price_to_beat: Decimal | None = None) -> WindowInfo:
    return WindowInfo(
        asset="btc", slug=f"btc-updown-15m-{start}", condition_id=f"0xc{start}", up="11", down="22",
        start=start, end=start + length, tick=100, min_size=5_000_000, fee_rate=Fraction(7, 100), fee_exponent=1,
        rebate_share=Fraction(1, 5), closed=False, twap_s=twap_s, price_to_beat=price_to_beat,
    )  # fmt: skip


def feed(fv: FairValues, ticks: list[tuple[int, float]], asset: str = "btc", watch: tuple[WindowInfo, ...] = ()) -> None:
    """(unix seconds, USD) ticks, each seen when stamped; the strikes of ``watch`` taken as the bot does."""
    for t, usd in ticks:
        fv.on_tick(asset, round(usd * USD), t * 1000, t * 1000, watch)


def test_strike_is_the_latest_tick_at_or_before_the_start_once_a_later_one_is_seen() -> None:
    fv = FairValues(FairValueConfig(enabled=True))
    w = window()
    feed(fv, [(START - 2, 100_000.0), (START - 1, 100_010.0)])
    assert fv.strike(w) is None  # the start second may still bring a tick: not final yet
    feed(fv, [(START + 1, 100_500.0)])
    assert fv.strike(w) == 100_010 * USD
    # Gamma's priceToBeat is authoritative, and a difference is counted
    gw = replace(w, price_to_beat=Decimal("100011.5"))
    assert fv.strike(gw) == spot_units(Decimal("100011.5")) == 10_001_150_000_000
    assert fv.strike_mismatches == 1


def test_a_watched_windows_strike_is_kept_after_its_start_ticks_age_out() -> None:
    fv = FairValues(FairValueConfig(enabled=True))
    w, unwatched = window(), window(start=START + 900)
    feed(fv, [(t, 100_000.0 + t - START) for t in range(START - 3, START + 400)],
         watch=(w,))  # fmt: skip
    assert fv.strike(w) == 100_000 * USD
    assert fv.strike(unwatched) is None  # its start has not come


def test_no_strike_when_the_feed_does_not_cover_the_start() -> None:
    fv = FairValues(FairValueConfig(enabled=True))
    w = window()
    feed(fv, [(START + 5, 100_000.0), (START + 6, 100_100.0)])  # started mid-window
    assert fv.strike(w) is None
    assert fv.fair(w, (START + 6) * 1000) is None


def test_fair_follows_spot_and_goes_away_when_the_feed_is_stale() -> None:
    fv = FairValues(FairValueConfig(enabled=True, stale_seconds=Decimal("5")))
    w = window()
    feed(fv, [(START, 100_000.0), (START + 1, 100_000.0)])
    at_money = fv.fair(w, (START + 1) * 1000)
    assert at_money is not None and abs(at_money.price - 5_000) <= 10
    feed(fv, [(START + 2, 100_300.0)])
    above = fv.fair(w, (START + 2) * 1000)
    assert above is not None and above.price > at_money.price + 500
    assert fv.fair(w, (START + 2) * 1000 + 5_001) is None  # no tick for more than 5 s
    assert fv.fair(w, (START + 2) * 1000 + 5_000) is not None


def test_inside_the_twap_the_observed_average_counts() -> None:
    """Spot sat below the strike for most of the 60 s TWAP and jumped above it 5 s before the end:
    under the point rule Up is likely, under the TWAP it is not."""
    twap, point = window(twap_s=60), window(twap_s=0)
    fv = FairValues(FairValueConfig(enabled=True))
    end = twap.end
    ticks = [(START, 100_000.0), (START + 1, 100_000.0)]
    ticks += [(t, 99_950.0) for t in range(end - 70, end - 5)] + [(end - 5, 100_060.0), (end - 4, 100_060.0)]
    feed(fv, ticks, watch=(point,))  # one strike per market: both windows share the condition id here
    now = (end - 4) * 1000
    f_point, f_twap = fv.fair(point, now), fv.fair(twap, now)
    assert f_point is not None and f_twap is not None
    assert f_point.price > 8_000
    assert f_twap.price < 2_000
    # the configured rule wins over Gamma's word
    forced = FairValues(FairValueConfig(enabled=True, settlement="point"))
    feed(forced, ticks, watch=(point,))
    assert forced.fair(twap, now) == f_point


def test_the_guard_names_markets_whose_fair_value_moved_since_decided() -> None:
    fv = FairValues(FairValueConfig(enabled=True, guard=True, guard_move=Decimal("0.02")))
    w = window()
    feed(fv, [(START, 100_000.0), (START + 1, 100_000.0)])
    now = (START + 1) * 1000
    fv.decided(w.condition_id, fv.fair(w, now))
    assert fv.moved([w], now) == []
    feed(fv, [(START + 2, 100_002.0)])  # a tiny move: fair moves less than 0.02
    assert fv.moved([w], (START + 2) * 1000) == []
    feed(fv, [(START + 3, 100_400.0)])
    assert fv.moved([w], (START + 3) * 1000) == [w.condition_id]
    assert fv.moved([w], (START + 3) * 1000 + 60_000) == [w.condition_id]  # the feed went stale: decide again
    fv.forget(w.condition_id)
    assert fv.moved([w], (START + 3) * 1000 + 60_000) == []  # never decided and no fair value: nothing to redo
    # a market quoted on the book alone (no fair value when decided) is decided again once there is one
    assert fv.moved([w], (START + 3) * 1000) == [w.condition_id]


def test_exposed_quotes_are_those_beyond_the_fair_bound() -> None:
    fv = FairValues(FairValueConfig(enabled=True, margin=Decimal("0.01")))
    fair = Fair(price=4_000, band=100, spot=0)  # bound: bid <= 0.38, ask >= 0.42
    assert fv.exposed(fair, 100, 3_800, 4_200) == (False, False)
    assert fv.exposed(fair, 100, 3_900, 4_100) == (True, True)
    assert fv.exposed(fair, 100, core.NO_PRICE, core.NO_PRICE) == (False, False)
    assert fv.exposed(fair, 10, 3_801, 4_199) == (True, True)  # on a finer grid the bound is finer too


def test_out_of_order_ticks_are_counted_not_used_and_a_same_second_correction_wins() -> None:
    fv = FairValues(FairValueConfig(enabled=True))
    feed(fv, [(START, 100_000.0), (START + 2, 100_100.0), (START + 1, 90_000.0)])
    assert fv.out_of_order == 1
    fv.on_tick("btc", 100_200 * USD, (START + 2) * 1000, (START + 2) * 1000)
    w = window(start=START - 100, price_to_beat=Decimal("100000"))  # started before the feed: Gamma says
    assert fv.fair(w, (START + 2) * 1000) is not None
    assert fv._assets["btc"].ticks[-1] == ((START + 2) * 1000, 100_200 * USD)


def _quoter(cfg_fv: FairValueConfig) -> MarketQuoter:
    cfg = replace(load_config(env={}), fair_value=cfg_fv)
    inventory = InventoryManager(cfg.inventory)
    inventory.register_market("m", "11", "22")
    return MarketQuoter(cfg, inventory, MomentumDetector(cfg.momentum), RiskManager(cfg.risk))


def _book(bid: int, ask: int):  # type: ignore[no-untyped-def]
    book = core.Book("11", 100)
    book.apply_snapshot([(bid, 200_000_000)], [(ask, 200_000_000)])
    return book


def test_the_quotes_stay_inside_fair_value_and_are_pulled_when_the_band_is_wide() -> None:
    q = _quoter(FairValueConfig(enabled=True, max_band=Decimal("0.05")))
    book = _book(4_800, 5_200)
    free = q.decide("m", book, 0)
    assert free.bid.price > 4_000 and free.ask.price < 6_000
    # fair value 0.40 with a margin of 0.03: the bid goes to 0.37 at most, the ask is unconstrained
    low = q.decide("m", book, 0, fair=4_000, fair_margin=300, fair_band=100)
    assert low.bid.price <= 3_700 and low.bid.action == core.PLACE
    assert low.ask.price == free.ask.price
    high = q.decide("m", book, 0, fair=6_000, fair_margin=300, fair_band=100)
    assert high.ask.price >= 6_300 and high.bid.price == free.bid.price
    wide = q.decide("m", book, 0, fair=5_000, fair_margin=300, fair_band=600)
    assert wide.bid.action != core.PLACE and wide.ask.action != core.PLACE


def test_markouts_against_fair_value_and_a_ghost_taken_back_out() -> None:
    a = FillAnalytics()
    a.on_mid("11", 0, 10_000)  # mid 0.50
    a.on_fair("11", 0, 2 * 4_000)  # fair 0.40: a BUY at 0.48 is 0.08 worse than fair at the fill
    fill = Fill("t1", "o1", "m", "11", BUY, 4_800, 10_000_000, CONFIRMED, t_ms=1_000)
    assert a.on_fill(fill, 1_000)
    a.on_fair("11", 2_500, 2 * 4_500)  # at 1 s after the fill: fair 0.45
    a.on_fair("11", 7_000, 2 * 3_000)
    a.flush(70_000)
    vs = a.report()["total"]["vs_fair"]
    assert vs[0]["avg_per_share"] == Fraction(-8, 100)  # type: ignore[index]
    assert vs[1]["avg_per_share"] == Fraction(-8, 100)  # fair at t=2 s is still 0.40 at the 1 s mark (t=2.0)
    assert vs[5]["avg_per_share"] == Fraction(-3, 100)  # type: ignore[index]
    # a ghost fill (FAILED) is taken out of the fair-value markouts too
    assert not a.on_fill(replace(fill, status=FAILED), 71_000)
    vs = a.report()["total"]["vs_fair"]
    assert vs[0]["fills"] == 0 and vs[0]["avg_per_share"] is None  # type: ignore[index]


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("AQ_FAIR_VALUE_SOURCE", "kraken", "fair_value.source"),
        ("AQ_FAIR_VALUE_SETTLEMENT", "vwap", "fair_value.settlement"),
        ("AQ_FAIR_VALUE_MARGIN", "0.6", "fair_value.margin"),
        ("AQ_FAIR_VALUE_VOL_FLOOR", "0", "fair_value.vol_floor"),
        ("AQ_FAIR_VALUE_VOL_INITIAL", "0.05", "fair_value.vol_initial"),
        ("AQ_FAIR_VALUE_GUARD_MOVE", "0", "fair_value.guard_move"),
        ("AQ_FAIR_VALUE_STALE_SECONDS", "0", "fair_value.stale_seconds"),
        ("AQ_FAIR_VALUE_ENABLED", "perhaps", "fair_value.enabled"),
    ],
)
def test_bad_fair_value_config_names_the_key(var: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env={var: value})


def test_markouts_against_fair_value_are_stored_as_they_resolve_and_reported(tmp_path) -> None:
    from active_quoting.report import build_report, render_text
    from active_quoting.store.sqlite import Store

    a = FillAnalytics()
    store = Store(tmp_path / "s.db")
    store.market("m", "btc-updown-15m-1", "11", "22", 0, 900)
    a.on_mid("11", 0, 10_000)
    a.on_fair("11", 0, 2 * 4_000)
    fill = Fill("t1", "o1", "m", "11", BUY, 4_800, 10_000_000, CONFIRMED, t_ms=1_000)
    store.fill(fill)
    assert a.on_fill(fill, 1_000)
    a.on_fair("11", 7_000, 2 * 3_000)
    for row in a.take_resolved_fair():
        store.fair_markout(*row)
    assert a.take_resolved_fair() == []  # each once
    a.flush(70_000)
    for row in a.take_resolved_fair():
        store.fair_markout(*row)
    store.flush()
    report = build_report(store)
    store.close()
    vs = report["vs_fair_per_share"]
    assert vs[0] == vs[5] == Fraction(-8, 100) and vs[15] == Fraction(-18, 100) and set(vs) == {0, 1, 5, 15, 30, 60}
    assert "against fair value" in render_text(report)
