"""The simulator's speed: simulated seconds per wall second for the production bot against the
embedded exchange on virtual time (one seed; 15 simulated minutes of 2 markets, and of 8). The
result also carries the events it handled per wall second (market frames the exchange sent).
Speed is noisy on a shared machine: compare runs of the same day, never absolute numbers."""

from __future__ import annotations

import time

import pytest

from active_quoting.sim.runner import SimConfig, Simulation


@pytest.mark.parametrize("markets", [2, 8])
@pytest.mark.benchmark(group="sim: 15 simulated minutes")
def test_sim_speed(benchmark, markets):
    assets = ("btc", "eth", "sol", "xrp", "doge", "bnb", "ada", "avax")[:markets]
    out: dict = {}

    def run() -> None:
        sim = Simulation(SimConfig(hours=0.25, assets=assets, seed=1))
        t0 = time.perf_counter()
        out["summary"] = sim.run()
        out["wall"] = time.perf_counter() - t0
        out["frames"] = sim.exchange.sent_frames

    benchmark.pedantic(run, rounds=1, iterations=1)
    summary = out["summary"]
    assert summary["invariants"]["ok"] and summary["fills"] > 0
    benchmark.extra_info["sim_seconds_per_wall_second"] = round(900 / out["wall"], 1)
    benchmark.extra_info["frames_per_wall_second"] = round(out["frames"] / out["wall"])
