"""Latency harness, black-box: a touch-moving market frame written by the venue -> the first byte
of each order or cancel request that follows, at the venue.

Three processes, one clock (``CLOCK_MONOTONIC``, ``time.monotonic_ns`` in the venue process):

* **venue** (``latency.py venue``): the embedded exchange with two up/down windows (btc for the
  bot, eth for the stock pipeline, so neither's orders move the other's book) whose house book
  (4 levels a side, 6 ticks wide) stands still between moves. Every ``--period`` seconds both
  books move the same way (``CYCLE``: whole book up 3 ticks and back, the ask in 2 and out, the
  bid in 2 and out; the eth book half a period after the btc one, so the two pipelines never
  compete for the machine's two cores), one order at a time as the venue publishes; the ``price_change`` frame of
  the first step that moves the house touch is the move's frame, stamped when it is handed to
  the subscriber's socket. The server protocol's ``data_received`` stamps the first byte of
  every HTTP request; each ``POST /order(s)`` and ``DELETE /order(s)`` is recorded with that
  stamp, its sender (``POLY_ADDRESS``) and how many orders it carries.
* **ours**: ``active-quoting run --exchange-url ... --gamma-url ...`` exactly as a user starts it
  against a separately served exchange: default configuration, store and journal on.
* **stock** (``latency.py stock``): ``json`` + a dict book + py-clob-client-v2 (``create_order``,
  ``post_order``/``post_orders``, ``cancel_orders``; tick-size, neg-risk and version caches
  warm) on the eth market stream. On the first touch change of a move it posts one order if the
  bid moved up, two if the ask moved down, and cancels what it holds otherwise.

A request belongs to the last move of its pipeline's market written before it, if it came
within ``--horizon`` (later ones, such as the bot's re-quote when a momentum cooldown ends, are
no frame's answer). Per move: answered by cancels alone, a **pure cancel** (latency of the
first); by exactly one new order, **one order** (latency of the request carrying it); by two or
more, a **two-sided requote** (latency of the request carrying the second: both quotes out).
What a pipeline does on a move is its own decision (the bot pulls both quotes on a 3-tick
move, momentum; it may not answer a 2-tick one-sided move at all): unanswered moves are
counted, not timed.

**Spot move to cancel** (``--scenario spot``, issue 13's target): the same venue process also
serves the reference-price socket (``/ws/rtds``); it publishes the btc Chainlink price once a
second (as the real feed does), and Gamma's ``priceToBeat`` for the bot's window is that price,
so the window's fair value starts at 0.50. The bot runs ``--strategy spot`` (fair value and the
spot-move guard on; everything else default). Every ``--period`` seconds the venue moves spot,
alternately down and up and back, each pull move sized (with a copy of the bot's volatility
model fed the same ticks) to take Up's fair value to 0.25 or 0.75, far past the quotes' bound
(fair -/+ band + margin), so the resting bid (down) or ask (up) must be pulled. The pull move's
RTDS frame is stamped when it is handed to the bot's socket; its answer is the first byte of
the first ``DELETE /order(s)`` within ``--horizon`` that names the exposed quote (the venue
looks the cancelled ids up: the bid on a drop, the ask on a rise); the first cancel of any
quote is shown beside it. A pull move whose exposed quote is not cancelled in time is counted,
not timed. No stock column: the stock pipeline does not read spot.

Run: ``make latency`` (both scenarios; prints the tables; ``--scenario market|spot|all --moves N
--period S --dump --json OUT``). About 30 s of start-up plus ``moves * period`` per scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STOCK_KEY = "0x" + "22" * 32  # throwaway
HOUSE = "0x0000000000000000000000000000000000000001"
HALF, LEVELS = 3, 4  # the house book: 4 levels a side, 3 ticks from its centre (6 ticks wide)
# (name, bid centre move, ask centre move) in ticks: whole-book shifts of 2 (past the refresh
# threshold) and 3 (momentum), and one side alone; each undone by the next.
CYCLE = (("up 3", 3, 3), ("down 3", -3, -3), ("ask in 2", 0, -2), ("ask out 2", 0, 2),
         ("bid in 2", 2, 0), ("bid out 2", -2, 0))  # fmt: skip
# The stock reactor answers the first touch change of a move and lets the rest of its frames pass.
STOCK_DEBOUNCE_S = 0.05
CASES = ("one order", "two-sided requote", "pure cancel")
SPOT_CASE = "spot move -> cancel"
SPOT0_USD = 100_000  # the reference price (btc/usd) the window's strike is set to
RTDS_NEEDLE = '"crypto_prices_chainlink"'
# (name, direction) per period: a pull move, then back to the strike
SPOT_CYCLE = (("spot down", -1), ("back", 0), ("spot up", 1), ("back", 0))
SPOT_TARGET = 2500  # how far a pull move takes Up's fair value from 0.50 (price units: 0.25)


# -- the venue process -------------------------------------------------------------------------


async def venue(args: argparse.Namespace) -> None:
    from aiohttp import web, web_protocol

    from active_quoting.exchange import server as server_mod
    from active_quoting.exchange.engine import BUY, SCALE
    from active_quoting.exchange.flow import FlowConfig, MarketFlow
    from active_quoting.exchange.server import Exchange, ExchangeConfig
    from active_quoting.model import up_terms
    from active_quoting.venue.signing import OrderSigner

    clock = time.monotonic_ns
    first_byte: dict[object, int] = {}
    # (ns, method, path, address, orders posted, lane, the Up-terms quotes a cancel names: "ask,bid")
    requests: list[tuple[int, str, str, str, int, bool, str]] = []
    moves: list[tuple[int, str]] = []  # (ns the frame was written, "market kind")
    o_up: dict[str, str] = {}  # market -> its Up token
    armed: list[tuple[str, str]] = []  # (what its frame contains, the move) being written

    original_received = web_protocol.RequestHandler.data_received

    def stamped_received(self: Any, data: bytes) -> None:
        if self not in first_byte:
            first_byte[self] = clock()
        original_received(self, data)

    web_protocol.RequestHandler.data_received = stamped_received  # type: ignore[method-assign]

    @web.middleware
    async def attribute(request: web.Request, handler: Any) -> web.StreamResponse:
        t = first_byte.pop(request.protocol, 0)
        if (request.method, request.path) in (("POST", "/order"), ("POST", "/orders"), ("DELETE", "/order"),
                                              ("DELETE", "/orders")):  # fmt: skip
            body = await request.read()
            n = 0
            quotes = ""
            if request.method == "POST":
                n = len(json.loads(body)) if request.path == "/orders" else 1
            else:  # which of our quotes the cancel pulls (the spot scenario checks the exposed one)
                ids = json.loads(body) if request.path == "/orders" else [json.loads(body).get("orderID")]
                named = [ex.engine.orders.get(i) for i in ids if isinstance(i, str)]
                quotes = ",".join(sorted({up_terms(o.token == o_up.get(o.market, ""), o.side, o.price)[0]
                                          for o in named if o is not None}))  # fmt: skip
            sender = request.headers.get("POLY_ADDRESS", "").lower()
            lane = request.headers.get("User-Agent", "") == "active-quoting"  # venue/lane.py's requests
            requests.append((t, request.method, request.path, sender, n, lane, quotes))
        return await handler(request)

    original_send_text = server_mod._send_text

    async def stamped_send_text(ws: Any, text: str) -> None:
        if armed and armed[0][0] in text:
            moves.append((clock(), armed.pop()[1]))
        await original_send_text(ws, text)

    server_mod._send_text = stamped_send_text  # type: ignore[assignment]
    application = web.Application

    def with_middleware(*a: Any, **kw: Any) -> web.Application:
        return application(*a, middlewares=[attribute], **kw)

    web.Application = with_middleware  # type: ignore[misc,assignment]
    ex = Exchange(ExchangeConfig(order_rate=(1e6, 1e6), cancel_rate=(1e6, 1e6)))
    try:
        await ex.start()
    finally:
        web.Application = application  # type: ignore[misc]

    flow = MarketFlow(ex, FlowConfig(assets=("btc", "eth"), window_s=args.window_seconds, noise_takers_per_s=0.0,
                                     jump_prob_per_s=0.0))  # fmt: skip
    now = time.time()
    flow.ensure_windows(now)  # the windows (Gamma records, markets); their books are ours to move
    ours_m, stock_m = (next(w.market for w in flow.windows if w.asset == a and w.start <= now < w.end)
                       for a in ("btc", "eth"))  # fmt: skip
    tick = ours_m.tick
    o_up.update({m.condition_id: m.up for m in (ours_m, stock_m)})
    house: dict[str, dict[tuple[int, int], str]] = {ours_m.condition_id: {}, stock_m.condition_id: {}}

    async def shift(m: Any, bid_center: int, ask_center: int, kind: str = "") -> None:
        """Move one market's house book (bids from ``bid_center - HALF``, asks from
        ``ask_center + HALF``, ``LEVELS`` each) one order at a time, as the venue publishes: new
        levels first (the most aggressive first), then the cancels. The frame of the first step
        that moves the house's Up touch is the move's frame (armed for the stamp)."""
        mine = house[m.condition_id]
        wanted = {(0, bid_center - (HALF + i) * tick) for i in range(LEVELS)}
        wanted |= {(1, ask_center + (HALF + i) * tick) for i in range(LEVELS)}

        def top() -> tuple[int, int]:
            return max((p for s, p in mine if s == 0), default=0), min((p for s, p in mine if s == 1), default=SCALE)

        before = top()
        steps: list[tuple[str, tuple[int, int]]] = [
            ("place", k) for k in sorted(wanted - set(mine), key=lambda k: -k[1] if k[0] == 0 else k[1])
        ]
        steps += [("cancel", k) for k in mine if k not in wanted]
        for op, key in steps:
            if op == "place":
                side, price = key
                token, limit = (m.up, price) if side == 0 else (m.down, SCALE - price)
                order = flow._order(HOUSE, m, token, BUY, limit, 20_000_000)
                result = ex.engine.place(order, int(time.time() * 1000))
                mine[key] = order.id
            else:
                result = ex.engine.cancel(mine.pop(key))[2]
            if kind and top() != before:
                armed[:] = [('"price_change"', f"{m.condition_id} {kind}")]
                kind = ""
            ex._publish(result)
            await asyncio.sleep(0)  # the frame is written before the next step

    center = SCALE // 2
    for m in (ours_m, stock_m):
        await shift(m, center, center)
    stock_address = OrderSigner(STOCK_KEY).address.lower()
    spot = args.scenario == "spot"
    if spot:
        from active_quoting.exchange.rtds import format_units
        from active_quoting.venue.spot_feed import SPOT_SCALE

        strike = SPOT0_USD * SPOT_SCALE
        for g in ex.gamma_markets:  # the price to beat, as Gamma serves it once the window runs
            if g["conditionId"] == ours_m.condition_id:
                g["eventMetadata"] = {"priceToBeat": format_units(strike)}
        ticker = SpotTicker(ex, strike, armed)
        ticker_task = asyncio.get_running_loop().create_task(ticker.run())
    print(json.dumps({"clob": ex.clob_url, "gamma": ex.gamma_url, "up": stock_m.up, "down": stock_m.down,
                      "stock": stock_address}), flush=True)  # fmt: skip

    def ours_live() -> bool:
        return bool(ex.engine.live_orders(market=ours_m.condition_id, account=None)) and any(
            o.account != HOUSE for o in ex.engine.live_orders(market=ours_m.condition_id)
        )

    deadline = time.monotonic() + args.ready_timeout
    while not (ours_live() and (ex.rtds.active if spot else len(ex.market_sockets) >= 2)):
        if time.monotonic() > deadline:
            print(json.dumps({"error": "the bot never quoted (or the stock reactor never subscribed)"}), flush=True)
            await ex.stop()
            return
        await asyncio.sleep(0.1)
    await asyncio.sleep(args.period)

    if spot:
        end_ms = int(next(w.end for w in flow.windows if w.market is ours_m) * 1000)
        for i in range(args.moves):
            kind, direction = SPOT_CYCLE[i % len(SPOT_CYCLE)]
            ticker.move(direction, end_ms, f"{ours_m.condition_id} {kind}" if direction else "")
            await asyncio.sleep(args.period)
        ticker.stop = True
        await ticker_task
    bid_c = ask_c = center
    for i in range(0 if spot else args.moves):
        kind, d_bid, d_ask = CYCLE[i % len(CYCLE)]
        bid_c += d_bid * tick
        ask_c += d_ask * tick
        for m in (ours_m, stock_m):  # half a period apart: each pipeline has the machine to itself
            await shift(m, bid_c, ask_c, kind)
            await asyncio.sleep(args.period / 2)
    markets = {"ours": ours_m.condition_id, "stock": stock_m.condition_id}
    Path(args.out).write_text(json.dumps({"moves": moves, "requests": requests, "stock": stock_address,
                                          "markets": markets, "sized": ticker.sized if spot else []}))  # fmt: skip
    print(json.dumps({"done": len(moves)}), flush=True)
    stop = asyncio.Event()  # served until the harness has stopped the bot
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await ex.stop()


class SpotTicker:
    """The btc reference price on the venue's RTDS socket: one Chainlink tick a second (the
    topic's rate; a price the bot sees stop for 5 s is stale), the value changed by
    :meth:`move`. A copy of the bot's volatility model (``fair_value`` defaults) takes the same
    ticks, so a pull move can be sized to a fair value whatever the estimate has become."""

    def __init__(self, ex: Any, strike: int, armed: list[tuple[str, str]]) -> None:
        from active_quoting import core
        from active_quoting.strategy.config import FairValueConfig

        self.cfg = FairValueConfig()
        ppm = 1_000_000
        impl = core.load(core.IMPL)  # the implementation the bot's process selects too
        self.vol = impl.VolEstimator(self.cfg.vol_half_life_seconds * 1000, int(self.cfg.vol_floor * ppm),
                                     int(self.cfg.vol_initial * ppm))  # fmt: skip
        self.fair_up = impl.fair_up
        self.ex, self.strike, self.value, self.armed = ex, strike, strike, armed
        self.label = ""
        self.stop = False
        self.sized: list[tuple[int, int, int]] = []  # per pull move: (spot, sigma ppm, fair aimed at)

    def move(self, direction: int, end_ms: int, label: str) -> None:
        """The next tick moves spot: back to the strike (0), or far enough down (-1) / up (+1)
        that Up's fair value is 0.50 -/+ ``SPOT_TARGET`` when the tick arrives (about 1 s on)."""
        if direction == 0:
            self.value = self.strike
            return
        tau = end_ms - int(time.time() * 1000) - 1000
        aim = 5000 + direction * SPOT_TARGET
        sigma = self.vol.sigma_ppm
        lo, hi = self.strike // 2, self.strike * 2  # fair is monotone in spot: bisect
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.fair_up(mid, self.strike, sigma, tau, 0, 0, 0, self.cfg.horizon_ms)[0] < aim:
                lo = mid
            else:
                hi = mid
        self.value = hi
        self.label = label
        self.sized.append((hi, sigma, aim))

    async def run(self) -> None:
        while not self.stop:
            await asyncio.sleep(1.2 - time.time() % 1.0)  # 0.2 s into each second: one tick a second
            now = time.time()
            if self.label:
                self.armed[:] = [(RTDS_NEEDLE, self.label)]
                self.label = ""
            if self.ex.rtds.active:
                self.vol.update(self.value, int(now) * 1000)  # the Chainlink payload's second
            self.ex.rtds.publish("btc", self.value, now)


# -- the stock pipeline ------------------------------------------------------------------------


def stock(args: argparse.Namespace) -> None:
    import aiohttp
    from py_clob_client_v2.client import ClobClient
    from py_clob_client_v2.clob_types import ApiCreds, OrderArgsV2, PostOrdersV2Args

    client = ClobClient(args.clob, chain_id=137, key=STOCK_KEY)
    creds = client.create_or_derive_api_key()
    client.set_api_creds(ApiCreds(creds.api_key, creds.api_secret, creds.api_passphrase))
    for token in (args.up, args.down):  # warm caches: no lookups inside the timed path
        client._ClobClient__tick_sizes[token] = "0.01"
        client._ClobClient__neg_risk[token] = False
    client._ClobClient__cached_version = 2
    held: list[str] = []

    quiet_until = [0.0]

    def react(book: dict[str, dict[str, str]], last: list[float]) -> None:
        best_bid = max((float(p) for p in book["bids"]), default=0.0)
        best_ask = min((float(p) for p in book["asks"]), default=1.0)
        old_bid, old_ask = last
        last[:] = [best_bid, best_ask]
        if not old_bid or (best_bid == old_bid and best_ask == old_ask) or time.monotonic() < quiet_until[0]:
            return
        quiet_until[0] = time.monotonic() + STOCK_DEBOUNCE_S
        if best_bid > old_bid:
            o = client.create_order(OrderArgsV2(token_id=args.up, price=round(best_bid - 0.1, 2), size=5, side="BUY"))
            held.append(client.post_order(o, post_only=True)["orderID"])
        elif best_ask < old_ask:
            a = client.create_order(OrderArgsV2(token_id=args.up, price=round(best_bid - 0.1, 2), size=5, side="BUY"))
            b = client.create_order(OrderArgsV2(token_id=args.down, price=round(1 - best_ask - 0.1, 2), size=5,
                                                side="BUY"))  # fmt: skip
            out = client.post_orders([PostOrdersV2Args(order=a, orderType="GTC"),
                                      PostOrdersV2Args(order=b, orderType="GTC")], post_only=True)  # fmt: skip
            held.extend(r["orderID"] for r in out if r.get("orderID"))
        elif held:
            client.cancel_orders(list(held))
            held.clear()

    async def run() -> None:
        book: dict[str, dict[str, str]] = {"bids": {}, "asks": {}}
        last = [0.0, 1.0]
        async with aiohttp.ClientSession() as s, s.ws_connect(args.clob.replace("http", "ws", 1) + "/ws/market") as ws:
            await ws.send_str(json.dumps({"assets_ids": [args.up], "type": "market"}))
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT or not frame.data.startswith(("{", "[")):
                    continue
                data = json.loads(frame.data)
                for msg in data if isinstance(data, list) else [data]:
                    if msg.get("event_type") == "book" and msg.get("asset_id") == args.up:
                        book = {"bids": {lv["price"]: lv["size"] for lv in msg["bids"]},
                                "asks": {lv["price"]: lv["size"] for lv in msg["asks"]}}  # fmt: skip
                        react(book, last)
                    elif msg.get("event_type") == "price_change":
                        for ch in msg["price_changes"]:
                            if ch["asset_id"] != args.up:
                                continue
                            side = book["bids"] if ch["side"] == "BUY" else book["asks"]
                            if float(ch["size"]) == 0:
                                side.pop(ch["price"], None)
                            else:
                                side[ch["price"]] = ch["size"]
                        react(book, last)

    asyncio.run(run())


# -- a round trip on each REST path ------------------------------------------------------------


def rtt(args: argparse.Namespace) -> int:
    """``DELETE /orders`` round trips (an unknown id: the venue answers not_canceled) against
    ``active-quoting exchange`` in its own process, through the order lane and through aiohttp."""
    import uvloop

    from active_quoting.venue.rest import RestClient
    from active_quoting.venue.signing import OrderSigner

    script = Path(sys.executable).parent / "active-quoting"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "active_quoting.cli"]
    venue_proc = subprocess.Popen([*command, "exchange", "--duration", "0", "--assets", "btc"], stdout=subprocess.PIPE)
    try:
        assert venue_proc.stdout is not None
        url = json.loads(venue_proc.stdout.readline())["clob"]

        rest_counts: dict[str, int] = {}

        async def measure(lane: bool) -> list[int]:
            rest = RestClient(url, OrderSigner(STOCK_KEY), order_lane=lane)
            await rest.create_or_derive_api_key()
            await rest.start()
            out: list[int] = []
            try:
                for i in range(args.rounds + 20):
                    t = time.perf_counter_ns()
                    await rest.cancel_orders(["0x" + "00" * 32])
                    if i >= 20:  # warm
                        out.append(time.perf_counter_ns() - t)
                    await asyncio.sleep(0.015)  # under the venue's cancel rate limit (80/s): no 429 waits
            finally:
                await rest.close()
                rest_counts.clear()
                rest_counts.update(rest.counts)
            return out

        for name, lane in (("order lane", True), ("aiohttp", False)):
            samples = uvloop.run(measure(lane))
            print(f"{name:12} DELETE /orders round trip: p50 {statistics.median(samples) / 1000:7.0f} us  "
                  f"p90 {pct(samples, 0.9):7.0f}  p99 {pct(samples, 0.99):7.0f}  ({len(samples)} rounds, "
                  f"429s: {rest_counts.get('rate_limited', 0)})")  # fmt: skip
    finally:
        venue_proc.send_signal(signal.SIGINT)
        venue_proc.wait(30)
    return 0


# -- the harness -------------------------------------------------------------------------------


def classify(
    moves: list[tuple[int, str]], requests: list[tuple[int, str, str, str, int]], who: Any, horizon_ns: int
) -> dict[str, Any]:
    """Per move, what the pipeline sent within ``horizon_ns`` of it and when (see the module
    docstring); requests later than that (a cooldown ending, a timer) belong to no move."""
    out: dict[str, Any] = {c: [] for c in CASES}
    out["first request"] = []
    out["unanswered"] = 0
    bounds = [t for t, _ in moves] + [1 << 62]
    for i, (t0, _) in enumerate(moves):
        end = min(bounds[i + 1], t0 + horizon_ns)
        mine = sorted(r for r in requests if who(r[3]) and t0 <= r[0] < end)
        if not mine:
            out["unanswered"] += 1
            continue
        out["first request"].append(mine[0][0] - t0)
        posted = 0
        second = first_post = None
        for t, method, _, _, n in mine:
            if method == "POST":
                first_post = first_post if first_post is not None else t
                posted += n
                if posted >= 2 and second is None:
                    second = t
        if posted == 0:
            out["pure cancel"].append(mine[0][0] - t0)
        elif posted == 1:
            out["one order"].append(first_post - t0)  # type: ignore[operator]
        else:
            out["two-sided requote"].append(second - t0)  # type: ignore[operator]
    return out


def pct(samples: list[int], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] / 1000 if s else float("nan")


def table(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    head = f"{'case':20} {'n':>4} {'ours p50':>9} {'p90':>8} {'p99':>8}  {'n':>4} {'stock p50':>9} {'p90':>8} {'p99':>8}  {'stock/ours':>10}"
    lines = [head, "-" * len(head)]
    for case in (*CASES, "first request"):
        a, b = ours[case], theirs[case]
        a50 = statistics.median(a) / 1000 if a else float("nan")
        b50 = statistics.median(b) / 1000 if b else float("nan")
        ratio = f"{b50 / a50:9.2f}x" if a and b else f"{'-':>10}"
        lines.append(f"{case:20} {len(a):>4} {a50:>9.0f} {pct(a, 0.9):>8.0f} {pct(a, 0.99):>8.0f}  "
                     f"{len(b):>4} {b50:>9.0f} {pct(b, 0.9):>8.0f} {pct(b, 0.99):>8.0f}  {ratio}")  # fmt: skip
    lines.append(f"moves unanswered: ours {ours['unanswered']}, stock {theirs['unanswered']}")
    return "\n".join(lines)


def pick_window(now: float, need_s: float) -> int:
    """A window length whose current window has ``need_s`` seconds left (so the bot keeps
    quoting it for the whole run)."""
    for w in (3600, 3000, 2400, 1800):
        if w - now % w > need_s:
            return w
    return 3600


def run_scenario(args: argparse.Namespace, scenario: str) -> tuple[dict[str, Any], Path] | None:
    """The venue, the bot and (market scenario) the stock pipeline, each in its own process,
    until the venue has made its moves; the venue's record of moves and requests."""
    here = Path(__file__).resolve()
    py = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix=f"aq-latency-{scenario}-"))
    out = tmp / "venue.json"
    need = 60 + args.moves * args.period
    window = pick_window(time.time(), need + 120)
    procs: list[subprocess.Popen[bytes]] = []
    env = dict(os.environ)
    try:
        v = subprocess.Popen([py, str(here), "venue", "--out", str(out), "--moves", str(args.moves), "--period",
                              str(args.period), "--window-seconds", str(window), "--scenario", scenario],
                             stdout=subprocess.PIPE)  # fmt: skip
        procs.append(v)
        assert v.stdout is not None
        info = json.loads(v.stdout.readline())
        script = Path(py).parent / "active-quoting"  # the command a user types, from this environment
        command = [str(script)] if script.exists() else [py, "-m", "active_quoting.cli"]
        strategy = ["--strategy", "spot"] if scenario == "spot" else []
        bot = subprocess.Popen([*command, "run", "--exchange-url", info["clob"], "--gamma-url",
                                info["gamma"], "--assets", "btc", "--window-seconds", str(window), "--duration",
                                str(int(need + 60)), "--db", str(tmp / "run.db"), *strategy],
                               stdout=subprocess.DEVNULL, stderr=open(tmp / "bot.log", "wb"), env=env)  # fmt: skip
        procs.append(bot)
        if scenario == "market":
            st = subprocess.Popen([py, str(here), "stock", "--clob", info["clob"], "--up", info["up"], "--down",
                                   info["down"]], stderr=open(tmp / "stock.log", "wb"))  # fmt: skip
            procs.append(st)
        done = json.loads(v.stdout.readline() or "{}")
        if "done" not in done:
            print(f"latency harness ({scenario}): venue says {done}; logs in {tmp}", file=sys.stderr)
            return None
        return json.loads(out.read_text()), tmp
    finally:
        for p in reversed(procs):  # the stock, then the bot (which cancels its orders), then the venue
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
            try:
                p.wait(40)
            except subprocess.TimeoutExpired:
                p.kill()


def classify_spot(moves: list[tuple[int, str]], requests: list[tuple[int, str, str, str, int, bool, str]],
                  horizon_ns: int, who: Any) -> dict[str, Any]:  # fmt: skip
    """Per pull move, within ``horizon_ns``: the first ``DELETE`` of the bot's that pulls the
    exposed quote (the bid on a drop, the ask on a rise: the case), the first cancel of any
    quote, and the first request of any kind; a pull move whose exposed quote is not cancelled
    in time is counted, not timed."""
    out: dict[str, Any] = {SPOT_CASE: [], "first cancel": [], "first request": [], "unanswered": 0}
    bounds = [t for t, _ in moves] + [1 << 62]
    for i, (t0, kind) in enumerate(moves):
        end = min(bounds[i + 1], t0 + horizon_ns)
        mine = sorted(r for r in requests if who(r[3]) and t0 <= r[0] < end)
        if mine:
            out["first request"].append(mine[0][0] - t0)
        cancels = [r for r in mine if r[1] == "DELETE"]
        if cancels:
            out["first cancel"].append(cancels[0][0] - t0)
        exposed = "bid" if kind == "spot down" else "ask"  # the quote fair value moved through
        pulled = [r[0] for r in cancels if exposed in r[6].split(",")]
        if pulled:
            out[SPOT_CASE].append(pulled[0] - t0)
        else:
            out["unanswered"] += 1
    return out


def _dump(moves: list[tuple[int, str]], requests: list[tuple[int, str, str, str, int, bool, str]], stock_address: str) -> None:
    events = [(t, f"move {k}") for t, k in moves]
    events += [(r[0], f"  {'stock' if r[3] == stock_address else 'ours '} {r[1]} {r[2]} {r[4]} {r[6]}") for r in requests]
    t0 = moves[0][0] if moves else 0
    for t, e in sorted(events):
        print(f"{(t - t0) / 1e6:12.3f} ms  {e}")


def spot_table(spot: dict[str, Any]) -> str:
    head = f"{'case':20} {'n':>4} {'p50':>8} {'p90':>8} {'p99':>8}"
    lines = [head, "-" * len(head)]
    for case in (SPOT_CASE, "first cancel", "first request"):
        a = spot[case]
        a50 = statistics.median(a) / 1000 if a else float("nan")
        lines.append(f"{case:20} {len(a):>4} {a50:>8.0f} {pct(a, 0.9):>8.0f} {pct(a, 0.99):>8.0f}")
    lines.append(f"pull moves whose exposed quote (the bid on a drop, the ask on a rise) was not cancelled within the "
                 f"horizon: {spot['unanswered']}")
    return "\n".join(lines)


def harness(args: argparse.Namespace) -> int:
    from active_quoting import core

    scenarios = ("market", "spot") if args.scenario == "all" else (args.scenario,)
    report: dict[str, Any] = {"core": core.IMPL, "period_s": args.period, "horizon_s": args.horizon,
                              "load": os.getloadavg(), "cases": {}}  # fmt: skip
    horizon = int(args.horizon * 1e9)
    for scenario in scenarios:
        ran = run_scenario(args, scenario)
        if ran is None:
            return 1
        result, tmp = ran
        requests = [tuple(r[:5]) for r in result["requests"]]
        stock_address = result["stock"]
        on_lane = sum(1 for r in result["requests"] if r[3] != stock_address and r[5])
        of_ours = sum(1 for r in result["requests"] if r[3] != stock_address)
        mine = [(t, k.split(" ", 1)[1]) for t, k in result["moves"] if k.startswith(result["markets"]["ours"])]
        other = [(t, k.split(" ", 1)[1]) for t, k in result["moves"] if k.startswith(result["markets"]["stock"])]
        ours_who = lambda a, stock=stock_address: bool(a) and a != stock  # noqa: E731
        if args.dump:
            _dump(sorted(mine + other), [tuple(r) for r in result["requests"]], stock_address)  # type: ignore[misc]
        if scenario == "market":
            ours = classify(mine, requests, ours_who, horizon)  # type: ignore[arg-type]
            theirs = classify(other, requests, lambda a, stock=stock_address: a == stock, horizon)  # type: ignore[arg-type]
            print(f"core: {core.IMPL}; {len(mine) + len(other)} touch-moving frames, {args.period}s apart; "
                  f"microseconds from the frame written to the request's first byte at the venue "
                  f"(CLOCK_MONOTONIC, venue process)")  # fmt: skip
            print(table(ours, theirs))
            for case in (*CASES, "first request"):
                report["cases"][case] = {"ours": ours[case], "stock": theirs[case]}
            report["unanswered"] = {"ours": ours["unanswered"], "stock": theirs["unanswered"]}
        else:
            spot = classify_spot(mine, [tuple(r) for r in result["requests"]], horizon, ours_who)  # type: ignore[misc]
            print(f"core: {core.IMPL}; bot --strategy spot; {len(mine)} spot pull moves (RTDS Chainlink frames), "
                  f"{2 * args.period}s apart; microseconds from the frame written to the cancel's first byte "
                  f"at the venue (CLOCK_MONOTONIC, venue process)")  # fmt: skip
            print(spot_table(spot))
            report["spot"] = {SPOT_CASE: spot[SPOT_CASE], "first cancel": spot["first cancel"],
                              "first request": spot["first request"], "unanswered": spot["unanswered"],
                              "moves": len(mine),
                              "sized": result.get("sized", [])}  # fmt: skip
        print(f"ours: {on_lane} of {of_ours} order/cancel requests on the order lane; bot log and store: {tmp}")
    report["load_after"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(report))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd")
    p = sub.add_parser("venue")
    p.add_argument("--out", required=True)
    p.add_argument("--moves", type=int, default=48)
    p.add_argument("--period", type=float, default=3.0)
    p.add_argument("--window-seconds", type=int, default=3600)
    p.add_argument("--ready-timeout", type=float, default=60.0)
    p.add_argument("--scenario", choices=("market", "spot"), default="market")
    p = sub.add_parser("rtt", help="round trips on the order lane and on aiohttp, venue in its own process")
    p.add_argument("--rounds", type=int, default=500)
    p = sub.add_parser("stock")
    p.add_argument("--clob", required=True)
    p.add_argument("--up", required=True)
    p.add_argument("--down", required=True)
    parser.add_argument("--moves", type=int, default=48)
    parser.add_argument("--period", type=float, default=3.0)
    parser.add_argument("--horizon", type=float, default=0.1, help="seconds after a move its answers count")
    parser.add_argument("--dump", action="store_true", help="print every move and request")
    parser.add_argument("--scenario", choices=("market", "spot", "all"), default="all",
                        help="market frames (ours against stock), spot moves (--strategy spot), or both")
    parser.add_argument("--json", help="write every sample (ns) per case here (benchmarks/compare.py --latency)")
    args = parser.parse_args()
    if args.cmd == "venue":
        import uvloop

        uvloop.run(venue(args))
    elif args.cmd == "stock":
        stock(args)
    elif args.cmd == "rtt":
        sys.exit(rtt(args))
    else:
        sys.exit(harness(args))


if __name__ == "__main__":
    main()
