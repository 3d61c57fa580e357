"""The real-venue mode, pointed at the embedded exchange (same protocol): dry run signs and
journals orders but sends none; --live trades; credentials and flags are checked up front."""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson

from active_quoting.bot import Bot
from active_quoting.exchange.flow import FlowConfig, MarketFlow
from active_quoting.exchange.server import Exchange
from active_quoting.options import RunOptions
from active_quoting.strategy.config import load_config
from active_quoting.venue.signing import OrderSigner
from bot_checks import CALM_MARKET

EXE = shutil.which("active-quoting") or str(Path(sys.executable).parent / "active-quoting")
KEY = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"  # throwaway test key


def _session(tmp_path: Path, dry_run: bool, env: dict[str, str] | None = None) -> tuple[Exchange, Bot]:
    async def main() -> tuple[Exchange, Bot]:
        ex = await Exchange().start()
        flow = MarketFlow(ex, FlowConfig(assets=("btc",), window_s=30, seed=4, **CALM_MARKET))
        flow.start()
        opts = RunOptions(assets=("btc",), duration_s=8, window_s=30, stop_before_end_s=3, db=str(tmp_path / "v.db"),
                          clob_url=ex.clob_url, gamma_url=ex.gamma_url, private_key=KEY, dry_run=dry_run)  # fmt: skip
        bot = Bot(load_config(env=env or {}), opts)
        try:
            await bot.run()
        finally:
            await flow.stop()
            await ex.stop()
        return ex, bot

    return asyncio.run(main())


def test_dry_run_signs_but_sends_nothing(tmp_path):
    ex, bot = _session(tmp_path, dry_run=True)
    me = OrderSigner(KEY).address
    assert bot.signer.address == me
    assert [o for o in ex.engine.orders.values() if o.account == me] == []  # nothing reached the venue
    assert bot.orders.counts.get("dry_run", 0) > 0
    bodies = [orjson.loads(line) for f in sorted((tmp_path / "v.db.journal").glob("orders-*.jsonl.gz"))
              for line in gzip.open(f).read().splitlines()]  # fmt: skip
    assert bodies and all(b["postOnly"] and b["order"]["signer"] == me and b["order"]["signature"] for b in bodies)


def test_live_trades_the_venue(tmp_path):
    # with requote cancels and places sent together: nothing is left behind either way
    ex, bot = _session(tmp_path, dry_run=False, env={"AQ_ORDERS_CONCURRENT_REPLACE": "true"})
    assert bot.orders.concurrent_replace
    me = OrderSigner(KEY).address
    assert [o for o in ex.engine.orders.values() if o.account == me]
    assert ex.engine.live_orders(account=me) == []  # and cancelled them all at the end


def test_venue_flags_and_credentials_are_checked():
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQ_")}
    out = subprocess.run([EXE, "run", "--venue", "polymarket"], capture_output=True, env=env, timeout=60, check=False)
    assert out.returncode == 2 and b"no private key" in out.stderr
    out = subprocess.run([EXE, "run", "--venue", "polymarket"], capture_output=True, timeout=60, check=False,
                         env={**env, "AQ_PRIVATE_KEY": KEY, "AQ_API_KEY": "only-one"})  # fmt: skip
    assert out.returncode == 2 and b"AQ_API_SECRET" in out.stderr and KEY.encode() not in out.stderr
    bad = "0x" + "zz" * 32
    out = subprocess.run([EXE, "run", "--venue", "polymarket"], capture_output=True, timeout=60, check=False,
                         env={**env, "AQ_PRIVATE_KEY": bad})  # fmt: skip
    assert out.returncode == 2 and b"private key" in out.stderr and bad.encode() not in out.stderr
    out = subprocess.run([EXE, "run", "--live"], capture_output=True, env=env, timeout=60, check=False)
    assert out.returncode == 2 and b"--live only applies" in out.stderr
