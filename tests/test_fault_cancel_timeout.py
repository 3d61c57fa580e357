"""Cancels that time out: the exchange carries the cancel out but holds its answer back longer
than the client waits, so the client cannot tell which of its orders went. At the exchange (every
cancel endpoint), and in a simulated run of the production bot whose invariants must hold."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from active_quoting.exchange.faults import FAULTS, load_scenario
from active_quoting.sim.runner import FAULT_MENU, SimConfig, Simulation, fault_schedule
from active_quoting.venue.errors import VenueError
from active_quoting.venue.orders import build_order
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner
from exchange_peer import CID, MAKER_KEY, SH, UP, derive

HOLD_S = 0.8
CLIENT_TIMEOUT_S = 0.3


@pytest.mark.asyncio
async def test_every_cancel_endpoint_is_carried_out_and_its_answer_held_back(ex, tmp_path):
    maker = OrderSigner(MAKER_KEY)
    creds = await derive(ex, MAKER_KEY)
    short = RestClient(ex.clob_url, maker, creds, timeout=CLIENT_TIMEOUT_S)  # gives up before the hold ends
    patient = RestClient(ex.clob_url, maker, creds, timeout=5.0)
    ids = []
    for price in (4000, 4100, 4200, 4300):
        (r,) = await short.post_orders([build_order(maker, UP, 0, price, 10 * SH, 100)])
        assert r.accepted
        ids.append(r.order_hash)

    def live() -> set[str]:
        return {o.id for o in ex.engine.live_orders(maker.address)}

    assert live() == set(ids)
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps([{"at": 0, "fault": "timeout_after_cancel", "count": 4, "hold_seconds": HOLD_S}]))
    assert [name for _, name, _ in load_scenario(ex, scenario)] == ["timeout_after_cancel"]
    FAULTS["timeout_after_cancel"](ex, count=4, hold_seconds=HOLD_S)

    # DELETE /order: the client times out, the order is gone all the same
    with pytest.raises(VenueError) as err:
        await short.cancel_order(ids[0])
    assert err.value.kind == "timeout"
    assert ids[0] not in live() and ex.engine.orders[ids[0]].status == "CANCELED"

    # DELETE /orders: a client that waits long enough gets the answer, after the hold
    t0 = time.perf_counter()
    result = await patient.cancel_orders([ids[1]])
    assert time.perf_counter() - t0 >= HOLD_S
    assert result.canceled == (ids[1],) and ids[1] not in live()

    # DELETE /cancel-market-orders and /cancel-all: carried out, answers held past the timeout
    with pytest.raises(VenueError) as err:
        await short.cancel_market_orders(market=CID, asset_id=UP)
    assert err.value.kind == "timeout" and ids[2] not in live() and ids[3] not in live()
    (r,) = await short.post_orders([build_order(maker, UP, 0, 4400, 10 * SH, 100)])
    with pytest.raises(VenueError) as err:
        await short.cancel_all()
    assert err.value.kind == "timeout" and not live()
    assert ex.faults.held_cancels == 4 and ex.faults.timeout_after_cancel == 0

    # the fault is spent: the next cancel answers at once
    (r,) = await short.post_orders([build_order(maker, UP, 0, 4500, 10 * SH, 100)])
    t0 = time.perf_counter()
    result = await short.cancel_order(r.order_hash)
    assert result.canceled == (r.order_hash,) and time.perf_counter() - t0 < HOLD_S
    await asyncio.sleep(HOLD_S)  # the held answers are written (to closed connections) before the exchange stops
    await short.close()
    await patient.close()


def test_the_soak_schedule_has_cancels_that_time_out():
    (args,) = [a for name, a, _ in FAULT_MENU if name == "timeout_after_cancel"]
    assert args["hold_seconds"] > 5.0  # longer than the bot's request timeout (RestClient's 5 s)
    plan = fault_schedule(SimConfig(hours=24, faults="default", seed=1))
    assert "timeout_after_cancel" in {name for _, name, _, _ in plan}


class _CancelTimeouts(Simulation):
    """A run whose only fault is the soak's cancel timeout, injected every 90 s."""

    async def _faults(self) -> None:
        (args,) = [a for name, a, _ in FAULT_MENU if name == "timeout_after_cancel"]
        while not self._stopping:
            await asyncio.sleep(90)
            self.events.append({"t": self.clock.time(), "fault": "timeout_after_cancel", "args": args})
            FAULTS["timeout_after_cancel"](self.exchange, **args)


def test_the_bot_keeps_track_of_its_orders_through_cancels_that_time_out(tmp_path: Path) -> None:
    sim = _CancelTimeouts(SimConfig(hours=0.2, assets=("btc", "eth"), seed=3, db=str(tmp_path / "c.db")))
    summary = sim.run()
    held = summary["faults_fired"]["held_cancels"]
    assert held >= 3, summary["faults_fired"]  # the fault took effect, several times
    bot: Any = sim.bot
    assert bot.rest.counts["timeout"] >= 1  # and the bot saw its cancels time out
    inv = summary["invariants"]
    # every order the venue held for us was managed as live; nothing rests after the shutdown
    assert inv["ok"], inv
    assert inv["checks"] >= 0.9 * 0.2 * 3600
    assert not sim.exchange.engine.live_orders(account=bot.signer.address)
