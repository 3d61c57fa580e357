"""The spot-move guard end to end, on the simulator: the underlying jumps, the exchange publishes
the tick on its RTDS socket at once, the venue's book lags (its makers reprice seconds later) and
informed takers sweep it after their reaction and the taker delay. The production bot with the
guard (`spot`) pulls its exposed quote inside that gap; the same bot without it (`active`)
is still resting there when the takers arrive."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

from active_quoting.sim.runner import EPOCH, SimConfig, Simulation

# Into the run, in 5-minute windows that start after the bot (their strikes are the feed's start
# ticks): the second window (300-600 s) and the third (600-900 s).
JUMPS_S = tuple(float(t) for t in range(320, 1080, 40) if 20 <= t % 300 < 260)  # not near a window's start or end


class Jumping(Simulation):
    """The same flow and seed, with a large jump of the underlying at each of JUMPS_S (both
    directions), made inside the flow's step so the RTDS tick goes out with it."""

    jumped_at: list[float]

    async def _faults(self) -> None:
        self.jumped_at = []
        flow = self.flow
        step = flow.step_underlying
        pending = list(JUMPS_S)

        def with_jumps(dt: float, now: float) -> None:
            step(dt, now)
            if pending and now - EPOCH >= pending[0]:
                pending.pop(0)
                sign = 1 if len(self.jumped_at) % 2 == 0 else -1
                flow.spot["btc"] *= math.exp(sign * 0.002)  # several sigma of the window's remaining move
                flow.last_jump["btc"] = now
                self.jumped_at.append(now)

        flow.step_underlying = with_jumps  # type: ignore[method-assign]


Exposure = list[tuple[float, int, int]]  # per exposed order: (jump time s, cancelled at ms or -1, still live at +1 s)


def _run(tmp_path: Path, strategy: str) -> tuple[Jumping, Exposure]:
    """Runs the jumping flow; returns, for every order of ours resting on the exposed side at a
    jump (asks when the underlying jumped up, bids when down), when it was confirmed cancelled."""
    db = tmp_path / f"{strategy}.db"
    # the drawdown halts stay out of the way: the question is what rests when the takers come;
    # the guard reads the Binance topic (the Chainlink one is heard 1.3 s late, after the takers)
    env = {"AQ_RISK_MAX_DRAWDOWN_PER_MARKET_USDC": "10000", "AQ_RISK_MAX_DRAWDOWN_GLOBAL_USDC": "100000",
           "AQ_FAIR_VALUE_SOURCE": "binance"}  # fmt: skip
    sim = Jumping(SimConfig(hours=0.3, assets=("btc",), window_s=300, seed=11, strategy=strategy, db=str(db),
                            config_env=env))  # fmt: skip
    summary = sim.run()
    assert summary["invariants"]["ok"], summary["invariants"]
    assert len(sim.jumped_at) == len(JUMPS_S), sim.jumped_at
    ups = {w.market.up for w in sim.flow.windows}
    with sqlite3.connect(db) as c:
        orders = c.execute("SELECT token, side, created_ms, updated_ms, status FROM orders").fetchall()
    exposed: Exposure = []
    for i, jump in enumerate(sim.jumped_at):
        up_move = i % 2 == 0
        j_ms = int(jump * 1000)
        for token, side, created, updated, status in orders:
            is_ask = (token in ups) == (side == "SELL")  # SELL Up or BUY Down: an ask in Up terms
            # resting: acknowledged before the jump (an order still in flight is not cancellable yet)
            live = created <= j_ms - 100 and (status == "LIVE" or updated > j_ms)
            if live and is_ask == up_move:
                gone = updated if status == "CANCELED" else -1
                exposed.append((jump, gone, int(gone == -1 or gone > j_ms + 1_000)))
    return sim, exposed


def test_the_guard_pulls_exposed_quotes_before_informed_takers_arrive(tmp_path: Path) -> None:
    _, guarded = _run(tmp_path, "spot")
    _, unguarded = _run(tmp_path, "active")
    assert len(guarded) >= 3 and len(unguarded) >= 3  # there were quotes in the way
    # with the guard every exposed quote is confirmed gone within 100 ms of the tick (the informed
    # takers come after their 150 ms reaction and the venue's 50 ms taker delay)
    late = [(j, gone) for j, gone, _ in guarded if gone < 0 or gone - j * 1000 > 100]
    assert not late, late
    # without it, most are still resting when the takers arrive (the book has not moved yet)
    assert sum(still for *_, still in unguarded) >= len(unguarded) // 2, unguarded
