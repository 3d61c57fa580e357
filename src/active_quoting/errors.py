"""Typed errors shared by the core twins and the shell.

Both the compiled core and its pure-Python twin raise these same classes with the same
messages, so callers (and the differential tests) cannot tell which one is running.
"""


class ActiveQuotingError(Exception):
    """Base class of every error this package raises on purpose."""


class UnitsError(ActiveQuotingError, ValueError):
    """A decimal string or integer value that is not a valid price or size."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        super().__init__(f"{field}: {reason}: {shown}")


class FrameError(ActiveQuotingError, ValueError):
    """A WebSocket frame that cannot be decoded into events (malformed JSON, bad shape)."""

    def __init__(self, reason: str, frame: object) -> None:
        self.reason = reason
        text = frame.decode("utf-8", "replace") if isinstance(frame, bytes | bytearray) else str(frame)
        self.excerpt = text[:120]
        super().__init__(f"{reason}: {self.excerpt!r}")


class CredentialsError(ActiveQuotingError):
    """Missing or unreadable credentials (the message never contains a secret)."""


# The reasons a decimal string is refused; one wording for both twins.
NOT_DECIMAL = "not a plain decimal string"
TOO_MANY_DECIMALS = "too many decimals"
NEGATIVE = "negative value"
OUT_OF_RANGE = "out of range"
NOT_STR = "expected a decimal string"
NOT_INT = "expected an integer"
