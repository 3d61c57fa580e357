"""A bot on an account shared with other tools (``orders.unknown_orders = "ignore"``): it
leaves their orders alone and cancels only its own at shutdown, and with
``orders.heartbeat = false`` the venue's dead-man switch (which cancels every order of the
account some seconds after heartbeats stop) does not take the other tools' orders either. With
heartbeats on (the default, for a dedicated account) the switch fires after a stop, as on the
venue: shown here so that the test above proves something."""

from __future__ import annotations

import asyncio

import pytest

from active_quoting.bot import Bot, throwaway_key
from active_quoting.exchange import server
from active_quoting.exchange.flow import FlowConfig, MarketFlow
from active_quoting.exchange.server import Exchange
from active_quoting.options import RunOptions
from active_quoting.strategy.config import load_config
from active_quoting.venue.orders import build_order
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner
from bot_checks import CALM_MARKET

SEED = 17
SH = 1_000_000


async def _foreign_order(ex: Exchange, up: str) -> str:
    """Another tool on the same account (same key, its own API credentials) rests a bid."""
    rest = RestClient(ex.clob_url, OrderSigner(throwaway_key(SEED)))
    try:
        await rest.create_or_derive_api_key(nonce=7)
        (r,) = await rest.post_orders([build_order(rest.signer, up, 0, 1000, 10 * SH, 100)])  # BUY 10 Up @ 0.10
        assert r.accepted, r
        return r.order_hash
    finally:
        await rest.close()


@pytest.mark.parametrize("heartbeat", [False, True])
def test_other_tools_orders_survive_the_bot_unless_its_dead_man_switch_fires(tmp_path, monkeypatch, heartbeat):
    monkeypatch.setattr(server, "HEARTBEAT_TIMEOUT_S", 1.5)

    async def main() -> tuple[bool, list[str], int]:
        ex = await Exchange().start()
        flow = MarketFlow(ex, FlowConfig(assets=("btc",), window_s=30, seed=SEED, **CALM_MARKET))
        flow.start()
        try:
            window = max(flow.windows, key=lambda w: w.end)  # the next window: it cannot resolve during the test
            foreign = await _foreign_order(ex, window.market.up)
            opts = RunOptions(assets=("btc",), duration_s=4, seed=SEED, window_s=30, stop_before_end_s=3,
                              db=str(tmp_path / "s.db"), clob_url=ex.clob_url, gamma_url=ex.gamma_url)  # fmt: skip
            shared = {"AQ_ORDERS_HEARTBEAT": str(heartbeat).lower(), "AQ_ORDERS_UNKNOWN_ORDERS": "ignore"}
            bot = Bot(load_config(env=shared), opts)
            await bot.run()
            me = bot.signer.address
            ours = [o.id for o in ex.engine.live_orders(account=me) if o.id != foreign]
            await asyncio.sleep(2.5)  # past the (shortened) dead-man timeout
            alive = any(o.id == foreign for o in ex.engine.live_orders(account=me))
            return alive, ours, bot.orders.counts["placed"]
        finally:
            await flow.stop()
            await ex.stop()

    alive, ours, placed = asyncio.run(main())
    assert placed > 0 and ours == []  # the bot quoted, and cancelled all of its own
    assert alive is (not heartbeat)
