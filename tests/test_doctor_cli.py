"""``active-quoting doctor`` as a user runs it (a subprocess), against the embedded exchange:
every check passes when the exchange behaves, and each FAIL appears when it misbehaves that
way (clock skew, bad credentials, no markets, refused socket, zero balance, missing allowance,
geoblock). The key never appears in the output."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time

import pytest

from active_quoting.exchange.flow import FlowConfig, MarketFlow
from active_quoting.exchange.server import Exchange, ExchangeConfig
from active_quoting.venue.signing import OrderSigner

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # throwaway
ADDRESS = OrderSigner(KEY).address
ALL_CHECKS = {
    "key",
    "signature type",
    "clob reachable",
    "clock skew",
    "order version",
    "geoblock",
    "api credentials",
    "markets btc",
    "markets eth",
    "collateral balance",
    "collateral allowance",
    "token allowance",
    "heartbeat",
    "market websocket",
    "user websocket",
    "exposure",
}


async def doctor(ex: Exchange | None, *extra: str, clob: str = "", env: dict[str, str] | None = None) -> tuple:
    url = clob or ex.clob_url  # type: ignore[union-attr]
    gamma = ex.gamma_url if ex else "http://127.0.0.1:9"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "active_quoting.cli",
        "doctor",
        "--exchange-url",
        url,
        "--gamma-url",
        gamma,
        "--assets",
        "btc,eth",
        "--window-seconds",
        "60",
        "--timeout",
        "3",
        "--json",
        *extra,
        env={**os.environ, "AQ_PRIVATE_KEY": KEY, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert KEY[2:] not in out.decode() + err.decode()
    report = json.loads(out) if out.strip() else None
    return proc.returncode, report, err.decode()


async def embedded(**cfg: object) -> Exchange:
    ex = await Exchange(ExchangeConfig(**cfg)).start()  # type: ignore[arg-type]
    flow = MarketFlow(ex, FlowConfig(assets=("btc", "eth"), window_s=60, seed=3))
    flow.ensure_windows(time.time())  # the current and next window of each asset, on Gamma and the CLOB
    return ex


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


@pytest.mark.asyncio
async def test_every_check_passes_against_the_embedded_exchange():
    ex = await embedded()
    try:
        code, report, err = await doctor(ex)
        assert code == 0, (report, err)
        checks = by_name(report)
        assert set(checks) == ALL_CHECKS and report["ok"]
        assert all(c["status"] == "PASS" for c in report["checks"]), report
        assert checks["key"]["detail"] == f"address {ADDRESS}"
        assert "accepting=True" in checks["markets btc"]["detail"] and "version=v1" in checks["markets btc"]["detail"]
        assert ex.heartbeats  # the heartbeat round trip reached the venue
        # Text output: one line per check and the count.
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "active_quoting.cli",
            "doctor",
            "--exchange-url",
            ex.clob_url,
            "--gamma-url",
            ex.gamma_url,
            "--assets",
            "btc",
            "--window-seconds",
            "60",
            env={**os.environ, "AQ_PRIVATE_KEY": KEY},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0 and out.decode().splitlines()[-1] == "15 checks: 0 failed, 0 warnings"
    finally:
        await ex.stop()


def _skew(ex: Exchange) -> None:
    ex.clock_skew_s = 60


def _zero(ex: Exchange) -> None:
    pass  # paper_balance_usdc=0 in the config


def _revoke(ex: Exchange) -> None:
    ex.revoked_allowances[ADDRESS.lower()] = {"0xe2222d279d744050d28e00520010520000310f59"}


def _geoblock(ex: Exchange) -> None:
    ex.geoblocked, ex.geo_country = True, "US"


def _no_markets(ex: Exchange) -> None:
    ex.gamma_markets.clear()


@pytest.mark.parametrize(
    ("setup", "cfg", "env", "failing"),
    [
        (_skew, {}, {}, {"clock skew"}),
        (
            None,
            {},
            {
                "AQ_API_KEY": "00000000-0000-0000-0000-000000000000",
                "AQ_API_SECRET": "c2VjcmV0",
                "AQ_API_PASSPHRASE": "nope",
            },
            {"api credentials"},
        ),
        (_no_markets, {}, {}, {"markets btc", "markets eth"}),
        (_zero, {"paper_balance_usdc": 0}, {}, {"collateral balance", "exposure"}),
        (_revoke, {}, {}, {"collateral allowance", "token allowance"}),
        (_geoblock, {}, {}, {"geoblock"}),
    ],
    ids=["clock-skew", "bad-creds", "404-markets", "zero-balance", "missing-allowance", "geoblocked"],
)
@pytest.mark.asyncio
async def test_each_misbehaviour_is_a_fail_with_its_fix(setup, cfg, env, failing):
    ex = await embedded(**cfg)
    try:
        if setup:
            setup(ex)
        code, report, err = await doctor(ex, env=env)
        assert code == 1, (report, err)
        failed = {c["name"] for c in report["checks"] if c["status"] == "FAIL"}
        assert failed == failing, report
        assert all(c["fix"] for c in report["checks"] if c["status"] == "FAIL") and not report["ok"]
    finally:
        await ex.stop()


@pytest.mark.asyncio
async def test_a_refused_socket_and_bad_flags():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, report, _ = await doctor(None, clob=f"http://127.0.0.1:{port}")
    assert code == 1
    checks = by_name(report)
    assert checks["clob reachable"]["status"] == "FAIL" and "network" in checks["clob reachable"]["detail"]
    assert checks["key"]["status"] == "PASS"
    code, report, err = await doctor(None, "--window-seconds", "5", clob=f"http://127.0.0.1:{port}")
    assert code == 2 and report is None and "--window-seconds" in err
