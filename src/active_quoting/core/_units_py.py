"""Fixed-point units: the executable specification (twin of ``_units_c``).

Prices are integers in units of 1e-4 (every tick the venue uses, 0.1 ... 0.0001, is a whole
number of units). Sizes are integers in micro-shares (1e-6, as on chain). Decimal strings as
the venue sends them parse straight to integers, never through a float.
"""

from active_quoting.errors import (
    NEGATIVE,
    NOT_DECIMAL,
    NOT_INT,
    NOT_STR,
    OUT_OF_RANGE,
    TOO_MANY_DECIMALS,
    UnitsError,
)

PRICE_DECIMALS = 4
SIZE_DECIMALS = 6
PRICE_SCALE = 10_000
SIZE_SCALE = 1_000_000
MAX_PRICE = PRICE_SCALE
# 900M shares: the sum of a full side (10,001 levels) of maximal sizes still fits in int64.
MAX_SIZE = 900_000_000 * SIZE_SCALE
NO_PRICE = -1
BID = 0
ASK = 1

_DIGITS = frozenset("0123456789")
# Longest accepted text; longer input is refused before any work is done on it.
_MAX_LEN = 32


def check_int(value: object, low: int, high: int, field: str) -> int:
    """``value`` if it is an int in [low, high]; otherwise a UnitsError naming ``field``."""
    if type(value) is not int:
        raise UnitsError(field, value, NOT_INT)
    if value < low or value > high:
        raise UnitsError(field, value, OUT_OF_RANGE)
    return value


def _parse_fixed(s: object, decimals: int, max_units: int, field: str) -> int:
    if type(s) is not str:
        raise UnitsError(field, s, NOT_STR)
    if len(s) > _MAX_LEN:
        raise UnitsError(field, s, OUT_OF_RANGE)
    body = s
    if body.startswith("-"):
        body = body[1:]
        negative = True
    else:
        negative = False
    whole, dot, frac = body.partition(".")
    if (not whole and not frac) or (dot and not frac) or not set(whole) <= _DIGITS or not set(frac) <= _DIGITS:
        raise UnitsError(field, s, NOT_DECIMAL)
    if negative:
        raise UnitsError(field, s, NEGATIVE)
    if len(frac) > decimals:
        # Trailing zeros past the scale are exact ("0.50000"); anything else would round.
        if frac[decimals:].strip("0"):
            raise UnitsError(field, s, TOO_MANY_DECIMALS)
        frac = frac[:decimals]
    value = int(whole or "0") * 10**decimals + int(frac.ljust(decimals, "0"))
    if value > max_units:
        raise UnitsError(field, s, OUT_OF_RANGE)
    return value


def parse_price(s: str, field: str = "price") -> int:
    """Parse a venue price string ("0.5", ".48", "1") to units of 1e-4, in [0, 10000]."""
    return _parse_fixed(s, PRICE_DECIMALS, MAX_PRICE, field)


def parse_size(s: str, field: str = "size") -> int:
    """Parse a venue size string ("1016.87", "219.217767") to micro-shares, in [0, MAX_SIZE]."""
    return _parse_fixed(s, SIZE_DECIMALS, MAX_SIZE, field)


def _format_fixed(value: object, decimals: int, max_units: int, field: str) -> str:
    if type(value) is not int:
        raise UnitsError(field, value, NOT_INT)
    if value < 0:
        raise UnitsError(field, value, NEGATIVE)
    if value > max_units:
        raise UnitsError(field, value, OUT_OF_RANGE)
    scale = 10**decimals
    whole = value // scale
    frac = value - whole * scale
    if frac == 0:
        return str(whole)
    return f"{whole}.{frac:0{decimals}d}".rstrip("0")


def format_price(units: int, field: str = "price") -> str:
    """Format price units as the venue writes them: "0.5", "0.951", "1", "0"."""
    return _format_fixed(units, PRICE_DECIMALS, MAX_PRICE, field)


def format_size(micro: int, field: str = "size") -> str:
    """Format micro-shares as the venue writes them: "1016.87", "40", "219.217767"."""
    return _format_fixed(micro, SIZE_DECIMALS, MAX_SIZE, field)
