"""The submit path does not wait on the disk: with the store's write lock held by another
connection (a checkpoint, a second process), the order manager signs, records and sends orders
to the embedded exchange over real sockets, and the event loop keeps ticking."""

from __future__ import annotations

import asyncio
import time

import pytest

from active_quoting import core
from active_quoting.execution.order_manager import MarketRef, OrderManager
from active_quoting.model import BID, BUY, OrderIntent
from active_quoting.store.sqlite import Store
from active_quoting.strategy.quoting import MarketDecision, SideDecision
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner
from exchange_peer import CID, DOWN, MAKER_KEY, SH, UP, derive
from test_store_writer import write_lock_held

NONE = SideDecision(core.NO_PRICE, 0, core.KEEP)


async def _loop_lag(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(0.005)
        lags.append(time.perf_counter() - t0 - 0.005)


@pytest.mark.asyncio
async def test_orders_go_out_and_the_loop_ticks_while_the_store_cannot_write(ex, tmp_path):
    store = Store(tmp_path / "s.db")
    signer = OrderSigner(MAKER_KEY)
    rest = RestClient(ex.clob_url, signer, await derive(ex, MAKER_KEY))
    om = OrderManager(rest, signer, store, min_refresh_ms=0, global_cap_per_sec=1000)
    om.add_market(MarketRef(CID, UP, DOWN, 100))
    stop, lags = asyncio.Event(), []
    ticker = asyncio.get_running_loop().create_task(_loop_lag(stop, lags))
    await asyncio.sleep(0.02)  # the sampler is running before the first send
    try:
        with write_lock_held(tmp_path / "s.db", release_after_s=1.5):
            for i, price in enumerate((4800, 4700, 4600)):
                side = SideDecision(price, 10 * SH, core.PLACE if i == 0 else core.REPLACE)
                intent = OrderIntent(CID, UP, BUY, price, 10 * SH, BID, price)
                assert om.stage(MarketDecision(CID, side, NONE, False, 100), [intent], i)
                t0 = time.perf_counter()
                await om.flush()  # sign, record, POST, answer
                assert time.perf_counter() - t0 < 0.2, f"a submit took {time.perf_counter() - t0:.3f} s"
            live = ex.engine.live_orders(account=signer.address)
            assert [o.price for o in live] == [4600]  # placed, replaced twice, on the venue
            await asyncio.sleep(0.05)
            stop.set()
            await ticker
            assert max(lags) < 0.2, f"the event loop stalled {max(lags):.3f} s"
            assert store.batches == 0  # the lock was really in the way: nothing could be committed
        assert om.counts["placed"] == 3
        store.flush()  # the lock is gone: everything queued is committed
        counts = store.order_counts()
        assert counts.get("LIVE", 0) + counts.get("SENT", 0) >= 1 and sum(counts.values()) == 3
        assert store.errors == 0
    finally:
        stop.set()
        await rest.close()
        store.close()
