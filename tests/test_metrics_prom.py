"""Metrics through prometheus_client (issue 12 item 9): a registry per bot, the counters read
from the real components as they talk to the embedded exchange over loopback, scraped from a
real HTTP endpoint on 127.0.0.1 and parsed with prometheus_client's own parser; the Grafana
dashboard queries only names a live scrape has; the status shows balances, versions, fees."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import aiohttp
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from active_quoting import core
from active_quoting.clock import ManualClock
from active_quoting.execution.order_manager import MarketRef, OrderManager
from active_quoting.fill_intake import FillIntake
from active_quoting.model import ASK, BID, BUY, OrderIntent
from active_quoting.observability.metrics import METRIC_NAMES, Metrics, Sources
from active_quoting.status import render_status
from active_quoting.store.journal import Journal
from active_quoting.strategy.quoting import MarketDecision, SideDecision
from active_quoting.strategy.risk import RiskManager
from active_quoting.venue.orders import build_order
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner
from active_quoting.venue.user_codec import FillUpdate, OrderUpdate
from active_quoting.venue.ws import Backoff, UserStream
from exchange_peer import CID, DOWN, MAKER_KEY, SH, TAKER_KEY, UP, derive
from loopback_ws import wait_for
from test_windows import Alerts, info, lifecycle

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "active-quoting.json"
NONE = SideDecision(core.NO_PRICE, 0, core.KEEP)
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


async def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """GET the endpoint and parse it: sample name -> labels -> value (every family kept, even
    one without samples yet, under its exposed names)."""
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=")
        text = await r.text()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for suffix in _SUFFIXES.get(family.type, ("",)):
            out.setdefault(family.name + suffix, {})
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(scraped: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float:
    return scraped[name][tuple(sorted(labels.items()))]


@dataclass
class Listener:
    """What the bot does with the user channel, for the parts these metrics read."""

    om: OrderManager
    intake: FillIntake
    risk: RiskManager
    metrics: Metrics

    def on_order(self, update: OrderUpdate) -> None:
        self.om.on_order(update)

    def on_fill(self, update: FillUpdate) -> None:
        self.intake.on_fill(update)

    def on_user_read(self) -> None:
        pass

    def on_user_state(self, connected: bool) -> None:
        self.risk.on_user_channel(0, connected)
        for e in self.risk.drain_events():  # the bot's _risk_events: each transition told once
            self.metrics.risk_event(e.scope, e.new)

    def on_reconcile_needed(self) -> None:
        pass


@contextlib.asynccontextmanager
async def wired(
    ex, tmp_path
) -> AsyncIterator[tuple[Metrics, OrderManager, RestClient, UserStream, RiskManager, FillIntake]]:
    """One bot's worth of components on the exchange's market, watched by its metrics, served."""
    signer = OrderSigner(MAKER_KEY)
    creds = await derive(ex, MAKER_KEY)

    async def no_wait(_seconds: float) -> None:
        return None

    rest = RestClient(ex.clob_url, signer, creds, sleep=no_wait)  # a 429's Retry-After is not waited out here
    metrics = Metrics()
    om = OrderManager(rest, signer, min_refresh_ms=0, global_cap_per_sec=1000, metrics=metrics)
    om.add_market(MarketRef(CID, UP, DOWN, 100))
    windows, store = lifecycle(tmp_path)
    window = replace(
        info(1, 1_000_000_000), condition_id=CID, up=UP, down=DOWN, version="v2", fee_rate=Fraction(7, 100)
    )
    windows.add(window, 1_000_000_000)
    intake = FillIntake(windows, Alerts(), ManualClock(1_000_000_010))
    risk = RiskManager()
    user = UserStream(ex.ws_url + "/ws/user", creds, Listener(om, intake, risk, metrics), [CID],
                      backoff=Backoff(0.02, 0.1))  # fmt: skip
    journal = Journal(str(tmp_path / "run.db.journal"))
    metrics.watch(
        Sources(
            orders=om,
            venue=om,
            rest=rest,
            user=user,
            fills=intake,
            risk=risk,
            windows=windows,
            store=store,
            journal=journal,
        )
    )
    await user.start()
    await metrics.serve(0)
    try:
        yield metrics, om, rest, user, risk, intake
    finally:
        await metrics.stop()
        await user.stop()
        await rest.close()
        store.close()
        journal.close()


def _bid(price: int) -> tuple[MarketDecision, list[OrderIntent]]:
    return MarketDecision(CID, SideDecision(price, 20 * SH, core.PLACE), NONE, False, 100), [
        OrderIntent(CID, UP, BUY, price, 20 * SH, BID, price)
    ]


def _ask_crossing(bid: int, ask: int) -> tuple[MarketDecision, list[OrderIntent]]:
    """An ask at ``ask`` (expressed as a BUY of Down) while our bid stands at ``bid``."""
    down_price = core.PRICE_SCALE - ask
    return MarketDecision(
        CID, SideDecision(bid, 20 * SH, core.KEEP), SideDecision(ask, 20 * SH, core.PLACE), False, 100
    ), [OrderIntent(CID, DOWN, BUY, down_price, 20 * SH, ASK, ask)]


@pytest.mark.asyncio
async def test_counters_follow_the_events_of_real_components_and_scrape_as_prometheus_text(ex, tmp_path):
    async with wired(ex, tmp_path) as (metrics, om, rest, user, risk, intake):
        await wait_for(lambda: user.conn.connected and ex.user_sockets)
        before = await scrape(metrics.url)
        assert value(before, "aq_orders_placed_total") == 0 and value(before, "aq_fills_total") == 0
        assert value(before, "aq_market_info", market="btc-updown-1m-1000000000", version="v2",
                     fees_enabled="true", neg_risk="false") == 1  # fmt: skip
        assert value(before, "aq_market_fee_rate", market="btc-updown-1m-1000000000") == 0.07

        # placed: our bid rests; its submit round trip is observed
        assert om.stage(*_bid(4800), 0.0)
        await om.flush()
        assert om.counts["placed"] == 1
        # rejected (post_only): our own ask at 0.47 would cross our bid at 0.48
        assert om.stage(*_ask_crossing(4800, 4700), 1.0)
        await om.flush()
        assert om.counts["post_only_rejects"] == 1
        # a 429 on an authenticated request (the client retries it once)
        ex.faults.rate_limit_next = 1
        await rest.open_orders()
        assert ex.faults.rate_limit_next == 0 and rest.counts["rate_limited"] == 1
        # a fill: a taker sells Up into our bid (buys Down at 0.53)
        taker = OrderSigner(TAKER_KEY)
        async with RestClient(ex.clob_url, taker, await derive(ex, TAKER_KEY)) as trest:
            (t,) = await trest.post_orders([build_order(taker, DOWN, 0, 5300, 8 * SH, 100)], post_only=False)
        assert t.accepted and t.status == "matched"
        await wait_for(lambda: intake.seen == 1)
        # a cancel the venue confirms: the quote pass takes our bid down
        assert om.stage(MarketDecision(CID, SideDecision(core.NO_PRICE, 0, core.CANCEL), NONE, False, 100), [], 2.0)
        await om.flush()
        assert om.counts["canceled"] == 1
        # the user channel drops and comes back: a reconnect, and the halt it causes
        await ex.drop_sockets("user")
        await wait_for(lambda: user.conn.connects == 2 and user.conn.connected)
        assert risk.state == "HALTED"
        # the venue answers a submit with a 503 (cancel-only): the order manager's state
        ex.faults.http_status_queue.append((503, {"error": "trading is disabled"}, {"Retry-After": "30"}))
        assert om.stage(*_bid(4700), 3.0)
        await om.flush()
        assert not ex.faults.http_status_queue and om.venue_state == "cancel_only"
        after = await scrape(metrics.url)

    assert value(after, "aq_orders_placed_total") == 1
    assert value(after, "aq_orders_rejected_total", reason="post_only") == 1
    assert value(after, "aq_orders_rejected_total", reason="venue") == 0
    assert (
        value(after, "aq_rate_limited_total") == 1 and value(after, "aq_venue_errors_total", kind="rate_limited") == 1
    )
    assert value(after, "aq_fills_total") == 1
    assert value(after, "aq_cancels_total") == 1
    assert value(after, "aq_reconnects_total", channel="user") == 1
    assert value(after, "aq_halts_total", scope="global") == 1 and value(after, "aq_halts_total", scope="market") == 0
    assert value(after, "aq_circuit_state") == 3
    assert value(after, "aq_venue_state", state="cancel_only") == 1 and value(after, "aq_venue_state", state="ok") == 0
    assert value(after, "aq_venue_state_entered_total", state="cancel_only") == 1
    assert value(after, "aq_submit_round_trip_seconds_count") == 3  # the bid, the refused ask, the 503
    assert value(after, "aq_cancel_round_trip_seconds_count") == 1
    assert value(after, "aq_submit_round_trip_seconds_bucket", le="+Inf") == 3
    assert value(after, "aq_order_events_total", event="placed") == 1


@pytest.mark.asyncio
async def test_each_bot_has_its_own_registry():
    a, b = Metrics(), Metrics()
    a.risk_event("global", "HALTED")
    a.observe("submit_round_trip", 0.002)
    b.set_balance("collateral", 250_500_000, {"0xExchange": 10**12})
    urls = [await a.serve(0), await b.serve(0)]
    try:
        sa, sb = [await scrape(u) for u in urls]
    finally:
        await a.stop()
        await b.stop()
    assert urls[0] != urls[1]
    assert value(sa, "aq_halts_total", scope="global") == 1 and value(sb, "aq_halts_total", scope="global") == 0
    assert value(sa, "aq_submit_round_trip_seconds_count") == 1 and value(sb, "aq_submit_round_trip_seconds_count") == 0
    assert value(sb, "aq_balance", asset="collateral", market="") == 250.5 and not sa["aq_balance"]
    assert value(sb, "aq_allowance", asset="collateral", spender="0xExchange") == 1_000_000
    # nothing in the process-wide default registry
    assert not [n for n in prometheus_client.REGISTRY._names_to_collectors if n.startswith("aq_")]


def test_free_form_series_cannot_shadow_a_built_in_metric():
    m = Metrics()
    for name in ("aq_fills_total", "aq_fills", "aq_circuit_state", "aq_submit_round_trip_seconds_count"):
        with pytest.raises(ValueError, match="built-in"):
            m.set(name, 1.0)
    m.set("aq_pnl", 1.5, market="btc-x")
    m.set_balance("123", 10 * SH, market="btc-x")
    assert m.forget(market="btc-x") == 2 and not m.balances and not m.gauges


@pytest.mark.asyncio
async def test_every_name_the_dashboard_queries_is_in_a_live_scrape(ex, tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]
    used = {n for e in exprs for n in re.findall(r"\baq_[a-z0-9_]+", e)}
    assert len(dashboard["panels"]) >= 10 and used
    wanted = {"aq_orders_placed_total", "aq_orders_rejected_total", "aq_cancels_total", "aq_rate_limited_total",
              "aq_fills_total", "aq_halts_total", "aq_reconnects_total", "aq_venue_state", "aq_balance",
              "aq_allowance", "aq_market_info", "aq_submit_round_trip_seconds_bucket",
              "aq_cancel_round_trip_seconds_bucket", "aq_frame_to_decision_seconds_bucket",
              "aq_decision_to_wire_seconds_bucket"}  # fmt: skip
    assert wanted <= used, wanted - used
    async with wired(ex, tmp_path) as (metrics, *_):
        for key in ("position_up", "position_down", "pnl"):  # what the status publisher sets per market
            metrics.set(f"aq_{key}", 0.0, market="btc-updown-1m-1000000000")
        metrics.set_balance("collateral", 10 * SH, {"0xExchange": 10 * SH})
        scraped = await scrape(metrics.url)
    missing = sorted(n for n in used if n not in scraped)
    assert not missing, f"the dashboard queries metrics the bot does not export: {missing}"
    assert {n for n in used if n in METRIC_NAMES} == {n for n in used if not n.startswith(("aq_position", "aq_pnl"))}


def test_status_shows_venue_state_balances_allowances_versions_and_fees():
    m = Metrics()
    m.set_balance("collateral", 9_876_543_210, {"0xCTFExchange": 2**256 - 1, "0xNegRisk": 0})
    clock = ManualClock(1_000_000_000)
    om = OrderManager(None, OrderSigner(MAKER_KEY), clock=clock)  # type: ignore[arg-type]  # nothing is sent
    om.venue.note("trading_disabled", 30.0, clock.monotonic())  # a 503: cancel-only for 30 s
    row = {"market": "btc-updown-5m-1", "left_s": 30, "book": "0.48/0.52", "quotes": "0.47/0.53",
           "position_up": "0", "position_down": "0", "pnl": "0.0000", "markout_5s": "-", "state": "NORMAL",
           "version": "v2", "fee_rate": "7/100", "fees_enabled": True}  # fmt: skip
    snapshot = {"risk": "NORMAL", "killed": False, "fills": 0, "orders": {}, "markets": [row],
                "venue": om.venue_status(), "balances": m.balance_rows(),
                "presigned": {"hits": 7, "misses": 2, "stale": 1, "signed": 40}}  # fmt: skip
    assert m.balance_rows()["collateral"]["balance"] == "9876.54321"
    text = render_status(json.loads(json.dumps(snapshot)))
    assert "venue cancel_only for 30 s more" in text
    assert "pre-signed: 7 taken, 2 signed at send time (1 too old), 40 signed ahead" in text
    assert f"balance collateral: 9876.54321  allowances: 0xCTFExchange {(2**256 - 1) // SH}." in text
    assert "0xNegRisk 0" in text
    line = next(x for x in text.splitlines() if x.startswith("btc-updown-5m-1"))
    assert " v2 " in line and " 7/100 " in line
    # a store written by an older bot (none of these fields) still renders
    old = {k: v for k, v in snapshot.items() if k not in ("venue", "balances", "presigned")}
    old["markets"] = [{k: v for k, v in row.items() if k not in ("version", "fee_rate", "fees_enabled")}]
    assert "btc-updown-5m-1" in render_status(old)
