"""A restart after downtime: fills that happened while the bot was down, in a window that ended
before it came back, are recovered (from ``/data/trades``), counted once, and settled at the
window's resolution; a second restart re-reads nothing twice and re-announces nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from active_quoting.bot import Bot, throwaway_key
from active_quoting.exchange.flow import FlowConfig, MarketFlow
from active_quoting.exchange.server import Exchange
from active_quoting.options import RunOptions
from active_quoting.store.sqlite import Store
from active_quoting.strategy.config import load_config
from active_quoting.venue.orders import build_order
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner

WINDOW = 12
SEED = 13
SH = 1_000_000


async def _take_while_down(ex: Exchange, cid: str, up: str) -> str:
    """With the bot's own key (it is down), take liquidity in the window: a fill it never saw."""
    rest = RestClient(ex.clob_url, OrderSigner(throwaway_key(SEED)))
    try:
        await rest.create_or_derive_api_key()
        for _ in range(100):
            book = await rest.book(up)
            if book.get("asks"):
                break
            await asyncio.sleep(0.1)
        order = build_order(rest.signer, up, 0, 9900, 5 * SH, 100)  # BUY 5 Up, marketable
        (result,) = await rest.post_orders([order], order_type="FAK", post_only=False)
        assert result.accepted, result
        return order.order_hash
    finally:
        await rest.close()


def _opts(tmp_path: Path, ex: Exchange, duration: float) -> RunOptions:
    return RunOptions(
        assets=("btc",), duration_s=duration, seed=SEED, window_s=WINDOW, stop_before_end_s=2,
        db=str(tmp_path / "d.db"), clob_url=ex.clob_url, gamma_url=ex.gamma_url,
    )  # fmt: skip


def test_fills_during_downtime_in_a_window_that_ended_are_recovered_once(tmp_path):
    async def main() -> None:
        ex = await Exchange().start()
        flow = MarketFlow(ex, FlowConfig(assets=("btc",), window_s=WINDOW, seed=SEED))
        flow.start()
        try:
            cfg = load_config(env={})
            first = Bot(cfg, _opts(tmp_path, ex, 2))
            await first.run()
            # Down: a window begins and ends while nobody watches; the bot's key trades in it.
            start = int(time.time()) // WINDOW * WINDOW
            if start + WINDOW - time.time() < 4:
                await asyncio.sleep(start + WINDOW - time.time() + 0.2)
                start += WINDOW
            flow.ensure_windows(time.time())
            window = next(w for w in flow.windows if w.start == start)
            market = window.market
            order_id = await _take_while_down(ex, market.condition_id, market.up)
            while not market.resolved:  # the window ends and the exchange resolves it
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)  # settlement (MATCHED -> MINED -> CONFIRMED)
            second = Bot(cfg, _opts(tmp_path, ex, 3))
            await second.run()
            store = Store(tmp_path / "d.db")
            mine = [f for f in store.fills() if f.order_id == order_id]
            assert len(mine) == 1, "the fill made while the bot was down was not recovered"
            assert mine[0].market == market.condition_id and mine[0].size == 5 * SH and not mine[0].maker
            row = next(m for m in store.markets() if m["condition_id"] == market.condition_id)
            assert row["winner"] == market.resolved, "the ended window's resolution was not settled"
            assert second.fills.recovered >= 1
            before = {f.key for f in store.fills()}
            store.close()
            # A third run finds the same trade again on the venue: it is not counted, analysed or
            # announced again (only fills new to the store are).
            third = Bot(cfg, _opts(tmp_path, ex, 2))
            await third.run()
            store = Store(tmp_path / "d.db")
            keys = [f.key for f in store.fills()]
            store.close()
            assert len(keys) == len(set(keys)) and before <= set(keys)
            assert third.fills.seen == len(set(keys) - before)
            assert (mine[0].trade_id, order_id) not in third.analytics.fill_keys.get(market.up, [])
        finally:
            await flow.stop()
            await ex.stop()

    asyncio.run(main())

