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
        "check_int",
    ),
    "_book": ("Book", "BookSet", "DEFAULT_TICK", "MAX_TICK", "DEFAULT_DESYNC_THRESHOLD"),
    "_quote": (
        "QuoteEngine",
        "venue_leg",
        "skew_ticks",
        "floor_to_tick",
        "ceil_to_tick",
        "NONE",
        "KEEP",
        "PLACE",
        "REPLACE",
        "CANCEL",
        "UP",
        "DOWN",
        "BUY",
        "SELL",
        "SIZE_LOT",
        "MAX_AMOUNT",
        "MAX_USDC",
        "MAX_POSITION",
        "MAX_SKEW_PPM",
    ),
    "_markout": ("MarkoutTracker", "PENDING", "UNAVAILABLE", "MAX_HORIZONS"),
    "_fair": (
        "fair_up",
        "VolEstimator",
        "SPOT_SCALE",
        "MS_PER_YEAR",
        "MS_PER_DAY",
        "MAX_SPOT",
        "MAX_SIGMA_PPM",
        "MAX_TAU_MS",
    ),
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

# Book, BookSet, QuoteEngine, MarkoutTracker, parse_price, NO_PRICE, ... of the selected one.
globals().update({name: getattr(_impl, name) for names in _MODULES.values() for name in names})

__all__ = ["IMPL", "IMPLEMENTATIONS", "load", *(n for names in _MODULES.values() for n in names)]
