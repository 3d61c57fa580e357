"""The embedded exchange's real-time data socket and the RTDS client against it, over loopback
picows under asyncio and uvloop: exact prices of the flow's underlying, the Chainlink topic once
per second of exchange time, filters honoured, unsubscribe, the market-data delay, staleness when
the exchange stops publishing, reconnects after a dropped or silent socket, a malformed frame
survived; and the flow's informed takers acting only after their reaction delay plus the venue's
taker delay (on the simulator's virtual-time loop)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
import uvloop

from active_quoting.clock import ManualClock
from active_quoting.exchange.flow import FlowConfig, MarketFlow
from active_quoting.exchange.rtds import spot_units
from active_quoting.exchange.server import Exchange, ExchangeConfig
from active_quoting.exchange.spot import SCALE_18, SpotPath
from active_quoting.sim.loop import LoopClock, VirtualTimeLoop
from active_quoting.venue.spot_feed import Backoff, SpotFeed, SpotTick, subscribe_message
from loopback_ws import wait_for

LOOPS = ["asyncio", "uvloop"]
T0 = 1_780_000_020.0  # a 60-s window boundary
STEP = 0.2


def run(loop_kind: str, fn: Any) -> Any:
    factory = uvloop.new_event_loop if loop_kind == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(asyncio.wait_for(fn(), 30))


class Venue:
    """The embedded exchange on a manual clock with its market flow stepped by hand, and what
    its RTDS socket published (as the flow's underlying stood at each step)."""

    def __init__(self, clock: ManualClock, ex: Exchange, assets: tuple[str, ...]) -> None:
        self.clock, self.ex = clock, ex
        self.flow = MarketFlow(ex, FlowConfig(assets=assets, window_s=60, seed=5))
        self.expected: list[SpotTick] = []
        self._second: dict[str, int] = {}
        self._binance: dict[str, int] = {}

    @classmethod
    async def start(cls, assets: tuple[str, ...] = ("btc", "eth"), **cfg: Any) -> Venue:
        clock = ManualClock(T0)
        ex = await Exchange(ExchangeConfig(**cfg), clock=clock).start()
        return cls(clock, ex, assets)

    def step(self, n: int = 1, record: bool = True) -> None:
        for _ in range(n):
            now = self.clock.time()
            self.flow.step(now, STEP)
            if record and not self.ex.rtds.frozen:
                for a in self.flow.cfg.assets:
                    units = spot_units(self.flow.spot[a])
                    second = int(now * 1000) // 1000
                    if second > self._second.get(a, -1):
                        self._second[a] = second
                        self.expected.append(SpotTick("chainlink", a, units, second * 1000))
                    if units != self._binance.get(a):
                        self._binance[a] = units
                        self.expected.append(SpotTick("binance", a, units, int(now * 1000)))
            self.clock.advance(STEP)


def fast() -> Backoff:
    return Backoff(base=0.02, cap=0.1, rng=random.Random(1))


def subscribed(ex: Exchange, topics: int) -> bool:
    """One RTDS socket (a dropped one is gone), subscribed to ``topics`` topics."""
    return len(ex.rtds.sockets) == 1 and all(len(subs) == topics for subs in ex.rtds.sockets.values())


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_ticks_are_the_exchanges_underlying_exactly(loop_kind):
    async def main():
        venue = await Venue.start()
        got: list[SpotTick] = []
        feed = SpotFeed(venue.ex.rtds_url, ["btc", "eth"], got.append, sources=("chainlink", "binance"),
                        clock=venue.clock, backoff=fast())  # fmt: skip
        task = asyncio.create_task(feed.run())
        try:
            await wait_for(lambda: subscribed(venue.ex, 2))
            venue.step(12)  # 2.4 s of exchange time
            await wait_for(lambda: len(got) >= len(venue.expected))
            await asyncio.sleep(0.05)
            assert got == venue.expected
            chainlink = [t for t in got if t.source == "chainlink"]
            binance = [t for t in got if t.source == "binance"]
            # Second-aligned, at most one a second per asset: three seconds began in 2.4 s.
            assert all(t.ts_ms % 1000 == 0 for t in chainlink)
            assert sorted(t.ts_ms for t in chainlink if t.asset == "btc") == [int(T0) * 1000 + i * 1000 for i in range(3)]
            assert len(binance) > len(chainlink)  # every step that moved the price
            # Exact: the underlying as the flow holds it, rounded to 1e-8.
            assert feed.last("btc", "binance").price == spot_units(venue.flow.spot["btc"])
            assert feed.last("btc").source == "chainlink"
            assert not feed.is_stale("btc", venue.clock.time()) and not feed.is_stale("eth", venue.clock.time(), "binance")
            assert feed.counters.ticks == len(got) and feed.counters.bad_frames == 0 and feed.counters.ignored == 0
            assert venue.ex.rtds.published["crypto_prices_chainlink"] == 6
        finally:
            await feed.stop()
            await task
            await venue.ex.stop()

    run(loop_kind, main)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_stale_when_the_exchange_stops_publishing_then_silent_socket_reconnected(loop_kind):
    async def main():
        venue = await Venue.start(("btc",))
        got: list[SpotTick] = []
        feed = SpotFeed(venue.ex.rtds_url, ["btc"], got.append, clock=venue.clock, stale_after_s=2.0,
                        silent_reconnect_s=6.0, backoff=fast())  # fmt: skip
        task = asyncio.create_task(feed.run())
        try:
            await wait_for(lambda: subscribed(venue.ex, 1))
            venue.step(3)
            await wait_for(lambda: len(got) == 1)
            assert not feed.is_stale("btc", venue.clock.time())
            venue.ex.rtds.frozen = True  # the feed goes quiet; the socket stays open
            published = dict(venue.ex.rtds.published)
            for _ in range(15):  # 3 s
                venue.step()
                await asyncio.sleep(0)
            assert venue.ex.rtds.published == published  # the outage took effect
            assert feed.connected and feed.is_stale("btc", venue.clock.time())
            assert feed.counters.silent_reconnects == 0
            for _ in range(20):  # 4 s more: 7 s without a tick, past silent_reconnect_s
                venue.step()
                await asyncio.sleep(0.001)
            await wait_for(lambda: feed.counters.silent_reconnects == 1 and feed.counters.reconnects == 1)
            await wait_for(lambda: subscribed(venue.ex, 1))
            venue.ex.rtds.frozen = False
            n = len(got)
            venue.step(5)
            await wait_for(lambda: len(got) > n)
            assert not feed.is_stale("btc", venue.clock.time())
        finally:
            await feed.stop()
            await task
            await venue.ex.stop()

    run(loop_kind, main)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_reconnects_after_the_exchange_drops_the_socket_and_survives_a_malformed_frame(loop_kind):
    async def main():
        venue = await Venue.start(("btc",))
        got: list[SpotTick] = []
        feed = SpotFeed(venue.ex.rtds_url, ["btc"], got.append, sources=("binance",), clock=venue.clock,
                        backoff=fast())  # fmt: skip
        task = asyncio.create_task(feed.run())
        try:
            await wait_for(lambda: subscribed(venue.ex, 1))
            venue.step(2)
            await wait_for(lambda: len(got) == 2)
            await venue.ex.rtds.drop()
            await wait_for(lambda: feed.counters.reconnects == 1 and subscribed(venue.ex, 1))
            for ws in list(venue.ex.rtds.sockets):
                venue.ex._send(ws, b'{"topic":"crypto_prices","type":"update","payload":{"symbol":"btcusdt"}}')
            await wait_for(lambda: feed.counters.bad_frames == 1)
            venue.step(2)
            await wait_for(lambda: len(got) == 4)  # resubscribed, and the bad frame did not stop the reader
            assert got == [t for t in venue.expected if t.source == "binance"]
            assert feed.connected and feed.counters.reconnects == 1
        finally:
            await feed.stop()
            await task
            await venue.ex.stop()

    run(loop_kind, main)


def test_filters_and_unsubscribe_are_honoured():
    async def main():
        venue = await Venue.start(("btc", "eth"))
        got: list[SpotTick] = []
        feed = SpotFeed(venue.ex.rtds_url, ["eth"], got.append, sources=("chainlink", "binance"),
                        clock=venue.clock, backoff=fast())  # fmt: skip
        task = asyncio.create_task(feed.run())
        try:
            await wait_for(lambda: subscribed(venue.ex, 2))
            venue.step(6)
            want = [t for t in venue.expected if t.asset == "eth"]
            await wait_for(lambda: len(got) == len(want))
            await asyncio.sleep(0.05)
            assert got == want and feed.counters.ignored == 0  # btc was never sent
            feed.conn.send(subscribe_message(["eth"], ["chainlink"], action="unsubscribe"))
            await wait_for(lambda: subscribed(venue.ex, 1))
            n = len(got)
            venue.step(10)
            more = [t for t in venue.expected if t.asset == "eth"][n:]
            await wait_for(lambda: len(got) == n + len([t for t in more if t.source == "binance"]))
            await asyncio.sleep(0.05)
            assert all(t.source == "binance" for t in got[n:]) and len(got) > n
        finally:
            await feed.stop()
            await task
            await venue.ex.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_market_data_delay_holds_rtds_frames():
    async def main():
        venue = await Venue.start(("btc",), md_delay_ms=300)
        loop = asyncio.get_running_loop()
        arrivals: list[float] = []
        feed = SpotFeed(venue.ex.rtds_url, ["btc"], lambda t: arrivals.append(loop.time()),
                        clock=venue.clock, backoff=fast())  # fmt: skip
        task = asyncio.create_task(feed.run())
        try:
            await wait_for(lambda: subscribed(venue.ex, 1))
            published = venue.clock.time()
            venue.step()  # publishes at `published`, then moves the clock one step on
            # the delay runs on the exchange's clock: nothing arrives until 300 ms of it have passed
            await asyncio.sleep(0.2)
            assert arrivals == []
            venue.clock.advance(published + 0.299 - venue.clock.time())
            await asyncio.sleep(0.2)
            assert arrivals == []
            venue.clock.advance(0.001)
            await wait_for(lambda: arrivals)
        finally:
            await feed.stop()
            await task
            await venue.ex.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


def _informed_arrivals(reaction_ms: int, taker_delay_ms: int = 50) -> tuple[MarketFlow, list[tuple[int, int]]]:
    """Run the flow on the simulator's virtual-time loop over a recorded path that jumps 0.03% at
    T0 + 3.1 s; return the flow and (jump ms, engine arrival ms) of every informed order."""
    loop = VirtualTimeLoop()
    clock = LoopClock(loop, T0)
    base = 97_000 * SCALE_18
    path = SpotPath([(int(T0 * 1000) - 60_000, base), (int(T0 * 1000) + 3_100, base * 10_003 // 10_000)])
    ex = Exchange(ExchangeConfig(), clock=clock)
    flow = MarketFlow(ex, FlowConfig(
        assets=("btc",), window_s=60, spot_paths={"btc": path}, taker_delay_ms=taker_delay_ms,
        informed_reaction_ms=reaction_ms, informed_share=1.0, noise_takers_per_s=1.25, seed=3,
    ))  # fmt: skip

    async def main() -> None:
        flow.start()
        await asyncio.sleep(6.0)
        await flow.stop()
        await asyncio.sleep(1.0)  # held orders still in flight land

    loop.run_until_complete(main())
    loop.close()
    by_taker = {t.taker.id: t.t_ms for t in ex.engine.trades}
    return flow, [(round(jump * 1000), by_taker[oid]) for jump, oid in flow.informed_log if oid in by_taker]


def test_informed_takers_wait_for_their_reaction_and_the_taker_delay():
    flow, arrivals = _informed_arrivals(reaction_ms=150)
    assert flow.last_jump["btc"] == pytest.approx(T0 + 3.2)  # detected on the step after the path's jump
    assert flow.informed_orders >= 5 and arrivals  # the jump woke the informed takers and they traded
    # LoopClock.ms truncates float seconds: a millisecond of slack.
    assert min(arrived - jump for jump, arrived in arrivals) >= 150 + 50 - 1
    # Control: with no reaction delay the first informed order is at the engine 50 ms after the
    # jump, inside the window a fast maker needs.
    _, eager = _informed_arrivals(reaction_ms=0)
    assert min(arrived - jump for jump, arrived in eager) < 150


def test_cancelling_run_closes_the_socket():
    async def main():
        venue = await Venue.start(("btc",))
        feed = SpotFeed(venue.ex.rtds_url, ["btc"], lambda t: None, clock=venue.clock, backoff=fast())
        task = asyncio.create_task(feed.run())
        try:
            await wait_for(lambda: subscribed(venue.ex, 1))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not feed.connected
            await wait_for(lambda: not venue.ex.rtds.sockets)  # the venue saw it go
        finally:
            await venue.ex.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_the_chainlink_feed_is_heard_its_lag_after_its_stamp_binance_at_once():
    """The real Chainlink feed reaches subscribers ~1.3 s after its second-aligned stamp; the
    exchange models that lag on the Chainlink topic only (Binance prices are not held)."""

    async def main():
        venue = await Venue.start(("btc",), chainlink_lag_ms=1300)
        got: list[SpotTick] = []
        feeds = [SpotFeed(venue.ex.rtds_url, ["btc"], got.append, sources=(source,), clock=venue.clock,
                          backoff=fast()) for source in ("chainlink", "binance")]  # fmt: skip
        tasks = [asyncio.create_task(f.run()) for f in feeds]
        try:
            socks = venue.ex.rtds.sockets
            await wait_for(lambda: len(socks) == 2 and all(len(subs) == 1 for subs in socks.values()))
            stamp = venue.clock.time()
            venue.step()  # publishes at `stamp`, then moves the clock one step on
            await wait_for(lambda: any(t.source == "binance" for t in got))
            await asyncio.sleep(0.2)
            assert [t.source for t in got] == ["binance"]
            second_ms = int(stamp * 1000) // 1000 * 1000
            venue.clock.advance((second_ms + 1299) / 1000 - venue.clock.time())
            await asyncio.sleep(0.2)
            assert [t.source for t in got] == ["binance"]
            venue.clock.advance(0.002)  # (a ms of float slack)
            await wait_for(lambda: len(got) == 2)
            assert got[1].source == "chainlink" and got[1].ts_ms == second_ms
        finally:
            for f in feeds:
                await f.stop()
            for t in tasks:
                await t
            await venue.ex.stop()

    asyncio.run(asyncio.wait_for(main(), 30))
