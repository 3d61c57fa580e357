"""The ``active-quoting`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from active_quoting.clock import SYSTEM, Clock
from active_quoting.errors import CredentialsError
from active_quoting.venue.spot_feed import RTDS_URL

if TYPE_CHECKING:
    from active_quoting.options import RunOptions

SAMPLE_FEED = "sample_feed.jsonl"
POLYMARKET_CLOB = "https://clob.polymarket.com"
POLYMARKET_GAMMA = "https://gamma-api.polymarket.com"
POLYMARKET_WS = "wss://ws-subscriptions-clob.polymarket.com"


def _cmd_inspect(args: argparse.Namespace) -> int:
    from active_quoting.inspect_feed import inspect_file

    if args.sample == bool(args.file):
        print("active-quoting inspect: give a FILE or --sample (not both)", file=sys.stderr)
        return 2
    if args.sample:
        path = Path(str(resources.files("active_quoting.data").joinpath(SAMPLE_FEED)))
    else:
        path = Path(args.file)
    if not path.is_file():
        print(f"active-quoting inspect: no such file: {path}", file=sys.stderr)
        return 2
    if args.desync_threshold < 1:
        print("active-quoting inspect: --desync-threshold must be at least 1", file=sys.stderr)
        return 2
    summary = inspect_file(path, args.desync_threshold)
    sys.stdout.buffer.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


class JsonFormatter(logging.Formatter):
    """One JSON object per log record (time, level, logger, message, and any exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "t": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def _read_key(args: argparse.Namespace) -> str:
    if args.key_file:
        try:
            return Path(args.key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CredentialsError(f"cannot read key file {args.key_file}: {exc.strerror}") from None
    key = os.environ.get("AQ_PRIVATE_KEY", "").strip()
    if not key:
        raise CredentialsError("no private key: use --key-file FILE or set AQ_PRIVATE_KEY")
    return key


def _cmd_sign_order(args: argparse.Namespace) -> int:
    from active_quoting import core
    from active_quoting.errors import ActiveQuotingError
    from active_quoting.venue.orders import BUY, SELL, build_order, encode, order_body
    from active_quoting.venue.signing import OrderSigner

    try:
        signer = OrderSigner(_read_key(args), args.chain_id, args.funder, args.signature_type)
        order = build_order(
            signer,
            args.token_id,
            BUY if args.side == "BUY" else SELL,
            core.parse_price(args.price, "--price"),
            core.parse_size(args.size, "--size"),
            core.parse_price(args.tick_size, "--tick-size"),
            version=args.order_version,
            neg_risk=args.neg_risk,
            salt=args.salt,
            timestamp_ms=args.timestamp,
            expiration=args.expiration,
            fee_rate_bps=args.fee_rate_bps,
        )
        body = order_body(order, args.owner or os.environ.get("AQ_API_KEY", ""), args.order_type, args.post_only)
    except (ActiveQuotingError, ValueError) as exc:
        print(f"active-quoting sign-order: {exc}", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(encode(body) + b"\n")
    print(f"order hash (orderID): {order.order_hash}", file=sys.stderr)
    return 0


def _cmd_exchange(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from active_quoting.exchange.faults import load_scenario, run_scenario
    from active_quoting.exchange.flow import MARKETS, FlowConfig, MarketFlow
    from active_quoting.exchange.server import Exchange, ExchangeConfig

    assets = tuple(a.strip().lower() for a in args.assets.split(",") if a.strip())
    if not assets or args.window_seconds < 10:
        print("active-quoting exchange: need at least one asset and --window-seconds >= 10", file=sys.stderr)
        return 2

    async def serve() -> None:
        ex = Exchange(
            ExchangeConfig(
                clob_port=args.clob_port,
                gamma_port=args.gamma_port,
                seed=args.seed,
                record=args.record,
                ghost_share=args.ghost_share,
            )
        )
        steps = load_scenario(ex, args.scenario) if args.scenario else []
        await ex.start()
        flow = MarketFlow(
            ex, FlowConfig(assets=assets, window_s=args.window_seconds, seed=args.seed, **MARKETS[args.market])
        )
        flow.start()
        print(
            orjson.dumps(
                {
                    "clob": ex.clob_url,
                    "ws_market": ex.ws_url + "/ws/market",
                    "ws_user": ex.ws_url + "/ws/user",
                    "gamma": ex.gamma_url,
                }
            ).decode(),
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        scenario = loop.create_task(run_scenario(ex, steps)) if steps else None
        try:
            if args.duration > 0:
                await asyncio.wait_for(stop.wait(), args.duration)
            else:
                await stop.wait()
        except asyncio.TimeoutError:
            pass
        finally:
            if scenario:
                scenario.cancel()
            await flow.stop()
            await ex.stop()
        print(f"exchange stopped: {ex.sent_frames} frames sent, {ex.engine.trade_count} trades", file=sys.stderr)

    try:
        asyncio.run(serve())
    except (ValueError, OSError) as exc:
        print(f"active-quoting exchange: {exc}", file=sys.stderr)
        return 2
    return 0


DEMO_DURATION_S = 120.0  # the embedded demo's default run time; the real venue runs until stopped


class UsageError(Exception):
    """A flag (or the environment it stands for) that cannot be used; the message names it."""


def _url(flag: str, value: str | None, schemes: tuple[str, ...]) -> str:
    if value and not value.startswith(schemes):
        raise UsageError(f"{flag} must start with {' or '.join(schemes)}: {value}")
    return (value or "").rstrip("/")


def run_options(args: argparse.Namespace) -> tuple[RunOptions, str]:
    """The typed options of ``run`` from its flags (and AQ_* credentials), and the one line that
    says where it trades. Raises :class:`UsageError` naming the flag; never shows the key."""
    from dataclasses import replace

    from active_quoting.exchange.flow import MARKETS
    from active_quoting.options import RunOptions, stop_before_end

    assets = tuple(a.strip().lower() for a in args.assets.split(",") if a.strip())
    if not assets:
        raise UsageError("--assets: give at least one asset, e.g. btc,eth")
    if args.duration is not None and args.duration < 0:
        raise UsageError(f"--duration must be 0 (until stopped) or a positive number of seconds, not {args.duration}")
    if args.window_seconds < 30:
        raise UsageError(f"--window-seconds must be at least 30, not {args.window_seconds}")
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        raise UsageError(f"--metrics-port must be 0..65535, not {args.metrics_port}")
    if args.db and not Path(args.db).resolve().parent.is_dir():
        raise UsageError(f"--db: no such directory: {Path(args.db).parent}")
    clob = _url("--exchange-url", args.exchange_url, ("http://", "https://"))
    gamma = _url("--gamma-url", args.gamma_url, ("http://", "https://"))
    ws = _url("--ws-url", args.ws_url, ("ws://", "wss://"))
    rtds = _url("--rtds-url", args.rtds_url, ("ws://", "wss://"))
    base = RunOptions(
        assets=assets,
        seed=args.seed,
        window_s=args.window_seconds,
        stop_before_end_s=stop_before_end(args.window_seconds),
        db=args.db,
        strategy=args.strategy,
        metrics_port=args.metrics_port,
        show_status=args.status,
        flow_config=dict(MARKETS[args.market or "lively"]),
    )
    if args.venue == "polymarket" and args.market:
        raise UsageError("--market only applies to the embedded exchange")
    if args.venue != "polymarket":
        for flag, given in (("--live", args.live), ("--key-file", args.key_file), ("--funder", args.funder),
                            ("--ws-url", args.ws_url), ("--rtds-url", args.rtds_url),
                            ("--signature-type", args.signature_type)):  # fmt: skip
            if given:
                raise UsageError(f"{flag} only applies to --venue polymarket")
        if bool(clob) != bool(gamma):
            raise UsageError("--exchange-url and --gamma-url go together (a separately served embedded exchange)")
        duration = DEMO_DURATION_S if args.duration is None else (args.duration or None)
        where = (
            f"embedded exchange at {clob} (gamma {gamma})" if clob else "embedded exchange in this process on 127.0.0.1"
        )
        return replace(base, duration_s=duration, clob_url=clob, gamma_url=gamma), f"venue: {where}"

    from active_quoting.venue.signing import OrderSigner, SigningError

    key = _read_key(args)
    try:
        signer = OrderSigner(key, funder=args.funder, signature_type=args.signature_type)  # fail fast on a bad key
    except SigningError as exc:
        source = f"--key-file {args.key_file}" if args.key_file else "AQ_PRIVATE_KEY"
        raise UsageError(
            f"{source}: {exc}" if "private key" in str(exc) else f"--funder/--signature-type: {exc}"
        ) from None
    env_creds = [os.environ.get(k, "") for k in ("AQ_API_KEY", "AQ_API_SECRET", "AQ_API_PASSPHRASE")]
    if any(env_creds) and not all(env_creds):
        raise UsageError("set all of AQ_API_KEY, AQ_API_SECRET, AQ_API_PASSPHRASE or none")
    clob = clob or POLYMARKET_CLOB
    opts = replace(
        base,
        duration_s=args.duration or None,  # absent or 0: until stopped
        clob_url=clob,
        gamma_url=gamma or POLYMARKET_GAMMA,
        ws_url=ws or ("" if args.exchange_url else POLYMARKET_WS),
        rtds_url=rtds or ("" if args.exchange_url else RTDS_URL),
        private_key=key,
        funder=args.funder,
        signature_type=args.signature_type,
        api_creds=(env_creds[0], env_creds[1], env_creds[2]) if all(env_creds) else None,
        dry_run=not args.live,
    )
    mode = (
        "LIVE (orders are sent)"
        if args.live
        else "DRY RUN (orders built, signed and journaled, never sent; --live sends)"
    )
    who = f"address {signer.address}" + (f" (funder {args.funder})" if args.funder else "")
    return opts, f"venue: polymarket {mode}; clob {clob}; {who}"


def _cmd_run(args: argparse.Namespace) -> int:
    from active_quoting import core
    from active_quoting.bot import AlreadyRunning, Bot
    from active_quoting.report import build_report, render_text
    from active_quoting.strategy.config import ConfigError, load_config

    try:
        opts, venue_line = run_options(args)
    except (UsageError, CredentialsError) as exc:
        print(f"active-quoting run: {exc}", file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"active-quoting run: bad config: {exc}", file=sys.stderr)
        return 2
    length = "until stopped (SIGINT/SIGTERM)" if opts.duration_s is None else f"for {opts.duration_s:g}s"
    print(f"active-quoting: {venue_line}", file=sys.stderr)
    print(
        f"active-quoting: {args.strategy} strategy on {', '.join(opts.assets)} {length} "
        f"(core: {core.IMPL}; store: {args.db})",
        file=sys.stderr,
        flush=True,
    )
    try:
        import uvloop

        uvloop.run(Bot(cfg, opts).run())  # the production event loop
    except AlreadyRunning as exc:
        print(f"active-quoting run: {exc}", file=sys.stderr)
        return 2
    from active_quoting.store.sqlite import Store

    store = Store(args.db)
    try:
        print(render_text(build_report(store)))
    finally:
        store.close()
    return 0


def _open_store(command: str, db: str):  # type: ignore[no-untyped-def]
    """The store of a run, or None (said on stderr) when the file does not exist."""
    from active_quoting.store.sqlite import Store

    if not Path(db).is_file():
        print(f"active-quoting {command}: no such store: {db}", file=sys.stderr)
        return None
    return Store(db)


def _cmd_status(args: argparse.Namespace, clock: Clock = SYSTEM) -> int:
    import json

    from active_quoting.bot import render_status

    store = _open_store("status", args.db)
    if store is None:
        return 2
    try:
        raw = store.get("status")
    finally:
        store.close()
    if not raw:
        print("active-quoting status: this store has no status yet (the bot has not run with it)", file=sys.stderr)
        return 2
    snapshot = json.loads(raw)
    age = clock.time() - snapshot["t"]
    print(f"status as of {age:.0f}s ago" + (" (the bot looks stopped)" if age > 30 else ""))
    print(render_status(snapshot))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from active_quoting.report import build_report, render_text, to_jsonable

    store = _open_store("report", args.db)
    if store is None:
        return 2
    try:
        report = build_report(store)
        if args.html:
            from active_quoting.report import render_html, time_series

            Path(args.html).write_text(render_html(report, time_series(store)), encoding="utf-8")
            print(f"HTML report written to {args.html}", file=sys.stderr)
    finally:
        store.close()
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(to_jsonable(report), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(render_text(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="active-quoting", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument("--log-json", action="store_true", help="structured logs: one JSON object per line")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "inspect",
        help="replay a recorded market feed (one raw frame per line) and print the books as JSON",
    )
    p.add_argument("file", nargs="?", help="recording: one raw frame per line (JSONL or text), optionally gzip")
    p.add_argument("--sample", action="store_true", help="inspect the bundled sample feed")
    p.add_argument("--desync-threshold", type=int, default=3, help="disagreements in a row that mark a book desynced")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser(
        "sign-order",
        help="print the exact JSON body that would be posted for one order (key from a file or AQ_PRIVATE_KEY)",
    )
    p.add_argument("--key-file", help="file holding the hex private key (else AQ_PRIVATE_KEY); never printed")
    p.add_argument("--token-id", required=True)
    p.add_argument("--price", required=True, help='decimal price, e.g. "0.51"')
    p.add_argument("--size", required=True, help='shares, e.g. "10" (rounded down to 0.01)')
    p.add_argument("--side", required=True, choices=("BUY", "SELL"))
    p.add_argument("--tick-size", default="0.01", help="the market's tick (0.1, 0.01, 0.005, 0.001, 0.0025, 0.0001)")
    p.add_argument("--salt", type=int)
    p.add_argument("--timestamp", type=int, help="order timestamp in ms (version 2)")
    p.add_argument("--expiration", type=int, default=0, help="GTD expiry, Unix seconds (0 = none)")
    p.add_argument("--neg-risk", action="store_true")
    p.add_argument(
        "--order-version", type=int, choices=(1, 2, 3), default=2,
        help='2: CTF Exchange V2 (default); 3: ExchangeV3, for Protocol-V2 markets (Gamma version "v2", '
        "--token-id = the position id); 1: the design's V1",
    )  # fmt: skip
    p.add_argument("--fee-rate-bps", type=int, help="version 1 only: the signed fee rate")
    p.add_argument("--post-only", action="store_true")
    p.add_argument("--order-type", default="GTC", choices=("GTC", "GTD", "FOK", "FAK"))
    p.add_argument("--owner", help="API key that owns the order (else AQ_API_KEY)")
    p.add_argument("--chain-id", type=int, default=137)
    p.add_argument("--funder", help="maker address: the proxy or Safe (types 1, 2) or the deposit wallet (type 3)")
    p.add_argument(
        "--signature-type", type=int, default=0, choices=(0, 1, 2, 3),
        help="0 EOA, 1 proxy, 2 Safe, 3 deposit wallet (POLY_1271)",
    )  # fmt: skip
    p.set_defaults(func=_cmd_sign_order)

    p = sub.add_parser("exchange", help="serve the embedded Polymarket-compatible exchange on 127.0.0.1")
    p.add_argument("--clob-port", type=int, default=0, help="CLOB REST + WebSocket port (0 = pick a free one)")
    p.add_argument("--gamma-port", type=int, default=0, help="Gamma discovery API port (0 = pick a free one)")
    p.add_argument("--assets", default="btc,eth,sol")
    p.add_argument("--window-seconds", type=int, default=900, help="length of the up/down windows")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--ghost-share", type=float, default=0.0, help="share of trades whose settlement fails")
    p.add_argument("--scenario", help='JSON fault scenario: [{"at": s, "fault": name, ...}]')
    p.add_argument("--record", help="append every frame sent to this file (inspectable with `inspect`)")
    p.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0 = until SIGINT)")
    p.add_argument("--market", default="lively", choices=("lively", "calm"), help="the market flow (calm: no jumps)")
    p.set_defaults(func=_cmd_exchange)

    p = sub.add_parser("run", help="run the market maker (default: against the embedded exchange) and print its report")
    p.add_argument("--venue", default="embedded", choices=("embedded", "polymarket"))
    p.add_argument("--live", action="store_true", help="required to send orders to a real venue")
    p.add_argument(
        "--market", choices=("lively", "calm"), help="the embedded exchange's market flow (default lively)"
    )
    p.add_argument("--assets", default="btc,eth,sol")
    p.add_argument(
        "--duration",
        type=float,
        help=f"seconds to run; 0 = until SIGINT/SIGTERM (default: until stopped on polymarket, "
        f"{DEMO_DURATION_S:g}s on the embedded exchange)",
    )
    p.add_argument(
        "--window-seconds", type=int, default=900, help="window length to quote (900: the 15-minute markets); >= 30"
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--config", help="TOML config (defaults: the design's parameter defaults)")
    p.add_argument("--db", default="active-quoting.db", help="SQLite store (kept across restarts)")
    p.add_argument("--strategy", default="active", choices=("active", "only50", "naive", "spot"),
                   help="spot: active with the fair value from the reference price and the spot-move guard")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 127.0.0.1:PORT (0 = any free port)")
    p.add_argument("--status", action="store_true", help="print the live status (in place on a terminal)")
    p.add_argument("--exchange-url", help="CLOB URL: a separately served embedded exchange, or the venue's override")
    p.add_argument("--gamma-url", help="Gamma URL (with --exchange-url, or the venue's override)")
    p.add_argument("--ws-url", help="WebSocket base URL (venue override)")
    p.add_argument("--rtds-url", help="the reference price socket (fair value; venue override of " + RTDS_URL + ")")
    p.add_argument("--key-file", help="--venue polymarket: file with the private key (else AQ_PRIVATE_KEY)")
    p.add_argument(
        "--funder", help="--venue polymarket: the maker: proxy or Safe (types 1, 2) or deposit wallet (type 3)"
    )
    p.add_argument(
        "--signature-type", type=int, default=0, choices=(0, 1, 2, 3),
        help="--venue polymarket: 0 EOA, 1 proxy, 2 Safe, 3 deposit wallet (POLY_1271, accounts since May 2026)",
    )  # fmt: skip
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("status", help="the live status of a running (or the last of a stopped) bot, from its store")
    p.add_argument("--db", required=True)
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("report", help="report a run from its store")
    p.add_argument("--db", required=True)
    p.add_argument("--json", action="store_true")
    p.add_argument("--html", help="also write an HTML report with charts to this file")
    p.set_defaults(func=_cmd_report)

    from active_quoting.halts import add_subcommand as add_halts_subcommand  # list and clear halts

    add_halts_subcommand(sub)
    from active_quoting.sim.cli import add_subcommand as add_sim_subcommand  # virtual time: soak and A/B

    add_sim_subcommand(sub)
    from active_quoting.doctor import add_subcommand as add_doctor_subcommand  # preflight before going live

    add_doctor_subcommand(sub)
    from active_quoting.calibration import add_subcommand as add_calibrate_subcommand  # fair value on the real day

    add_calibrate_subcommand(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if args.log_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, handlers=[handler], force=True)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
