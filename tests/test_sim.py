"""The simulator: virtual time that jumps, the production bot on it against the embedded
exchange with every fault and a crash, invariants that hold (and one that is made to fail),
reproducible for a seed, and the A/B command the user types."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from active_quoting import core
from active_quoting.exchange.engine import Order
from active_quoting.sim.ab import mean_ci, parse_variant
from active_quoting.sim.loop import LoopClock, VirtualTimeLoop
from active_quoting.sim.runner import SimConfig, Simulation, fault_schedule

EXE = shutil.which("active-quoting") or str(Path(sys.executable).parent / "active-quoting")
# the CI's short soak: the compiled core runs the longer one, the twins a shorter one
SOAK_HOURS = "1" if core.IMPL == "c" else "0.3"


def test_virtual_time_jumps_to_the_next_timer():
    loop = VirtualTimeLoop()
    clock = LoopClock(loop, 1_000.0)
    seen: list[tuple[str, float]] = []

    async def main() -> None:
        loop.call_later(7200, lambda: seen.append(("later", clock.time())))
        await asyncio.sleep(3600)
        seen.append(("slept", clock.time()))
        await asyncio.sleep(3600.5)

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    loop.close()
    assert seen == [("slept", 4_600.0), ("later", 8_200.0)]
    assert loop.time() == 7200.5 and loop.jumps >= 2
    assert time.perf_counter() - t0 < 5  # two simulated hours, no sleeping


def test_fault_schedule_uses_every_fault_and_is_seeded():
    cfg = SimConfig(hours=24, faults="default", seed=3)
    plan = fault_schedule(cfg)
    names = {name for _, name, _, _ in plan}
    assert {"drop_ws", "freeze_market", "engine_restart", "rate_limit_burst", "server_errors", "timeout_after_place",
            "duplicate_user_trades", "delay_user", "malformed_frame", "tick_size_change"} <= names  # fmt: skip
    assert plan == fault_schedule(cfg) and plan != fault_schedule(SimConfig(hours=24, faults="default", seed=4))
    assert len(plan) >= 24 * 3 and all(0 < at < 24 * 3600 for at, *_ in plan)


def _soak(tmp_path: Path, name: str) -> dict:
    out = tmp_path / f"{name}.json"
    run = subprocess.run(
        [EXE, "sim", "--hours", SOAK_HOURS, "--markets", "4", "--faults", "default", "--crashes", "1", "--quiet",
         "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert "invariants" in run.stdout and "all held" in run.stdout
    return json.loads(out.read_text())


def test_soak_with_every_fault_and_a_crash_holds_its_invariants_and_is_reproducible(tmp_path):
    first = _soak(tmp_path, "a")
    inv = first["invariants"]
    assert inv["ok"] and inv["checks"] >= 0.9 * float(SOAK_HOURS) * 3600
    assert first["crashes"] == 1 and any("crash" in e for e in first["events"])
    faults = {e["fault"] for e in first["events"] if "fault" in e}
    assert len(faults) >= 8, faults  # the schedule's faults reached the exchange
    assert first["fills"] > 0 and first["hours"] and first["hours"][-1]["rss_mb"] > 0 < first["hours"][-1]["heap_kblocks"]
    second = _soak(tmp_path, "b")
    # every byte went through the loop's in-memory connections, the same reads in both runs
    assert first["loop"]["connections"] > 0 and first["loop"]["deliveries"] > 0
    assert first["loop"]["open_ends"] == 0  # the crashed bot's connections and the last one's all closed
    assert second["loop"] == first["loop"]
    # same seed, same fills (byte for byte: ids, sides, prices, sizes, statuses) and positions
    assert second["fills_digest"] == first["fills_digest"]
    for key in ("fills", "orders", "volume_shares", "realized_pnl", "estimated_rebate"):
        assert second["report"][key] == first["report"][key], key


def test_an_invariant_that_is_broken_is_reported_with_its_first_violation(tmp_path):
    """An order of ours the bot does not manage (another tool's, left alone on a shared account)
    rests on the venue: the 'managed' invariant fires, with when and which order."""

    class Foreign(Simulation):
        async def _faults(self) -> None:
            await asyncio.sleep(300)
            bot = self.bot
            assert bot is not None
            m = self.flow.windows[-1].market
            order = Order("0xforeign", bot.signer.address, bot.rest.creds.api_key, m.condition_id, m.up, "BUY", 100,
                          10_000_000, "GTC")  # fmt: skip
            self.exchange._publish(self.exchange.engine.place(order, self.clock.ms()))

    cfg = SimConfig(hours=0.15, assets=("btc",), seed=5, config_env={"AQ_ORDERS_UNKNOWN_ORDERS": "ignore"},
                    db=str(tmp_path / "f.db"))  # fmt: skip
    summary = Foreign(cfg).run()
    inv = summary["invariants"]
    assert not inv["ok"] and inv["violations"]["managed"] >= 1
    first = inv["first"]["managed"]
    assert "0xforeign" in first["detail"] and first["t"] >= 1_780_000_200 + 300


def test_ab_command_pairs_seeds_and_writes_table_html_and_json(tmp_path):
    html, out = tmp_path / "ab.html", tmp_path / "ab.json"
    run = subprocess.run(
        [EXE, "sim", "--hours", "0.1", "--markets", "1", "--seeds", "1-2", "--strategy", "active,only50",
         "--report", str(html), "--json", str(out), "--quiet"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "active" in run.stdout and "only50" in run.stdout and "95% CI over 2 seeds" in run.stdout
    data = json.loads(out.read_text())
    assert data["seeds"] == [1, 2] and set(data["runs"]["only50"]) == {"1", "2"}
    assert "<svg" in html.read_text() and "only50" in html.read_text()
    assert data["params"]["hours"] == 0.1 and data["params"]["assets"] == ["btc"] and data["params"]["code"]

    # A third seed run on its own, then all three tabulated together (a long A/B in pieces)
    third, merged = tmp_path / "ab3.json", tmp_path / "merged.json"
    run = subprocess.run(
        [EXE, "sim", "--hours", "0.1", "--markets", "1", "--seeds", "3", "--strategy", "active,only50",
         "--json", str(third), "--quiet"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    run = subprocess.run(
        [EXE, "sim", "--merge", f"{out},{third}", "--json", str(merged)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "95% CI over 3 seeds" in run.stdout and "warning" not in run.stderr
    both = json.loads(merged.read_text())
    part3 = json.loads(third.read_text())
    assert both["seeds"] == [1, 2, 3]
    nets = {v: [data["runs"][v]["1"]["net"], data["runs"][v]["2"]["net"], part3["runs"][v]["3"]["net"]]
            for v in ("active", "only50")}  # fmt: skip
    assert both["table"]["active"]["net"] == pytest.approx(list(mean_ci(nets["active"])))
    paired = [b - a for a, b in zip(nets["active"], nets["only50"], strict=True)]
    assert both["table"]["only50"]["net_vs_active"] == pytest.approx(list(mean_ci(paired)))
    for args, words in (
        ([f"{out},{out}"], "seed 1 is in both"),  # the same seeds twice
        ([str(out)], "at least two"),
        ([f"{out},{tmp_path / 'missing.json'}"], "missing.json"),
        ([f"{out},{html}"], "not JSON"),
    ):
        run = subprocess.run([EXE, "sim", "--merge", *args], capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 2 and words in run.stderr, (args, run.stderr)
    other = dict(part3, params={**part3["params"], "hours": 24.0})
    (tmp_path / "other.json").write_text(json.dumps(other))
    run = subprocess.run([EXE, "sim", "--merge", f"{out},{tmp_path / 'other.json'}"], capture_output=True, text=True,
                         timeout=60, check=False)  # fmt: skip
    assert run.returncode == 2 and "run parameters differ" in run.stderr and "hours" in run.stderr


def test_bad_arguments_get_a_clear_error():
    for args, words in (
        (["--hours", "0"], "--hours"), (["--seeds", "x"], "--seeds"), (["--strategy", "magic"], "unknown strategy"),
        (["--sweep", "nonsense"], "--sweep"), (["--markets", "99"], "--markets"), (["--faults", "all"], "--faults"),
    ):  # fmt: skip
        run = subprocess.run([EXE, "sim", *args], capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 2 and words in run.stderr, (args, run.stderr)


def test_variants_and_confidence_intervals():
    assert parse_variant("active:momentum.cooldown_seconds=1,quote.offset_ticks=2") == (
        "active", {"AQ_MOMENTUM_COOLDOWN_SECONDS": "1", "AQ_QUOTE_OFFSET_TICKS": "2"}
    )
    with pytest.raises(ValueError):
        parse_variant("active:cooldown=1")
    m, ci = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert m == 2.5 and abs(ci - 3.182 * (1.2909944 / 2)) < 1e-3


def test_a_fill_the_bot_never_counts_breaks_the_fills_and_positions_invariants(tmp_path):
    """The bot drops one fill on the floor (as a bug in the intake would): the venue's trades
    say otherwise, and both invariants that compare with the venue fire."""

    class Deaf(Simulation):
        async def _faults(self) -> None:
            await asyncio.sleep(120)
            bot = self.bot
            assert bot is not None
            real = bot.fills.on_fill
            dropped: list[str] = []

            def on_fill(update, recovered=False):  # one fill is never counted, however often it comes back
                if not dropped and bot.fills.known.get(update.fill.market, {}).get(update.fill.key) is None:
                    dropped.append(update.fill.key)
                if update.fill.key in dropped:
                    return False
                return real(update, recovered)

            bot.fills.on_fill = on_fill

    cfg = SimConfig(hours=0.3, assets=("btc",), seed=2, db=str(tmp_path / "d.db"))
    summary = Deaf(cfg).run()
    inv = summary["invariants"]
    assert inv["violations"]["fills"] >= 1 and inv["violations"]["positions"] >= 1, inv
    assert "not counted" in inv["first"]["fills"]["detail"]


def test_a_crashed_bot_gives_its_memory_back_and_leaves_no_task_pending(tmp_path, caplog):
    """A kill -9 frees the process's memory: the simulator's crashed bot must not outlive its
    crash (the bot freezes what it builds at start-up out of the collector's sight, so a dead
    bot stayed for the rest of the run - ~10-20 MB a crash on 16 markets), and its cancelled
    run leaves no task pending that the collector then destroys."""
    import gc
    import weakref

    bots: list[weakref.ref] = []

    class Counted(Simulation):
        def _new_bot(self, duration_s: float):
            bot = super()._new_bot(duration_s)
            bots.append(weakref.ref(bot))
            return bot

    cfg = SimConfig(hours=0.1, assets=("btc",), seed=2, crashes=2, db=str(tmp_path / "c.db"))
    try:
        summary = Counted(cfg).run()
        gc.collect()
        assert summary["crashes"] == 2 and len(bots) == 3
        assert [r() is None for r in bots[:2]] == [True, True], "a crashed bot is still alive"
        assert "Task was destroyed but it is pending" not in caplog.text
    finally:
        gc.unfreeze()  # the last bot froze what the test process held


def test_timers_due_at_one_instant_run_in_the_order_they_were_scheduled():
    """asyncio's timers compare by deadline alone: ten due together came out of its heap as
    0, 9, 8, ... and a timer cancelled elsewhere reshuffled them (it changed the fills of a run
    with crashes). On the virtual loop, first scheduled, first run, whatever else was cancelled."""
    loop = VirtualTimeLoop()
    ran: list[int] = []

    async def main() -> None:
        noise = [loop.call_later(5.0 + i / 100, ran.append, -1) for i in range(300)]
        for i in range(10):
            loop.call_later(2.0, ran.append, i)
            noise[i * 3].cancel()
        for h in noise:
            h.cancel()
        await asyncio.sleep(0)  # over 100 timers, over half cancelled: asyncio rebuilds its heap
        assert len(loop._scheduled) == 10  # type: ignore[attr-defined]
        late = loop.call_at(loop.time() + 2.0, ran.append, 10)  # the same instant, scheduled last
        assert late.when() == loop.time() + 2.0
        await asyncio.sleep(3)

    loop.run_until_complete(main())
    loop.close()
    assert ran == list(range(11))


def test_merged_ab_outputs_keep_violations_and_say_when_the_code_or_parameters_are_unknown():
    from active_quoting.sim.ab import MergeError, merge

    def part(seeds: list[int], nets: list[float], code: str, bad: dict | None = None, params: bool = True) -> dict:
        runs = {v: {str(s): {"net": n + (5 if v == "b" else 0), "fills": 1.0} for s, n in zip(seeds, nets, strict=True)}
                for v in ("a", "b")}  # fmt: skip
        table = {v: {"invariants_ok": not (bad and v in bad), "violations": (bad or {}).get(v, {})} for v in ("a", "b")}
        out = {"variants": ["a", "b"], "seeds": seeds, "runs": runs, "table": table}
        if params:
            out["params"] = {"hours": 24.0, "code": code}
        return out

    ab, warnings = merge([("x", part([1, 2], [1.0, 3.0], "c1")), ("y", part([3], [5.0], "c1", {"b": {"3": "f"}}))])
    assert ab["seeds"] == [1, 2, 3] and warnings == []
    assert ab["table"]["a"]["net"][0] == 3.0 and ab["table"]["b"]["net_vs_a"] == (5.0, 0.0)
    assert ab["table"]["a"]["invariants_ok"] and not ab["table"]["b"]["invariants_ok"]
    assert ab["table"]["b"]["violations"] == {3: "f"}  # a violation in one part is not merged away
    assert ab["params"] == {"hours": 24.0, "code": ["c1"]}
    _, warnings = merge([("x", part([1], [1.0], "c1")), ("y", part([2], [2.0], "c2"))])
    assert any("different code" in w for w in warnings)
    ab, warnings = merge([("x", part([1], [1.0], "c1")), ("y", part([2], [2.0], "c1", params=False))])
    assert any("y records no run parameters" in w for w in warnings)
    assert ab["params"] == {"hours": 24.0, "code": ["c1"], "unverified_parts": ["y"]}
    again, _ = merge([("xy", ab), ("z", part([3], [3.0], "c1"))])  # a merged output merged again
    assert again["seeds"] == [1, 2, 3] and again["params"]["unverified_parts"] == ["y"]
    with pytest.raises(MergeError, match="variants"):
        merge([("x", part([1], [1.0], "c1")), ("y", {**part([2], [2.0], "c1"), "variants": ["b", "a"]})])
    with pytest.raises(MergeError, match="no variants"):
        merge([("x", part([1], [1.0], "c1")), ("y", {**part([2], [2.0], "c1"), "variants": []})])
    with pytest.raises(MergeError, match="not a mapping"):
        merge([("x", part([1], [1.0], "c1")), ("y", {**part([2], [2.0], "c1"), "params": [1, 2]})])
    sneaky = part([2], [2.0], "c1")
    sneaky["runs"]["a"]["1"] = {"net": 9.0}  # a run for a seed it does not declare (seed 1 is x's)
    with pytest.raises(MergeError, match="has runs for seeds"):
        merge([("x", part([1], [1.0], "c1")), ("y", sneaky)])
