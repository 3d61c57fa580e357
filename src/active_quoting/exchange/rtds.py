"""The embedded exchange's real-time data socket (RTDS, POLYMARKET.md §12): reference prices of
the flow's latent underlying, in the venue's shapes.

Subscribe / unsubscribe with ``{"action", "subscriptions": [{"topic", "type", "filters"}]}``;
``crypto_prices_chainlink`` filters are a JSON object as a string naming one slash symbol
(empty: every symbol), ``crypto_prices`` filters a comma list of pairs (empty: every pair).
Messages ``{"topic","type":"update","timestamp","payload":{"symbol","timestamp","value"}}``.
The Chainlink topic publishes at most once per second of the exchange clock with a
second-aligned payload timestamp (as the real feed does); the Binance topic on every flow step
where the price changed. Values are written as exact decimals with 8 places (units of 1e-8),
never through a float's repr. Frames leave ``delay_ms`` after publication (the market-data
delay). PING/PONG is the exchange's common WebSocket loop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from active_quoting.aio import TaskSet
from active_quoting.clock import Clock
from active_quoting.venue.spot_feed import BINANCE_TOPIC, CHAINLINK_TOPIC, PRICE_TYPE, SPOT_SCALE

_log = logging.getLogger(__name__)

ALL = None  # a topic subscribed without a symbol filter


def spot_units(price: float) -> int:
    """A float price in units of 1e-8, rounded half to even from its exact binary value."""
    return round(Fraction(price) * SPOT_SCALE)


def format_units(units: int) -> str:
    whole, frac = divmod(units, SPOT_SCALE)
    return f"{whole}.{frac:08d}"


def _symbols(topic: str, filters: object) -> set[str] | None:
    """The symbols a subscription's ``filters`` names; None for every symbol. ValueError on a
    filter of the wrong shape (the socket is then closed, as the venue may)."""
    if filters in (None, ""):
        return ALL
    if not isinstance(filters, str):
        raise ValueError(f"{topic}: filters must be a string")
    if topic == CHAINLINK_TOPIC:
        named = json.loads(filters)
        if not isinstance(named, dict) or not isinstance(named.get("symbol"), str):
            raise ValueError(f"{topic}: filters must name a symbol: {filters[:60]!r}")
        return {named["symbol"].lower()}
    return {s.strip().lower() for s in filters.split(",") if s.strip()}


class RtdsHub:
    """Subscribers of the RTDS socket and what each asked for; publication of spot prices."""

    def __init__(
        self, send: Callable[[Any, bytes, float], None], clock: Clock, delay_ms: int = 0, chainlink_lag_ms: int = 0
    ) -> None:
        self._send = send
        self.clock = clock
        self.delay_ms = delay_ms
        self.chainlink_lag_ms = chainlink_lag_ms
        self._pending = TaskSet(_log)  # lagged Chainlink frames not yet released
        # socket -> topic -> symbols (ALL: every symbol)
        self.sockets: dict[Any, dict[str, set[str] | None]] = {}
        self.frozen = False  # publishes nothing (a feed outage), sockets stay open
        self.published: dict[str, int] = {CHAINLINK_TOPIC: 0, BINANCE_TOPIC: 0}
        self.ignored_subscriptions = 0  # topics the hub does not serve
        self._chainlink_second: dict[str, int] = {}
        self._binance_last: dict[str, int] = {}

    @property
    def active(self) -> bool:
        """Someone is subscribed (the flow skips the price conversion otherwise)."""
        return bool(self.sockets)

    def on_message(self, ws: Any, msg: Any) -> None:
        """A subscribe or unsubscribe message. ValueError/KeyError/TypeError on a bad one."""
        action = msg["action"]
        if action not in ("subscribe", "unsubscribe"):
            raise ValueError(f"unknown action {action!r}")
        subs = self.sockets.setdefault(ws, {})
        for sub in msg["subscriptions"]:
            topic = sub["topic"]
            if topic not in (CHAINLINK_TOPIC, BINANCE_TOPIC):
                self.ignored_subscriptions += 1
                continue
            symbols = _symbols(topic, sub.get("filters"))
            if action == "subscribe":
                have = subs.get(topic, set())
                subs[topic] = ALL if symbols is ALL or have is ALL else have | symbols
            elif symbols is ALL:
                subs.pop(topic, None)
            elif topic in subs:
                have = subs[topic]
                if have is not ALL:
                    have -= symbols
                    if not have:
                        del subs[topic]

    async def drop(self) -> None:
        """Close every RTDS socket (clients reconnect)."""
        for ws in list(self.sockets):
            await ws.close()

    def cancel_pending(self) -> None:
        """Lagged frames not yet released are dropped (the exchange stops)."""
        self._pending.cancel()

    def publish(self, asset: str, units: int, now: float) -> None:
        """The underlying of ``asset`` is ``units`` (1e-8 USD) at exchange time ``now``."""
        if self.frozen:
            return
        now_ms = int(now * 1000)
        second = now_ms // 1000
        if second > self._chainlink_second.get(asset, -1):
            self._chainlink_second[asset] = second
            release = second * 1000 + self.chainlink_lag_ms
            if self.chainlink_lag_ms and release / 1000 > now:  # stamped at the second, heard lag_ms after it
                self._later(release, CHAINLINK_TOPIC, f"{asset}/usd", units, second * 1000, release)
            else:
                self._broadcast(CHAINLINK_TOPIC, f"{asset}/usd", units, second * 1000, now_ms)
        if units != self._binance_last.get(asset):
            self._binance_last[asset] = units
            self._broadcast(BINANCE_TOPIC, f"{asset}usdt", units, now_ms, now_ms)

    def _later(self, at_ms: int, *frame: Any) -> None:
        async def release() -> None:
            await self.clock.sleep(at_ms / 1000 - self.clock.time())  # the task may start a step later
            if not self.frozen:
                self._broadcast(*frame)

        self._pending.spawn(release())

    def _broadcast(self, topic: str, symbol: str, units: int, ts_ms: int, now_ms: int) -> None:
        targets = []
        for ws, subs in self.sockets.items():
            if topic in subs:
                symbols = subs[topic]
                if symbols is ALL or symbol in symbols:
                    targets.append(ws)
        if not targets:
            return
        self.published[topic] += 1
        frame = (
            f'{{"topic":"{topic}","type":"{PRICE_TYPE}","timestamp":{now_ms},'
            f'"payload":{{"symbol":"{symbol}","timestamp":{ts_ms},"value":{format_units(units)}}}}}'
        ).encode()
        for ws in targets:
            # the delay rides in the socket's own queue: frames due at one instant keep their order
            self._send(ws, frame, self.delay_ms / 1000)
