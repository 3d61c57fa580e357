"""``active-quoting doctor``: the preflight a trader runs before going live.

Each check is PASS, WARN or FAIL, with the fix in one line; the exit code is 1 on any FAIL
(2 on bad flags), and ``--json`` prints the same for scripts. The checks use the bot's own
venue code (RestClient, MarketStream, UserStream, Discovery) with the flags of
``run --venue polymarket``. The private key is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

import orjson

from active_quoting.clock import SYSTEM, Clock

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
POLYMARKET_GEOBLOCK = "https://polymarket.com/api/geoblock"
# What a trading account approves (POLYMARKET.md 6.1): CTF Exchange V2, Neg-Risk CTF Exchange V2
# and the neg-risk adapter (V2).
SPENDERS = {
    "0xE111180000d2663C0091e4f400237545B87B996B": "CTF Exchange",
    "0xe2222d279d744050d28e00520010520000310F59": "Neg-Risk CTF Exchange",
    "0xadA2005600Dec949baf300f4C6120000bDB6eAab": "neg-risk adapter",
}
SKEW_WARN_S, SKEW_FAIL_S = 2, 10


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class Target:
    clob: str
    gamma: str
    ws: str
    geoblock: str
    assets: tuple[str, ...]
    window_s: int
    timeout: float


class Doctor:
    def __init__(self, target: Target, cfg: Any, key: str, funder: str | None, sig_type: int, clock: Clock = SYSTEM):
        self.t, self.cfg, self.clock = target, cfg, clock
        self._key, self.funder, self.sig_type = key, funder, sig_type
        self.checks: list[Check] = []
        self.creds: Any = None
        self.collateral: Decimal | None = None
        self.token = ""

    def add(self, name: str, status: str, detail: str, fix: str = "") -> None:
        self.checks.append(Check(name, status, detail, fix if status != PASS else ""))

    async def run(self) -> list[Check]:
        from active_quoting.venue.rest import RestClient
        from active_quoting.venue.signing import OrderSigner, SigningError

        try:
            signer = OrderSigner(self._key, funder=self.funder, signature_type=self.sig_type)
        except SigningError as exc:
            bad_key = "private key" in str(exc)
            self.add(
                "key" if bad_key else "signature type",
                FAIL,
                str(exc),
                "put a 32-byte hex key in --key-file or AQ_PRIVATE_KEY"
                if bad_key
                else "give --funder (the proxy, Safe or deposit wallet) for --signature-type 1, 2 or 3",
            )
            return self.checks
        finally:
            self._key = ""  # not kept beyond the signer
        self.add("key", PASS, f"address {signer.address}")
        self._signature(signer)
        rest = RestClient(self.t.clob, signer, timeout=self.t.timeout, order_lane=False, clock=self.clock.time)
        try:
            if await self._reachable(rest):
                await self._clock_skew(rest)
                await self._version(rest)
                await self._geoblock()
                if await self._credentials(rest):
                    await self._discovery(rest)
                    await self._balances(rest)
                    await self._heartbeat(rest)
                    await self._market_ws(rest)
                    await self._user_ws()
                self._exposure()
        finally:
            await rest.close()
        return self.checks

    def _signature(self, signer: Any) -> None:
        if self.sig_type == 0 and self.funder and self.funder.lower() != signer.address.lower():
            self.add(
                "signature type",
                FAIL,
                f"--funder {self.funder} given with signature type 0 (EOA)",
                "use --signature-type 1 (proxy), 2 (Safe) or 3 (deposit wallet) with --funder, or drop --funder",
            )
            return
        maker = self.funder or signer.address
        names = {0: "EOA", 1: "POLY_PROXY", 2: "POLY_GNOSIS_SAFE", 3: "POLY_1271 deposit wallet"}
        self.add("signature type", PASS, f"{self.sig_type} ({names.get(self.sig_type, '?')}), maker {maker}")

    async def _reachable(self, rest: Any) -> bool:
        from active_quoting.venue.errors import VenueError

        try:
            await rest._request("GET", "/ok")
        except VenueError as err:
            self.add(
                "clob reachable",
                FAIL,
                f"{self.t.clob}: {err}",
                "check --exchange-url, the network and any proxy or firewall",
            )
            return False
        self.add("clob reachable", PASS, self.t.clob)
        return True

    async def _clock_skew(self, rest: Any) -> None:
        offset = await rest.sync_clock()
        detail = f"local clock {offset:+d} s from the venue's"
        if abs(offset) > SKEW_FAIL_S:
            self.add("clock skew", FAIL, detail, "sync the system clock (NTP: timedatectl set-ntp true)")
        elif abs(offset) > SKEW_WARN_S:
            self.add("clock skew", WARN, detail + " (L2 timestamps follow the venue)", "sync the system clock (NTP)")
        else:
            self.add("clock skew", PASS, detail)

    async def _version(self, rest: Any) -> None:
        version = await rest.version()
        if version == 2:
            self.add("order version", PASS, "2 (CLOB V2 orders)")
        elif version == 1:
            self.add(
                "order version",
                WARN,
                "1 (V1 orders, retired on the real venue since 2026-04-28)",
                "check --exchange-url points at the current CLOB",
            )
        else:
            self.add("order version", FAIL, f"{version}: this program cannot sign it", "upgrade active-quoting")

    async def _geoblock(self) -> None:
        from active_quoting.venue.errors import VenueError
        from active_quoting.venue.rest import RestClient

        base, _, path = self.t.geoblock.partition("/api/")
        geo = RestClient(base, timeout=self.t.timeout, order_lane=False)
        try:
            out = await geo._request("GET", "/api/" + path)
        except VenueError as err:
            self.add("geoblock", WARN, f"{self.t.geoblock}: {err}", "check the geoblock status by hand")
            return
        finally:
            await geo.close()
        where = f"{out.get('country', '?')} {out.get('region', '')}".strip()
        if out.get("blocked"):
            self.add(
                "geoblock",
                FAIL,
                f"trading is blocked from this IP ({where})",
                "run from a location where Polymarket allows trading",
            )
        else:
            self.add("geoblock", PASS, f"not blocked ({where})")

    async def _credentials(self, rest: Any) -> bool:
        from active_quoting.venue.errors import VenueError
        from active_quoting.venue.signing import ApiCredentials

        env = [os.environ.get(k, "") for k in ("AQ_API_KEY", "AQ_API_SECRET", "AQ_API_PASSPHRASE")]
        try:
            if all(env):
                rest.creds = ApiCredentials(*env)
                how = "AQ_API_KEY/SECRET/PASSPHRASE"
            else:
                await rest.create_or_derive_api_key()
                how = "derived with the key (L1)"
            await rest.open_orders()  # an L2 call: the credentials are what the venue knows
        except VenueError as err:
            fix = (
                "fix AQ_API_KEY/SECRET/PASSPHRASE, or unset them to derive the key's own"
                if all(env)
                else "check the key is the account's signer; create the API key on the venue"
            )
            self.add("api credentials", FAIL, str(err), fix)
            return False
        self.creds = rest.creds
        self.add("api credentials", PASS, f"{how}, L2 call accepted")
        return True

    async def _discovery(self, rest: Any) -> None:
        from active_quoting.discovery import Discovery

        disco = Discovery(self.t.gamma, self.t.window_s, timeout=self.t.timeout, clob=rest)
        try:
            found = await disco.windows(self.t.assets, self.clock.time())
        finally:
            await disco.close()
        for asset in self.t.assets:
            mine = [w for w in found if w.asset == asset and not w.closed]
            if not mine:
                self.add(
                    f"markets {asset}",
                    FAIL,
                    f"no open {self.t.window_s}s window found on Gamma and the CLOB ({dict(disco.counts)})",
                    "check --assets, --window-seconds and --gamma-url",
                )
                continue
            self.token = self.token or mine[0].up
            rows = "; ".join(
                f"{w.slug}: accepting={w.accepting_orders} book={w.enable_order_book} fees={w.fees_enabled} "
                f"neg_risk={w.neg_risk} tick={w.tick / 10_000:g} version={w.version}"
                for w in mine
            )
            if not any(w.accepting_orders and w.enable_order_book for w in mine):
                self.add(f"markets {asset}", WARN, rows + " (none accepting orders yet)", "wait for the window to open")
            else:
                self.add(f"markets {asset}", PASS, rows)

    async def _balances(self, rest: Any) -> None:
        sig = str(self.sig_type)
        out = await rest._request(
            "GET", "/balance-allowance", auth=True, params={"asset_type": "COLLATERAL", "signature_type": sig}
        )
        self.collateral = Decimal(int(out.get("balance") or 0)) / 1_000_000
        if self.collateral <= 0:
            self.add("collateral balance", FAIL, "0 pUSD", "deposit pUSD (wrap USDC.e with the Collateral Onramp)")
        else:
            self.add("collateral balance", PASS, f"{self.collateral} pUSD")
        self._allowances("collateral allowance", out.get("allowances") or {}, "approve pUSD for")
        if self.token:
            out = await rest._request(
                "GET",
                "/balance-allowance",
                auth=True,
                params={"asset_type": "CONDITIONAL", "token_id": self.token, "signature_type": sig},
            )
            self._allowances("token allowance", out.get("allowances") or {}, "setApprovalForAll on the CTF for")

    def _allowances(self, name: str, allowances: dict[str, Any], action: str) -> None:
        have = {k.lower() for k, v in allowances.items() if int(v or 0) > 0}
        missing = [label for addr, label in SPENDERS.items() if addr.lower() not in have]
        if missing:
            self.add(
                name,
                FAIL,
                "missing for " + ", ".join(missing),
                f"{action} {', '.join(missing)} (polymarket.com does it at the first trade)",
            )
        else:
            self.add(name, PASS, "approved for " + ", ".join(SPENDERS.values()))

    async def _heartbeat(self, rest: Any) -> None:
        if not self.cfg.orders.heartbeat:
            self.add("heartbeat", PASS, "not used (orders.heartbeat = false)")
            return
        live = await rest.open_orders()
        if live:
            self.add(
                "heartbeat",
                WARN,
                f"not sent: it would arm the dead-man switch over {len(live)} open orders",
                "run doctor with no open orders on the account",
            )
            return
        t0 = self.clock.monotonic()
        await rest.heartbeat()
        self.add("heartbeat", PASS, f"round trip {1000 * (self.clock.monotonic() - t0):.0f} ms")

    async def _wait(self, cond: Any) -> bool:
        end = self.clock.monotonic() + self.t.timeout
        while not cond():
            if self.clock.monotonic() > end:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _market_ws(self, rest: Any) -> None:
        from active_quoting.venue.market_data import MarketData
        from active_quoting.venue.ws import MarketStream

        if not self.token:
            self.add("market websocket", WARN, "not checked: no market to subscribe", "see the markets checks")
            return
        stream = MarketStream(self.t.ws + "/ws/market", MarketData(), rest=rest, clock=self.clock)
        stream.subscribe([self.token])
        await stream.start()
        try:
            ok = await self._wait(lambda: stream.is_readable(self.token))
        finally:
            await stream.stop()
        if ok:
            self.add("market websocket", PASS, "connected, first book received")
        else:
            self.add(
                "market websocket",
                FAIL,
                f"no book within {self.t.timeout:g}s on {self.t.ws}/ws/market",
                "check --ws-url and that wss to the venue is not blocked",
            )

    async def _user_ws(self) -> None:
        from active_quoting.venue.ws import UserStream

        class _Quiet:
            def on_order(self, update: Any) -> None: ...
            def on_fill(self, update: Any) -> None: ...
            def on_user_read(self) -> None: ...
            def on_user_state(self, connected: bool) -> None: ...
            def on_reconcile_needed(self) -> None: ...

        # The user channel says nothing until an order moves: its first message is the PONG to our PING.
        stream = UserStream(self.t.ws + "/ws/user", self.creds, _Quiet(), [], ping_interval=0.5, pong_timeout=0.5)
        await stream.start()
        try:
            ok = await self._wait(lambda: stream.conn.pongs >= 1 and stream.conn.connected)
        finally:
            await stream.stop()
        if ok:
            self.add("user websocket", PASS, "authenticated, PONG received")
        else:
            self.add(
                "user websocket",
                FAIL,
                f"no answer within {self.t.timeout:g}s on {self.t.ws}/ws/user",
                "check --ws-url and the API credentials",
            )

    def _exposure(self) -> None:
        inv, size = self.cfg.inventory, self.cfg.orders.order_size_usdc
        markets = 2 * len(self.t.assets)  # the current and the next window of each asset
        worst = min(inv.max_total_liability_usdc, inv.max_liability_per_market_usdc * markets)
        detail = f"worst case {worst} USDC ({markets} markets x {inv.max_liability_per_market_usdc}, total cap "
        detail += f"{inv.max_total_liability_usdc})"
        if self.collateral is None:
            self.add("exposure", WARN, detail + "; balance unknown", "see the balance check")
        elif self.collateral < size:
            self.add(
                "exposure",
                FAIL,
                detail + f"; balance {self.collateral} < one order ({size})",
                "deposit pUSD or lower orders.order_size_usdc",
            )
        elif self.collateral < worst:
            self.add(
                "exposure",
                WARN,
                detail + f"; balance {self.collateral} covers less",
                "deposit more or lower inventory.max_total_liability_usdc",
            )
        else:
            self.add("exposure", PASS, detail + f"; balance {self.collateral}")


def render(checks: list[Check]) -> str:
    lines = []
    for c in checks:
        lines.append(f"{c.status}  {c.name:<20} {c.detail}")
        if c.fix:
            lines.append(f"      {'':<20} fix: {c.fix}")
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    lines.append(f"{len(checks)} checks: {failed} failed, {warned} warnings")
    return "\n".join(lines)


def command(args: argparse.Namespace, clock: Clock = SYSTEM) -> int:
    from active_quoting.cli import POLYMARKET_CLOB, POLYMARKET_GAMMA, POLYMARKET_WS, UsageError, _read_key, _url
    from active_quoting.errors import CredentialsError
    from active_quoting.strategy.config import ConfigError, load_config

    try:
        assets = tuple(a.strip().lower() for a in args.assets.split(",") if a.strip())
        if not assets:
            raise UsageError("--assets: give at least one asset, e.g. btc,eth")
        if args.window_seconds < 30:
            raise UsageError(f"--window-seconds must be at least 30, not {args.window_seconds}")
        clob = _url("--exchange-url", args.exchange_url, ("http://", "https://")) or POLYMARKET_CLOB
        gamma = _url("--gamma-url", args.gamma_url, ("http://", "https://")) or POLYMARKET_GAMMA
        derived_ws = clob.replace("https://", "wss://").replace("http://", "ws://")
        ws = _url("--ws-url", args.ws_url, ("ws://", "wss://")) or (derived_ws if args.exchange_url else POLYMARKET_WS)
        geo = _url("--geoblock-url", args.geoblock_url, ("http://", "https://")) or (
            clob + "/api/geoblock" if args.exchange_url else POLYMARKET_GEOBLOCK
        )
        if "/api/" not in geo:
            raise UsageError(f"--geoblock-url must end in /api/geoblock: {geo}")
        key = _read_key(args)
        cfg = load_config(args.config)
    except (UsageError, CredentialsError, ConfigError) as exc:
        print(f"active-quoting doctor: {exc}", file=sys.stderr)
        return 2
    target = Target(clob, gamma, ws, geo, assets, args.window_seconds, args.timeout)
    doctor = Doctor(target, cfg, key, args.funder, args.signature_type, clock)
    del key
    try:
        checks = asyncio.run(doctor.run())
    except Exception as exc:  # noqa: BLE001 - an unforeseen failure is one more FAIL, never a traceback with secrets
        checks = doctor.checks + [Check("doctor", FAIL, f"stopped: {type(exc).__name__}: {exc}", "report this")]
    ok = not any(c.status == FAIL for c in checks)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps({"ok": ok, "checks": [asdict(c) for c in checks]}) + b"\n")
    else:
        print(render(checks))
    return 0 if ok else 1


def add_subcommand(sub: Any) -> None:
    """The ``doctor`` subcommand, for :func:`active_quoting.cli.build_parser`."""
    p = sub.add_parser("doctor", help="preflight checks before going live (PASS/WARN/FAIL, exit 1 on any FAIL)")
    p.add_argument("--key-file", help="file with the private key (else AQ_PRIVATE_KEY); never printed")
    p.add_argument("--funder", help="maker address for signature types 1, 2 and 3")
    p.add_argument("--signature-type", type=int, default=0, choices=(0, 1, 2, 3))
    p.add_argument("--exchange-url", help="CLOB URL (default the venue's)")
    p.add_argument("--gamma-url", help="Gamma URL (default the venue's)")
    p.add_argument("--ws-url", help="WebSocket base URL (default the venue's, or derived from --exchange-url)")
    p.add_argument("--geoblock-url", help="geoblock endpoint (default polymarket.com's, or --exchange-url's)")
    p.add_argument("--config", help="TOML config whose limits are checked against the balance")
    p.add_argument("--assets", default="btc,eth,sol")
    p.add_argument("--window-seconds", type=int, default=900)
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each answer")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.set_defaults(func=command)
