"""What one run of the bot is asked to do (the ``run`` command's options, typed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunOptions:
    assets: tuple[str, ...] = ("btc", "eth", "sol")
    # None: run until stopped (SIGINT/SIGTERM), the real venue's default; the embedded demo runs
    # for a finite time so that ``make run`` ends with a report.
    duration_s: float | None = 120.0
    seed: int = 7
    window_s: int = 900
    stop_before_end_s: int = 20
    linger_s: float = 90.0  # a window is pruned this long after its end, once resolved (markouts, late fills)
    db: str = "active-quoting.db"
    strategy: str = "active"  # or "only50"
    loop_ms: int = 100
    metrics_port: int | None = None
    show_status: bool = False
    status_every_s: float = 5.0
    exchange_config: dict[str, Any] = field(default_factory=dict)
    flow_config: dict[str, Any] = field(default_factory=dict)  # the embedded market's flow (FlowConfig), e.g. calm
    clob_url: str = ""  # a separately served exchange (embedded or the real venue) instead of an in-process one
    gamma_url: str = ""
    ws_url: str = ""  # default: the CLOB URL with a ws(s) scheme
    rtds_url: str = ""  # the reference price socket (fair value); default: the embedded exchange's, or the venue's
    # Secrets: never in the repr (a logged or traced RunOptions would otherwise carry them).
    private_key: str = field(default="", repr=False)  # the real venue only; the embedded one gets a throwaway key
    funder: str | None = None
    signature_type: int = 0
    api_creds: tuple[str, str, str] | None = field(default=None, repr=False)  # else derived with the L1 flow
    sim_seed: int | None = None  # the simulator's: order salts and reconnect jitter drawn from it (reproducible runs)
    journal: bool = True  # raw frames and order bodies to DB.journal/ (the simulator turns it off)
    dry_run: bool = False  # the full pipeline, orders built and signed but never sent


def stop_before_end(window_s: int) -> int:
    """How long before a window's end quoting stops, by default: 1/20 of the window (45 s of a
    15-minute window), at least 3 s. ``run`` and the simulator use the same rule."""
    return max(3, window_s // 20)
