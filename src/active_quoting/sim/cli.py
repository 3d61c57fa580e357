"""``active-quoting sim``: a soak (one variant, one seed: invariants, memory and cost per hour)
or an A/B evaluation (several variants or seeds, paired, in parallel), on virtual time."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

ASSET_NAMES = ("btc", "eth", "sol", "xrp", "doge", "bnb", "ada", "avax", "link", "dot", "ltc", "trx", "near", "atom",
               "uni", "apt", "arb", "op", "sui", "ton", "xlm", "etc", "fil", "hbar")  # fmt: skip


class SimUsageError(ValueError):
    pass


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, dash, hi = part.partition("-")
            out += list(range(int(lo), int(hi) + 1)) if dash else [int(lo)]
    except ValueError:
        raise SimUsageError(f"--seeds: expected e.g. 1-20 or 1,3,5, not {text!r}") from None
    if not out or any(s < 0 for s in out):
        raise SimUsageError(f"--seeds: expected non-negative seeds, not {text!r}")
    return sorted(set(out))


def _variants(args: argparse.Namespace) -> list[str]:
    from active_quoting.sim.ab import parse_variant
    from active_quoting.strategy.quote_pass import STRATEGY_NAMES

    items: list[str] = []
    for text in (t.strip() for t in args.strategy.split(";")):
        if text:
            items += [text] if ":" in text else [t.strip() for t in text.split(",") if t.strip()]
    if args.sweep:
        key, eq, values = args.sweep.partition("=")
        if not eq or "." not in key or not values:
            raise SimUsageError(f"--sweep: expected section.key=v1,v2,..., not {args.sweep!r}")
        items = [f"{b}{',' if ':' in b else ':'}{key}={v}" for b in items for v in values.split(",")]
    for one in items:
        try:
            name, _ = parse_variant(one)
        except ValueError as exc:
            raise SimUsageError(f"--strategy: {exc}") from None
        if name not in STRATEGY_NAMES:
            raise SimUsageError(f"--strategy: unknown strategy {name!r} (one of {', '.join(STRATEGY_NAMES)})")
    if not items:
        raise SimUsageError("--strategy: give at least one")
    from active_quoting.strategy.config import ConfigError, load_config

    for one in items:  # a bad parameter is found here, not in a worker after other runs finished
        try:
            load_config(env=parse_variant(one)[1])
        except ConfigError as exc:
            raise SimUsageError(f"--strategy {one!r}: {exc}") from None
    return items


def _config(args: argparse.Namespace):  # -> SimConfig
    from active_quoting.exchange.flow import MARKETS
    from active_quoting.sim.runner import SimConfig

    if not 0 < args.hours <= 24 * 14:
        raise SimUsageError(f"--hours must be in (0, 336], not {args.hours}")
    if args.assets is not None:
        assets = tuple(a.strip().lower() for a in args.assets.split(",") if a.strip())
        if not assets or len(set(assets)) != len(assets) or len(assets) > len(ASSET_NAMES):
            raise SimUsageError(f"--assets: 1..{len(ASSET_NAMES)} distinct names, e.g. btc,eth, not {args.assets!r}")
    else:
        if not 1 <= args.markets <= len(ASSET_NAMES):
            raise SimUsageError(f"--markets must be 1..{len(ASSET_NAMES)}, not {args.markets}")
        assets = ASSET_NAMES[: args.markets]
    if args.window_seconds < 60:
        raise SimUsageError(f"--window-seconds must be at least 60, not {args.window_seconds}")
    if args.market not in MARKETS:
        raise SimUsageError(f"--market: one of {', '.join(MARKETS)}")
    if args.faults not in ("none", "default"):
        raise SimUsageError("--faults: none or default")
    if args.crashes < 0:
        raise SimUsageError("--crashes must be >= 0")
    if args.operator_clear_minutes < 0:
        raise SimUsageError("--operator-clear-minutes must be >= 0 (0: nobody clears a halt)")
    if args.faults != "none" and args.hours * 3600 < 600:
        raise SimUsageError("--faults needs at least 10 simulated minutes (--hours 0.17)")
    if args.spot_csv:
        from active_quoting.exchange.spot import SpotPath

        path = SpotPath.from_chainlink_csv(_spot_csv(args.spot_csv))
        if args.hours * 3600 > path.end_s - path.start_s + 1:
            raise SimUsageError(f"--hours: the spot path covers {(path.end_s - path.start_s + 1) / 3600:.2f} h")
        if len(assets) != 1:
            raise SimUsageError("--spot-csv drives one asset: give exactly one with --assets (e.g. --assets btc)")
    return SimConfig(
        hours=args.hours, assets=assets, window_s=args.window_seconds, faults=args.faults, crashes=args.crashes,
        market=args.market, operator_clear_s=args.operator_clear_minutes * 60, progress=not args.quiet,
        spot_csv=_spot_csv(args.spot_csv), house_lag_ms=args.house_lag_ms,
    )  # fmt: skip


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of ms, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _spot_csv(path: str | None) -> str:
    if not path:
        return ""
    if not Path(path).is_file():
        raise SimUsageError(f"--spot-csv: no such file: {path}")
    return path


def command(args: argparse.Namespace) -> int:
    from dataclasses import replace

    if os.environ.get("PYTHONHASHSEED") != "0" and Path(sys.argv[0]).exists():
        # Same seed, same run: set iteration order must not vary between processes.
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, sys.argv[0], *sys.argv[1:]])

    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    if args.merge:
        return _merge(args)
    try:
        cfg = _config(args)
        variants = _variants(args)
        seeds = _seeds(args.seeds)
        if args.workers < 1:
            raise SimUsageError("--workers must be >= 1")
        recording = _recording(args, seeds)
    except SimUsageError as exc:
        print(f"active-quoting sim: {exc}", file=sys.stderr)
        return 2
    if recording is not None:
        return _replay(args, cfg, variants, seeds[0], recording)
    if len(variants) == 1 and len(seeds) == 1:
        return _soak(args, replace(cfg, strategy=variants[0].partition(":")[0], seed=seeds[0],
                                   config_env=_env_of(variants[0])))  # fmt: skip
    return _ab(args, cfg, variants, seeds)


def _recording(args: argparse.Namespace, seeds: list[int]) -> Any:
    """``--replay``: the recording, read and checked before anything runs (None without it)."""
    if not args.replay:
        return None
    from active_quoting.sim.replay import ReplayError, load_recording

    if args.spot_csv or args.faults != "none" or args.crashes:
        raise SimUsageError("--replay serves a recorded feed: --spot-csv, --faults and --crashes do not apply")
    if len(seeds) != 1:
        raise SimUsageError("--replay: one seed (the recording is the flow)")
    try:
        return load_recording(args.replay)
    except ReplayError as exc:
        raise SimUsageError(f"--replay: {exc}") from None


def _replay(args: argparse.Namespace, cfg: Any, variants: list[str], seed: int, recording: Any) -> int:
    """Each variant against the recording, one after the other; the soak's summary for each."""
    from dataclasses import replace

    from active_quoting.sim.replay import ReplaySimulation, replay_config

    summaries: dict[str, Any] = {}
    ok = True
    for variant in variants:
        run_cfg = replay_config(replace(cfg, strategy=variant.partition(":")[0], seed=seed,
                                        config_env=_env_of(variant)), recording)  # fmt: skip
        summary = ReplaySimulation(run_cfg, recording).run()
        summaries[variant] = summary
        r, rp, inv = summary["report"], summary["replay"], summary["invariants"]
        print(f"replay {variant}: {rp['frames']} frames, {rp['markets']} markets, {rp['recorded_trades']} recorded "
              f"trades over {run_cfg.hours * 60:.1f} simulated min in {summary['wall_s']:.1f} s")  # fmt: skip
        print(f"  fills {r['fills']}  net {_f(r['net_attribution'])}  realized {_f(r['realized_pnl'])}  capture "
              f"{_f(r['spread_capture'])}  rebates {_f(r['estimated_rebate'])}  adverse {_f(r['adverse_selection'])}  "
              f"markouts/share {summary['markouts_per_share']}  (fills digest {summary['fills_digest']})")  # fmt: skip
        print(f"  invariants ({inv['checks']} checks): {'all held' if inv['ok'] else 'VIOLATED'}")
        ok = ok and inv["ok"]
    if args.json:
        one = next(iter(summaries.values())) if len(summaries) == 1 else {"variants": summaries}
        Path(args.json).write_text(json.dumps(one, indent=1, default=_nan_safe), encoding="utf-8")
    return 0 if ok else 1


def _env_of(variant: str) -> dict[str, str]:
    from active_quoting.sim.ab import parse_variant

    return parse_variant(variant)[1]


def _soak(args: argparse.Namespace, cfg: Any) -> int:
    from active_quoting.sim.runner import run_simulation

    summary = run_simulation(cfg)
    inv = summary["invariants"]
    r = summary["report"]
    print(f"simulated {cfg.hours:g} h x {len(cfg.assets)} markets ({cfg.strategy}, seed {cfg.seed}, faults "
          f"{cfg.faults}, {summary['crashes']} crashes) in {summary['wall_s']:.1f} s = {summary['speed_x']:.0f}x "
          f"real time")  # fmt: skip
    print(f"fills {r['fills']}  net {_f(r['net_attribution'])}  realized {_f(r['realized_pnl'])}  capture "
          f"{_f(r['spread_capture'])}  rebates {_f(r['estimated_rebate'])}  adverse {_f(r['adverse_selection'])}  "
          f"(fills digest {summary['fills_digest']})")  # fmt: skip
    hours = (f"{h['hour']}h {h['rss_mb']:.0f}/{h['heap_kblocks']:.0f}/{h['pass_cpu_us']:.0f}" for h in summary["hours"])
    print("per simulated hour: rss MB / live heap k-blocks / quote-pass us: " + "  ".join(hours))
    status = "all held" if inv["ok"] else "VIOLATED"
    counts = "  ".join(f"{k} {v}" for k, v in inv["violations"].items())
    print(f"invariants ({inv['checks']} checks): {status}  {counts}")
    for name, first in inv["first"].items():
        print(f"  first {name} violation at t={first['t']:.0f}: {first['detail']}")
    _write(args, summary, None)
    return 0 if inv["ok"] else 1


def _ab(args: argparse.Namespace, cfg: Any, variants: list[str], seeds: list[int]) -> int:
    from active_quoting.sim.ab import run_ab

    total = len(variants) * len(seeds)
    count = [0]

    def done(label: str, seed: int, summary: dict[str, Any]) -> None:
        count[0] += 1
        if not args.quiet:
            sys.stderr.write(f"\r{count[0]}/{total} runs done (last: {label} seed {seed}, "
                             f"{summary['speed_x']:.0f}x real time)   ")  # fmt: skip
            sys.stderr.flush()

    params = _params(cfg)  # the code as the runs start
    ab = run_ab(cfg, variants, seeds, workers=args.workers, on_done=done)
    if not args.quiet:
        sys.stderr.write("\n")
    now = _code()
    if now != params["code"]:
        print(f"warning: the code changed during the run (from {params['code']} to {now})", file=sys.stderr)
        params["code"] = f"{params['code']} (changed during the run)"
    ab["params"] = params
    return _show(args, ab)


def _show(args: argparse.Namespace, ab: dict[str, Any]) -> int:
    from active_quoting.sim.ab import render_html, render_table

    print(render_table(ab))
    if args.report:
        Path(args.report).write_text(render_html(ab), encoding="utf-8")
        print(f"written to {args.report}", file=sys.stderr)
    _write(args, None, ab)
    return 0 if all(ab["table"][v]["invariants_ok"] for v in ab["variants"]) else 1


def _params(cfg: Any) -> dict[str, Any]:
    """What an A/B's runs share besides seed and variant, to merge only like with like
    (``--merge``), and which code ran them."""
    return {
        "hours": cfg.hours, "assets": list(cfg.assets), "window_s": cfg.window_s, "market": cfg.market,
        "faults": cfg.faults, "crashes": cfg.crashes, "operator_clear_s": cfg.operator_clear_s,
        "spot_csv": Path(cfg.spot_csv).name if cfg.spot_csv else "", "house_lag_ms": cfg.house_lag_ms,
        "entry_delay_ms": cfg.entry_delay_ms, "md_delay_ms": cfg.md_delay_ms, "taker_delay_ms": cfg.taker_delay_ms,
        "code": _code(),
    }  # fmt: skip


def _code() -> str:
    """The commit the package runs from (``-dirty`` with uncommitted changes), or its version
    when it is not a git checkout."""
    import subprocess

    import active_quoting

    here = Path(active_quoting.__file__).resolve().parent
    try:
        # only a checkout that tracks this very package: not an installed copy inside some
        # repository (a venv in a checkout), nor a copy in an unrelated one
        for cmd in (["ls-files", "--error-unmatch", "__init__.py"], ["describe", "--always", "--dirty", "--abbrev=12"]):
            out = subprocess.run(["git", "-C", str(here), *cmd], capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return f"version {getattr(active_quoting, '__version__', 'unknown')} (not a git checkout)"


def _merge(args: argparse.Namespace) -> int:
    """``--merge A.json,B.json``: earlier A/B outputs tabulated together, nothing run."""
    from active_quoting.sim.ab import MergeError, merge

    parts = []
    try:
        for name in (n.strip() for n in args.merge.split(",")):
            if not name:
                continue
            try:
                data = json.loads(Path(name).read_text(encoding="utf-8"))
            except OSError as exc:
                raise MergeError(f"{name}: {exc.strerror or exc}") from None
            except ValueError as exc:
                raise MergeError(f"{name}: not JSON ({exc})") from None
            if not isinstance(data, dict):
                raise MergeError(f"{name}: not an A/B output")
            parts.append((name, data))
        ab, warnings = merge(parts)
    except MergeError as exc:
        print(f"active-quoting sim --merge: {exc}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return _show(args, ab)


def _write(args: argparse.Namespace, summary: dict[str, Any] | None, ab: dict[str, Any] | None) -> None:
    if not args.json:
        return
    data = summary if summary is not None else {
        "variants": ab["variants"], "seeds": ab["seeds"],  # type: ignore[index]
        "table": {v: {k: list(x) if isinstance(x, tuple) else x for k, x in row.items()}
                  for v, row in ab["table"].items()},  # type: ignore[index]
        "runs": ab["runs"],  # type: ignore[index]
        **({"params": ab["params"]} if ab.get("params") else {}),  # type: ignore[union-attr,index]
    }  # fmt: skip
    Path(args.json).write_text(json.dumps(data, indent=1, default=_nan_safe), encoding="utf-8")


def _nan_safe(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else str(v)


def _f(v: Any) -> str:
    return f"{float(v):.2f}" if v is not None else "-"


def add_subcommand(sub: Any) -> None:
    p = sub.add_parser("sim", help="the bot on virtual time: a soak with faults and invariants, or an A/B over seeds")
    p.add_argument("--hours", type=float, default=2.0, help="simulated hours per run")
    p.add_argument("--markets", type=int, default=4, help="how many assets (one window each at a time)")
    p.add_argument("--assets", help="asset names instead of --markets, e.g. btc,eth")
    p.add_argument("--window-seconds", type=int, default=900, help="window length (900: the 15-minute markets)")
    p.add_argument("--seeds", default="1", help="flow seeds, e.g. 1-20 (paired across variants)")
    p.add_argument("--strategy", default="active",
                   help="variants, comma separated: active, only50, naive; parameters as "
                        "'active:momentum.cooldown_seconds=1' (separate such variants with ';')")  # fmt: skip
    p.add_argument("--sweep", help="a parameter grid for each strategy: section.key=v1,v2,...")
    p.add_argument("--faults", default="none", help="none, or default: a seeded schedule of every exchange fault")
    p.add_argument("--crashes", type=int, default=0, help="bot crashes (kill -9, restart from its store) per run")
    p.add_argument("--market", default="lively", help="the flow: lively or calm")
    p.add_argument("--operator-clear-minutes", type=float, default=30.0,
                   help="a simulated operator clears a kill switch or market halt this long after it fires (0: never)")
    p.add_argument("--spot-csv", help="a recorded Chainlink feed (e.g. the real BTC day) driving the first asset; "
                   "the run starts where it starts")  # fmt: skip
    p.add_argument("--house-lag-ms", type=_non_negative_int, default=2000,
                   help="how long the venue's background book lags spot (informed takers act after 150 ms)")
    p.add_argument("--replay", help="replay a recorded market feed instead of the flow: the bot's journal "
                   "(DB.journal/) or an `exchange --record` file; its markets, windows and span set the run")
    p.add_argument("--workers", type=int, default=2, help="simulations run at once (A/B)")
    p.add_argument("--report", help="write the A/B table as HTML here")
    p.add_argument("--json", help="write the summary (soak) or the table and runs (A/B) as JSON here")
    p.add_argument("--merge", help="tabulate earlier A/B outputs (--json files, comma separated) together instead "
                   "of running: disjoint seeds of the same variants and run parameters (e.g. 1-10 and 11-20)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--verbose", action="store_true", help="the bot's and the exchange's logs")
    p.set_defaults(func=command)
