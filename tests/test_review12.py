"""Review of issue 12 (ready for the real venue), the defects found, each against the embedded
exchange over real sockets; a small pass-through proxy on 127.0.0.1 makes one endpoint answer
as the venue can (every other byte goes to and comes from the exchange).

* item 2: ``order_version_mismatch`` re-reads the refused order's *market* version (not only the
  venue's ``/version``) and rebuilds the order under the same tracker; a failed re-read never
  loses what the venue accepted.
* item 7: a 429's ``Retry-After`` in its HTTP-date form is honoured (it was read as absent: a
  one-second wait).
* item 1: ``run --signature-type 3`` (deposit wallets) is offered, as ``sign-order`` and
  ``doctor`` offer it."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from active_quoting.clock import ManualClock
from active_quoting.exchange.engine import FeeSchedule, Market
from active_quoting.exchange.server import serve_app
from active_quoting.execution.order_manager import MarketRef, OrderManager, Tracked
from active_quoting.store.sqlite import Store
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner
from exchange_peer import CID, DOWN, MAKER_KEY, SH, UP, derive

CID3, UP3, DOWN3 = "0x" + "cd" * 32, "3001", "3002"  # a Protocol-V2 market (ExchangeV3)
EXE = shutil.which("active-quoting") or str(Path(sys.executable).parent / "active-quoting")
_SKIP = {"host", "content-length", "transfer-encoding", "connection"}


class FailingProxy:
    """Forwards every request to the exchange, except that ``fail[(method, path)]`` answers
    that request with the given (status, JSON text, headers) instead, once."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: Counter[tuple[str, str]] = Counter()
        self.failed: Counter[tuple[str, str]] = Counter()
        self.fail: dict[tuple[str, str], tuple[int, str, dict[str, str]]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession()
        self._runner, url = await serve_app(app)
        return url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.Response:
        key = (request.method, request.path)
        self.seen[key] += 1
        body = await request.read()
        answer = self.fail.pop(key, None)
        if answer is not None:
            self.failed[key] += 1
            return web.Response(status=answer[0], text=answer[1], content_type="application/json", headers=answer[2])
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIP}
        assert self._session is not None
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body or None, headers=headers
        ) as r:
            payload, status = await r.read(), r.status
        return web.Response(status=status, body=payload, content_type="application/json")


@contextlib.asynccontextmanager
async def _manager(ex, store: Store) -> AsyncIterator[tuple[OrderManager, FailingProxy, str]]:
    """An order manager that knows two markets as discovery gave them, both without a version:
    the exchange's own (CLOB V2) and one the venue trades on ExchangeV3 (Protocol V2)."""
    ex.add_market(Market(CID3, UP3, DOWN3, fees=FeeSchedule(), order_version=3))
    proxy = FailingProxy(ex.clob_url)
    url = await proxy.start()
    signer = OrderSigner(MAKER_KEY)
    rest = RestClient(url, signer, await derive(ex, MAKER_KEY))
    om = OrderManager(rest, signer, store, min_refresh_ms=0, global_cap_per_sec=1000)
    om.add_market(MarketRef(CID, UP, DOWN, 100))
    om.add_market(MarketRef(CID3, UP3, DOWN3, 100))  # version unknown: discovery missed "v2"
    try:
        yield om, proxy, signer.address
    finally:
        await rest.close()
        await proxy.stop()


def _bid(market: str, token: str, price: int) -> Tracked:
    return Tracked("", market, token, "BUY", price, 10 * SH, "bid", price)


def _rows(store: Store) -> dict[str, str]:
    store.flush()
    return {r["order_id"]: r["status"] for r in store.open_orders()}


@pytest.mark.asyncio
async def test_a_mismatch_rereads_the_markets_version_and_rebuilds_under_the_same_tracker(ex, tmp_path):
    store = Store(tmp_path / "orders.db")
    try:
        async with _manager(ex, store) as (om, proxy, me):
            t = _bid(CID3, UP3, 4800)
            await om._place([t], 0.0)
            # The venue refused the V2-signed order for its version, once; the market was read again.
            assert ex.signature_checks.get("version_mismatch") == 1
            assert proxy.seen[("GET", f"/clob-markets/{CID3}")] == 1
            assert om.markets[CID3].version == "v2" and om.counts["market_version_changes"] == 1
            (venue,) = ex.engine.live_orders(account=me)
            assert ex.signature_checks.get("verified_v3") == 1  # rebuilt for ExchangeV3 and verified
            assert t.order_id == venue.id and t.status == "LIVE" and om.counts["placed"] == 1
            assert set(om.orders) == {venue.id} and om.live() == [t]  # no phantom under the refused hash
            assert _rows(store) == {venue.id: "LIVE"}
            t2 = _bid(CID3, UP3, 4700)  # from now on the market signs for ExchangeV3 at once
            await om._place([t2], 0.0)
            assert ex.signature_checks["version_mismatch"] == 1 and ex.signature_checks["verified_v3"] == 2
            assert t2.status == "LIVE" and om.counts["rejected"] == 0
    finally:
        store.close()


@pytest.mark.asyncio
async def test_a_failed_version_read_keeps_what_the_venue_accepted(ex, tmp_path):
    store = Store(tmp_path / "orders.db")
    try:
        async with _manager(ex, store) as (om, proxy, me):
            proxy.fail[("GET", "/version")] = (500, '{"error":"could not run the execution"}', {})
            ok, v3 = _bid(CID, UP, 4800), _bid(CID3, UP3, 4800)
            await om._place([ok, v3], 0.0)  # one POST /orders: the first accepted, the second refused
            assert proxy.failed[("GET", "/version")] == 1  # the fault took effect
            held = {o.id for o in ex.engine.live_orders(account=me)}
            assert ok.status == "LIVE" and ok.order_id in held  # not lost to the failed read
            assert om.rest.counts["version_reread_failed"] == 1
            assert v3.status == "LIVE" and v3.order_id in held  # its market was read again all the same
            assert held == set(om.orders) and _rows(store) == dict.fromkeys(held, "LIVE")
    finally:
        store.close()


@pytest.mark.asyncio
async def test_the_exchange_reports_a_protocol_v2_markets_version_on_clob_markets(ex):
    ex.add_market(Market(CID3, UP3, DOWN3, fees=FeeSchedule(), order_version=3))
    async with RestClient(ex.clob_url, order_lane=False) as rest:
        assert (await rest.clob_market(CID3)).version == "v2"
        assert (await rest.clob_market(CID)).version == "v1"


@pytest.mark.asyncio
async def test_a_retry_after_given_as_an_http_date_is_honoured(ex):
    clock = ManualClock(1_790_000_000.0)
    proxy = FailingProxy(ex.clob_url)
    url = await proxy.start()
    signer = OrderSigner(MAKER_KEY)
    rest = RestClient(url, signer, await derive(ex, MAKER_KEY), clock=clock.time)
    try:
        om = OrderManager(rest, signer, None, clock=clock, min_refresh_ms=0, global_cap_per_sec=1000)
        om.add_market(MarketRef(CID, UP, DOWN, 100))
        when = format_datetime(datetime.fromtimestamp(clock.time() + 120, tz=timezone.utc), usegmt=True)
        proxy.fail[("POST", "/order")] = (429, '{"error":"Too Many Requests"}', {"Retry-After": when})
        t = _bid(CID, UP, 4800)
        await om._place([t], 0.0)
        assert proxy.failed[("POST", "/order")] == 1 and rest.counts["rate_limited"] == 1
        state, until = om.venue.state(clock.monotonic())
        assert state == "rate_limited" and until - clock.monotonic() >= 120  # not the 1 s of "no header"
        assert ex.engine.live_orders(account=signer.address) == [] and om.live() == []
        clock.set(clock.time() + 119)
        assert not om.venue.may_place(clock.monotonic())
    finally:
        await rest.close()
        await proxy.stop()


def test_retry_after_forms():
    from active_quoting.venue.errors import classify, retry_after_seconds  # new with the fix

    now = 1_790_000_000.0
    date = format_datetime(datetime.fromtimestamp(now + 30, tz=timezone.utc), usegmt=True)
    assert retry_after_seconds("7", now) == 7.0 and retry_after_seconds(date, now) == 30.0
    assert retry_after_seconds(date) is None  # a date needs the time it is counted from
    past = format_datetime(datetime.fromtimestamp(now - 30, tz=timezone.utc), usegmt=True)
    assert retry_after_seconds(past, now) == 0.0
    for bad in ("nan", "inf", "-inf", "soon", "", None):
        assert retry_after_seconds(bad, now) is None
    assert retry_after_seconds("-5", now) == 0.0
    assert classify(429, {"error": "x"}, date, now).retry_after == 30.0


def test_run_offers_signature_type_3_with_the_deposit_wallet_as_funder(monkeypatch):
    from active_quoting.cli import build_parser, run_options

    monkeypatch.setenv("AQ_PRIVATE_KEY", MAKER_KEY)
    for k in ("AQ_API_KEY", "AQ_API_SECRET", "AQ_API_PASSPHRASE"):
        monkeypatch.delenv(k, raising=False)
    wallet = "0x" + "5a" * 20
    args = build_parser().parse_args(["run", "--venue", "polymarket", "--signature-type", "3", "--funder", wallet])
    opts, line = run_options(args)
    assert opts.signature_type == 3 and opts.funder == wallet
    assert OrderSigner(MAKER_KEY).address in line and wallet in line and MAKER_KEY[2:] not in line


def test_run_signature_type_3_without_a_funder_names_the_funder(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQ_")}
    env["AQ_PRIVATE_KEY"] = MAKER_KEY
    cmd = [EXE, "run", "--venue", "polymarket", "--signature-type", "3"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 2
    assert "invalid choice" not in out.stderr and "funder" in out.stderr, out.stderr
    assert MAKER_KEY[2:] not in out.stderr + out.stdout


def test_run_options_never_show_the_key_or_the_api_secret(monkeypatch):
    from active_quoting.cli import build_parser, run_options

    monkeypatch.setenv("AQ_PRIVATE_KEY", MAKER_KEY)
    secret, passphrase = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlYw==", "pass-phrase-0123"
    monkeypatch.setenv("AQ_API_KEY", "11111111-2222-3333-4444-555555555555")
    monkeypatch.setenv("AQ_API_SECRET", secret)
    monkeypatch.setenv("AQ_API_PASSPHRASE", passphrase)
    opts, line = run_options(build_parser().parse_args(["run", "--venue", "polymarket"]))
    assert opts.private_key == MAKER_KEY and opts.api_creds is not None and opts.api_creds[1] == secret
    for text in (repr(opts), str(opts), line):
        assert MAKER_KEY[2:] not in text and secret not in text and passphrase not in text
