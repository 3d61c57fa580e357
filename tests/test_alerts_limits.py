"""Critical alerts are rate-limited per repeat and the worker survives what a delivery raises
(issue 9, item 13), against a local HTTP server standing in for Telegram and a webhook."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import pytest
from aiohttp import web

from active_quoting.alerts.notifier import Alerts
from active_quoting.exchange.server import serve_app
from active_quoting.strategy.config import AlertsConfig

TOKEN = "123456:test-token-not-real"


async def receiver():
    received: list[tuple[str, dict]] = []

    async def record(request):
        received.append((request.path, await request.json()))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/bot{token}/sendMessage", record)
    app.router.add_post("/hook", record)
    runner, url = await serve_app(app)
    return received, runner, url


@pytest.mark.asyncio
async def test_a_failing_quote_pass_sends_one_critical_alert_not_ten_a_second():
    received, runner, url = await receiver()
    alerts = Alerts(AlertsConfig(telegram_token=TOKEN, telegram_chat_id="42", telegram_api=url))
    alerts.start()
    try:
        sent = [alerts.notify("error", "a quote pass failed: KeyError('x')", critical=True) for _ in range(10)]
        assert alerts.notify("error", "another failure", critical=True)  # a different alert still goes out
        await asyncio.wait_for(alerts.queue.join(), 5)
    finally:
        await runner.cleanup()
        await alerts.stop(drain_s=0.1)
    assert sent == [True] + [False] * 9 and alerts.suppressed == 9
    texts = [body["text"] for path, body in received]
    assert texts[:2] == ["🚨 [active-quoting] error: a quote pass failed: KeyError('x')",
                         "🚨 [active-quoting] error: another failure"]  # fmt: skip


@pytest.mark.asyncio
async def test_held_repeats_are_summarised_with_their_count_once_the_interval_passes():
    received, runner, url = await receiver()
    from active_quoting.clock import ManualClock  # here: the other tests run on clockless trees too

    clock = ManualClock(1_000.0)
    cfg = AlertsConfig(webhook_url=url + "/hook", min_interval_seconds=Decimal(30))
    alerts = Alerts(cfg, clock=clock)
    alerts.start()
    try:
        for _ in range(5):
            alerts.notify("circuit", "global: HALTED", critical=True)
            clock.advance(1)
        alerts.flush_fills()  # the bot's periodic flush: the interval has not passed yet
        await asyncio.wait_for(alerts.queue.join(), 5)
        assert [b["message"] for _, b in received] == ["global: HALTED"]
        clock.advance(30)
        alerts.flush_fills()
        await asyncio.wait_for(alerts.queue.join(), 5)
        assert received[-1][1]["message"] == "global: HALTED (repeated 4 more time(s))" and received[-1][1]["critical"]
        alerts.flush_fills()
        assert alerts.notify("circuit", "global: HALTED", critical=True) is False  # just summarised: a repeat
        clock.advance(31)
        assert alerts.notify("circuit", "global: HALTED", critical=True)  # after the interval: goes out, with the count
        await asyncio.wait_for(alerts.queue.join(), 5)
    finally:
        await alerts.stop(drain_s=1)
        await runner.cleanup()
    assert received[-1][1]["message"] == "global: HALTED (repeated 1 more time(s) before this)"
    assert len(received) == 3


@pytest.mark.asyncio
async def test_the_worker_survives_an_unexpected_exception(caplog):
    received, runner, url = await receiver()
    cfg = AlertsConfig(telegram_token=TOKEN, telegram_chat_id="42", telegram_api=url, webhook_url=url + "/hook")
    alerts = Alerts(cfg)
    alerts.start()
    try:
        with caplog.at_level(logging.ERROR):
            alerts.notify("error", Decimal("1"), critical=True)  # type: ignore[arg-type] - a webhook body json cannot encode
            alerts.notify("error", "the next alert", critical=True)
            await asyncio.wait_for(alerts.queue.join(), 5)
    finally:
        await alerts.stop(drain_s=1)
        await runner.cleanup()
    assert alerts.worker_errors == 1  # the fault took effect
    assert "unexpected TypeError" in caplog.text and TOKEN not in caplog.text
    hooks = [body for path, body in received if path == "/hook"]
    assert hooks[-1]["message"] == "the next alert"  # the worker kept going
