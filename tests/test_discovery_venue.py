"""Discovery as the venue serves it: the day of real Gamma objects parsed into the windows the
venue meant, and Gamma's quirks (string-encoded lists, closed markets omitted, acceptingOrders
false at first, the CLOB not yet knowing a listed market, Cloudflare's user-agent refusal,
priceToBeat later), against the embedded exchange over real sockets."""

from __future__ import annotations

import gzip
import json
import time
from decimal import Decimal
from fractions import Fraction

import aiohttp
import pytest

from active_quoting import discovery as disc
from active_quoting.exchange.engine import FeeSchedule, Market
from active_quoting.exchange.server import Exchange, ExchangeConfig
from active_quoting.venue.rest import RestClient
from conftest import CAPTURES

DAY = CAPTURES.parents[1] / "data" / "real-btc-2026-06-08"  # ../shared, as the captures
MARKETS = DAY / "BTC-5m-markets-2026-06-08.jsonl.gz"


def _rows() -> list[dict]:
    with gzip.open(MARKETS, "rt") as f:
        return [json.loads(line) for line in f]


def test_every_real_gamma_object_parses_into_the_window_the_venue_meant():
    rows = _rows()
    assert len(rows) == 292
    ticks = set()
    for row in rows:
        raw = row["raw"]
        assert isinstance(raw["clobTokenIds"], str)  # the quirk is in the data: lists as strings
        w = disc.parse_window("btc", raw)
        assert w.slug == row["slug"] == disc.window_slug("btc", row["interval_sec"], row["start_sec"])
        assert w.condition_id == row["condition_id"]
        assert [w.up, w.down] == row["token_ids"]
        assert (w.start, w.end) == (row["start_sec"], row["end_sec"]) and w.end - w.start == 300
        assert w.tick in (100, 10) and w.tick == int(Decimal(repr(raw["orderPriceMinTickSize"])) * 10_000)
        assert w.min_size == 5_000_000
        assert (w.fee_rate, w.fee_exponent, w.rebate_share) == (Fraction(7, 100), 1, Fraction(1, 5))
        assert w.closed and not w.accepting_orders and w.enable_order_book and w.fees_enabled
        assert not w.neg_risk and w.version == "v1" and w.price_to_beat is None
        assert w.accepting_orders_since < w.start
        ticks.add(w.tick)
    assert ticks == {100, 10}  # both ticks of the day: 0.01 and 0.001


def test_protocol_v2_price_to_beat_and_bad_records():
    raw = dict(_rows()[0]["raw"])
    raw.update(version="v2", positionIds='["11", "22"]', acceptingOrders=True, closed=False,
               events=[{"eventMetadata": {"priceToBeat": 83884.31}}])  # fmt: skip
    w = disc.parse_window("btc", raw)
    assert (w.up, w.down, w.version, w.price_to_beat) == ("11", "22", "v2", Decimal("83884.31"))
    with pytest.raises(disc.DiscoveryError, match="btc-updown-5m"):
        disc.parse_window("btc", {**raw, "outcomes": '["Yes", "No"]'})
    with pytest.raises(disc.DiscoveryError, match="unusable"):
        disc.parse_window("btc", {k: v for k, v in raw.items() if k != "endDate"})


def _gamma(slug: str, cid: str, up: str, down: str, start: int, length: int, **extra: object) -> dict:
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    return {"id": str(start), "slug": slug, "conditionId": cid, "question": slug, "clobTokenIds": json.dumps([up, down]),
            "outcomes": '["Up", "Down"]', "eventStartTime": iso(start), "startDate": iso(start - length),
            "endDate": iso(start + length), "orderPriceMinTickSize": 0.01, "orderMinSize": 5, "closed": False,
            "acceptingOrders": True, "enableOrderBook": True, "feesEnabled": True,
            "feeSchedule": {"exponent": 1, "rate": 0.07, "takerOnly": True, "rebateRate": 0.2}, **extra}  # fmt: skip


@pytest.mark.asyncio
async def test_gamma_quirks_against_the_embedded_exchange():
    ex = await Exchange(ExchangeConfig(gamma_refuse_default_ua=True)).start()
    rest = RestClient(ex.clob_url)
    disco = disc.Discovery(ex.gamma_url, 60, clob=rest)
    try:
        now = time.time()
        cur = int(now) // 60 * 60
        ids = {}
        for asset in ("btc", "eth"):
            for start in (cur, cur + 60):
                n = len(ids) + 1
                ids[(asset, start)] = (f"0x{n:064x}", str(1000 + 2 * n), str(1001 + 2 * n))
        # btc now: on Gamma and the CLOB, accepting. btc next: listed, not accepting yet.
        # eth now: on Gamma but not yet on the CLOB. eth next: closed (omitted by Gamma).
        for (asset, start), (cid, up, down) in ids.items():
            g = _gamma(disc.window_slug(asset, 60, start), cid, up, down, start, 60)
            if (asset, start) == ("btc", cur + 60):
                g["acceptingOrders"] = False
            if (asset, start) == ("eth", cur + 60):
                g["closed"] = True
            if (asset, start) != ("eth", cur):
                ex.engine.add_market(Market(cid, up, down, fees=FeeSchedule()))
            ex.gamma_markets.append(g)

        async with aiohttp.ClientSession() as plain:  # Cloudflare's refusal is real in the exchange
            async with plain.get(ex.gamma_url + "/markets", params={"slug": disc.window_slug("btc", 60, cur)}) as r:
                assert r.status == 403
        assert ex.gamma_refused == 1

        found = await disco.discover(["btc", "eth"], now)
        assert [w.slug for w in found] == [disc.window_slug("btc", 60, cur)]
        assert found[0].up == ids[("btc", cur)][1] and found[0].accepting_orders
        assert ex.gamma_refused == 1  # our user-agent passes
        assert disco.counts["clob_unknown"] == 1 and disco.counts["not_accepting"] == 1
        assert disco.counts["not_listed"] == 1  # the closed one, omitted unless asked
        assert await disco.record(disc.window_slug("eth", 60, cur + 60), closed=True) is not None

        # The CLOB learns the eth window and the next btc one opens: the next pass finds both.
        cid, up, down = ids[("eth", cur)]
        ex.engine.add_market(Market(cid, up, down, fees=FeeSchedule()))
        for g in ex.gamma_markets:
            g["acceptingOrders"] = True
        again = await disco.discover(["btc", "eth"], now)
        assert sorted(w.slug for w in again) == sorted(
            [disc.window_slug("btc", 60, cur), disc.window_slug("btc", 60, cur + 60), disc.window_slug("eth", 60, cur)]
        )
        assert [w.slug for w in await disco.current_and_next("eth", now)] == [disc.window_slug("eth", 60, cur)]
    finally:
        await disco.close()
        await rest.close()
        await ex.stop()


@pytest.mark.asyncio
async def test_requests_run_concurrently_with_a_bound_and_a_timeout():
    ex = await Exchange().start()
    assets = [f"a{i}" for i in range(6)]
    disco = disc.Discovery(ex.gamma_url, 60, timeout=3.0, concurrency=4)
    try:
        ex.faults.slow_gamma_s = 0.5
        t0 = time.monotonic()
        assert await disco.windows(assets, time.time()) == []  # 12 requests, none listed
        took = time.monotonic() - t0
        assert disco.counts["not_listed"] == 12
        assert 1.4 < took < 2.5, took  # 12 x 0.5 s at 4 at a time: 3 rounds, not 6 s serially

        ex.faults.slow_gamma_s = 5.0  # Gamma hangs: each request times out, nothing raised
        quick = disc.Discovery(ex.gamma_url, 60, timeout=0.3)
        try:
            t0 = time.monotonic()
            assert await quick.discover(["btc"], time.time()) == []
            assert quick.counts["request_failed"] == 2 and time.monotonic() - t0 < 2.0
        finally:
            await quick.close()
    finally:
        ex.faults.slow_gamma_s = 0.0
        await disco.close()
        await ex.stop()


def test_user_agent_is_browser_like():
    assert disc.USER_AGENT.startswith("Mozilla/5.0") and "python" not in disc.USER_AGENT.lower()
