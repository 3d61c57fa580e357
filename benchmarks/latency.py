"""Latency harness (not a unit test): market frame in -> order request at the venue.

Both pipelines talk to the embedded exchange served from another thread; the exchange stamps
each order request when it arrives (``time.perf_counter``, one clock for the whole process).
A frame that moves the touch is handed to each pipeline, and the latency is the arrival of
the resulting order request minus the moment the frame was handed over.

* ours: the bot's quote path (``MarketData`` -> ``MarketQuoter`` -> ``OrderManager`` ->
  ``RestClient``: decode and apply in the compiled core, decide, cancel the stale quote, sign,
  post), on uvloop;
* stock: ``json.loads``, a dict book, and py-clob-client-v2's ``create_order`` +
  ``post_order`` / ``post_orders`` (its caches warm, so no extra round trips).

Cases: one order (one side moves) and a two-sided requote (both sides move).

Run: ``make latency`` (prints a table; ``--rounds N``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time

import orjson
import uvloop
from aiohttp import web
from py_clob_client_v2.client import ClobClient
from py_clob_client_v2.clob_types import ApiCreds, OrderArgsV2, PostOrdersV2Args

from active_quoting import core
from active_quoting.exchange.engine import Market
from active_quoting.exchange.server import Exchange, ExchangeConfig
from active_quoting.execution.order_manager import MarketRef, OrderManager
from active_quoting.strategy.config import load_config
from active_quoting.strategy.inventory import InventoryManager
from active_quoting.strategy.momentum import MomentumDetector
from active_quoting.strategy.quoting import MarketQuoter
from active_quoting.strategy.risk import RiskManager
from active_quoting.venue.market_data import MarketData
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner

UP, DOWN, CID = "7001", "7002", "0x" + "cd" * 32
OUR_KEY = "0x" + "11" * 32  # throwaway
STOCK_KEY = "0x" + "22" * 32  # throwaway


class ServedExchange:
    """The embedded exchange on its own thread and loop, stamping order requests on arrival."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        @web.middleware
        async def stamp(request: web.Request, handler):  # type: ignore[no-untyped-def]
            if request.method == "POST" and request.path in ("/order", "/orders"):
                self.arrivals.append(time.perf_counter())
            return await handler(request)

        self.ex = Exchange(ExchangeConfig(order_rate=(1e6, 1e6), cancel_rate=(1e6, 1e6)))
        original = web.Application

        def with_stamp(*args, **kwargs):  # type: ignore[no-untyped-def]
            return original(*args, middlewares=[stamp], **kwargs)

        web.Application = with_stamp  # type: ignore[misc]
        try:
            await self.ex.start()
        finally:
            web.Application = original  # type: ignore[misc]
        self.ex.add_market(Market(CID, UP, DOWN, tick=100, base_tick=100))

    def start(self) -> ServedExchange:
        self.thread.start()
        self.ready.wait(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.ex.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)

    def wait_arrival(self, count: int, timeout: float = 5.0) -> float:
        deadline = time.perf_counter() + timeout
        while len(self.arrivals) < count:
            if time.perf_counter() > deadline:
                raise TimeoutError("no order request arrived")
            time.sleep(0.0001)
        return self.arrivals[count - 1]


def frames(rounds: int, two_sided: bool) -> list[tuple[bytes, bytes]]:
    """(snapshot, move) pairs: the move shifts the touch 3 ticks (past the 2-tick hysteresis)."""
    out = []
    for i in range(rounds):
        base = 3000 + (i % 20) * 100
        snap = {"event_type": "book", "asset_id": UP, "market": CID, "tick_size": "0.01",
                "bids": [{"price": core.format_price(base - 100 * k), "size": "100"} for k in range(5)],
                "asks": [{"price": core.format_price(base + 500 + 100 * k), "size": "100"} for k in range(5)]}  # fmt: skip
        changes = [{"asset_id": UP, "price": core.format_price(base + 300), "size": "50", "side": "BUY"}]
        if two_sided:
            changes.append({"asset_id": UP, "price": core.format_price(base + 400), "size": "50", "side": "SELL"})
        move = {"market": CID, "price_changes": changes, "timestamp": "1", "event_type": "price_change"}
        out.append((orjson.dumps(snap), orjson.dumps(move)))
    return out


async def ours(served: ServedExchange, cases: list[tuple[bytes, bytes]], concurrent: bool) -> list[float]:
    cfg = load_config(env={"AQ_REFRESH_MIN_INTERVAL_MS": "0", "AQ_REFRESH_GLOBAL_CAP_PER_SEC": "1000000"})
    signer = OrderSigner(OUR_KEY)
    rest = RestClient(served.ex.clob_url, signer)
    await rest.create_or_derive_api_key()
    inv = InventoryManager(cfg.inventory)
    inv.register_market(CID, UP, DOWN)
    quoter = MarketQuoter(cfg, inv, MomentumDetector(cfg.momentum), RiskManager(cfg.risk))
    om = OrderManager(rest, signer, min_refresh_ms=0, global_cap_per_sec=1_000_000, concurrent_replace=concurrent)
    om.add_market(MarketRef(CID, UP, DOWN, 100))
    md = MarketData()
    out = []
    for snap, move in cases:
        md.on_frame(snap)
        decision = quoter.decide(CID, md.books.get(UP), 0, om.resting(CID, "bid"), om.resting(CID, "ask"), om.pending())
        om.stage(decision, quoter.venue_orders(CID, decision), time.time())
        await om.flush()  # the quotes at the old touch
        seen = len(served.arrivals)
        t0 = time.perf_counter()
        md.on_frame(move)
        decision = quoter.decide(CID, md.books.get(UP), 0, om.resting(CID, "bid"), om.resting(CID, "ask"), om.pending())
        om.stage(decision, quoter.venue_orders(CID, decision), time.time())
        await om.flush()
        out.append(served.wait_arrival(seen + 1) - t0)
        await om.cancel_all()
        for o in om.live():
            o.status = "CANCELED"
    await rest.close()
    return out


def stock(served: ServedExchange, cases: list[tuple[bytes, bytes]], two_sided: bool) -> list[float]:
    client = ClobClient(served.ex.clob_url, chain_id=137, key=STOCK_KEY)
    creds = client.create_or_derive_api_key()
    client.set_api_creds(ApiCreds(creds.api_key, creds.api_secret, creds.api_passphrase))
    client._ClobClient__tick_sizes[UP] = "0.01"  # warm caches: no lookups inside the timed path
    client._ClobClient__tick_sizes[DOWN] = "0.01"
    client._ClobClient__neg_risk[UP] = client._ClobClient__neg_risk[DOWN] = False
    client._ClobClient__cached_version = 2
    out = []
    for snap, move in cases:
        book = {"bids": {}, "asks": {}}
        msg = json.loads(snap)
        for lv in msg["bids"]:
            book["bids"][lv["price"]] = lv["size"]
        for lv in msg["asks"]:
            book["asks"][lv["price"]] = lv["size"]
        seen = len(served.arrivals)
        t0 = time.perf_counter()
        for ch in json.loads(move)["price_changes"]:
            side = book["bids"] if ch["side"] == "BUY" else book["asks"]
            if ch["size"] == "0":
                side.pop(ch["price"], None)
            else:
                side[ch["price"]] = ch["size"]
        best_bid = max(float(p) for p in book["bids"])
        best_ask = min(float(p) for p in book["asks"])
        bid = client.create_order(OrderArgsV2(token_id=UP, price=round(best_bid, 2), size=20, side="BUY"))
        if two_sided:
            ask = client.create_order(OrderArgsV2(token_id=DOWN, price=round(1 - best_ask, 2), size=20, side="BUY"))
            client.post_orders([PostOrdersV2Args(order=bid, orderType="GTC"), PostOrdersV2Args(order=ask, orderType="GTC")],
                               post_only=True)  # fmt: skip
        else:
            client.post_order(bid, post_only=True)
        out.append(served.wait_arrival(seen + 1) - t0)
        client.cancel_all()
    return out


def summary(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return statistics.median(s) * 1e6, s[min(len(s) - 1, int(0.99 * len(s)))] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    served = ServedExchange().start()
    print(f"core: {core.IMPL}; {args.rounds} rounds per case; microseconds from frame to order request at the venue")
    print(f"{'case':44} {'ours p50':>9} {'ours p99':>9} {'stock p50':>9} {'stock p99':>9} {'p50 ratio':>9}")
    try:
        for name, two in (("one order", False), ("two-sided requote", True)):
            cases = frames(args.rounds, two)
            theirs = stock(served, cases, two)
            b50, b99 = summary(theirs)
            for mode, concurrent in (("cancels first (default)", False), ("concurrent_replace", True)):
                a50, a99 = summary(uvloop.run(ours(served, cases, concurrent)))
                label = f"{name}, {mode}"
                print(f"{label:44} {a50:>9.0f} {a99:>9.0f} {b50:>9.0f} {b99:>9.0f} {b50 / a50:>8.1f}x")
    finally:
        served.stop()


if __name__ == "__main__":
    main()
