"""A recorded spot path for the embedded exchange's underlying: the Chainlink BTC/USD feed that
settles the real up/down markets, replayed instead of the random walk.

The settlement rule of the recorded day (before the 2026-08-07 switch to TWAP streams): a
window's price to beat is the feed at its start; Up wins iff the latest tick at or before the
end is at or above it. Prices are kept exact (integers scaled by 1e18, as the feed gives them).
"""

from __future__ import annotations

import bisect
import csv
import gzip
from pathlib import Path

SCALE_18 = 10**18


class SpotPath:
    def __init__(self, ticks: list[tuple[int, int]]) -> None:
        """``ticks``: (feed time in ms, price scaled by 1e18), sorted by time, one per time."""
        if not ticks:
            raise ValueError("a spot path needs at least one tick")
        self.times = [t for t, _ in ticks]
        self.prices = [p for _, p in ticks]

    @classmethod
    def from_chainlink_csv(cls, path: str | Path) -> SpotPath:
        """The recorded feed (``feed_ts_ms``, ``full_accuracy_value``, ``recv_ms``); two rows
        for one second are a correction: the later ``recv_ms`` wins."""
        best: dict[int, tuple[int, int]] = {}  # feed ms -> (recv ms, price)
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", newline="") as f:  # type: ignore[operator]
            for row in csv.DictReader(f):
                t, recv = int(row["feed_ts_ms"]), int(row["recv_ms"] or 0)
                price = int(row["full_accuracy_value"])
                if t not in best or recv >= best[t][0]:
                    best[t] = (recv, price)
        return cls(sorted((t, p) for t, (_, p) in best.items()))

    @property
    def start_s(self) -> int:
        return self.times[0] // 1000

    @property
    def end_s(self) -> int:
        return self.times[-1] // 1000

    def exact_at(self, t_s: float) -> int | None:
        """The latest tick at or before ``t_s`` (1e18-scaled), None before the first."""
        i = bisect.bisect_right(self.times, int(t_s * 1000)) - 1
        return self.prices[i] if i >= 0 else None

    def price_at(self, t_s: float) -> float:
        """The spot as a float for the flow's pricing model (the first tick before the path)."""
        exact = self.exact_at(t_s)
        return (exact if exact is not None else self.prices[0]) / SCALE_18

    def up_wins(self, start_s: int, end_s: int) -> bool | None:
        """The venue's rule: the latest tick at or before the end >= the price at the start.
        None when the path has no price at the start."""
        strike, final = self.exact_at(start_s), self.exact_at(end_s)
        if strike is None or final is None:
            return None
        return final >= strike
