"""Review of issue 13: a resting quote beyond the fair-value bound is cancelled even when the
refresh hysteresis would keep it. With refresh.threshold_ticks = 2 (the default) a bid one tick
above ``fair - margin`` was KEEP: it rested beyond the bound the issue says we never bid above,
the guard's re-decision did nothing, and the informed takers found it. Both twins."""

from __future__ import annotations

import pytest

from active_quoting import core

NO = core.NO_PRICE
SH = 1_000_000
BIG = 10**12
BIGU = 10**13


@pytest.fixture(params=["c", "py"])
def impl(request):  # type: ignore[no-untyped-def]
    return core.load(request.param)


def decide(engine, fair, margin, rest_bid=(NO, 0), rest_ask=(NO, 0)):  # type: ignore[no-untyped-def]
    # book 0.49 / 0.51, tick 0.01, min size 5 shares
    return engine.decide(4900, 5100, 100, 5 * SH, 0, False, *rest_bid, *rest_ask, BIG, BIG, BIGU, BIGU, fair, margin, 0)


def test_a_bid_one_tick_beyond_the_bound_is_cancelled_not_kept(impl) -> None:
    e = impl.QuoteEngine(refresh_threshold_ticks=2)
    # fair 0.4950, margin 0.0150: bid at most 0.48; ours rests at the touch 0.49 (one tick above)
    without_fair = e.decide(4900, 5100, 100, 5 * SH, 0, False, 4900, 5 * SH, NO, 0, BIG, BIG, BIGU, BIGU)
    assert without_fair[2] == core.KEEP  # the hysteresis alone keeps it
    out = decide(e, 4950, 150, rest_bid=(4900, 5 * SH))
    assert out[0] == 4800 and out[2] == core.CANCEL
    # one inside the bound is still left alone by the hysteresis
    assert decide(e, 4950, 50, rest_bid=(4800, 5 * SH))[2] == core.KEEP


def test_an_ask_one_tick_beyond_the_bound_is_cancelled_not_kept(impl) -> None:
    e = impl.QuoteEngine(refresh_threshold_ticks=2)
    # fair 0.5050; ours rests at the touch 0.51
    out = decide(e, 5050, 50, rest_ask=(5100, 5 * SH))  # bound ceil(0.5100) = 0.51: inside, kept
    assert out[5] == core.KEEP
    out = decide(e, 5050, 100, rest_ask=(5100, 5 * SH))  # bound 0.52: one tick beyond
    assert out[3] == 5200 and out[5] == core.CANCEL
