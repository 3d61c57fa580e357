"""Finding the up/down windows to quote through the Gamma API (POLYMARKET.md §8).

Slugs are ``{asset}-updown-{minutes}m-{window start}``; a window's record carries the
condition id, ``clobTokenIds`` and ``outcomes`` as JSON-encoded strings in [Up, Down] order
(``positionIds`` instead of ``clobTokenIds`` on Protocol-V2 markets), the tick, the minimum
size and the fee schedule.

Gamma as the venue serves it: Cloudflare answers 403 to default client user-agents (a
browser-like one is sent); closed markets are omitted unless ``closed=true`` is asked; a new
window is listed before it accepts orders, and before the CLOB knows it (its
``/clob-markets/{condition_id}`` 404s for a while); ``priceToBeat`` appears only once the
previous window resolved. A window that cannot be traded yet is held back and asked for again
on the next pass, never given up on. Requests run concurrently (bounded by a semaphore), each
with a timeout; one failing window never hides the others.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import aiohttp

from active_quoting import core
from active_quoting.errors import ActiveQuotingError

if TYPE_CHECKING:
    from active_quoting.venue.rest import RestClient

_log = logging.getLogger(__name__)

# Cloudflare in front of Gamma refuses default client user-agents (Python-urllib, aiohttp).
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"


class DiscoveryError(ActiveQuotingError):
    """A market record that cannot be used (missing or malformed fields)."""


@dataclass(frozen=True)
class WindowInfo:
    asset: str
    slug: str
    condition_id: str
    up: str
    down: str
    start: int  # unix seconds
    end: int
    tick: int  # price units
    min_size: int  # micro-shares
    fee_rate: Fraction
    fee_exponent: int
    rebate_share: Fraction
    closed: bool
    accepting_orders: bool = True
    enable_order_book: bool = True
    fees_enabled: bool = True
    neg_risk: bool = False
    # The market's protocol: "v1" (clobTokenIds, the exchanges of CLOB V2) or "v2" (Protocol
    # V2: positionIds, ExchangeV3 signing).
    version: str = "v1"
    accepting_orders_since: int = 0  # unix seconds, 0 when Gamma does not say
    price_to_beat: Decimal | None = None  # the strike, once the previous window resolved
    # Seconds of the Chainlink TWAP the window settles on (``cryptoMarketConfig``; since
    # 2026-08-07), 0: the last price at the end (the point rule).
    twap_s: int = 0


def window_slug(asset: str, window_s: int, start: int) -> str:
    """``{asset}-updown-{15m|5m|...}-{start}``; windows shorter than a minute (demos, tests)
    are labelled in seconds."""
    label = f"{window_s // 60}m" if window_s % 60 == 0 else f"{window_s}s"
    return f"{asset}-updown-{label}-{start}"


def _iso_to_unix(text: str) -> int:
    return calendar.timegm(time.strptime(text.replace("Z", "").replace(" ", "T")[:19], "%Y-%m-%dT%H:%M:%S"))


def _json_list(value: object, name: str) -> list[Any]:
    """Gamma encodes its lists as JSON strings (decode twice); a real list is taken as is."""
    decoded = json.loads(value) if isinstance(value, str) else value
    if not isinstance(decoded, list):
        raise DiscoveryError(f"{name} is not a list: {value!r}")
    return decoded


def _decimal_text(value: object) -> str:
    # Gamma numbers switch between int and float (0.01, 5, 1): a float's shortest repr is the
    # decimal that was meant, never its binary expansion.
    return repr(value) if isinstance(value, float) else str(value)


def _flag(record: dict[str, Any], key: str, default: bool) -> bool:
    value = record.get(key)
    if value is None:  # Gamma omits absent values rather than sending null
        return default
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _price_to_beat(record: dict[str, Any]) -> Decimal | None:
    sources = [record.get("eventMetadata")]
    sources += [e.get("eventMetadata") for e in record.get("events") or () if isinstance(e, dict)]
    for meta in sources:
        if isinstance(meta, dict) and meta.get("priceToBeat") is not None:
            try:
                return Decimal(_decimal_text(meta["priceToBeat"]))
            except InvalidOperation:
                raise DiscoveryError(f"priceToBeat is not a number: {meta['priceToBeat']!r}") from None
    return None


def _twap_seconds(record: dict[str, Any]) -> int:
    cfg = record.get("cryptoMarketConfig")
    if not isinstance(cfg, dict) or not _flag(cfg, "twapEnabled", False):
        return 0
    seconds = cfg.get("twapLookbackSeconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | str) or not str(seconds).isdigit():
        raise DiscoveryError(f"cryptoMarketConfig.twapLookbackSeconds is not a whole number: {seconds!r}")
    return int(seconds)


def parse_window(asset: str, record: dict[str, Any]) -> WindowInfo:
    """One Gamma market object as the window the venue means (raises :class:`DiscoveryError`)."""
    try:
        version = str(record.get("version") or "v1").lower()
        ids_field = "positionIds" if version == "v2" and record.get("positionIds") else "clobTokenIds"
        tokens = _json_list(record[ids_field], ids_field)
        outcomes = _json_list(record["outcomes"], "outcomes")
        if [str(o).lower() for o in outcomes] != ["up", "down"] or len(tokens) != 2:
            raise DiscoveryError(f"expected outcomes [Up, Down] with two tokens, got {outcomes} / {tokens}")
        if not all(str(t).isdigit() for t in tokens):
            raise DiscoveryError(f"{ids_field} are not token ids: {tokens}")
        fees = record.get("feeSchedule") or {}
        accepting_since = record.get("acceptingOrdersTimestamp")
        return WindowInfo(
            asset=asset,
            slug=record["slug"],
            condition_id=record["conditionId"],
            up=str(tokens[0]),
            down=str(tokens[1]),
            start=_iso_to_unix(record["eventStartTime"]),
            end=_iso_to_unix(record["endDate"]),
            tick=core.parse_price(_decimal_text(record.get("orderPriceMinTickSize", 0.01)), "orderPriceMinTickSize"),
            min_size=core.parse_size(_decimal_text(record.get("orderMinSize", 5)), "orderMinSize"),
            fee_rate=Fraction(_decimal_text(fees.get("rate", 0))),
            fee_exponent=int(fees.get("exponent", 1)),
            rebate_share=Fraction(_decimal_text(fees.get("rebateRate", 0))),
            closed=_flag(record, "closed", False),
            accepting_orders=_flag(record, "acceptingOrders", False),
            enable_order_book=_flag(record, "enableOrderBook", True),
            fees_enabled=_flag(record, "feesEnabled", bool(fees)),
            neg_risk=_flag(record, "negRisk", False),
            version=version,
            accepting_orders_since=_iso_to_unix(accepting_since) if accepting_since else 0,
            price_to_beat=_price_to_beat(record),
            twap_s=_twap_seconds(record),
        )
    except DiscoveryError as exc:
        raise DiscoveryError(f"{record.get('slug', '?')}: {exc}") from None
    except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
        raise DiscoveryError(f"{record.get('slug', '?')}: unusable market record ({exc!r})") from None


class Discovery:
    """The current and next window of each asset, from Gamma (and, when a REST client is
    given, confirmed by the CLOB: a window the CLOB does not know yet is held back and asked
    for again on the next pass). ``counts`` says what was held back and why."""

    def __init__(
        self,
        gamma_url: str,
        window_s: int = 900,
        timeout: float = 5.0,
        *,
        clob: RestClient | None = None,
        concurrency: int = 8,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.gamma_url = gamma_url.rstrip("/")
        self.window_s = window_s
        self.timeout = timeout
        self.clob = clob
        self.user_agent = user_agent
        self.counts: Counter[str] = Counter()
        self._sem = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def slug(self, asset: str, start: int) -> str:
        return window_slug(asset, self.window_s, start)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": self.user_agent, "Accept": "application/json"},
            )
        return self._session

    async def record(self, slug: str, closed: bool = False) -> dict[str, Any] | None:
        """The Gamma market object of ``slug`` (None when Gamma does not list it). ``closed``
        asks for it even once closed (Gamma omits closed markets unless asked)."""
        params = {"slug": slug}
        if closed:
            params["closed"] = "true"
        async with self._sem, self._http().get(f"{self.gamma_url}/markets", params=params) as resp:
            if resp.status == 404:
                return None
            if resp.status != 200:
                raise DiscoveryError(f"Gamma answered {resp.status} for {slug}: {(await resp.text())[:200]}")
            rows = await resp.json(content_type=None)
        if not isinstance(rows, list):
            raise DiscoveryError(f"Gamma answered {str(rows)[:200]} for {slug}")
        return rows[0] if rows else None

    async def window(self, asset: str, start: int) -> WindowInfo | None:
        """The window of ``asset`` starting at ``start`` as Gamma lists it (None when not listed)."""
        row = await self.record(self.slug(asset, start))
        return parse_window(asset, row) if row is not None else None

    async def _confirmed(self, info: WindowInfo) -> WindowInfo | None:
        """The window with the CLOB's own word on it (tick, neg-risk, accepting orders,
        version), or None while the CLOB does not know it yet."""
        if self.clob is None:
            return info
        from active_quoting.venue.errors import VenueError

        try:
            async with self._sem:
                m = await self.clob.clob_market(info.condition_id)
        except VenueError as err:
            if err.status == 404:
                self.counts["clob_unknown"] += 1
                _log.info("%s: listed by Gamma, not yet known to the CLOB; asked again later", info.slug)
                return None
            raise
        return replace(
            info, tick=m.min_tick or info.tick, min_size=m.min_size or info.min_size, neg_risk=m.neg_risk,
            accepting_orders=info.accepting_orders and m.accepting_orders, version=(m.version or info.version).lower(),
        )  # fmt: skip

    async def _one(self, asset: str, start: int) -> WindowInfo | None:
        try:
            info = await self.window(asset, start)
            if info is None:
                self.counts["not_listed"] += 1
                return None
            return await self._confirmed(info)
        except DiscoveryError as exc:
            self.counts["bad_record"] += 1
            _log.warning("discovery: %s", exc)
        except (asyncio.TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.counts["request_failed"] += 1
            _log.warning("discovery of %s failed (%r); asked again next pass", self.slug(asset, start), exc)
        except ActiveQuotingError as exc:  # a VenueError from the CLOB check other than a 404
            self.counts["request_failed"] += 1
            _log.warning("discovery of %s: CLOB check failed (%s); asked again next pass", self.slug(asset, start), exc)
        return None

    async def windows(self, assets: list[str] | tuple[str, ...], now: float) -> list[WindowInfo]:
        """The current and next windows of every asset as listed (closed or not accepting
        orders included), all requested at once."""
        start = int(now) // self.window_s * self.window_s
        wanted = [(a, s) for a in assets for s in (start, start + self.window_s)]
        found = await asyncio.gather(*(self._one(a, s) for a, s in wanted))
        return [w for w in found if w is not None]

    async def discover(self, assets: list[str] | tuple[str, ...], now: float) -> list[WindowInfo]:
        """The windows that can be quoted now: open and accepting orders. Those listed but not
        accepting yet (Gamma lists a window before it opens) are counted and asked for again
        on the next pass."""
        out = []
        for w in await self.windows(assets, now):
            if w.closed:
                continue
            if not w.accepting_orders or not w.enable_order_book:
                self.counts["not_accepting"] += 1
                continue
            out.append(w)
        return out

    async def current_and_next(self, asset: str, now: float) -> list[WindowInfo]:
        return await self.discover([asset], now)
