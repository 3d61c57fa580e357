"""Flood harness, black-box (issue 11, "Also:"): the bot's CPU per market-channel frame that
needs no order, and whether it keeps up with a flood of such frames.

Three processes, one clock (``CLOCK_MONOTONIC``, ``time.monotonic_ns``):

* **venue** (``flood.py venue``): the embedded exchange, served in its own process as
  ``benchmarks/latency.py``'s venue is, with one up/down window on each of ``--markets`` assets
  (btc, eth, sol, xrp, doge, then made-up names: 16 by default), each with a still house book
  (``latency.HALF``/``LEVELS``: 4 levels a side, 6 ticks wide). Once the bot quotes every
  market: a warm-up, then an **idle baseline** of ``--seconds``, then the **flood** of
  ``--seconds``, then a short **drain**. During the flood the venue changes its house depth
  **away from the touch** (house orders placed and cancelled 12-17 ticks from the book's centre,
  9+ ticks behind the touch however the probes move it) at ``--rate`` changes a second across
  all markets, round robin. Every change is real (the engine's ``place``/``cancel``) and is
  published by the exchange's own ``_publish`` -> ``_send`` -> sender path: one ``price_change``
  frame of two entries (Up and Down) per change, exactly the bytes the exchange writes for it.
  The exchange also sends ``best_bid_ask`` to custom-feature subscribers (the bot is one) on
  every publish; Polymarket sends it when the best bid or ask changes, which a change behind
  the touch never does, so the flood's changes are published with it suppressed.
  Frames are counted as the exchange's writer frames them (``server._text_frame``), and the
  writes to the bot's socket go through a tap that counts bytes and stamps probe frames.
* **probes**, in the venue, through baseline, flood and drain: every ``--probe-every`` seconds
  one market (round robin) has its whole house book moved 3 ticks (up, then back down the next
  time that market's turn comes), one order at a time as the venue publishes (latency.py's
  moves: the bot answers these, a cancel first). The probe's time is when the write carrying the
  ``price_change`` that first moves the touch returned (the tap, venue process); its answer the
  first byte of the first ``POST /order(s)`` / ``DELETE /order(s)`` that names that market
  (tokens posted, order ids cancelled), as the venue's request handler receives it
  (``data_received``, patched as latency.py's venue does: the "venue-stamped" method, up to a
  flood batch late: see benchmarks/README.md), within ``--horizon``. A bot that falls behind
  reads each probe behind the frames queued before it: probe latency grows over the flood.
* **the bot**: ``active-quoting run --exchange-url <venue> --gamma-url <venue> --assets ...``
  exactly as a user starts it against a separately served exchange, default configuration,
  store and journal on.

The harness (this process) samples the bot's CPU every ``SAMPLE_S``: ``/proc/<pid>/stat``
utime + stime (clock ticks, all threads) and the sum of ``/proc/<pid>/task/*/schedstat``'s
run time (ns). CPU per frame = (CPU over the flood - CPU over the same-length baseline just
before) / frames written to the bot in the flood: a **mean**, of everything the process does
(the socket reads, picows' framing, the loop, the other threads). And from inside: the bot's own
``aq_market_frame_seconds`` histogram (each frame timed from its arrival at the handler to the
handler's return: decode, books, strategy bookkeeping, any decision and requests, the journal's
copy; 1 us buckets up to 10 us), scraped from its ``--metrics-port`` as each phase starts and
ends: its **p50 / p90 / p99 per frame** over the baseline and over the flood (linear within a
bucket). On the bot's single loop thread, pinned to its own CPU, a handler's wall time is its
CPU time unless the thread is preempted (the "wait" share says how often). The backlog: the
bot's socket's receive queue (``/proc/net/tcp``, bytes the bot has not read yet) and the venue's
own queue (frames queued, bytes in the transport's buffer), sampled every 0.25 s.

Run: ``python benchmarks/flood.py [--rate 20000] [--seconds 20] [--markets 16] [--json OUT]``.
About 40 s of start-up plus ``2 * seconds + drain``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import latency as lat  # noqa: E402  (benchmarks/ is not a package: the latency harness's helpers)

ASSETS = ("btc", "eth", "sol", "xrp", "doge", "ada", "bnb", "avax", "link", "dot", "ltc", "bch", "trx", "near",
          "atom", "uni", "aave", "apt", "arb", "op")  # fmt: skip
DEEP_TICKS = tuple(range(12, 18))  # flood levels, ticks from the starting centre (touch is 3, probes move it 3)
DEEP_MIN, DEEP_MAX = 4, 10  # house flood orders kept per market
FLOOD_SIZE = 20_000_000  # 20 shares
SAMPLE_S = 0.1
PROBE_MOVE = 3  # ticks: latency.py's "up 3" (a requote, cancel first) and "down 3" (momentum: both pulled)
DRAIN_S = 4.0


# -- pure parts (tested) -------------------------------------------------------------------------


def deep_prices(center: int, tick: int) -> tuple[list[int], list[int]]:
    """Up-terms prices the flood changes: bids ``DEEP_TICKS`` below ``center``, asks above."""
    return [center - k * tick for k in DEEP_TICKS], [center + k * tick for k in DEEP_TICKS]


class DepthFlood:
    """Which change comes next on one market: place a house order at a deep level (random side
    and level) or cancel the oldest flood order, keeping ``DEEP_MIN``..``DEEP_MAX`` of them.
    Returns ``("place", side, price)`` or ``("cancel", order id)``; :meth:`placed` records the id."""

    def __init__(self, center: int, tick: int, seed: int) -> None:
        import random

        self.rng = random.Random(seed)
        self.bids, self.asks = deep_prices(center, tick)
        self.held: deque[str] = deque()

    def next(self) -> tuple[Any, ...]:
        n = len(self.held)
        if n > DEEP_MIN and (n >= DEEP_MAX or self.rng.random() < 0.5):
            return ("cancel", self.held.popleft())
        side = self.rng.randrange(2)
        return ("place", side, self.rng.choice(self.bids if side == 0 else self.asks))

    def placed(self, order_id: str) -> None:
        self.held.append(order_id)


def read_cpu(pid: int) -> tuple[int, int, int]:
    """(utime + stime in clock ticks, every thread's schedstat run time summed in ns, and their
    run-queue wait: runnable but not running, ns)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), counted after the name
    ns = wait = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                run, queued = f.read().split()[:2]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue  # a thread that ended between the listing and the read
        ns += int(run)
        wait += int(queued)
    return ticks, ns, wait


def thread_cpu(pid: int) -> dict[str, int]:
    """Run time (schedstat, ns) of the main thread (the event loop: tid == pid) and of every
    other thread summed (Python's threads all carry the process's name, so none can be told
    apart by it: the store writer, the journal, libuv's workers)."""
    out = {"main": 0, "other threads": 0}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                ns = int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        out["main" if int(task) == pid else "other threads"] += ns
    return out


def thread_shares(before: dict[str, int], after: dict[str, int], seconds: float) -> dict[str, float]:
    """Each thread's CPU share of one core between two ``thread_cpu`` readings."""
    return {k: (after[k] - before.get(k, 0)) / 1e9 / seconds for k in after if seconds > 0}


def at(samples: list[tuple[int, ...]], t: int, field: int) -> float:
    """The cumulative counter ``field`` (1: ticks, 2: run ns, 3: wait ns) of ``read_cpu`` samples at time
    ``t``, interpolated linearly between the samples either side (clamped at the ends)."""
    if not samples:
        raise ValueError("no samples")
    if t <= samples[0][0]:
        return float(samples[0][field])
    for a, b in zip(samples, samples[1:], strict=False):
        if a[0] <= t <= b[0]:
            if b[0] == a[0]:
                return float(b[field])
            return a[field] + (b[field] - a[field]) * (t - a[0]) / (b[0] - a[0])
    return float(samples[-1][field])


def cpu_per_frame(samples: list[tuple[int, ...]], baseline: tuple[int, int], flood: tuple[int, int],
                  frames: int, hz: int) -> dict[str, float]:  # fmt: skip
    """CPU of the flood window minus the baseline window (scaled to the flood's length), per
    frame, in us: from the ticks (``hz`` a second) and from schedstat. Also the bot's CPU share
    (of one core) in each window."""
    out: dict[str, float] = {}
    fl_s = (flood[1] - flood[0]) / 1e9
    bl_s = (baseline[1] - baseline[0]) / 1e9
    for name, field, unit in (("ticks", 1, 1e6 / hz), ("schedstat", 2, 1e-3)):
        fl = (at(samples, flood[1], field) - at(samples, flood[0], field)) * unit  # us
        bl = (at(samples, baseline[1], field) - at(samples, baseline[0], field)) * unit
        net = fl - bl * fl_s / bl_s
        out[f"{name}_flood_share"] = fl / 1e6 / fl_s
        out[f"{name}_baseline_share"] = bl / 1e6 / bl_s
        out[f"{name}_us_per_frame"] = net / frames if frames else float("nan")
        out[f"{name}_gross_us_per_frame"] = fl / frames if frames else float("nan")
    if len(samples[0]) > 3:  # runnable but waiting for a CPU (another process had it)
        out["wait_flood_share"] = (at(samples, flood[1], 3) - at(samples, flood[0], 3)) / 1e9 / fl_s
        out["wait_baseline_share"] = (at(samples, baseline[1], 3) - at(samples, baseline[0], 3)) / 1e9 / bl_s
    return out


FRAME_METRIC = "aq_market_frame_seconds"


def frame_histogram(text: str) -> dict[str, Any]:
    """The bot's market-frame histogram in a ``/metrics`` scrape: cumulative counts by upper
    bound (seconds; ``inf`` for +Inf), its sum (seconds) and count."""
    buckets: dict[float, int] = {}
    out: dict[str, Any] = {"buckets": buckets, "sum": 0.0, "count": 0}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith(FRAME_METRIC + "_bucket{"):
            buckets[float(name.split('le="', 1)[1].split('"', 1)[0])] = int(float(value))
        elif name == FRAME_METRIC + "_sum":
            out["sum"] = float(value)
        elif name == FRAME_METRIC + "_count":
            out["count"] = int(float(value))
    return out


def frame_quantiles(
    before: dict[str, Any], after: dict[str, Any], qs: tuple[int, ...] = (50, 90, 99)
) -> dict[str, Any]:
    """Per-frame handling time of the frames observed between two scrapes, us: the mean, and
    the ``qs`` percentiles, linear within a bucket (the first from 0); a percentile in the
    open-ended last bucket is its lower bound. None without frames."""
    bounds = sorted(after["buckets"])
    cum = [after["buckets"][b] - before["buckets"].get(b, 0) for b in bounds]
    n = after["count"] - before["count"]
    out: dict[str, Any] = {"n": n, "mean": (after["sum"] - before["sum"]) / n * 1e6 if n > 0 else None}
    for q in qs:
        value = None
        target = q / 100 * n
        lo, seen = 0.0, 0
        for bound, c in zip(bounds, cum, strict=True):
            if n > 0 and c >= target:
                value = lo if bound == float("inf") else lo + (bound - lo) * (target - seen) / (c - seen or 1)
                break
            lo, seen = bound, c
        out[f"p{q}"] = value * 1e6 if value is not None else None
    return out


def free_port() -> int:
    """A loopback port free now (for the bot's metrics: the harness must know it in advance)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str) -> dict[str, Any] | None:
    """The bot's market-frame histogram now, or None if its metrics did not answer."""
    try:  # never through an http_proxy from the environment: the bot is on loopback
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=2.0) as r:
            return frame_histogram(r.read().decode())
    except OSError:
        return None


def tcp_queues(text: str, local_port: int, remote_port: int) -> tuple[int, int] | None:
    """(tx_queue, rx_queue) of the ``/proc/net/tcp`` socket from ``local_port`` to
    ``remote_port`` (127.0.0.1), or None if there is none."""
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 5:
            continue
        lp = int(parts[1].rsplit(":", 1)[1], 16)
        rp = int(parts[2].rsplit(":", 1)[1], 16)
        if lp == local_port and rp == remote_port:
            tx, rx = parts[4].split(":")
            return int(tx, 16), int(rx, 16)
    return None


def answers(probes: list[list[Any]], requests: list[list[Any]], horizon_ns: int) -> list[dict[str, Any]]:
    """Per probe ``[t written, market, kind, phase]``: the first order/cancel request
    ``[t, method, path, sender, n, markets (comma-separated), ...]`` naming its market at or
    after it, within ``horizon_ns``; ``latency_ns`` None when none came (or the probe's frame was
    never written: t 0)."""
    out = []
    reqs = sorted(requests, key=lambda r: r[0])
    for t0, market, kind, phase, *_ in probes:
        hit = None
        if t0:
            hit = next((r[0] - t0 for r in reqs if t0 <= r[0] < t0 + horizon_ns and market in r[5].split(",")), None)
        out.append({"t": t0, "market": market, "kind": kind, "phase": phase, "latency_ns": hit})
    return out


def slices(answered: list[dict[str, Any]], phases: dict[str, list[int]], slice_s: float) -> list[dict[str, Any]]:
    """Probe latency rows: the baseline, the flood in ``slice_s`` slices (from its start), the
    drain; each with n answered, unanswered, p50 / p90 / max in us."""
    rows = []

    def row(name: str, group: list[dict[str, Any]]) -> None:
        lat_us = sorted(a["latency_ns"] / 1000 for a in group if a["latency_ns"] is not None)
        rows.append({"slice": name, "n": len(lat_us), "unanswered": sum(1 for a in group if a["latency_ns"] is None),
                     "p50": statistics.median(lat_us) if lat_us else None,
                     "p90": lat_us[min(len(lat_us) - 1, int(0.9 * len(lat_us)))] if lat_us else None,
                     "max": lat_us[-1] if lat_us else None})  # fmt: skip

    row("baseline", [a for a in answered if a["phase"] == "baseline"])
    f0, f1 = phases["flood"]
    flood = [a for a in answered if a["phase"] == "flood"]
    step = int(slice_s * 1e9)
    # The last slice takes the flood's few ms over its nominal length, and the probes made in
    # the flood whose frame was written after it (queued behind the flood) or never (t 0).
    n = max(1, round((f1 - f0) / step))
    for k in range(n):
        lo, hi = f0 + k * step, (f0 + (k + 1) * step if k < n - 1 else 1 << 62)
        name = f"flood {k * slice_s:g}-{(k + 1) * slice_s:g} s"
        row(name, [a for a in flood if lo <= a["t"] < hi or (a["t"] == 0 and k == n - 1)])
    row("drain", [a for a in answered if a["phase"] == "drain"])
    return rows


def unprompted(answered: list[dict[str, Any]], requests: list[list[Any]], phases: dict[str, list[int]],
               horizon_ns: int) -> dict[str, int]:  # fmt: skip
    """Per phase, the order/cancel requests that name no market probed within ``horizon_ns``
    before them: what the bot sent that no touch move asked for (the flood must need none)."""
    out: dict[str, int] = {}
    for r in requests:
        named = [m for m in r[5].split(",") if m]
        if any(a["t"] and a["market"] in named and a["t"] <= r[0] < a["t"] + horizon_ns for a in answered):
            continue
        for name, (t0, t1) in phases.items():
            if t0 <= r[0] < t1:
                out[name] = out.get(name, 0) + 1
    return out


# -- the venue process ---------------------------------------------------------------------------


async def venue(args: argparse.Namespace) -> None:
    from aiohttp import web

    from active_quoting.exchange import server as server_mod
    from active_quoting.exchange.engine import BUY, SCALE
    from active_quoting.exchange.flow import FlowConfig, MarketFlow

    clock = time.monotonic_ns
    state: dict[str, Any] = {"frames": 0, "arm": None, "probe_frame": None, "probe_rec": None, "pending": [],
                             "bytes": 0, "writes": 0, "flood_sent": 0, "taps": 0}  # fmt: skip
    probes: list[list[Any]] = []  # [t written (0 until then), market, kind, phase, wall-clock ms of the move]
    requests: list[list[Any]] = []  # [t first byte, method, path, sender, orders posted, markets, signature]
    first_byte: dict[object, int] = {}

    lat.stamp_first_bytes(first_byte, clock)

    @web.middleware
    async def attribute(request: web.Request, handler: Any) -> web.StreamResponse:
        # The handler runs once the head is parsed; a body that arrives in a later read stamps
        # again, so the stamp is taken here and dropped again once the body is in (else the next
        # request on the connection gets the body's time).
        t = first_byte.pop(request.protocol, 0)
        if (request.method, request.path) not in lat.ORDER_PATHS:
            response = await handler(request)
            first_byte.pop(request.protocol, None)
            return response
        body = json.loads(await request.read() or b"null")
        first_byte.pop(request.protocol, None)
        markets: set[str] = set()
        n = 0
        if request.method == "POST":
            entries = body if isinstance(body, list) else [body]
            n = len(entries)
            for e in entries:
                o = e.get("order", e) if isinstance(e, dict) else {}
                m = ex.engine.by_token.get(str(o.get("tokenId", o.get("token_id", ""))))
                if m is not None:
                    markets.add(m.condition_id)
        else:
            ids = body if isinstance(body, list) else [body.get("orderID") if isinstance(body, dict) else None]
            for i in ids:
                o = ex.engine.orders.get(i) if isinstance(i, str) else None
                if o is not None:
                    markets.add(o.market)
        requests.append([t, request.method, request.path, request.headers.get("POLY_ADDRESS", "").lower(), n,
                         ",".join(sorted(markets)), request.headers.get("POLY_SIGNATURE", "")])  # fmt: skip
        return await handler(request)

    original_send = server_mod.Exchange._send

    def armed_send(self: Any, ws: Any, frame: bytes, delay_s: float = 0.0) -> None:
        if state["arm"] is not None and b'"price_change"' in frame and state["arm"] in frame:
            state["probe_frame"], state["arm"] = frame, None
        original_send(self, ws, frame, delay_s)

    server_mod.Exchange._send = armed_send  # type: ignore[method-assign]
    original_text_frame = server_mod._text_frame

    def counted_text_frame(payload: bytes) -> bytes:
        state["frames"] += 1
        if payload is state["probe_frame"]:
            state["pending"].append(state["probe_rec"])
            state["probe_frame"] = None
        return original_text_frame(payload)

    server_mod._text_frame = counted_text_frame

    class Tap:
        """The bot's market socket's transport as the exchange's sender sees it: counts the
        writes and stamps the probe frames a write carried when it returns."""

        def __init__(self, transport: Any) -> None:
            self.transport = transport

        def write(self, data: bytes) -> None:
            self.transport.write(data)
            if state["pending"]:
                t = clock()
                for rec in state["pending"]:
                    rec[0] = t
                state["pending"].clear()
            state["writes"] += 1
            state["bytes"] += len(data)

        def is_closing(self) -> bool:
            return bool(self.transport.is_closing())

        def __getattr__(self, name: str) -> Any:
            return getattr(self.transport, name)

    ex = await lat.start_exchange(attribute)

    assets = ASSETS[: args.markets]
    flow = MarketFlow(ex, FlowConfig(assets=assets, window_s=args.window_seconds, noise_takers_per_s=0.0,
                                     jump_prob_per_s=0.0))  # fmt: skip
    now = time.time()
    flow.ensure_windows(now)
    markets = [next(w.market for w in flow.windows if w.asset == a and w.start <= now < w.end) for a in assets]
    tick = markets[0].tick
    center = SCALE // 2
    house: dict[str, dict[tuple[int, int], str]] = {m.condition_id: {} for m in markets}

    def order(m: Any, side: int, price: int) -> Any:
        token, limit = (m.up, price) if side == 0 else (m.down, SCALE - price)
        return flow._order(lat.HOUSE, m, token, BUY, limit, FLOOD_SIZE)

    async def shift(m: Any, c: int, label: str = "") -> None:
        """latency.py's house move: the book (``lat.LEVELS`` a side, ``lat.HALF`` ticks from
        ``c``) re-placed one order at a time, new levels first, most aggressive first, then the
        cancels; the step that first moves the touch arms the probe frame."""
        mine = house[m.condition_id]
        wanted = {(0, c - (lat.HALF + i) * tick) for i in range(lat.LEVELS)}
        wanted |= {(1, c + (lat.HALF + i) * tick) for i in range(lat.LEVELS)}

        def top() -> tuple[int, int]:
            return max((p for s, p in mine if s == 0), default=0), min((p for s, p in mine if s == 1), default=SCALE)

        before = top()
        steps = [("place", k) for k in sorted(wanted - set(mine), key=lambda k: -k[1] if k[0] == 0 else k[1])]
        steps += [("cancel", k) for k in mine if k not in wanted]
        for op, key in steps:
            if op == "place":
                o = order(m, *key)
                result = ex.engine.place(o, int(time.time() * 1000))
                mine[key] = o.id
            else:
                result = ex.engine.cancel(mine.pop(key))[2]
            if label and top() != before:
                rec = [0, m.condition_id, label, state["phase"], int(time.time() * 1000)]
                probes.append(rec)
                state["arm"], state["probe_rec"] = m.condition_id.encode(), rec
                label = ""
            ex._publish(result)
            await asyncio.sleep(0)

    state["phase"] = "setup"
    for m in markets:
        await shift(m, center)
    print(json.dumps({"clob": ex.clob_url, "gamma": ex.gamma_url, "assets": ",".join(assets)}), flush=True)

    def quoted(m: Any) -> bool:
        return any(o.account != lat.HOUSE for o in ex.engine.live_orders(market=m.condition_id))

    tokens = {t for m in markets for t in (m.up, m.down)}
    deadline = time.monotonic() + args.ready_timeout
    while not (all(quoted(m) for m in markets) and tokens <= set().union(*ex.market_sockets.values())):
        if time.monotonic() > deadline:
            print(json.dumps({"error": f"the bot quoted {sum(map(quoted, markets))} of {len(markets)} markets"}),
                  flush=True)  # fmt: skip
            await ex.stop()
            return
        await asyncio.sleep(0.2)

    def tap_all() -> None:
        for ws in ex.market_sockets:
            tr = ex._ws_transport.get(ws)
            if tr is not None and not isinstance(tr, Tap):
                ex._ws_transport[ws] = Tap(tr)
                state["taps"] += 1

    tap_all()
    if not state["taps"]:
        print(json.dumps({"error": "the bot's market socket is not on the exchange's raw write path"}), flush=True)
        await ex.stop()
        return

    backlog: list[list[int]] = []  # sock_state() every 0.25 s

    def sock_state() -> list[int]:
        """[t, frames queued at the venue, bytes in the transports' buffers, bytes in the bot's
        receive queue (unread), the venue socket's send queue, bytes handed to the transports]"""
        tap_all()
        box = sum(len(b) for b in ex._outbox.values())
        wbuf = rx = tx = 0
        table = Path("/proc/net/tcp").read_text()
        for ws in list(ex.market_sockets):
            tr = ex._ws_transport.get(ws)
            if tr is None:
                continue
            wbuf += tr.get_write_buffer_size()
            sock, peer = tr.get_extra_info("sockname"), tr.get_extra_info("peername")
            if sock and peer:
                q = tcp_queues(table, peer[1], sock[1])
                if q is not None:
                    tx, rx = tx + q[0], rx + q[1]
        return [clock(), box, wbuf, rx, tx, state["bytes"]]

    async def sample_backlog() -> None:
        while True:
            backlog.append(sock_state())
            await asyncio.sleep(0.25)

    turn = [0]
    up = {m.condition_id: False for m in markets}

    async def prober() -> None:
        while True:
            await asyncio.sleep(args.probe_every)
            m = markets[turn[0] % len(markets)]
            turn[0] += 1
            up[m.condition_id] = not up[m.condition_id]
            moved = center + (PROBE_MOVE * tick if up[m.condition_id] else 0)
            await shift(m, moved, f"up {PROBE_MOVE}" if up[m.condition_id] else f"down {PROBE_MOVE}")

    floods = {m.condition_id: DepthFlood(center, tick, i) for i, m in enumerate(markets)}
    quiet = set[Any]()

    def step(m: Any) -> None:
        f = floods[m.condition_id]
        op = f.next()
        if op[0] == "place":
            o = order(m, op[1], op[2])
            result = ex.engine.place(o, int(time.time() * 1000))
            f.placed(o.id)
        else:
            result = ex.engine.cancel(op[1])[2]
        custom, ex.custom_feature = ex.custom_feature, quiet  # no best_bid_ask: the touch did not move
        try:
            ex._publish(result)
        finally:
            ex.custom_feature = custom

    async def flood(rate: float, seconds: float) -> None:
        t0 = clock()
        end = t0 + int(seconds * 1e9)
        cap = max(1, int(rate * 0.1))  # at most 100 ms worth of frames between two loop turns
        i = sent = 0
        n = len(markets)
        pause = args.write_every_ms / 1000
        while True:
            now = clock()
            if now >= end:
                break
            due = min(cap, int((now - t0) * rate / 1e9) - sent)
            for _ in range(due):
                step(markets[i % n])
                i += 1
            sent += max(due, 0)
            await asyncio.sleep(pause)
        state["flood_sent"] = sent

    # warm-up: a couple of probes and a short flood, so every path has run once before timing
    tasks = [asyncio.get_running_loop().create_task(sample_backlog())]
    phases: dict[str, list[int]] = {}
    counts: dict[str, dict[str, int]] = {}
    usage: dict[str, float] = {}

    async def phase(name: str, seconds: float, rate: float = 0.0) -> None:
        state["phase"] = name
        c0 = {k: state[k] for k in ("frames", "bytes", "writes")}
        s0 = sock_state()
        print(json.dumps({"phase": name}), flush=True)
        ru0 = time.process_time()
        t0 = clock()
        if rate:
            await flood(rate, seconds)
        else:
            await asyncio.sleep(seconds)
        t1 = clock()
        print(json.dumps({"phase": f"{name} end"}), flush=True)
        s1 = sock_state()
        phases[name] = [t0, t1]
        counts[name] = {k: state[k] - c0[k] for k in c0} | {"flood_sent": state["flood_sent"]}
        # bytes that reached the bot's socket (handed over, less what the transport still holds),
        # and bytes the bot read (less what waits in its receive queue)
        counts[name]["delivered_bytes"] = (s1[5] - s1[2]) - (s0[5] - s0[2])
        counts[name]["read_bytes"] = (s1[5] - s1[2] - s1[3]) - (s0[5] - s0[2] - s0[3])
        counts[name]["backlog_bytes_end"] = s1[2] + s1[3]
        usage[name] = (time.process_time() - ru0) / ((t1 - t0) / 1e9)
        state["flood_sent"] = 0

    await phase("warm-up", min(2.0, args.seconds), min(args.rate, 2000))
    await asyncio.sleep(2.0)
    tasks.append(asyncio.get_running_loop().create_task(prober()))
    await phase("baseline", args.seconds)
    await phase("flood", args.seconds, args.rate)
    await phase("drain", DRAIN_S)
    for t in tasks:
        t.cancel()
    Path(args.out).write_text(json.dumps({
        "phases": phases, "counts": counts, "venue_cpu_share": usage, "probes": probes, "requests": requests,
        "backlog": backlog, "markets": [m.condition_id for m in markets], "taps": state["taps"],
        "sockets": len(ex.market_sockets)}))  # fmt: skip
    print(json.dumps({"done": len(probes)}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await ex.stop()


# -- the harness ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    """The venue and the bot in their own processes; the bot's CPU sampled throughout."""
    here = Path(__file__).resolve()
    py = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="aq-flood-"))
    out = tmp / "venue.json"
    need = 90 + 2 * args.seconds + DRAIN_S
    try:
        window = lat.pick_window(time.time(), need + 120)
    except lat.NoWindow as e:
        print(f"flood harness: {e}", file=sys.stderr)
        return None
    venue_cpu, bot_cpu = lat.pinning(args)
    procs: list[subprocess.Popen[bytes]] = []
    samples: list[tuple[int, ...]] = []
    venue_samples: list[tuple[int, ...]] = []
    try:
        v = subprocess.Popen([py, str(here), "venue", "--out", str(out), "--rate", str(args.rate), "--seconds",
                              str(args.seconds), "--markets", str(args.markets), "--window-seconds", str(window),
                              "--probe-every", str(args.probe_every), "--write-every-ms", str(args.write_every_ms)],
                             stdout=subprocess.PIPE, preexec_fn=venue_cpu)  # fmt: skip
        procs.append(v)
        assert v.stdout is not None
        lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in iter(v.stdout.readline, b"")] and lines.put(b""),
                         daemon=True).start()  # fmt: skip
        info = json.loads(lines.get(timeout=60) or b"{}")
        if "clob" not in info:
            print(f"flood harness: the venue did not start; {info}", file=sys.stderr)
            return None
        metrics_port = free_port()
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        script = Path(py).parent / "active-quoting"
        command = [str(script)] if script.exists() else [py, "-m", "active_quoting.cli"]
        bot = subprocess.Popen([*command, "run", "--exchange-url", info["clob"], "--gamma-url", info["gamma"],
                                "--assets", info["assets"], "--window-seconds", str(window), "--duration",
                                str(int(need + 60)), "--db", str(tmp / "run.db"), "--metrics-port",
                                str(metrics_port)],
                               stdout=subprocess.DEVNULL, stderr=open(tmp / "bot.log", "wb"),
                               preexec_fn=bot_cpu)  # fmt: skip
        procs.append(bot)
        done: dict[str, Any] = {}
        threads: dict[str, Any] = {}  # thread_cpu(bot) when each phase began (the venue says so)
        scrapes: dict[str, Any] = {}  # the bot's market-frame histogram then
        while not done:
            try:
                samples.append((time.monotonic_ns(), *read_cpu(bot.pid)))
                venue_samples.append((time.monotonic_ns(), *read_cpu(v.pid)))
            except (FileNotFoundError, ProcessLookupError):
                print(f"flood harness: the bot exited ({bot.poll()}); logs in {tmp}", file=sys.stderr)
                return None
            try:
                line = lines.get(timeout=SAMPLE_S)
            except queue.Empty:
                continue
            msg = json.loads(line or b'{"error": "the venue exited"}')
            if "phase" in msg:
                threads[msg["phase"]] = thread_cpu(bot.pid)
                scrapes[msg["phase"]] = scrape(metrics_url)
            else:
                done = msg
        if "done" not in done:
            log = tmp / "bot.log"
            tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else ["(no log)"]
            print(f"flood harness: venue says {done}; logs in {tmp}; the bot's last lines:", *tail,
                  sep="\n", file=sys.stderr)  # fmt: skip
            return None
    finally:
        lat.stop_all(procs)  # the bot (cancels its orders), then the venue
    result = json.loads(out.read_text())
    result["samples"] = samples
    result["venue_samples"] = venue_samples
    result["threads"] = threads
    result["scrapes"] = scrapes
    result["tmp"] = str(tmp)
    return result


def report(result: dict[str, Any], args: argparse.Namespace, load: tuple[float, ...]) -> dict[str, Any]:
    phases = result["phases"]
    flood, base = phases["flood"], phases["baseline"]
    fl_s = (flood[1] - flood[0]) / 1e9
    c = result["counts"]["flood"]
    written = c["frames"]
    mean_frame = c["bytes"] / written if written else 0.0
    read = round(c["read_bytes"] / mean_frame) if mean_frame else 0  # frames the bot took off its socket
    cpu = cpu_per_frame(result["samples"], tuple(base), tuple(flood), read, os.sysconf("SC_CLK_TCK"))  # type: ignore[arg-type]
    vcpu = cpu_per_frame(result["venue_samples"], tuple(base), tuple(flood), written, os.sysconf("SC_CLK_TCK"))  # type: ignore[arg-type]
    answered = answers(result["probes"], result["requests"], int(args.horizon * 1e9))
    rows = slices(answered, phases, args.slice)
    other = unprompted(answered, result["requests"], phases, int(max(args.horizon, 3.0) * 1e9))
    th = result.get("threads", {})
    per_thread = {}
    for name in ("baseline", "flood"):
        if name in th and f"{name} end" in th:
            span = (phases[name][1] - phases[name][0]) / 1e9
            per_thread[name] = thread_shares(th[name], th[f"{name} end"], span)
    handled = {}  # the bot's own per-frame handling time, per phase
    sc = result.get("scrapes", {})
    for name in ("baseline", "flood"):
        if sc.get(name) and sc.get(f"{name} end"):
            handled[name] = frame_quantiles(sc[name], sc[f"{name} end"])
    in_flood = [b for b in result["backlog"] if flood[0] <= b[0] <= flood[1]]
    behind = c["backlog_bytes_end"] / mean_frame if mean_frame else 0.0
    return {
        "rate_target": args.rate, "seconds": args.seconds, "markets": args.markets, "load_before": load,
        "load_after": os.getloadavg(), "flood_changes": c["flood_sent"], "frames_written": written,
        "frames_delivered": round(c["delivered_bytes"] / mean_frame) if mean_frame else 0, "frames_read": read,
        "frame_bytes_mean": mean_frame, "writes_per_s": c["writes"] / fl_s, "flood_s": fl_s, "cpu": cpu, "venue_cpu": vcpu, "bot_threads": per_thread, "handled": handled,
        "venue_cpu_share": result["venue_cpu_share"], "probes": rows, "answers": answered,
        "requests_not_near_a_probe": other, "sockets": result["sockets"],
        "backlog_max": {"venue_frames": max((b[1] for b in in_flood), default=0),
                        "venue_buffer_bytes": max((b[2] for b in in_flood), default=0),
                        "bot_rx_bytes": max((b[3] for b in in_flood), default=0)},
        "behind_frames_end": behind, "behind_s_end": behind / args.rate if args.rate else 0.0,
        # kept up: under 0.1 s of the flood's frames still waiting (venue buffer + bot's socket) at its end
        "kept_up": behind < 0.1 * args.rate, "tmp": result["tmp"],
    }  # fmt: skip


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def table(r: dict[str, Any]) -> str:
    c = r["cpu"]
    s = r["flood_s"]
    bm = r["backlog_max"]
    lines = [
        f"flood: target {r['rate_target']:,.0f} frames/s over {r['markets']} markets for {r['seconds']:g} s; load "
        f"average {r['load_before'][0]:.2f} -> {r['load_after'][0]:.2f}",
        f"frames/s: venue published {r['flood_changes'] / s:,.0f}, framed and written {r['frames_written'] / s:,.0f}, "
        f"into the bot's socket {r['frames_delivered'] / s:,.0f}, read by the bot {r['frames_read'] / s:,.0f} "
        f"({r['frame_bytes_mean']:.0f} B/frame, {r['writes_per_s']:,.0f} writes/s)",
        f"CPU share of one core: venue baseline {r['venue_cpu_share']['baseline']:.2f} / flood "
        f"{r['venue_cpu_share']['flood']:.2f}; bot baseline {c['schedstat_baseline_share']:.3f} / flood "
        f"{c['schedstat_flood_share']:.3f} (schedstat; ticks {c['ticks_baseline_share']:.3f} / "
        f"{c['ticks_flood_share']:.3f}); waiting for a CPU while runnable: bot {c['wait_baseline_share']:.3f} / "
        f"{c['wait_flood_share']:.3f}, venue {r['venue_cpu']['wait_baseline_share']:.3f} / "
        f"{r['venue_cpu']['wait_flood_share']:.3f}",
        "bot CPU share per thread (baseline / flood): "
        + ", ".join(
            f"{k} {r['bot_threads'].get('baseline', {}).get(k, 0):.3f} / {v:.3f}"
            for k, v in sorted(r["bot_threads"].get("flood", {}).items(), key=lambda kv: -kv[1])
        ),
        f"bot CPU per frame read, MEAN, (flood - baseline) / frames read: {c['schedstat_us_per_frame']:.2f} us "
        f"(schedstat), {c['ticks_us_per_frame']:.2f} us (ticks); gross {c['schedstat_gross_us_per_frame']:.2f} us",
        "bot's own handling time per market frame, arrival to return (aq_market_frame_seconds), us: "
        + (
            "; ".join(
                f"{k} n {h['n']:,} mean {_us(h['mean'])} p50 {_us(h['p50'])} p90 {_us(h['p90'])} p99 {_us(h['p99'])}"
                for k, h in r.get("handled", {}).items()
            )
            or "not scraped"
        ),  # fmt: skip
        f"backlog in the flood, max: bot's socket unread {bm['bot_rx_bytes']:,} B, venue {bm['venue_frames']:,} "
        f"frames queued + {bm['venue_buffer_bytes']:,} B buffered; behind at its end: {r['behind_frames_end']:,.0f} "
        f"frames ({r['behind_s_end']:.2f} s of flood) -> {'KEPT UP' if r['kept_up'] else 'FELL BEHIND'}",
        f"order/cancel requests not within 3 s after a probe of their market: {r['requests_not_near_a_probe'] or 'none'}",
        "probe (touch move) -> first order/cancel request naming its market, venue-stamped, us:",
        f"{'slice':18} {'n':>4} {'unans':>5} {'p50':>8} {'p90':>8} {'max':>8}",
    ]
    for row in r["probes"]:
        f = lambda v: f"{v:8.0f}" if v is not None else f"{'-':>8}"  # noqa: E731
        lines.append(f"{row['slice']:18} {row['n']:>4} {row['unanswered']:>5} {f(row['p50'])} {f(row['p90'])} "
                     f"{f(row['max'])}")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd")
    p = sub.add_parser("venue", help="the flooding venue (the harness starts it)")
    p.add_argument("--out", required=True)
    p.add_argument("--window-seconds", type=int, default=3600)
    p.add_argument("--ready-timeout", type=float, default=90.0)
    for q in (parser, p):
        q.add_argument("--rate", type=float, default=20_000, help="flood frames a second, all markets")
        q.add_argument("--seconds", type=float, default=20.0, help="the flood's length (and the baseline's)")
        q.add_argument("--markets", type=int, default=16, choices=range(1, len(ASSETS) + 1), metavar="N")
        q.add_argument("--probe-every", type=float, default=0.5, help="seconds between touch-moving probes")
        q.add_argument("--write-every-ms", type=float, default=1.0,
                       help="the flood loop's pause: frames due are published in one loop turn")  # fmt: skip
    parser.add_argument("--horizon", type=float, default=1.0, help="seconds after a probe its answer counts")
    parser.add_argument("--slice", type=float, default=5.0, help="probe latency slices, seconds")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                        help="the venue on one CPU, the bot on another (default: on)")  # fmt: skip
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (bot log, store, journal)")
    args = parser.parse_args()
    if args.cmd == "venue":
        import uvloop

        uvloop.run(venue(args))
        return
    load = os.getloadavg()
    result = run(args)
    if result is None:
        sys.exit(1)
    r = report(result, args, load)
    print(table(r))
    # a run that fell behind or whose histogram was not scraped keeps its bot log: the evidence
    keep = args.keep or not r["kept_up"] or "flood" not in r["handled"]
    r["tmp_kept"] = keep
    if args.json:
        Path(args.json).write_text(json.dumps(r))
    print(lat.done_with(Path(r["tmp"]), keep))


if __name__ == "__main__":
    main()
