"""The exchange's memory stays flat over a day of rollovers: trades older than the engine's
history horizon and markets resolved before it are forgotten (by the server's housekeeping,
on the clock it runs on), while everything within the horizon stays answerable."""

from __future__ import annotations

import asyncio

from active_quoting.exchange.engine import BUY, SELL, Engine, Market, Order
from active_quoting.exchange.flow import FlowConfig, MarketFlow
from active_quoting.exchange.server import Exchange, ExchangeConfig
from active_quoting.sim.loop import LoopClock, VirtualTimeLoop

T0 = 1_780_000_020.0  # a 60-s window boundary
HOUR_MS = 3_600_000


def test_a_long_run_of_windows_keeps_only_the_horizon() -> None:
    """Two hours of 1-minute windows with a 10-minute horizon, driven by the exchange's own
    housekeeping on virtual time: what is kept is the horizon's worth, not the run's."""
    loop = VirtualTimeLoop()
    clock = LoopClock(loop, T0)
    horizon_ms = 600_000

    async def main() -> tuple[Exchange, dict[str, int], int]:
        ex = Exchange(ExchangeConfig(seed=3), clock=clock)
        ex.engine.history_ms = horizon_ms
        await ex.start()
        flow = MarketFlow(ex, FlowConfig(assets=("btc",), window_s=60, seed=3, step_ms=1000, noise_takers_per_s=2.0))
        flow.start()
        try:
            await asyncio.sleep(2 * 3600)
            return ex, {k: len(v) for k, v in ex.engine.by_owner.items()}, clock.ms()
        finally:
            await flow.stop()
            await ex.stop()

    ex, histories, now_ms = loop.run_until_complete(main())
    loop.close()
    e = ex.engine
    assert e.trade_count > 5_000  # the run traded all along (every trade kept before the horizon)
    assert all(t.t_ms >= now_ms - horizon_ms - 1_000 for t in e.trades)
    assert len(e.trades) < e.trade_count / 6  # 10 minutes of 120
    assert histories and max(histories.values()) <= len(e.trades)
    # 120 windows listed; those resolved more than 10 minutes ago are gone, with their Gamma
    # entries, tokens and per-account rebates; the current and next ones are kept
    assert len(e.markets) <= 14 and len(ex.gamma_markets) == len(e.markets)
    assert set(e.by_token) == {t for m in e.markets.values() for t in (m.up, m.down)}
    assert all(set(a.rebates) <= set(e.markets) for a in e.accounts.values())
    assert any(not m.resolved for m in e.markets.values())
    assert all(t.market in e.markets for t in e.trades)  # every trade kept can be answered
    # a forgotten market still answers /markets/{id} with its winner (a bot back after the
    # horizon settles its positions from it), as the venue does for closed markets
    assert len(ex.closed_markets) > 100
    for cid in list(ex.closed_markets)[:3]:
        record = ex.market_record(cid)
        assert cid not in e.markets and record is not None and record["closed"] is True
        assert sum(t["winner"] for t in record["tokens"]) == 1
    assert ex.market_record("0xunknown") is None


def _market(cid: str) -> Market:
    return Market(cid, f"{cid}-up", f"{cid}-down", min_size=1_000_000)


def _trade(e: Engine, cid: str, n: int, now_ms: int) -> None:
    """A resting SELL of the house taken by a BUY of ours: one trade we are part of."""
    e.credit("house", token=f"{cid}-up", shares=10_000_000)
    e.place(Order(f"s{cid}{n}", "house", "house-key", cid, f"{cid}-up", SELL, 5000, 10_000_000), now_ms)
    e.place(Order(f"b{cid}{n}", "me", "my-key", cid, f"{cid}-up", BUY, 5000, 10_000_000), now_ms)


def test_what_is_within_the_horizon_stays_and_nothing_is_forgotten_without_a_resolution_time() -> None:
    e = Engine()
    e.credit("me", collateral=10**12)
    for cid in ("A", "B", "C"):
        e.add_market(_market(cid))
    _trade(e, "A", 1, 0)
    _trade(e, "B", 1, HOUR_MS)
    _trade(e, "C", 1, HOUR_MS)
    e.resolve("A", "A-up", now_ms=HOUR_MS - 1)
    e.resolve("C", "C-up")  # no resolution time (an offline caller): never forgotten
    assert e.forget(e.history_ms) == []  # exactly the horizon: kept
    assert [t.market for t in e.by_owner["my-key"]] == ["A", "B", "C"]
    assert e.forget(e.history_ms + 1) == []  # A's trade is past the horizon, its market not yet
    assert [t.market for t in e.by_owner["my-key"]] == ["B", "C"] and "A" in e.markets
    assert e.orders["bB1"].status == "MATCHED"
    gone = e.forget(HOUR_MS + e.history_ms + 1)
    assert [m.condition_id for m in gone] == ["A"] and set(e.markets) == {"B", "C"}
    assert "A-up" not in e.by_token and "B-up" in e.by_token
    # B is still open: its trade stays (C's, resolved, waits behind it)
    assert [t.market for t in e.by_owner["my-key"]] == ["B", "C"]
    assert "C" in e.markets and e.markets["C"].resolved == "C-up"


def test_a_market_still_open_keeps_its_trades_past_the_horizon() -> None:
    # A window longer than the horizon (4 h markets exist): its trades stay until it resolves
    # and the horizon has passed since (the fills a bot counts there must stay answerable).
    e = Engine()
    e.credit("me", collateral=10**12)
    for cid in ("L", "S"):
        e.add_market(_market(cid))
    _trade(e, "L", 1, 0)
    _trade(e, "S", 1, 1)
    e.resolve("S", "S-up", now_ms=2)
    assert e.forget(3 * HOUR_MS) == []  # S is past the horizon, but a trade kept names it
    assert [t.market for t in e.by_owner["my-key"]] == ["L", "S"]  # S's trade waits behind L's: kept
    e.resolve("L", "L-up", now_ms=3 * HOUR_MS)
    assert [m.condition_id for m in e.forget(3 * HOUR_MS + e.history_ms - 1)] == ["S"]
    assert "my-key" not in e.by_owner  # L resolved: its old trades go, and S's with them
    assert "L" in e.markets  # resolved within the horizon: still listed
