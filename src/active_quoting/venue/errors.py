"""Venue errors, classified. Every failed venue call becomes a :class:`VenueError` with a kind
that says what to do about it (POLYMARKET.md §4.5); nothing is swallowed. The kinds that
say the venue is in a state for a while are tracked by :class:`VenueStates` (below).

Kinds and what they mean to the caller:

=================== ==================================================================
engine_restart      425: matching engine restarting (~90 s); nothing placed, state kept
post_only_mode      503 ``post_only_mode``: only post-only orders and cancels until retry_after
trading_disabled    503 otherwise (disabled or cancel-only): no new orders, cancels allowed
rate_limited        429: wait ``retry_after`` seconds, whatever its length
server_error        5xx: on a submit the outcome is unknown (reconcile by order hash)
timeout             no answer in time: on a submit the outcome is unknown
network             the connection failed; on a submit the outcome is unknown
not_sent            the request was never written (no connection to the venue): nothing was placed
post_only_reject    400 "crosses the book": a normal, counted rejection, not an error
version_mismatch    ``order_version_mismatch``: re-read /version, re-sign, retry once
invalid_tick        price breaks the minimum tick size
min_size            size lower than the minimum
balance             not enough balance / allowance
auth                401: bad or missing L2 credentials
not_found           404
bad_request         any other 4xx
=================== ==================================================================
"""

from __future__ import annotations

import math
import random
from collections import Counter
from email.utils import parsedate_to_datetime

from active_quoting.errors import ActiveQuotingError

# Kinds after which a submitted order may or may not exist on the venue.
UNKNOWN_OUTCOME = frozenset({"server_error", "timeout", "network"})


class VenueError(ActiveQuotingError):
    def __init__(
        self, kind: str, message: str, status: int = 0, retry_after: float | None = None, body: object = None
    ) -> None:
        self.kind = kind
        self.body = body
        self.message = message
        self.status = status
        self.retry_after = retry_after
        super().__init__(f"{kind} (HTTP {status}): {message}" if status else f"{kind}: {message}")

    @property
    def unknown_outcome(self) -> bool:
        return self.kind in UNKNOWN_OUTCOME


def kind_of_message(message: str) -> str | None:
    """The kind of an order rejection from its text (``error`` or a batch leg's ``errorMsg``)."""
    text = message.lower()
    if "order_version_mismatch" in text:
        return "version_mismatch"
    if "cross" in text and ("post-only" in text or "post only" in text or "book" in text):
        return "post_only_reject"
    if "invalid_post_only_order" in text:
        return "post_only_reject"
    if "tick size" in text or "min_tick_size" in text:
        return "invalid_tick"
    if "lower than the minimum" in text or "min_size" in text or "minimum size" in text:
        return "min_size"
    if "balance" in text or "allowance" in text:
        return "balance"
    return None


def retry_after_seconds(header: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait: delay-seconds (``"30"``) or an HTTP-date
    (``"Wed, 21 Oct 2026 07:28:00 GMT"``, RFC 9110 10.2.3), counted from ``now`` (wall seconds;
    a date cannot be read without it). None when absent or unreadable; never negative, NaN or
    infinite (a date in the past is 0)."""
    if not header:
        return None
    text = header.strip()
    try:
        seconds = float(text)
    except ValueError:
        if now is None:
            return None
        try:
            seconds = parsedate_to_datetime(text).timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def classify(status: int, body: object, retry_after_header: str | None = None, now: float | None = None) -> VenueError:
    """Turn a non-2xx response into a VenueError (``body`` is the decoded JSON or text; ``now``
    the wall time, to read a ``Retry-After`` given as an HTTP-date)."""
    err = _classify(status, body, retry_after_header, now)
    err.body = body
    return err


def _classify(status: int, body: object, retry_after_header: str | None, now: float | None) -> VenueError:
    message = ""
    code = ""
    retry_after: float | None = None
    if isinstance(body, dict):
        message = str(body.get("error") or body.get("errorMsg") or body.get("message") or "")
        code = str(body.get("code") or "")
        if isinstance(body.get("retry_after_seconds"), int | float):
            retry_after = retry_after_seconds(str(body["retry_after_seconds"]))
    elif body is not None:
        message = str(body)[:300]
    if retry_after is None:
        retry_after = retry_after_seconds(retry_after_header, now)
    if status == 425:
        return VenueError("engine_restart", message or "matching engine restarting", status, retry_after)
    if status == 429:
        return VenueError("rate_limited", message or "rate limited", status, retry_after)
    if status == 503:
        if code == "post_only_mode" or "post-only mode" in message.lower():
            return VenueError("post_only_mode", message, status, retry_after)
        return VenueError("trading_disabled", message or "service unavailable", status, retry_after)
    if status >= 500:
        return VenueError("server_error", message or "server error", status, retry_after)
    if status == 401:
        return VenueError("auth", message or "unauthorized", status)
    if status == 404:
        return VenueError("not_found", message or "not found", status)
    return VenueError(kind_of_message(message) or "bad_request", message or f"HTTP {status}", status, retry_after)


# -- venue states ----------------------------------------------------------------------------
# What some answers say about the venue for a while, rather than about one request:
#
# =============== ============ ===================================================================
# state           answer       what the order manager does until it passes
# =============== ============ ===================================================================
# restarting      425          sends nothing (425 is on every order endpoint, cancels included);
#                              ~90 s from the first 425 (POLYMARKET.md §4.5), or its Retry-After
# cancel_only     503 other    places nothing, cancels still go; probes after Retry-After, or
#                              after a bounded interval that doubles while the venue stays so
# post_only       503 mode     nothing changes for us: every order we send is post-only
# rate_limited    429          places nothing (and, after a 429 on a cancel, cancels nothing)
#                              until Retry-After, whatever its length, plus a seeded jitter
# =============== ============ ===================================================================
OK, RESTARTING, CANCEL_ONLY, POST_ONLY, RATE_LIMITED = "ok", "restarting", "cancel_only", "post_only", "rate_limited"
STATE_OF_KIND = {
    "engine_restart": RESTARTING,
    "trading_disabled": CANCEL_ONLY,
    "post_only_mode": POST_ONLY,
    "rate_limited": RATE_LIMITED,
}
# Shown first when several hold at once: the one that stops the most.
_PRECEDENCE = (RESTARTING, RATE_LIMITED, CANCEL_ONLY, POST_ONLY)


class VenueStates:
    """Until when (monotonic seconds) the venue is in each state, from its own answers.

    :meth:`note` is fed every state answer (425, 503, 429) with the time it arrived;
    :meth:`may_place` / :meth:`may_cancel` say what may be sent now; :meth:`on_success` ends
    the probing streaks. ``counts`` has, per state, how often it was entered (``<state>``) and
    how many answers said so (``<state>_answers``). Jitter comes from ``rng`` (seed it for a
    reproducible simulation)."""

    restart_window_s = 90.0  # the venue's restart window, from the first 425 when no Retry-After
    restart_probe_s = 5.0  # a 425 after the window: probe again after this, doubling
    cancel_only_probe_s = 5.0  # a 503 without Retry-After: probe after this, doubling
    probe_max_s = 60.0
    post_only_default_s = 120.0  # the venue's post-only mode after a restart (2 minutes)
    rate_limit_default_s = 1.0  # a 429 without Retry-After
    jitter_share = 0.1  # of the Retry-After, drawn uniformly (at least jitter_min_s)
    jitter_min_s = 0.05

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng if rng is not None else random.Random()
        self.until: dict[str, float] = {}
        self.cancels_until = 0.0  # a 429 on a cancel: the cancel bucket is empty until then
        self.counts: Counter[str] = Counter()
        self._streak: Counter[str] = Counter()

    def note(self, kind: str, retry_after: float | None, now: float, cancel: bool = False) -> str:
        """Record an answer of error ``kind`` (``cancel``: to a cancel request); returns the
        state it put the venue in, or "" when the kind is no venue state."""
        state = STATE_OF_KIND.get(kind, "")
        if not state:
            return ""
        self.counts[state + "_answers"] += 1
        was = self.until.get(state, 0.0)
        if now < was and retry_after is None:
            # An answer to a request sent before we knew: the state already holds.
            if state == RATE_LIMITED and cancel:
                self.cancels_until = max(self.cancels_until, was)
            return state
        self._streak[state] += 1
        if state == RESTARTING:
            if retry_after is not None:
                wait = retry_after
            elif self._streak[state] == 1:
                wait = self.restart_window_s
            else:
                wait = min(self.restart_probe_s * 2 ** (self._streak[state] - 2), self.probe_max_s)
        elif state == CANCEL_ONLY:
            probe = min(self.cancel_only_probe_s * 2 ** (self._streak[state] - 1), self.probe_max_s)
            wait = retry_after if retry_after is not None else probe
        elif state == POST_ONLY:
            wait = retry_after if retry_after is not None else self.post_only_default_s
        else:
            base = retry_after if retry_after is not None else self.rate_limit_default_s
            wait = base + self.rng.uniform(0.0, max(self.jitter_min_s, self.jitter_share * base))
        until = max(was, now + wait)
        if now >= was:
            self.counts[state] += 1
        self.until[state] = until
        if state == RATE_LIMITED and cancel:
            self.cancels_until = max(self.cancels_until, until)
        return state

    def on_success(self) -> None:
        """The venue took a request: probing streaks start over."""
        self._streak.clear()

    def active(self, now: float) -> list[str]:
        return [s for s in _PRECEDENCE if now < self.until.get(s, 0.0)]

    def state(self, now: float) -> tuple[str, float]:
        """The state that stops the most right now and until when (``("ok", 0.0)`` if none)."""
        for s in self.active(now):
            return s, self.until[s]
        return OK, 0.0

    def place_resume_at(self, now: float) -> float:
        """When placing may resume (0.0: it may now). Post-only mode does not stop us."""
        held = [self.until[s] for s in (RESTARTING, CANCEL_ONLY, RATE_LIMITED) if now < self.until.get(s, 0.0)]
        return max(held) if held else 0.0

    def cancel_resume_at(self, now: float) -> float:
        """When cancelling may resume (0.0: it may now): not during a restart (425 on cancels
        too), nor after a 429 on a cancel until its Retry-After; cancel-only mode allows them."""
        held = [t for t in (self.until.get(RESTARTING, 0.0), self.cancels_until) if now < t]
        return max(held) if held else 0.0

    def may_place(self, now: float) -> bool:
        return not self.place_resume_at(now)

    def may_cancel(self, now: float) -> bool:
        return not self.cancel_resume_at(now)
