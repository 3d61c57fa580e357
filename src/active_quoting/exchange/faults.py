"""Scripted misbehaviour of the embedded exchange, from Python or a scenario file: every
failure the real venue has shown (POLYMARKET.md §4.5, §10), on demand."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from active_quoting import core

_log = logging.getLogger(__name__)


@dataclass
class Faults:
    """Scripted misbehaviour, switched on from tests or a scenario file."""

    freeze_market: bool = False  # sockets stay open and answer PONG, but no data is sent
    drop_pong: bool = False
    http_status_queue: deque[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=deque)
    restart_until: float = 0.0  # 425 on order endpoints until then (monotonic)
    restart_retry_after: bool = False  # the 425s carry Retry-After (seconds left); the venue's docs show none
    post_only_until: float = 0.0  # then 503 post_only_mode for non-post-only orders
    cancel_only_until: float = 0.0  # 503 cancel-only on submits until then; cancels still work
    cancel_only_retry_after: float | None = None  # the Retry-After those 503s carry (None: no header)
    rate_limit_next: int = 0  # the next N private requests get 429
    rate_limit_retry_after: float = 1.0  # the Retry-After those 429s carry
    server_error_share: float = 0.0  # share of order submits answered 500 (not placed)
    timeout_after_place: int = 0  # the next N submits are placed, then the answer is held back
    hold_seconds: float = 10.0
    # The next N cancel requests (DELETE /order, /orders, /cancel-all, /cancel-market-orders) are
    # carried out, then their answer is held back cancel_hold_seconds: the caller times out not
    # knowing which of its orders went.
    timeout_after_cancel: int = 0
    cancel_hold_seconds: float = 10.0
    duplicate_user_trades: bool = False
    delay_user_ms: int = 0
    reorder_user: bool = False
    duplicated: int = 0  # user trade messages sent twice (what duplicate_user_trades did)
    delayed: int = 0  # user messages held back (what delay_user / reorder_user did)
    slow_gamma_s: float = 0.0  # every Gamma answer waits this long (discovery stuck)
    slow_data_s: float = 0.0  # every /data/orders and /data/trades answer waits this long (reconciliation stuck)
    # What the state faults answered (proof that they fired): 425s, 503 cancel-only, 503
    # post-only mode, 429s of rate_limit_next.
    restart_answers: int = 0
    cancel_only_answers: int = 0
    post_only_answers: int = 0
    rate_limit_answers: int = 0
    held_cancels: int = 0  # cancel answers held back by timeout_after_cancel

    def start_restart(
        self, now: float, restart_s: float = 90.0, post_only_s: float = 120.0, retry_after: bool = False
    ) -> None:
        """From ``now`` (the exchange clock's monotonic time): 425 for restart_s (with
        ``Retry-After`` when ``retry_after``), then post-only."""
        self.restart_retry_after = retry_after
        self.restart_until = now + restart_s
        self.post_only_until = now + restart_s + post_only_s

    def start_rate_limit(self, count: int, retry_after: float = 1.0) -> None:
        """The next ``count`` private requests are answered 429 with ``Retry-After: retry_after``."""
        self.rate_limit_next = count
        self.rate_limit_retry_after = retry_after

    def start_cancel_only(self, now: float, seconds: float = 60.0, retry_after: float | None = None) -> None:
        """From ``now``: submits answered 503 cancel-only for ``seconds`` (with ``Retry-After:
        retry_after`` when given); cancels are still accepted, as on the venue."""
        self.cancel_only_until = now + seconds
        self.cancel_only_retry_after = retry_after


def load_scenario(ex: Any, path: str | Path) -> list[tuple[float, str, dict[str, Any]]]:
    """A scenario file: JSON list of {"at": seconds, "fault": name, ...args}. Returns the plan;
    :func:`run_scenario` plays it."""
    plan = orjson.loads(Path(path).read_bytes())
    if not isinstance(plan, list):
        raise ValueError(f"{path}: a scenario is a JSON list of steps")
    steps = []
    for i, step in enumerate(plan):
        if not isinstance(step, dict) or "fault" not in step:
            raise ValueError(f"{path}: step {i} needs a 'fault'")
        args = {k: v for k, v in step.items() if k not in ("at", "fault")}
        steps.append((float(step.get("at", 0)), str(step["fault"]), args))
    unknown = [name for _, name, _ in steps if name not in FAULTS]
    if unknown:
        raise ValueError(f"{path}: unknown faults {unknown}; known: {sorted(FAULTS)}")
    return sorted(steps, key=lambda s: s[0])


async def run_scenario(ex: Any, steps: list[tuple[float, str, dict[str, Any]]]) -> None:
    start = ex.clock.monotonic()
    for at, name, args in steps:
        await ex.clock.sleep(max(0.0, start + at - ex.clock.monotonic()))
        _log.warning("scenario: %s %s", name, args)
        result = FAULTS[name](ex, **args)
        if asyncio.iscoroutine(result):
            await result


FAULTS: dict[str, Callable[..., Any]] = {
    "drop_ws": lambda ex, channel="market": ex.drop_sockets(channel),
    "freeze_market": lambda ex, on=True: setattr(ex.faults, "freeze_market", on),
    "drop_pong": lambda ex, on=True: setattr(ex.faults, "drop_pong", on),
    "delay_user": lambda ex, ms=500: setattr(ex.faults, "delay_user_ms", ms),
    "reorder_user": lambda ex, on=True: setattr(ex.faults, "reorder_user", on),
    "duplicate_user_trades": lambda ex, on=True: setattr(ex.faults, "duplicate_user_trades", on),
    "engine_restart": lambda ex, restart_s=90.0, post_only_s=120.0, retry_after=False: ex.faults.start_restart(
        ex.clock.monotonic(), restart_s, post_only_s, retry_after
    ),
    "cancel_only": lambda ex, seconds=60.0, retry_after=None: ex.faults.start_cancel_only(
        ex.clock.monotonic(), seconds, retry_after
    ),
    "rate_limit_burst": lambda ex, count=10, retry_after=1.0: ex.faults.start_rate_limit(count, retry_after),
    "server_errors": lambda ex, share=0.2: setattr(ex.faults, "server_error_share", share),
    "timeout_after_place": lambda ex, count=1, hold_seconds=10.0: (
        setattr(ex.faults, "timeout_after_place", count),
        setattr(ex.faults, "hold_seconds", hold_seconds),
    ),
    "timeout_after_cancel": lambda ex, count=1, hold_seconds=10.0: (
        setattr(ex.faults, "timeout_after_cancel", count),
        setattr(ex.faults, "cancel_hold_seconds", hold_seconds),
    ),
    "malformed_frame": lambda ex, payload="{not json": ex.send_raw_market(payload.encode()),
    "tick_size_change": lambda ex, market, tick="0.001": ex.force_tick_size(market, core.parse_price(tick)),
    "invalidate_orders": lambda ex, address: ex.invalidate_orders(address),
    "slow_gamma": lambda ex, seconds=5.0: setattr(ex.faults, "slow_gamma_s", seconds),
    "slow_data": lambda ex, seconds=5.0: setattr(ex.faults, "slow_data_s", seconds),
}
