"""The bot quotes within what the venue's balances leave free: an account with little collateral
gets no order refused for balance (before, every market's quotes assumed the whole balance),
and the venue's balances are read and shown."""

from __future__ import annotations

import asyncio
import gc

from active_quoting.bot import GC_GEN0_THRESHOLD, Bot
from active_quoting.options import RunOptions
from active_quoting.store.sqlite import Store
from active_quoting.strategy.balances import COLLATERAL
from active_quoting.strategy.config import load_config
from bot_checks import CALM_MARKET, check_positions


def test_a_small_account_is_never_refused_for_balance(tmp_path):
    db = str(tmp_path / "bot.db")
    cfg = load_config(env={})  # the default configuration
    # 25 USDC for two markets of two 10-USDC sides each: 40 USDC of quotes would not fit
    opts = RunOptions(assets=("btc", "eth"), duration_s=12, seed=5, window_s=30, stop_before_end_s=3, db=db,
                      flow_config=CALM_MARKET, exchange_config={"paper_balance_usdc": 25})  # fmt: skip
    bot = Bot(cfg, opts)
    seen_free: list[int] = []

    async def watch() -> None:
        while not hasattr(bot, "balances") or not bot.balances.reads:
            await asyncio.sleep(0.05)
        while not bot.stopping:
            pending = bot.orders.pending()
            seen_free.append(bot.balances.free_collateral(pending))
            await asyncio.sleep(0.05)

    async def main() -> None:
        task = asyncio.get_running_loop().create_task(watch())
        await bot.run()
        await task

    asyncio.run(main())
    assert bot.balances.reads >= 3 and bot.balances.read_errors == 0
    assert 0 < bot.balances.balance(COLLATERAL) <= 25_000_000 + 10_000_000  # read from the venue (plus sales)
    store = Store(db)
    try:
        rows = store.db.execute("SELECT side, price, size, status, reason FROM orders").fetchall()
    finally:
        store.close()
    placed = [r for r in rows if r[3] != "REJECTED"]
    refused = [r for r in rows if r[3] == "REJECTED" and "balance" in r[4]]
    assert len(placed) >= 4, rows
    assert refused == [], refused
    assert min(seen_free) >= 0
    assert bot.orders.counts["rejected"] == 0
    check_positions(bot)
    # what start-up built is out of the collector's sight, young collections rarer
    assert gc.get_freeze_count() > 10_000 and gc.get_threshold()[0] == GC_GEN0_THRESHOLD
