from typing import Any

from typing_extensions import disjoint_base

SPOT_SCALE: int
MS_PER_YEAR: int
MS_PER_DAY: int
MAX_SPOT: int
MAX_SIGMA_PPM: int
MAX_TAU_MS: int

def fair_up(
    spot: int,
    strike: int,
    sigma_ppm: int,
    tau_ms: int,
    twap_ms: int,
    avg_known: int,
    known_ms: int,
    horizon_ms: int,
) -> tuple[int, int]:
    """Probability that Up wins (1e-4 units, 0..10000) and a half-band (1e-4 units, 0..5000)."""

@disjoint_base
class VolEstimator:
    """Online annualised volatility of one asset from irregular ticks (see the twin)."""

    @property
    def half_life_ms(self) -> int: ...
    @property
    def floor_ppm(self) -> int: ...
    @property
    def initial_ppm(self) -> int: ...
    @property
    def clip_sigmas(self) -> int: ...
    @property
    def last_price(self) -> int: ...
    @property
    def last_ts_ms(self) -> int: ...
    @property
    def count(self) -> int: ...
    @property
    def sigma_ppm(self) -> int:
        """The current estimate, annualised, in ppm (at least ``floor_ppm``)."""
    def __init__(self, half_life_ms: int, floor_ppm: int, initial_ppm: int, clip_sigmas: Any = ...) -> None: ...
    def update(self, price: int, ts_ms: int) -> None:
        """Take one price at ``ts_ms``; ignored unless after the last accepted one."""
