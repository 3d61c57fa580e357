"""Finding the up/down windows to quote through the Gamma API (POLYMARKET.md §8).

Slugs are ``{asset}-updown-{minutes}m-{window start}``; a window's record carries the
condition id, ``clobTokenIds`` and ``outcomes`` as JSON-encoded strings in [Up, Down] order,
the tick, the minimum size and the fee schedule.
"""

from __future__ import annotations

import calendar
import json
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import aiohttp

from active_quoting import core
from active_quoting.errors import ActiveQuotingError


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


def window_slug(asset: str, window_s: int, start: int) -> str:
    """``{asset}-updown-{15m|5m|...}-{start}``; windows shorter than a minute (demos, tests)
    are labelled in seconds."""
    label = f"{window_s // 60}m" if window_s % 60 == 0 else f"{window_s}s"
    return f"{asset}-updown-{label}-{start}"


def _iso_to_unix(text: str) -> int:
    return calendar.timegm(time.strptime(text.replace("Z", "")[:19], "%Y-%m-%dT%H:%M:%S"))


def parse_window(asset: str, record: dict[str, Any]) -> WindowInfo:
    try:
        tokens = (
            json.loads(record["clobTokenIds"]) if isinstance(record["clobTokenIds"], str) else record["clobTokenIds"]
        )
        outcomes = json.loads(record["outcomes"]) if isinstance(record["outcomes"], str) else record["outcomes"]
        if [o.lower() for o in outcomes] != ["up", "down"] or len(tokens) != 2:
            raise DiscoveryError(f"{record.get('slug')}: expected outcomes [Up, Down], got {outcomes}")
        fees = record.get("feeSchedule") or {}
        start = _iso_to_unix(record["eventStartTime"])
        end = _iso_to_unix(record["endDate"])
        return WindowInfo(
            asset=asset,
            slug=record["slug"],
            condition_id=record["conditionId"],
            up=str(tokens[0]),
            down=str(tokens[1]),
            start=start,
            end=end,
            tick=core.parse_price(repr(float(record.get("orderPriceMinTickSize", 0.01))), "orderPriceMinTickSize"),
            min_size=core.parse_size(str(record.get("orderMinSize", 5)), "orderMinSize"),
            fee_rate=Fraction(str(fees.get("rate", 0))),
            fee_exponent=int(fees.get("exponent", 1)),
            rebate_share=Fraction(str(fees.get("rebateRate", 0))),
            closed=bool(record.get("closed", False)),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise DiscoveryError(f"{record.get('slug', '?')}: unusable market record ({exc})") from None


class Discovery:
    def __init__(self, gamma_url: str, window_s: int = 900, timeout: float = 5.0) -> None:
        self.gamma_url = gamma_url.rstrip("/")
        self.window_s = window_s
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def slug(self, asset: str, start: int) -> str:
        return window_slug(asset, self.window_s, start)

    async def window(self, asset: str, start: int) -> WindowInfo | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        async with self._session.get(f"{self.gamma_url}/markets", params={"slug": self.slug(asset, start)}) as resp:
            if resp.status != 200:
                return None
            rows = await resp.json()
        return parse_window(asset, rows[0]) if rows else None

    async def current_and_next(self, asset: str, now: float) -> list[WindowInfo]:
        start = int(now) // self.window_s * self.window_s
        found = []
        for s in (start, start + self.window_s):
            w = await self.window(asset, s)
            if w is not None and not w.closed:
                found.append(w)
        return found
