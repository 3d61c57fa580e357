"""The venue's real-time data socket (RTDS, POLYMARKET.md §12): reference prices of the
underlyings the crypto up/down windows settle on, over picows.

Topics: ``crypto_prices_chainlink`` (the settlement feed; subscribe type ``*``, ``filters`` a
JSON object as a string naming one slash symbol, ``{"symbol":"btc/usd"}``) and optionally
``crypto_prices`` (Binance; type ``update``, ``filters`` a comma list ``btcusdt,ethusdt``).
Every message is ``{"topic","type","timestamp","payload":{"symbol","timestamp","value"}}``;
both documentation pages show price messages with type ``update`` (the Chainlink subscribe
type ``*`` is a wildcard, not a message type), and that is what is parsed: other types on a
price topic, and other topics, are counted and ignored.

Prices are fixed point: integer units of 1e-8 USD (:data:`SPOT_SCALE`), parsed from the JSON
number's own text (never through a float); digits past the 8th decimal are rounded half to
even. ``full_accuracy_value`` (an integer string scaled by 1e18, as the recorded Chainlink day
gives it) is preferred over ``value`` when a payload carries it.

The connection, text ``PING`` every 5 s with ``PONG`` expected, and reconnect with backoff are
the market channel's (:class:`~active_quoting.venue.ws.Connection`). Staleness is per asset and
source: no tick within ``stale_after_s`` on our clock, or no connection. A socket on which no
tick at all arrives for ``silent_reconnect_s`` (Chainlink publishes every second) is dropped
and reconnected, like a frozen market channel.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ssl import SSLContext

import msgspec
import orjson

from active_quoting.aio import cancel_and_wait
from active_quoting.clock import SYSTEM, Clock
from active_quoting.errors import FrameError
from active_quoting.venue.ws import PONG, Backoff, Connection

_log = logging.getLogger(__name__)

SPOT_SCALE = 10**8  # price units: 1e-8 USD
_SPOT_DECIMALS = 8
RTDS_URL = "wss://ws-live-data.polymarket.com"
CHAINLINK_TOPIC = "crypto_prices_chainlink"
BINANCE_TOPIC = "crypto_prices"
TOPICS = {"chainlink": CHAINLINK_TOPIC, "binance": BINANCE_TOPIC}
SOURCES = {topic: source for source, topic in TOPICS.items()}
PRICE_TYPE = "update"
_FULL_ACCURACY_SCALE = 10**18
# A JSON number (optionally inside a JSON string): no sign (a price is positive), no
# whitespace, no rational or special forms (inf, nan, 1/3).
_NUMBER = re.compile(rb"(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]{1,3})?")
_INTEGER = re.compile(r"[1-9][0-9]*")


class SpotFeedError(FrameError):
    """An RTDS frame that cannot be decoded into price ticks."""


@dataclass(frozen=True, slots=True)
class SpotTick:
    source: str  # "chainlink" | "binance"
    asset: str  # "btc", "eth", ... (lower case; from "btc/usd" or "btcusdt")
    price: int  # units of 1e-8 USD
    ts_ms: int  # the feed's own timestamp (payload.timestamp)


class _Payload(msgspec.Struct):
    symbol: str
    timestamp: int
    value: msgspec.Raw
    full_accuracy_value: str | None = None


class _Message(msgspec.Struct):
    topic: str = ""
    type: str = ""
    timestamp: int = 0
    payload: msgspec.Raw = msgspec.Raw(b"")


_frame_decoder = msgspec.json.Decoder(_Message | list[_Message])
_payload_decoder = msgspec.json.Decoder(_Payload)


def _half_even(n: int, divisor: int) -> int:
    """``n / divisor`` rounded half to even (``round`` of the exact Fraction), in integers."""
    q, rest = divmod(n, divisor)
    if 2 * rest > divisor or (2 * rest == divisor and q & 1):
        q += 1
    return q


def _units(value: bytes, frame: bytes) -> int:
    text = value[1:-1] if value[:1] == b'"' and value[-1:] == b'"' else value
    number = _NUMBER.fullmatch(text)
    if number is None:
        raise SpotFeedError(f"price value {value[:40]!r} is not a positive decimal number", frame)
    # Exact: the digits as one integer times a power of ten, rounded half to even at 1e-8.
    whole, frac, exp = number.groups()
    digits = frac[1:] if frac else b""
    shift = (int(exp[1:]) if exp else 0) - len(digits) + _SPOT_DECIMALS
    mantissa = int(whole + digits)
    units = mantissa * 10**shift if shift >= 0 else _half_even(mantissa, 10**-shift)
    if units <= 0:
        raise SpotFeedError(f"price value {value[:40]!r} is below 1e-8", frame)
    return units


def _asset(source: str, symbol: str, frame: bytes) -> str:
    s = symbol.lower()
    if source == "chainlink":
        base, slash, quote = s.partition("/")
        if slash and quote == "usd" and base.isalnum():
            return base
    elif s.endswith("usdt") and len(s) > 4 and s[:-4].isalnum():
        return s[:-4]
    raise SpotFeedError(f"unexpected {source} symbol {symbol[:20]!r}", frame)


def decode_rtds(data: bytes) -> tuple[list[SpotTick], int]:
    """The ticks of one frame, and how many of its messages were ignored (another topic, or a
    non-price type on a price topic). Raises :class:`SpotFeedError` on a malformed frame."""
    if not data or data == PONG:
        return [], 0
    try:
        decoded = _frame_decoder.decode(data)
    except msgspec.DecodeError as exc:  # includes ValidationError
        raise SpotFeedError(f"not an RTDS message ({exc})", data) from None
    messages = decoded if isinstance(decoded, list) else [decoded]
    ticks: list[SpotTick] = []
    ignored = 0
    for msg in messages:
        source = SOURCES.get(msg.topic)
        if source is None or msg.type != PRICE_TYPE:
            ignored += 1
            continue
        if not bytes(msg.payload):
            raise SpotFeedError(f"{msg.topic} message without a payload", data)
        try:
            p = _payload_decoder.decode(msg.payload)
        except msgspec.DecodeError as exc:
            raise SpotFeedError(f"bad {msg.topic} payload ({exc})", data) from None
        if p.full_accuracy_value is not None:
            if _INTEGER.fullmatch(p.full_accuracy_value) is None:
                raise SpotFeedError(f"full_accuracy_value {p.full_accuracy_value[:40]!r} is not an integer", data)
            price = _half_even(int(p.full_accuracy_value), _FULL_ACCURACY_SCALE // SPOT_SCALE)
            if price <= 0:
                raise SpotFeedError(f"full_accuracy_value {p.full_accuracy_value[:40]!r} is below 1e-8", data)
        else:
            price = _units(bytes(p.value), data)
        if p.timestamp <= 0:
            raise SpotFeedError(f"bad payload timestamp {p.timestamp}", data)
        ticks.append(SpotTick(source, _asset(source, p.symbol, data), price, p.timestamp))
    return ticks, ignored


def parse_rtds(data: bytes) -> list[SpotTick]:
    """The price ticks of one RTDS frame (PONG and empty frames: none). Raises
    :class:`SpotFeedError` on a malformed frame."""
    return decode_rtds(data)[0]


def subscribe_message(assets: Sequence[str], sources: Sequence[str], action: str = "subscribe") -> bytes:
    """The (un)subscribe message: one Chainlink subscription per asset (the documented filter
    names one symbol), one Binance subscription with a comma list."""
    subs: list[dict[str, str]] = []
    if "chainlink" in sources:
        for a in assets:
            subs.append(
                {"topic": CHAINLINK_TOPIC, "type": "*", "filters": orjson.dumps({"symbol": f"{a}/usd"}).decode()}
            )
    if "binance" in sources:
        subs.append({"topic": BINANCE_TOPIC, "type": PRICE_TYPE, "filters": ",".join(f"{a}usdt" for a in assets)})
    return orjson.dumps({"action": action, "subscriptions": subs})


@dataclass
class SpotFeedCounters:
    frames: int = 0  # every frame received, PONG included
    ticks: int = 0
    bad_frames: int = 0  # malformed: refused, logged
    ignored: int = 0  # messages of other topics or types, and ticks of assets not asked for
    reconnects: int = 0  # connections after the first
    silent_reconnects: int = 0  # of them, forced because no tick arrived for silent_reconnect_s
    out_of_order: int = 0  # ticks older than the newest known for their asset (passed on, not kept as last)
    handler_errors: int = 0  # on_tick raised


class SpotFeed:
    """Reference prices from RTDS for a set of assets; ``on_tick`` is called synchronously from
    the frame handler for every tick of an asset asked for."""

    def __init__(
        self,
        url: str,
        assets: Sequence[str],
        on_tick: Callable[[SpotTick], None],
        *,
        sources: Sequence[str] = ("chainlink",),
        clock: Clock = SYSTEM,
        stale_after_s: float = 5.0,
        ssl: SSLContext | None = None,
        ping_interval: float = 5.0,
        pong_timeout: float = 5.0,
        silent_reconnect_s: float = 15.0,
        backoff: Backoff | None = None,
    ) -> None:
        unknown = [s for s in sources if s not in TOPICS]
        if unknown or not sources:
            raise ValueError(f"spot feed sources must be among {sorted(TOPICS)}, got {list(sources)}")
        if stale_after_s <= 0:
            raise ValueError(f"stale_after_s must be positive, got {stale_after_s}")
        self.url = url
        self.assets = [a.lower() for a in dict.fromkeys(assets)]
        self.on_tick = on_tick
        self.sources = tuple(sources)
        self.clock = clock
        self.stale_after_s = stale_after_s
        self.silent_reconnect_s = silent_reconnect_s
        self.counters = SpotFeedCounters()
        self._wanted = frozenset(self.assets)
        self._last: dict[tuple[str, str], SpotTick] = {}
        self._arrived: dict[tuple[str, str], float] = {}  # clock.time() of the kept tick's arrival
        self._last_tick_mono = clock.monotonic()
        self.conn = Connection(
            url, lambda: subscribe_message(self.assets, self.sources), self._on_frame, self._on_state,
            name="rtds", ping_interval=ping_interval, pong_timeout=pong_timeout, backoff=backoff, clock=clock,
            ssl_context=ssl,
        )  # fmt: skip
        self._stopped = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, subscribe, and keep reconnecting with backoff until :meth:`stop` (or until
        this coroutine is cancelled: the connection is closed either way)."""
        if self._stopped.is_set():
            return
        self.conn.start()
        if self.silent_reconnect_s > 0:
            self._watch = asyncio.get_running_loop().create_task(self._silence_watch(), name="aq-rtds-silence")
        try:
            await self._stopped.wait()
        finally:
            if not self._stopped.is_set():  # cancelled rather than stopped: leave nothing running
                await self.stop()

    async def stop(self) -> None:
        self._stopped.set()
        await cancel_and_wait(self._watch)
        self._watch = None
        await self.conn.stop()

    @property
    def connected(self) -> bool:
        return self.conn.connected

    # -- reading ------------------------------------------------------------------------

    def last(self, asset: str, source: str | None = None) -> SpotTick | None:
        """The newest tick (by the feed's timestamp) of ``asset`` from ``source`` (default: the
        first source asked for), None before the first."""
        return self._last.get((source or self.sources[0], asset))

    def is_stale(self, asset: str, now: float, source: str | None = None) -> bool:
        """No connection, no tick yet, or the newest arrived more than ``stale_after_s`` before
        ``now`` (seconds on this feed's clock, ``clock.time()``)."""
        key = (source or self.sources[0], asset)
        arrived = self._arrived.get(key)
        return not self.conn.connected or arrived is None or now - arrived > self.stale_after_s

    # -- the hot path -------------------------------------------------------------------

    def _on_frame(self, conn: Connection, payload: bytes) -> None:
        c = self.counters
        c.frames += 1
        try:
            ticks, ignored = decode_rtds(payload)
        except SpotFeedError as exc:
            c.bad_frames += 1
            _log.warning("rtds frame refused: %s", exc)
            return
        c.ignored += ignored
        if not ticks:
            return
        now = self.clock.time()
        self._last_tick_mono = self.clock.monotonic()
        for tick in ticks:
            if tick.asset not in self._wanted:
                c.ignored += 1
                continue
            key = (tick.source, tick.asset)
            prev = self._last.get(key)
            if prev is None or tick.ts_ms >= prev.ts_ms:
                self._last[key] = tick
                self._arrived[key] = now
            else:
                c.out_of_order += 1
            c.ticks += 1
            try:
                self.on_tick(tick)
            except Exception:  # noqa: BLE001 - a listener's bug must not kill the price feed
                c.handler_errors += 1
                _log.exception("rtds: on_tick failed for %s", tick)

    def _on_state(self, conn: Connection, connected: bool) -> None:
        if connected:
            self._last_tick_mono = self.clock.monotonic()
            if conn.connects > 1:
                self.counters.reconnects += 1

    async def _silence_watch(self) -> None:
        period = min(1.0, self.silent_reconnect_s / 2)
        while True:
            await self.clock.sleep(period)
            silent = self.clock.monotonic() - self._last_tick_mono
            if self.conn.connected and silent >= self.silent_reconnect_s:
                self.counters.silent_reconnects += 1
                self._last_tick_mono = self.clock.monotonic()
                self.conn.reconnect(f"no price tick for {silent:.1f}s")
