"""Venue errors, classified. Every failed venue call becomes a :class:`VenueError` with a kind
that says what to do about it (POLYMARKET.md §4.5); nothing is swallowed.

Kinds and what they mean to the caller:

=================== ==================================================================
engine_restart      425: matching engine restarting; back off 1-2 s exponentially, keep state
post_only_mode      503 ``post_only_mode``: only post-only orders and cancels until retry_after
trading_disabled    503 otherwise (disabled or cancel-only)
rate_limited        429: wait ``retry_after`` seconds
server_error        5xx: on a submit the outcome is unknown (reconcile by order hash)
timeout             no answer in time: on a submit the outcome is unknown
network             the connection failed; on a submit the outcome is unknown
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


def classify(status: int, body: object, retry_after_header: str | None = None) -> VenueError:
    """Turn a non-2xx response into a VenueError (``body`` is the decoded JSON or text)."""
    err = _classify(status, body, retry_after_header)
    err.body = body
    return err


def _classify(status: int, body: object, retry_after_header: str | None) -> VenueError:
    message = ""
    code = ""
    retry_after: float | None = None
    if isinstance(body, dict):
        message = str(body.get("error") or body.get("errorMsg") or body.get("message") or "")
        code = str(body.get("code") or "")
        if isinstance(body.get("retry_after_seconds"), int | float):
            retry_after = float(body["retry_after_seconds"])
    elif body is not None:
        message = str(body)[:300]
    if retry_after is None and retry_after_header:
        try:
            retry_after = float(retry_after_header)
        except ValueError:
            retry_after = None
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
