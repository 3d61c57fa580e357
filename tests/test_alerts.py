"""Alerts against a local HTTP server standing in for Telegram and a webhook receiver."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import pytest

from active_quoting.alerts.notifier import Alerts
from active_quoting.clock import ManualClock
from active_quoting.strategy.config import AlertsConfig, ConfigError, load_config
from test_alerts_limits import receiver

TOKEN = "123456:test-token-not-real"


@pytest.mark.asyncio
async def test_telegram_and_webhook_dedupe_rate_limit_critical_and_batched_fills(caplog):
    received, runner, url = await receiver()
    clock = ManualClock(1000.0)
    cfg = AlertsConfig(telegram_token=TOKEN, telegram_chat_id="42", webhook_url=url + "/hook", telegram_api=url,
                       min_interval_seconds=Decimal(60), max_per_minute=3, fill_batch_seconds=Decimal(5))  # fmt: skip
    alerts = Alerts(cfg, clock=clock)
    alerts.start()
    try:
        assert alerts.notify("disconnect", "market channel lost")
        assert not alerts.notify("disconnect", "market channel lost")  # duplicate within a minute
        assert alerts.notify("desync", "book desynced")
        assert alerts.notify("error", "http 500")
        assert not alerts.notify("error", "another")  # over 3 per minute
        assert alerts.notify("circuit", "HALTED: user channel lost", critical=True)  # past the per-minute cap
        assert alerts.notify("circuit", "HALTED: kill switch", critical=True)
        assert not alerts.notify("circuit", "HALTED: user channel lost", critical=True)  # a repeat: held
        alerts.fill("BUY 10 Up @ 0.48")
        alerts.fill("SELL 5 Up @ 0.52")
        alerts.flush_fills()
        assert (alerts.suppressed, alerts.dropped) == (2, 1)
        clock.advance(6)
        alerts.flush_fills()
        await asyncio.wait_for(alerts.queue.join(), 5)
    finally:
        await alerts.stop()
        await runner.cleanup()
    tg = [body for path, body in received if path.startswith("/bot")]
    hooks = [body for path, body in received if path == "/hook"]
    assert len(tg) == len(hooks) == 7  # the held repeat is summarised at shutdown, not lost
    assert all(b["chat_id"] == "42" for b in tg) and sum("🚨" in b["text"] for b in tg) == 3
    assert hooks[-2]["kind"] == "fills" and "2 fill(s)" in hooks[-2]["message"] and "SELL 5 Up" in hooks[-2]["message"]
    assert hooks[-1]["message"] == "HALTED: user channel lost (repeated 1 more time(s))" and hooks[-1]["critical"]
    assert TOKEN not in caplog.text and TOKEN not in repr(cfg)


@pytest.mark.asyncio
async def test_failures_are_counted_without_leaking_the_token(caplog):
    cfg = AlertsConfig(telegram_token=TOKEN, telegram_chat_id="1", telegram_api="http://127.0.0.1:9")
    alerts = Alerts(cfg)
    alerts.start()
    with caplog.at_level(logging.WARNING):
        alerts.notify("error", "x", critical=True)
        await asyncio.wait_for(alerts.queue.join(), 10)
        await alerts.stop()
    assert alerts.failed == 1 and TOKEN not in caplog.text


def test_off_without_config_and_config_validation(caplog):
    alerts = Alerts(AlertsConfig())
    assert not alerts.enabled and not alerts.notify("x", "y", critical=True)
    with pytest.raises(ConfigError, match="alerts.telegram_chat_id"):
        load_config(env={"AQ_ALERTS_TELEGRAM_TOKEN": TOKEN})
    with pytest.raises(ConfigError, match="alerts.webhook_url"):
        load_config(env={"AQ_ALERTS_WEBHOOK_URL": "ftp://x"})
    cfg = load_config(env={"AQ_ALERTS_TELEGRAM_TOKEN": TOKEN, "AQ_ALERTS_TELEGRAM_CHAT_ID": "7"})
    assert cfg.alerts.telegram_chat_id == "7" and TOKEN not in repr(cfg)
