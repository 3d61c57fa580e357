from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import pytest_asyncio

from active_quoting import core

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # synth_feed


def _captures_dir() -> Path:
    env = os.environ.get("AQ_CAPTURES")
    path = Path(env) if env else ROOT.parent / "shared" / "protocol" / "captures"
    if not path.is_dir():
        raise RuntimeError(
            f"protocol captures not found at {path}; the tests need ../shared beside the checkout "
            "(or AQ_CAPTURES pointing at it)"
        )
    return path


CAPTURES = _captures_dir()


@pytest_asyncio.fixture
async def ex():
    """The embedded exchange with one market (``exchange_peer``), stopped after the test."""
    from exchange_peer import start_exchange

    e = await start_exchange()
    yield e
    await e.stop()


@pytest.fixture(params=core.IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest):
    """One implementation of the core ("c" or "py") as a namespace."""
    return core.load(request.param)


@pytest.fixture(scope="session")
def c_core():
    return core.load("c")


@pytest.fixture(scope="session")
def py_core():
    return core.load("py")


def capture(name: str) -> bytes:
    return (CAPTURES / name).read_bytes()


ROOT = Path(__file__).resolve().parents[1]


def load_benchmark(filename: str, module: str):  # -> a module
    """A script of benchmarks/ (not a package) loaded as ``module``, for tests of its parts."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(module, ROOT / "benchmarks" / filename)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# For tests of the bot's plumbing (orders, fills, restarts, faults) rather than of momentum: the
# embedded exchange's short demo windows move fast enough to keep a default bot in cooldown.
# Detection still runs (and counts), but a cooldown of 0 s never holds quotes off: a one-sided
# book near the touch still counts as imbalance at threshold 0, and the default 2 s cooldowns
# could otherwise leave a short session with no resting order for a fault to act on.
CALM = {
    "AQ_MOMENTUM_THRESHOLD_TICKS": "1000",
    "AQ_MOMENTUM_SWEEP_DEPTH_THRESHOLD": "1",
    "AQ_MOMENTUM_IMBALANCE_THRESHOLD": "0",
    "AQ_MOMENTUM_COOLDOWN_SECONDS": "0",
}


def start_in_fresh_window(window_s: int, need_s: float) -> None:
    """Sleep until the current wall-clock window (the embedded exchange's windows are aligned
    to multiples of ``window_s``) has at least ``need_s`` seconds left, so a short bot session
    does not begin in a window that is about to stop being quoted."""
    left = window_s - time.time() % window_s
    if left < need_s:
        time.sleep(left + 0.05)
