"""Review of issue 13: the window's strike as the venue sets it, from the reference ticks.

``priceToBeat(N) == finalPrice(N-1)`` (POLYMARKET.md §8): a window settling on a TWAP starts
from the previous window's TWAP, not from the tick at its start; and a strike is never taken
from a price the feed last sent long before the start (the feed was down across it)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from active_quoting import core
from active_quoting.discovery import WindowInfo
from active_quoting.strategy.config import FairValueConfig
from active_quoting.strategy.fair_value import FairValues

START = 1_780_000_200
USD = core.SPOT_SCALE


def window(twap_s: int = 0, price_to_beat: Decimal | None = None) -> WindowInfo:
    return WindowInfo(
        asset="btc", slug=f"btc-updown-15m-{START}", condition_id=f"0xc{START}", up="11", down="22",
        start=START, end=START + 900, tick=100, min_size=5_000_000, fee_rate=Fraction(7, 100), fee_exponent=1,
        rebate_share=Fraction(1, 5), closed=False, twap_s=twap_s, price_to_beat=price_to_beat,
    )  # fmt: skip


def feed(fv: FairValues, ticks: list[tuple[int, int]], watch: tuple[WindowInfo, ...]) -> None:
    """(unix seconds, whole USD) ticks, each seen when stamped, the strikes of ``watch`` taken as the bot does."""
    for t, usd in ticks:
        fv.on_tick("btc", usd * USD, t * 1000, t * 1000, watch)


def test_a_twap_windows_strike_is_the_average_over_the_lookback_before_its_start() -> None:
    fv = FairValues(FairValueConfig(enabled=True))
    w = window(twap_s=60)
    # 100000 until 30 s before the start, 100600 from then on: the previous window's TWAP over
    # its last 60 s is (30 x 100000 + 30 x 100600) / 60 = 100300; the start tick says 100600
    ticks = [(t, 100_000 if t < START - 30 else 100_600) for t in range(START - 70, START + 2)]
    feed(fv, ticks, watch=(w,))
    assert fv.strike(w) == 100_300 * USD
    assert fv.strike_mismatches == 0
    # Gamma's word, when it comes, agrees: nothing counted as a mismatch
    assert fv.strike(window(twap_s=60, price_to_beat=Decimal("100300"))) == 100_300 * USD
    assert fv.strike_mismatches == 0
    # and the point rule keeps the start tick
    point = FairValues(FairValueConfig(enabled=True, settlement="point"))
    feed(point, ticks, watch=(window(twap_s=60),))
    assert point.strike(window(twap_s=60)) == 100_600 * USD


def test_a_twap_strike_needs_the_whole_lookback() -> None:
    fv = FairValues(FairValueConfig(enabled=True))
    w = window(twap_s=60)
    feed(fv, [(t, 100_000) for t in range(START - 20, START + 2)], watch=(w,))  # only 20 s of it
    assert fv.strike(w) is None
    assert fv.fair(w, (START + 1) * 1000) is None


def test_no_strike_from_a_price_sent_long_before_the_start() -> None:
    fv = FairValues(FairValueConfig(enabled=True, stale_seconds=Decimal("5")))
    w = window()
    # the feed was down from 40 s before the start to 1 s after it: its last price is no strike
    feed(fv, [(START - 41, 99_000), (START - 40, 100_000), (START + 1, 100_500), (START + 2, 100_500)], watch=(w,))
    assert fv.ticks == 4  # every tick was taken
    assert fv.strike(w) is None
    assert fv.fair(w, (START + 2) * 1000) is None
    # Gamma's priceToBeat still gives one
    assert fv.strike(window(price_to_beat=Decimal("100200"))) == 100_200 * USD
    # a feed that was up across the start gives the start tick, a gap of exactly stale_seconds included
    ok = FairValues(FairValueConfig(enabled=True, stale_seconds=Decimal("5")))
    feed(ok, [(START - 5, 100_000), (START + 1, 100_500)], watch=(w,))
    assert ok.strike(w) == 100_000 * USD
