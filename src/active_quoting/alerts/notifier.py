"""Alerts to Telegram (Bot API ``sendMessage``) and a generic JSON webhook.

``notify`` never blocks the trading loop: alerts are queued and a worker sends them. The same
alert (kind and text) within ``min_interval_seconds`` is suppressed, and non-critical alerts
beyond ``max_per_minute`` are dropped; both are counted. A critical alert (circuit breaker
halts, the kill switch, a lost user channel) always goes out the first time and is never
dropped by the per-minute cap, but its repeats within ``min_interval_seconds`` are held back
and summarised with their count once the interval has passed (a failing quote pass would
otherwise send ~10 messages a second). Fills are batched into one message per
``fill_batch_seconds``. The worker survives anything a delivery raises (logged, counted).
With no destination configured alerts are off, and the bot says so once at startup. The
Telegram token and the webhook URL never appear in logs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

import aiohttp

from active_quoting.clock import SYSTEM, Clock
from active_quoting.strategy.config import AlertsConfig

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    kind: str
    message: str
    critical: bool
    t: float


class Alerts:
    def __init__(self, cfg: AlertsConfig, clock: Clock = SYSTEM) -> None:
        self.cfg = cfg
        self.clock = clock
        self.queue: asyncio.Queue[Alert] | None = None
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}  # critical repeats held back, to summarise
        self._recent: deque[float] = deque()
        self._fills: list[str] = []
        self._fills_since = 0.0
        self.sent = 0
        self.suppressed = 0
        self.dropped = 0
        self.failed = 0
        self.worker_errors = 0
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.cfg.telegram_token or self.cfg.webhook_url)

    def notify(self, kind: str, message: str, critical: bool = False, rate_limited: bool = True) -> bool:
        """Queue an alert; returns False when it is suppressed, dropped, or alerts are off.
        Batched fills are already bounded by their batch window (``rate_limited=False``)."""
        if not self.enabled:
            return False
        now = self.clock.time()
        key = (kind, message)
        last = self._last.get(key)
        repeat = last is not None and now - last < float(self.cfg.min_interval_seconds)
        if critical:
            if repeat:
                self._held[key] = self._held.get(key, 0) + 1
                self.suppressed += 1
                return False
            held = self._held.pop(key, 0)
            if held:  # repeats not yet summarised by flush_held
                message += f" (repeated {held} more time(s) before this)"
        else:
            if repeat:
                self.suppressed += 1
                return False
            while self._recent and now - self._recent[0] > 60:
                self._recent.popleft()
            if rate_limited and len(self._recent) >= self.cfg.max_per_minute:
                self.dropped += 1
                return False
            if rate_limited:
                self._recent.append(now)
        self._last[key] = now
        self._put(Alert(kind, message, critical, now))
        return True

    def _put(self, alert: Alert) -> None:
        if self.queue is None:
            self.queue = asyncio.Queue()
        self.queue.put_nowait(alert)

    def flush_held(self, force: bool = False) -> int:
        """Send the summary of critical repeats whose interval has passed (all with ``force``);
        returns how many summaries were queued. Called with :meth:`flush_fills`."""
        now = self.clock.time()
        interval = float(self.cfg.min_interval_seconds)
        due = [k for k in self._held if force or now - self._last.get(k, now) >= interval]
        for kind, message in due:
            count = self._held.pop((kind, message))
            self._last[(kind, message)] = now
            self._put(Alert(kind, f"{message} (repeated {count} more time(s))", True, now))
        # what was last sent long enough ago no longer suppresses anything: forget it (messages
        # carry changing details, so the table would otherwise grow all day)
        stale = [k for k, t in self._last.items() if now - t >= interval and k not in self._held]
        for k in stale:
            del self._last[k]
        return len(due)

    def fill(self, text: str) -> None:
        """A fill, sent with the others of the same batch window."""
        if not self.enabled:
            return
        if not self._fills:
            self._fills_since = self.clock.time()
        self._fills.append(text)

    def flush_fills(self, force: bool = False) -> None:
        """Send the fill batch once its window has passed, and held critical summaries."""
        self.flush_held(force)
        if self._fills and (force or self.clock.time() - self._fills_since >= float(self.cfg.fill_batch_seconds)):
            lines, self._fills = self._fills, []
            self.notify("fills", f"{len(lines)} fill(s):\n" + "\n".join(lines[:50]), rate_limited=False)

    def start(self) -> None:
        if not self.enabled:
            _log.warning("alerts are off: no Telegram or webhook configured")
            return
        if self.queue is None:
            self.queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._worker(), name="aq-alerts")

    async def stop(self, drain_s: float = 2.0) -> None:
        self.flush_fills(force=True)
        if self._task is not None and self.queue is not None:
            try:
                await asyncio.wait_for(self.queue.join(), drain_s)
            except asyncio.TimeoutError:
                _log.warning("alerts: %d not delivered before shutdown", self.queue.qsize())
            self._task.cancel()
        if self._session is not None:
            await self._session.close()

    async def _worker(self) -> None:
        assert self.queue is not None
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        while True:
            alert = await self.queue.get()
            try:
                await self._deliver(alert)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad alert must not end all alerting
                self.worker_errors += 1
                # The type and the alert's kind only: the text of an error may carry a URL.
                _log.error("alert %s not delivered: unexpected %s", alert.kind, type(exc).__name__)
            finally:
                self.queue.task_done()

    async def _deliver(self, alert: Alert) -> None:
        assert self._session is not None
        text = ("🚨 " if alert.critical else "") + f"[active-quoting] {alert.kind}: {alert.message}"
        targets: list[tuple[str, str, dict[str, object]]] = []
        if self.cfg.telegram_token:
            url = f"{self.cfg.telegram_api.rstrip('/')}/bot{self.cfg.telegram_token}/sendMessage"
            targets.append(("telegram", url, {"chat_id": self.cfg.telegram_chat_id, "text": text}))
        if self.cfg.webhook_url:
            body = {"kind": alert.kind, "message": alert.message, "critical": alert.critical, "t": alert.t}
            targets.append(("webhook", self.cfg.webhook_url, body))
        for name, url, body in targets:
            try:
                async with self._session.post(url, json=body) as resp:
                    if resp.status >= 300:
                        raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
                self.sent += 1
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                self.failed += 1
                # Never the URL: it carries the bot token.
                _log.warning("alert to %s failed (%s)", name, type(exc).__name__)
