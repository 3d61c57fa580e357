"""Metrics: histogram arithmetic, the exposition format, and the endpoint on 127.0.0.1."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from active_quoting.observability.metrics import Histogram, Metrics


def test_histogram_buckets_and_quantiles():
    h = Histogram("x_seconds", "test", buckets=(0.001, 0.01, 0.1))
    for v in (0.0005, 0.002, 0.002, 0.05, 5.0):
        h.observe(v)
    assert h.counts == [1, 2, 1, 1] and h.count == 5 and abs(h.sum - 5.0545) < 1e-12
    assert h.quantile(0.5) == 0.01 and h.quantile(0.99) == float("inf")
    (family,) = [h.family()]
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name == "x_seconds_bucket"}
    assert buckets == {"0.001": 1, "0.01": 3, "0.1": 4, "+Inf": 5}


@pytest.mark.asyncio
async def test_metrics_endpoint():
    m = Metrics()
    m.observe("submit_round_trip", 0.003)
    m.inc("aq_orders_total", 2, kind="placed")
    m.set("aq_position_up", 12.5, market='btc-"x"')
    url = await m.serve(0)
    try:
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            body = await r.text()
    finally:
        await m.stop()
    assert url.startswith("http://127.0.0.1:")
    samples = {
        (s.name, tuple(s.labels.items())): s.value for f in text_string_to_metric_families(body) for s in f.samples
    }
    assert samples[("aq_submit_round_trip_seconds_count", ())] == 1
    assert samples[("aq_orders_total", (("kind", "placed"),))] == 2
    assert samples[("aq_position_up", (("market", 'btc-"x"'),))] == 12.5  # escaped in the text, parsed back
