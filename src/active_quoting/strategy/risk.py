"""Risk manager and circuit breaker.

Global states and the share of the position limits they allow:

    NORMAL 100 %  ->  WARNING 50 %  ->  HALTED 0 %  ->  RECOVERING 25 %  -> WARNING -> NORMAL

* market-channel loss -> WARNING; user-channel loss -> HALTED with cancel-all (order state is
  unknown without it);
* a stale feed (the design: "no WS events AND cannot confirm order state", not just a timer)
  is judged per quoted market: no book event of its tokens for ``stale_feed_seconds`` AND no
  REST confirmation that its book is unchanged (the market stream's freeze probe) -> that
  market stops (cancel its orders) until its feed is fresh again. The user channel, the other
  half of "order state", halts everything on its own when it is lost;
* errors: ``max_consecutive_errors`` errors in a row on one path (a success resets only the
  path it came from: a heartbeat does not vouch for order posts), or that many errors of any
  path within ``error_window_s`` however many successes came between -> HALTED; venue
  restarts (425) and post-only rejections are not errors;
* drawdown (realized + unrealized, from the high-water mark) past the per-market limit stops
  that market; past the global limit it trips the kill switch;
* the kill switch cancels everything and stays down until an operator clears it. Both the
  kill switch and the per-market drawdown halts outlive a restart (:meth:`export_halts`,
  :meth:`restore_halts`; the store side is :mod:`active_quoting.halts`).

Recovery: once every cause of a halt is gone, each ``circuit_breaker_recovery_seconds`` without
new trouble steps back one state. Every transition is a :class:`RiskEvent` with its reason.
Pure decision code: the caller passes the clock (milliseconds).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

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


HALTS_VERSION = 1


class RiskManager:
    def __init__(self, cfg: RiskConfig | None = None, *, error_window_s: float = 60.0) -> None:
        cfg = cfg or RiskConfig()
        self.max_dd_market = Fraction(cfg.max_drawdown_per_market_usdc)
        self.max_dd_global = Fraction(cfg.max_drawdown_global_usdc)
        self.max_errors = cfg.max_consecutive_errors
        self.recovery_ms = int(cfg.circuit_breaker_recovery_seconds * 1000)
        self.stale_ms = int(cfg.stale_feed_seconds * 1000)
        self.error_window_ms = int(error_window_s * 1000)
        self.state = NORMAL
        self.killed = False
        self.kill_reason = ""
        self.kill_t_ms = 0
        self.errors_by_kind: dict[str, int] = {}
        self.events: list[RiskEvent] = []
        # active causes of trouble -> the state they hold the breaker at (at least)
        self._causes: dict[str, str] = {}
        self._calm_since = 0
        self._streak: dict[str, int] = {}  # path -> errors in a row on it
        self._recent_errors: deque[int] = deque()  # times of the errors inside the window
        self._market_halted: dict[str, tuple[str, int]] = {}  # drawdown halts: reason, since
        self._market_stale: dict[str, str] = {}
        self._peak: dict[str, Fraction] = {}
        self._pnl: dict[str, Fraction] = {}
        self._retired_pnl = Fraction(0)  # final P&L of markets no longer tracked
        self._pnl_sum = Fraction(0)  # sum of self._pnl
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

    def check_stale(self, now_ms: int, fresh_ms: Mapping[str, int]) -> list[str]:
        """Per quoted market, the last time its feed was known good (``fresh_ms``: its newest
        book event or REST confirmation, :meth:`MarketStream.fresh_ms`). A market silent past
        ``stale_feed_seconds`` stops (a market-scoped HALTED event asking for its orders to be
        cancelled) until it is fresh again. Markets not given are no longer quoted and are
        forgotten here. Returns the stale markets."""
        stale = []
        for market, t in fresh_ms.items():
            age = now_ms - t
            if age > self.stale_ms:
                stale.append(market)
                if market not in self._market_stale:
                    reason = f"stale feed: no book event or REST confirmation for {age} ms"
                    self._market_stale[market] = reason
                    self.events.append(RiskEvent(now_ms, market, NORMAL, HALTED, reason, cancel_all=True))
            elif self._market_stale.pop(market, None) is not None:
                self.events.append(RiskEvent(now_ms, market, HALTED, NORMAL, "feed fresh again"))
        for market in [m for m in self._market_stale if m not in fresh_ms]:
            del self._market_stale[market]
        return stale

    @property
    def consecutive_errors(self) -> int:
        """The longest current run of errors on one path."""
        return max(self._streak.values(), default=0)

    def on_error(self, now_ms: int, kind: str, path: str = "venue") -> None:
        """A failed venue call, classified by the venue layer (``engine_restart`` = 425 and
        ``post_only_reject`` are counted by kind but are not errors). ``path`` names the caller
        (``orders``, ``heartbeat``...): only a success on the same path ends its streak."""
        self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1
        if kind in NOT_ERRORS:
            return
        self._streak[path] = self._streak.get(path, 0) + 1
        self._recent_errors.append(now_ms)
        self._expire_errors(now_ms)
        streak, recent = self._streak[path], len(self._recent_errors)
        if streak >= self.max_errors:
            self._raise(now_ms, "errors", HALTED, f"{streak} consecutive errors on {path} (last: {kind})")
        elif recent >= self.max_errors:
            self._raise(now_ms, "errors", HALTED, f"{recent} errors within {self.error_window_ms} ms (last: {kind})")

    def on_success(self, now_ms: int, path: str = "venue") -> None:
        self._streak.pop(path, None)
        self._settle_errors(now_ms)

    def _expire_errors(self, now_ms: int) -> None:
        while self._recent_errors and now_ms - self._recent_errors[0] >= self.error_window_ms:
            self._recent_errors.popleft()

    def _settle_errors(self, now_ms: int) -> None:
        """The error cause ends once no path is on a streak and the window holds too few."""
        self._expire_errors(now_ms)
        if self.consecutive_errors < self.max_errors and len(self._recent_errors) < self.max_errors:
            self._clear(now_ms, "errors")

    def on_pnl(self, now_ms: int, market: str, pnl: Fraction) -> None:
        """Total P&L (realized + unrealized) of one market now; drawdown is from its peak."""
        self._pnl_sum += pnl - self._pnl.get(market, Fraction(0))  # kept current: no sum over markets
        self._pnl[market] = pnl
        peak = max(self._peak.get(market, Fraction(0)), pnl)
        self._peak[market] = peak
        if peak - pnl >= self.max_dd_market and market not in self._market_halted:
            reason = f"drawdown {float(peak - pnl):.2f} USDC >= per-market limit {float(self.max_dd_market):.2f}"
            self._market_halted[market] = (reason, now_ms)
            self.events.append(RiskEvent(now_ms, market, NORMAL, HALTED, reason, cancel_all=True))
        total = self._retired_pnl + self._pnl_sum
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
        self.kill_t_ms = now_ms
        self.events.append(RiskEvent(now_ms, "global", self.state, HALTED, f"kill switch: {reason}", cancel_all=True))
        self.state = HALTED
        self._calm_since = now_ms

    def clear_kill_switch(self, now_ms: int, operator: str) -> None:
        if not self.killed:
            return
        self.killed = False
        self.kill_reason = ""
        # The operator accepts the loss so far: the global high-water mark restarts from here
        # (else a drawdown kill would fire again at the next P&L update, for ever).
        self._peak_global = self._retired_pnl + self._pnl_sum
        self._causes.pop("errors", None)
        self._streak.clear()
        self._recent_errors.clear()
        self.events.append(RiskEvent(now_ms, "global", HALTED, HALTED, f"kill switch cleared by {operator}"))
        self._calm_since = now_ms

    def clear_market(self, now_ms: int, market: str, operator: str) -> None:
        """Resume a market stopped by its drawdown limit; its high-water mark restarts."""
        if self._market_halted.pop(market, None) is not None:
            self._peak[market] = self._pnl.get(market, Fraction(0))
            self.events.append(RiskEvent(now_ms, market, HALTED, NORMAL, f"cleared by {operator}"))

    def forget_market(self, market: str) -> None:
        """A finished window leaves: its state goes, its final P&L stays in the global total
        (forgetting a winner must not look like a global drawdown)."""
        final = self._pnl.pop(market, Fraction(0))
        self._retired_pnl += final
        self._pnl_sum -= final
        self._peak.pop(market, None)
        self._market_halted.pop(market, None)
        self._market_stale.pop(market, None)

    # -- persistence ------------------------------------------------------------------

    def export_halts(self) -> dict[str, Any]:
        """The halts an operator must clear, as a JSON-able value: the kill switch and the
        per-market drawdown halts (a stale feed is transient and not kept)."""
        kill = {"reason": self.kill_reason, "t_ms": self.kill_t_ms} if self.killed else None
        markets = {m: {"reason": r, "t_ms": t} for m, (r, t) in sorted(self._market_halted.items())}
        return {"version": HALTS_VERSION, "kill": kill, "markets": markets}

    def restore_halts(self, d: Mapping[str, Any], now_ms: int) -> None:
        """Re-impose halts saved by :meth:`export_halts` (a restart): the kill switch trips
        again (a cancel-all event) and halted markets stay halted, with their reason and time."""
        kill = d.get("kill")
        if kill and not self.killed:
            self.kill(now_ms, f"still set from a previous run: {kill.get('reason', '')}")
            self.kill_reason = str(kill.get("reason", ""))
            self.kill_t_ms = int(kill.get("t_ms", now_ms))
        for market, h in (d.get("markets") or {}).items():
            if market in self._market_halted:
                continue
            reason, t_ms = str(h.get("reason", "")), int(h.get("t_ms", now_ms))
            self._market_halted[market] = (reason, t_ms)
            self._peak.setdefault(market, self._pnl.get(market, Fraction(0)))
            self.events.append(
                RiskEvent(now_ms, market, NORMAL, HALTED, f"still halted from a previous run: {reason}", True)
            )

    def tick(self, now_ms: int) -> None:
        """Advance recovery: one step back per calm recovery period once no cause remains."""
        if self.killed:
            return
        if "errors" in self._causes:
            self._settle_errors(now_ms)  # the window empties with time, not only on a success
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
        if self.killed or (market is not None and (market in self._market_halted or market in self._market_stale)):
            return 0
        return MULTIPLIER_PCT[self.state]

    def can_quote(self, market: str | None = None) -> bool:
        return self.multiplier_pct(market) > 0

    def market_halt_reason(self, market: str) -> str | None:
        """Why a market may not quote (its drawdown halt first, then a stale feed), or None."""
        halt = self._market_halted.get(market)
        return halt[0] if halt is not None else self._market_stale.get(market)

    def drain_events(self) -> list[RiskEvent]:
        out, self.events = self.events, []
        return out
