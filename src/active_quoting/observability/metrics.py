"""Prometheus metrics of one bot, through ``prometheus_client``: a registry per bot (never the
process-wide default: the simulator and the tests run several bots in one process), rendered
in the text exposition format and served on an optional 127.0.0.1 port.

Most series cost the hot path nothing: they are read at scrape time from the counters the
components already keep (:class:`Sources`: the order manager's ``counts``, the REST client's
error kinds, the WebSocket connections' connect counts, the fill intake, risk, the windows).
The venue's state (425 / 503 / 429) is the order manager's ``venue_status()``. The latency
histograms keep their own fixed buckets (one ``bisect`` per observation) and are exported at
scrape time too. What no component counts is told through a call: :meth:`Metrics.risk_event`
(halts), :meth:`Metrics.set_balance`.
:meth:`Metrics.inc` and :meth:`Metrics.set` keep free-form series (the per-market position
gauges of the status publisher); :meth:`Metrics.forget` drops a pruned market's series.

Every metric name a dashboard may query is listed in :data:`METRIC_NAMES`."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from active_quoting.venue.errors import CANCEL_ONLY, OK, POST_ONLY, RATE_LIMITED, RESTARTING

# Latency buckets in seconds: 50 us .. 2 s.
LATENCY_BUCKETS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.0)

# A market frame's handling, 1 us .. 1 s: fine below 100 us, where the bot's CPU per frame is.
FRAME_BUCKETS = (
    1e-6, 2e-6, 3e-6, 4e-6, 5e-6, 6e-6, 7e-6, 8e-6, 9e-6, 1e-5, 1.2e-5, 1.5e-5, 2e-5, 2.5e-5, 3e-5, 4e-5,
    5e-5, 7.5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1, 1.0,
)  # fmt: skip

LATENCIES = {
    "market_frame": "a market-channel frame handled, arrival to return: decode, books, strategy bookkeeping, "
    "any decision and requests it wrote, the journal's copy",
    "frame_to_decision": "market frame arrival to quote decision",
    "decision_to_wire": "quote decision to the order request being sent",
    "submit_round_trip": "order submit request round trip",
    "cancel_round_trip": "cancel request round trip",
}

# The venue's states (venue.errors.VenueStates): every one is exported, 1 for the one in force.
VENUE_STATES = (OK, RESTARTING, CANCEL_ONLY, POST_ONLY, RATE_LIMITED)

# Order manager counts -> the reason label of aq_orders_rejected_total: refusals by the venue
# (a price that would cross or a held-back quote is never sent, so it is not a rejection).
REJECT_REASONS = {
    "post_only_rejects": "post_only",
    "sell_balance_refusals": "balance",
    "signing_refused": "signing_refused",
    "rejected": "venue",
}

RISK_CODES = {"NORMAL": 0, "WARNING": 1, "RECOVERING": 2, "HALTED": 3}

MICRO = 1_000_000  # micro-USDC / micro-shares per unit: exported values are in USDC and shares


class _Counts(Protocol):
    @property
    def counts(self) -> Mapping[str, int]: ...


class _Conn(Protocol):
    @property
    def connects(self) -> int: ...

    @property
    def connected(self) -> bool: ...


class _VenueStatus(Protocol):
    def venue_status(self) -> Mapping[str, object]: ...


class _MarketStream(Protocol):
    @property
    def shards(self) -> Sequence[_Conn]: ...


class _UserStream(Protocol):
    @property
    def conn(self) -> _Conn: ...


class _Fills(Protocol):
    @property
    def seen(self) -> int: ...


class _Risk(Protocol):
    @property
    def state(self) -> str: ...

    @property
    def killed(self) -> bool: ...


class _Errors(Protocol):
    @property
    def errors(self) -> int: ...


class _Info(Protocol):
    @property
    def slug(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def fee_rate(self) -> Fraction: ...

    @property
    def fees_enabled(self) -> bool: ...

    @property
    def neg_risk(self) -> bool: ...


class _Window(Protocol):
    @property
    def info(self) -> _Info: ...


class _Windows(Protocol):
    @property
    def windows(self) -> Mapping[str, _Window]: ...


@dataclass
class Sources:
    """The components whose own counters are exported at scrape time (any may be missing: a
    bot that has not started yet, a test with one component)."""

    orders: _Counts | None = None  # OrderManager
    venue: _VenueStatus | None = None  # OrderManager: the venue state it acts on
    rest: _Counts | None = None  # RestClient: every error kind it classified, per request
    market: _MarketStream | None = None  # MarketStream
    user: _UserStream | None = None  # UserStream
    fills: _Fills | None = None  # FillIntake
    risk: _Risk | None = None  # RiskManager
    windows: _Windows | None = None  # WindowLifecycle
    store: _Errors | None = None
    journal: _Errors | None = None


# name -> (type, help). Counters are named without their ``_total`` suffix, as prometheus_client
# names the family; the exposition adds it.
FAMILIES: dict[str, tuple[str, str]] = {
    "aq_orders_placed": ("counter", "orders the venue accepted"),
    "aq_orders_rejected": ("counter", "orders the venue refused (or the signer could not build), by reason"),
    "aq_order_events": ("counter", "every count the order manager keeps, by event"),
    "aq_cancels": ("counter", "cancels the venue confirmed"),
    "aq_rate_limited": ("counter", "429 answers from the venue"),
    "aq_venue_errors": ("counter", "failed venue requests, by the kind the venue layer classified"),
    "aq_fills": ("counter", "fills first seen by this run"),
    "aq_halts": ("counter", "transitions into HALTED, by scope (global, market)"),
    "aq_risk_transitions": ("counter", "risk state transitions, by scope and new state"),
    "aq_reconnects": ("counter", "WebSocket reconnections, by channel"),
    "aq_venue_state": ("gauge", "the venue's state (ok, restarting, cancel_only, post_only, rate_limited): 1 in force"),
    "aq_venue_state_entered": ("counter", "times the venue entered each state (425, 503, 429 answers)"),
    "aq_refresh_cap_per_second": ("gauge", "the global refresh cap in force (slowed after a 429)"),
    "aq_circuit_state": ("gauge", "risk state: 0 NORMAL, 1 WARNING, 2 RECOVERING, 3 HALTED"),
    "aq_killed": ("gauge", "1 while the kill switch is down"),
    "aq_feed_connected": ("gauge", "market channel connections up"),
    "aq_user_connected": ("gauge", "1 while the user channel is up"),
    "aq_windows": ("gauge", "market windows the bot tracks"),
    "aq_store_errors": ("gauge", "store statements lost, ever"),
    "aq_journal_errors": ("gauge", "journal records lost, ever"),
    "aq_market_info": ("gauge", "1 per tracked market, its protocol version and fee state as labels"),
    "aq_market_fee_rate": ("gauge", "a tracked market's fee rate"),
    "aq_balance": ("gauge", "balance at the venue (USDC for collateral, shares for a token)"),
    "aq_allowance": ("gauge", "allowance at the venue, by spender"),
    **{f"aq_{name}_seconds": ("histogram", text) for name, text in LATENCIES.items()},
}

_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}

METRIC_NAMES = frozenset(name + suffix for name, (kind, _) in FAMILIES.items() for suffix in _SUFFIXES[kind])
"""Every sample name the built-in families expose (what a dashboard may query)."""

_RESERVED = METRIC_NAMES | frozenset(FAMILIES)

_Key = tuple[str, tuple[tuple[str, str], ...]]


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

    def family(self) -> HistogramMetricFamily:
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, n in zip(self.buckets, self.counts, strict=False):
            cumulative += n
            buckets.append((floatToGoString(bound), cumulative))
        buckets.append(("+Inf", self.count))
        return HistogramMetricFamily(self.name, self.help, buckets=buckets, sum_value=self.sum)


def _family(name: str, labels: Sequence[str] = ()) -> GaugeMetricFamily | CounterMetricFamily:
    kind, text = FAMILIES[name]
    if kind == "counter":
        return CounterMetricFamily(name, text, labels=labels)
    return GaugeMetricFamily(name, text, labels=labels)


class _BotCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def describe(self) -> list[Metric]:
        # Names only, so that the registry refuses another collector exporting the same ones.
        return [_family(n) if FAMILIES[n][0] != "histogram" else HistogramMetricFamily(n, "") for n in FAMILIES]

    def collect(self) -> Iterator[Metric]:
        m = self.m
        yield from (h.family() for h in m.histograms.values())
        yield from self._components(m.sources)
        yield from self._told()
        yield from self._free_form()

    def _components(self, s: Sources) -> Iterator[Metric]:
        counts: Mapping[str, int] = s.orders.counts if s.orders is not None else {}
        yield CounterMetricFamily("aq_orders_placed", FAMILIES["aq_orders_placed"][1], counts.get("placed", 0))
        rejected = _family("aq_orders_rejected", ["reason"])
        for key, reason in REJECT_REASONS.items():
            rejected.add_metric([reason], counts.get(key, 0))
        yield rejected
        events = _family("aq_order_events", ["event"])
        for key, n in sorted(counts.items()):
            events.add_metric([key], n)
        yield events
        yield CounterMetricFamily("aq_cancels", FAMILIES["aq_cancels"][1], counts.get("canceled", 0))
        venue: Mapping[str, int] = s.rest.counts if s.rest is not None else {}
        yield CounterMetricFamily("aq_rate_limited", FAMILIES["aq_rate_limited"][1], venue.get("rate_limited", 0))
        errors = _family("aq_venue_errors", ["kind"])
        for kind, n in sorted(venue.items()):
            errors.add_metric([kind], n)
        yield errors
        yield CounterMetricFamily("aq_fills", FAMILIES["aq_fills"][1], s.fills.seen if s.fills is not None else 0)
        # A connection's first connect is not a reconnection; shards are only ever added.
        shards = list(s.market.shards) if s.market is not None else []
        user = s.user.conn if s.user is not None else None
        reconnects = _family("aq_reconnects", ["channel"])
        reconnects.add_metric(["market"], sum(max(0, c.connects - 1) for c in shards))
        reconnects.add_metric(["user"], max(0, user.connects - 1) if user is not None else 0)
        yield reconnects
        yield GaugeMetricFamily("aq_feed_connected", FAMILIES["aq_feed_connected"][1], sum(c.connected for c in shards))
        yield GaugeMetricFamily(
            "aq_user_connected", FAMILIES["aq_user_connected"][1], int(user is not None and user.connected)
        )
        if s.risk is not None:
            yield GaugeMetricFamily("aq_circuit_state", FAMILIES["aq_circuit_state"][1], RISK_CODES[s.risk.state])
            yield GaugeMetricFamily("aq_killed", FAMILIES["aq_killed"][1], int(s.risk.killed))
        for name, source in (("aq_store_errors", s.store), ("aq_journal_errors", s.journal)):
            if source is not None:
                yield GaugeMetricFamily(name, FAMILIES[name][1], source.errors)
        yield from self._venue(s.venue)
        windows = s.windows.windows if s.windows is not None else {}
        yield GaugeMetricFamily("aq_windows", FAMILIES["aq_windows"][1], len(windows))
        info = _family("aq_market_info", ["market", "version", "fees_enabled", "neg_risk"])
        fee = _family("aq_market_fee_rate", ["market"])
        for w in windows.values():
            i = w.info
            info.add_metric([i.slug, i.version, str(i.fees_enabled).lower(), str(i.neg_risk).lower()], 1)
            fee.add_metric([i.slug], float(i.fee_rate))
        yield info
        yield fee

    def _venue(self, source: _VenueStatus | None) -> Iterator[Metric]:
        status = source.venue_status() if source is not None else {}
        current = str(status.get("state", OK))
        counts = status.get("counts")
        entered_by: Mapping[str, int] = counts if isinstance(counts, Mapping) else {}
        state = _family("aq_venue_state", ["state"])
        entered = _family("aq_venue_state_entered", ["state"])
        for name in (*VENUE_STATES, *(() if current in VENUE_STATES else (current,))):
            state.add_metric([name], int(name == current))
            if name != OK:
                entered.add_metric([name], entered_by.get(name, 0))
        yield state
        yield entered
        cap = status.get("refresh_cap_per_sec")
        if isinstance(cap, int | float):
            yield GaugeMetricFamily("aq_refresh_cap_per_second", FAMILIES["aq_refresh_cap_per_second"][1], cap)

    def _told(self) -> Iterator[Metric]:
        m = self.m
        halts = _family("aq_halts", ["scope"])
        for scope in ("global", "market"):
            halts.add_metric([scope], m.halts.get(scope, 0))
        yield halts
        transitions = _family("aq_risk_transitions", ["scope", "state"])
        for (scope, state), n in sorted(m.transitions.items()):
            transitions.add_metric([scope, state], n)
        yield transitions
        balance = _family("aq_balance", ["asset", "market"])
        allowance = _family("aq_allowance", ["asset", "spender"])
        for asset, b in sorted(m.balances.items()):
            balance.add_metric([asset, b.market], b.balance / MICRO)
            for spender, amount in sorted(b.allowances.items()):
                allowance.add_metric([asset, spender], amount / MICRO)
        yield balance
        yield allowance

    def _free_form(self) -> Iterator[Metric]:
        m = self.m
        for series, kind in ((m.counters, "counter"), (m.gauges, "gauge")):
            by_name: dict[str, list[tuple[tuple[tuple[str, str], ...], float]]] = {}
            for (name, labels), value in sorted(series.items()):
                by_name.setdefault(name, []).append((labels, value))
            for name, rows in by_name.items():
                label_names = [k for k, _ in rows[0][0]]
                family: GaugeMetricFamily | CounterMetricFamily = (
                    CounterMetricFamily(name, name, labels=label_names)
                    if kind == "counter"
                    else GaugeMetricFamily(name, name, labels=label_names)
                )
                for labels, value in rows:
                    family.add_metric([v for _, v in labels], value)
                yield family


@dataclass
class Balance:
    balance: int  # micro-USDC or micro-shares
    allowances: dict[str, int]  # spender -> micro units
    market: str = ""  # the market a conditional token belongs to ("" for collateral)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.histograms = {
            name: Histogram(f"aq_{name}_seconds", text, FRAME_BUCKETS if name == "market_frame" else LATENCY_BUCKETS)
            for name, text in LATENCIES.items()
        }
        self.sources = Sources()
        self.halts: dict[str, int] = {}
        self.transitions: dict[tuple[str, str], int] = {}
        self.balances: dict[str, Balance] = {}
        self.counters: dict[_Key, float] = {}
        self.gauges: dict[_Key, float] = {}
        self.registry.register(_BotCollector(self))
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- what the components count, read at scrape time ---------------------------------

    def watch(self, sources: Sources) -> None:
        """Export these components' own counters (replaces what was watched before)."""
        self.sources = sources

    # -- hot path -----------------------------------------------------------------------

    def observe(self, name: str, seconds: float) -> None:
        self.histograms[name].observe(seconds)

    # -- what no component counts -------------------------------------------------------

    def risk_event(self, scope: str, new: str) -> None:
        """A risk transition (``RiskEvent.scope``, ``RiskEvent.new``): counted by new state,
        and as a halt when it enters HALTED. A market's scope is counted as ``market``."""
        kind = "global" if scope == "global" else "market"
        self.transitions[(kind, new)] = self.transitions.get((kind, new), 0) + 1
        if new == "HALTED":
            self.halts[kind] = self.halts.get(kind, 0) + 1

    def set_balance(
        self, asset: str, balance_micro: int, allowances: Mapping[str, int] | None = None, *, market: str = ""
    ) -> None:
        """A balance read from the venue (``GET /balance-allowance``): ``asset`` is
        ``collateral`` or a token id, amounts in micro units, ``allowances`` by spender. A
        token's ``market`` (its window's slug) lets :meth:`forget` drop it with the market."""
        self.balances[asset] = Balance(balance_micro, dict(allowances or {}), market)

    def balance_rows(self) -> dict[str, dict[str, object]]:
        """The balances for the status JSON (decimal strings, as the venue writes them)."""
        return {
            asset: {
                "balance": _units(b.balance),
                "allowances": {s: _units(a) for s, a in sorted(b.allowances.items())},
                **({"market": b.market} if b.market else {}),
            }
            for asset, b in sorted(self.balances.items())
        }

    # -- free-form series ---------------------------------------------------------------

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        self._free(name)
        key = (name, tuple(sorted(labels.items())))
        self.counters[key] = self.counters.get(key, 0.0) + value

    def set(self, name: str, value: float, **labels: str) -> None:
        self._free(name)
        self.gauges[(name, tuple(sorted(labels.items())))] = value

    @staticmethod
    def _free(name: str) -> None:
        if name in _RESERVED or name.removesuffix("_total") in _RESERVED:
            raise ValueError(f"{name} is a built-in metric, exported from its source")

    def forget(self, **labels: str) -> int:
        """Drop every series carrying these labels (a pruned market's gauges and token
        balances): the exported set stays as large as what is live. Returns how many went."""
        want = set(labels.items())
        gone = 0
        for series in (self.counters, self.gauges):
            for key in [k for k in series if want <= set(k[1])]:
                del series[key]
                gone += 1
        if set(labels) == {"market"}:
            for asset in [a for a, b in self.balances.items() if b.market and b.market == labels["market"]]:
                del self.balances[asset]
                gone += 1
        return gone

    # -- exposition ---------------------------------------------------------------------

    def render(self) -> str:
        return generate_latest(self.registry).decode()

    async def serve(self, port: int, host: str = "127.0.0.1") -> str:
        from active_quoting.exchange.server import serve_app

        async def handle(request: web.Request) -> web.Response:
            # Rendered on the loop, not in a thread: the components are read where they change.
            return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", handle)
        self._runner, base = await serve_app(app, host, port)
        self.url = base + "/metrics"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _units(micro: int) -> str:
    whole, frac = divmod(abs(micro), MICRO)
    text = f"{whole}.{frac:06d}".rstrip("0").rstrip(".")
    return ("-" if micro < 0 else "") + text
