"""The fixed-point core: the ONLY place that picks the compiled or the pure-Python modules.

``AQ_NO_EXTENSIONS=1`` opts into the pure-Python twins; ``AQ_REQUIRE_EXTENSIONS=1`` (CI,
production) makes a failed compiled import a crash instead of a silent slow path.
Everyone else imports names from here; tests and benchmarks use :func:`load`.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import SimpleNamespace

_log = logging.getLogger(__name__)

# module stem -> public names it must export (the same for both implementations)
_MODULES = {
    "_units": (
        "PRICE_DECIMALS",
        "SIZE_DECIMALS",
        "PRICE_SCALE",
        "SIZE_SCALE",
        "MAX_PRICE",
        "MAX_SIZE",
        "NO_PRICE",
        "BID",
        "ASK",
        "parse_price",
        "parse_size",
        "format_price",
        "format_size",
    ),
    "_book": ("Book", "BookSet", "DEFAULT_TICK", "MAX_TICK", "DEFAULT_DESYNC_THRESHOLD"),
}

IMPLEMENTATIONS = ("c", "py")


def load(impl: str) -> SimpleNamespace:
    """Import one implementation ("c" or "py") of every core module as a namespace."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"core implementation must be one of {IMPLEMENTATIONS}, got {impl!r}")
    ns = SimpleNamespace(IMPL=impl)
    for stem, names in _MODULES.items():
        module = importlib.import_module(f"{__name__}.{stem}_{impl}")
        for name in names:
            setattr(ns, name, getattr(module, name))
    return ns


def _select() -> SimpleNamespace:
    if os.environ.get("AQ_NO_EXTENSIONS") == "1":
        return load("py")
    try:
        return load("c")
    except ImportError as exc:
        if os.environ.get("AQ_REQUIRE_EXTENSIONS") == "1":
            raise ImportError(
                "AQ_REQUIRE_EXTENSIONS=1 but the compiled core failed to import "
                f"({exc}); rebuild with `pip install -e . --no-build-isolation`"
            ) from exc
        _log.warning("compiled core unavailable (%s); using the pure-Python twins", exc)
        return load("py")


_impl = _select()
IMPL: str = _impl.IMPL
_log.debug("active_quoting.core implementation: %s", IMPL)

PRICE_DECIMALS: int = _impl.PRICE_DECIMALS
SIZE_DECIMALS: int = _impl.SIZE_DECIMALS
PRICE_SCALE: int = _impl.PRICE_SCALE
SIZE_SCALE: int = _impl.SIZE_SCALE
MAX_PRICE: int = _impl.MAX_PRICE
MAX_SIZE: int = _impl.MAX_SIZE
NO_PRICE: int = _impl.NO_PRICE
BID: int = _impl.BID
ASK: int = _impl.ASK
parse_price = _impl.parse_price
parse_size = _impl.parse_size
format_price = _impl.format_price
format_size = _impl.format_size
Book = _impl.Book
BookSet = _impl.BookSet
DEFAULT_TICK: int = _impl.DEFAULT_TICK
MAX_TICK: int = _impl.MAX_TICK
DEFAULT_DESYNC_THRESHOLD: int = _impl.DEFAULT_DESYNC_THRESHOLD

__all__ = ["IMPL", "IMPLEMENTATIONS", "load", *(n for names in _MODULES.values() for n in names)]
