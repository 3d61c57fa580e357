"""Risk manager and circuit breaker.

Global states and the share of the position limits they allow:

    NORMAL 100 %  ->  WARNING 50 %  ->  HALTED 0 %  ->  RECOVERING 25 %  -> WARNING -> NORMAL

* market-channel loss -> WARNING; user-channel loss -> HALTED with cancel-all (order state is
  unknown without it);
* a stale feed is no market event for ``stale_feed_seconds`` AND order state that cannot be
  confirmed (a quiet market with a live user channel is not stale) -> HALTED;
* ``max_consecutive_errors`` errors in a row -> HALTED; a success resets the count; venue
  restarts (425) and post-only rejections are not errors;
* drawdown (realized + unrealized, from the high-water mark) past the per-market limit stops
  that market; past the global limit it trips the kill switch;
* the kill switch cancels everything and stays down until an operator clears it.

Recovery: once every cause of a halt is gone, each ``circuit_breaker_recovery_seconds`` without
new trouble steps back one state. Every transition is a :class:`RiskEvent` with its reason.
Pure decision code: the caller passes the clock (milliseconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from active_quoting.model import NOT_ERRORS
from active_quoting.strategy.config import RiskConfig

NORMAL, WARNING, HALTED, RECOVERING = "NORMAL", "WARNING", "HALTED", "RECOVERING"
MULTIPLIER_PCT = {NORMAL: 100, WARNING: 50, HALTED: 0, RECOVERING: 25}
_STEP_BACK = {HALTED: RECOVERING, RECOVERING: WARNING, WARNING: NORMAL}
_SEVERITY = {NORMAL: 0, WARNING: 1, RECOVERING: 1, HALTED: 2}


@dataclass(frozen=True)
class RiskEvent:
    t_ms: int
    scope: str  # "global" or a market id
    old: str
    new: str
    reason: str
    cancel_all: bool = False


class RiskManager:
    def __init__(self, cfg: RiskConfig | None = None) -> None:
        cfg = cfg or RiskConfig()
        self.max_dd_market = Fraction(cfg.max_drawdown_per_market_usdc)
        self.max_dd_global = Fraction(cfg.max_drawdown_global_usdc)
        self.max_errors = cfg.max_consecutive_errors
        self.recovery_ms = int(cfg.circuit_breaker_recovery_seconds * 1000)
        self.stale_ms = int(cfg.stale_feed_seconds * 1000)
        self.state = NORMAL
        self.killed = False
        self.kill_reason = ""
        self.consecutive_errors = 0
        self.errors_by_kind: dict[str, int] = {}
        self.events: list[RiskEvent] = []
        # active causes of trouble -> the state they hold the breaker at (at least)
        self._causes: dict[str, str] = {}
        self._calm_since = 0
        self._market_halted: dict[str, str] = {}
        self._peak: dict[str, Fraction] = {}
        self._pnl: dict[str, Fraction] = {}
        self._peak_global = Fraction(0)

    # -- transitions ------------------------------------------------------------------

    def _go(self, now_ms: int, new: str, reason: str, cancel_all: bool = False) -> None:
        if new != self.state:
            self.events.append(RiskEvent(now_ms, "global", self.state, new, reason, cancel_all))
            self.state = new
        elif cancel_all:
            self.events.append(RiskEvent(now_ms, "global", self.state, new, reason, True))
        self._calm_since = now_ms

    def _raise(self, now_ms: int, cause: str, level: str, reason: str) -> None:
        self._causes[cause] = level
        if _SEVERITY[level] > _SEVERITY[self.state] or (level == HALTED and self.state != HALTED):
            self._go(now_ms, level, reason, cancel_all=level == HALTED)
        else:
            self._calm_since = now_ms

    def _clear(self, now_ms: int, cause: str) -> None:
        # Calm is counted from the moment the last trouble ended, not from when it began.
        if self._causes.pop(cause, None) is not None:
            self._calm_since = now_ms

    # -- inputs -----------------------------------------------------------------------

    def on_market_channel(self, now_ms: int, connected: bool) -> None:
        if connected:
            self._clear(now_ms, "market_channel")
        else:
            self._raise(now_ms, "market_channel", WARNING, "market channel lost")

    def on_user_channel(self, now_ms: int, connected: bool) -> None:
        if connected:
            self._clear(now_ms, "user_channel")
        else:
            self._raise(now_ms, "user_channel", HALTED, "user channel lost: order state unknown, cancel all")

    def check_stale(self, now_ms: int, last_market_event_ms: int, order_state_confirmed: bool) -> bool:
        """Stale = no market events past the threshold AND order state cannot be confirmed."""
        stale = now_ms - last_market_event_ms > self.stale_ms and not order_state_confirmed
        if stale:
            self._raise(now_ms, "stale_feed", HALTED, "stale feed: no market events and order state unconfirmed")
        else:
            self._clear(now_ms, "stale_feed")
        return stale

    def on_error(self, now_ms: int, kind: str) -> None:
        """A failed venue call, classified by the venue layer (``engine_restart`` = 425 and
        ``post_only_reject`` are counted by kind but are not errors)."""
        self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1
        if kind in NOT_ERRORS:
            return
        self.consecutive_errors += 1
        if self.consecutive_errors >= self.max_errors:
            self._raise(now_ms, "errors", HALTED, f"{self.consecutive_errors} consecutive errors (last: {kind})")

    def on_success(self, now_ms: int) -> None:
        self.consecutive_errors = 0
        self._clear(now_ms, "errors")

    def on_pnl(self, now_ms: int, market: str, pnl: Fraction) -> None:
        """Total P&L (realized + unrealized) of one market now; drawdown is from its peak."""
        self._pnl[market] = pnl
        peak = max(self._peak.get(market, Fraction(0)), pnl)
        self._peak[market] = peak
        if peak - pnl >= self.max_dd_market and market not in self._market_halted:
            reason = f"drawdown {float(peak - pnl):.2f} USDC >= per-market limit {float(self.max_dd_market):.2f}"
            self._market_halted[market] = reason
            self.events.append(RiskEvent(now_ms, market, NORMAL, HALTED, reason, cancel_all=True))
        total = sum(self._pnl.values(), Fraction(0))
        self._peak_global = max(self._peak_global, total)
        if self._peak_global - total >= self.max_dd_global and not self.killed:
            self.kill(
                now_ms,
                f"global drawdown {float(self._peak_global - total):.2f} USDC >= limit {float(self.max_dd_global):.2f}",
            )

    def kill(self, now_ms: int, reason: str) -> None:
        """Kill switch: cancel everything and stay down until :meth:`clear_kill_switch`."""
        self.killed = True
        self.kill_reason = reason
        self.events.append(RiskEvent(now_ms, "global", self.state, HALTED, f"kill switch: {reason}", cancel_all=True))
        self.state = HALTED
        self._calm_since = now_ms

    def clear_kill_switch(self, now_ms: int, operator: str) -> None:
        if not self.killed:
            return
        self.killed = False
        self._causes.pop("errors", None)
        self.consecutive_errors = 0
        self.events.append(RiskEvent(now_ms, "global", HALTED, HALTED, f"kill switch cleared by {operator}"))
        self._calm_since = now_ms

    def clear_market(self, now_ms: int, market: str, operator: str) -> None:
        """Resume a market stopped by its drawdown limit; its high-water mark restarts."""
        if self._market_halted.pop(market, None) is not None:
            self._peak[market] = self._pnl.get(market, Fraction(0))
            self.events.append(RiskEvent(now_ms, market, HALTED, NORMAL, f"cleared by {operator}"))

    def tick(self, now_ms: int) -> None:
        """Advance recovery: one step back per calm recovery period once no cause remains."""
        if self.killed:
            return
        floor = max((_SEVERITY[level] for level in self._causes.values()), default=0)
        if self.state == NORMAL or _SEVERITY[self.state] < floor:
            return
        if self.state == WARNING and floor >= 1:
            return
        if now_ms - self._calm_since >= self.recovery_ms:
            if self.state == HALTED and floor >= 2:
                return
            nxt = _STEP_BACK[self.state]
            self._go(now_ms, nxt, f"recovery: calm for {self.recovery_ms} ms")

    # -- outputs ----------------------------------------------------------------------

    def multiplier_pct(self, market: str | None = None) -> int:
        """Share of the position limits allowed now (0 = do not quote)."""
        if self.killed or (market is not None and market in self._market_halted):
            return 0
        return MULTIPLIER_PCT[self.state]

    def can_quote(self, market: str | None = None) -> bool:
        return self.multiplier_pct(market) > 0

    def market_halt_reason(self, market: str) -> str | None:
        return self._market_halted.get(market)

    def drain_events(self) -> list[RiskEvent]:
        out, self.events = self.events, []
        return out
