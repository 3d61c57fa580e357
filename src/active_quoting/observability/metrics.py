"""Prometheus metrics without a dependency: counters, gauges and fixed-bucket histograms,
rendered in the text exposition format and served on an optional 127.0.0.1 port."""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from aiohttp import web

# Latency buckets in seconds: 50 us .. 2 s.
LATENCY_BUCKETS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.0)


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{str(v).replace(chr(34), "")}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.name, self.help = name, help_text
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding the q-quantile (for status lines)."""
        if not self.count:
            return None
        target = q * self.count
        seen = 0
        for bound, n in zip((*self.buckets, float("inf")), self.counts, strict=True):
            seen += n
            if seen >= target:
                return bound
        return None

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        cumulative = 0
        for bound, n in zip(self.buckets, self.counts, strict=False):
            cumulative += n
            out.append(f'{self.name}_bucket{{le="{bound}"}} {cumulative}')
        out.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
        out += [f"{self.name}_sum {self.sum}", f"{self.name}_count {self.count}"]
        return out


class Metrics:
    def __init__(self) -> None:
        self.histograms = {
            name: Histogram(f"aq_{name}_seconds", text)
            for name, text in (
                ("frame_to_decision", "market frame arrival to quote decision"),
                ("decision_to_wire", "quote decision to the order request being sent"),
                ("submit_round_trip", "order submit request round trip"),
                ("cancel_round_trip", "cancel request round trip"),
            )
        }
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    def observe(self, name: str, seconds: float) -> None:
        self.histograms[name].observe(seconds)

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.counters[key] = self.counters.get(key, 0.0) + value

    def set(self, name: str, value: float, **labels: str) -> None:
        self.gauges[(name, tuple(sorted(labels.items())))] = value

    def forget(self, **labels: str) -> int:
        """Drop every series carrying these labels (a pruned market's gauges): the exported set
        stays as large as what is live. Returns how many went."""
        want = set(labels.items())
        gone = 0
        for series in (self.counters, self.gauges):
            for key in [k for k in series if want <= set(k[1])]:
                del series[key]
                gone += 1
        return gone

    def render(self) -> str:
        lines: list[str] = []
        for h in self.histograms.values():
            lines += h.render()
        for kind, series in (("counter", self.counters), ("gauge", self.gauges)):
            names = sorted({n for n, _ in series})
            for name in names:
                lines.append(f"# TYPE {name} {kind}")
                for (n, labels), v in sorted(series.items()):
                    if n == name:
                        lines.append(f"{name}{_labels(dict(labels))} {v}")
        return "\n".join(lines) + "\n"

    async def serve(self, port: int, host: str = "127.0.0.1") -> str:
        from active_quoting.exchange.server import serve_app

        async def handle(request: web.Request) -> web.Response:
            return web.Response(text=self.render(), content_type="text/plain")

        app = web.Application()
        app.router.add_get("/metrics", handle)
        self._runner, base = await serve_app(app, host, port)
        self.url = base + "/metrics"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
