from __future__ import annotations

import sys
from pathlib import Path

import pytest

from active_quoting import core

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # synth_feed


@pytest.fixture(params=core.IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest):
    """One implementation of the core ("c" or "py")."""
    return core.load(request.param)
