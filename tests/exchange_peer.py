"""The embedded exchange with one up/down market, in-process on 127.0.0.1, for tests that talk
to it over real sockets (the ``ex`` fixture in conftest), and API credentials derived from it
through the official client's L1 flow."""

from __future__ import annotations

import asyncio
import json

from py_clob_client_v2.client import ClobClient

from active_quoting.exchange.engine import FeeSchedule, Market
from active_quoting.exchange.server import Exchange, ExchangeConfig
from active_quoting.venue.signing import ApiCredentials

MAKER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # throwaway
TAKER_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"  # throwaway
UP, DOWN, CID = "1001", "1002", "0x" + "ab" * 32
SH = 1_000_000


async def start_exchange() -> Exchange:
    e = Exchange(ExchangeConfig(settle_delays_ms=(50, 100)))
    await e.start()
    e.add_market(Market(CID, UP, DOWN, fees=FeeSchedule()), {
        "id": "1000001", "slug": "btc-updown-15m-1780000000", "conditionId": CID, "question": "BTC Up or Down",
        "clobTokenIds": json.dumps([UP, DOWN]), "outcomes": json.dumps(["Up", "Down"]), "eventStartTime": "2026-05-28T00:00:00Z",
        "startDate": "2026-05-27T23:45:00Z", "endDate": "2026-05-28T00:15:00Z", "orderPriceMinTickSize": 0.01,
        "orderMinSize": 5, "closed": False, "feeSchedule": {"exponent": 1, "rate": 0.07, "takerOnly": True, "rebateRate": 0.2}})  # fmt: skip
    return e


async def derive(ex: Exchange, key: str) -> ApiCredentials:
    c = ClobClient(ex.clob_url, chain_id=137, key=key)
    creds = await asyncio.to_thread(c.create_or_derive_api_key)
    return ApiCredentials(creds.api_key, creds.api_secret, creds.api_passphrase)
