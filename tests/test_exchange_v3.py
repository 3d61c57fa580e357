"""The embedded exchange serves Protocol-V2 markets (Gamma version "v2", positionIds, orders
signed for ExchangeV3) beside CTF-Exchange-V2 markets, and deposit-wallet accounts (signature
type 3, POLY_1271), verifying each signature as the venue does and answering with its messages.
Real sockets: our venue layer and the official client against the exchange on loopback."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from py_clob_client_v2.client import ClobClient
from py_clob_client_v2.clob_types import ApiCreds, OrderArgsV2, PartialCreateOrderOptions

from active_quoting.exchange.engine import FeeSchedule, Market
from active_quoting.venue import orders
from active_quoting.venue.orders import build_order
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner
from exchange_peer import CID, MAKER_KEY, SH, TAKER_KEY, UP, derive

CID3, UP3, DOWN3 = "0x" + "cd" * 32, "3001", "3002"
DEPOSIT_FLOW = "maker address not allowed, please use the deposit wallet flow"


def add_v3_market(ex) -> None:
    ex.add_market(Market(CID3, UP3, DOWN3, fees=FeeSchedule(), order_version=3), {
        "id": "1000003", "slug": "eth-updown-15m-1780000000", "conditionId": CID3, "question": "ETH Up or Down",
        "clobTokenIds": json.dumps([UP3, DOWN3]), "outcomes": json.dumps(["Up", "Down"]),
        "eventStartTime": "2026-05-28T00:00:00Z", "startDate": "2026-05-27T23:45:00Z",
        "endDate": "2026-05-28T00:15:00Z", "orderPriceMinTickSize": 0.01, "orderMinSize": 5, "closed": False,
        "feeSchedule": {"exponent": 1, "rate": 0.07, "takerOnly": True, "rebateRate": 0.2}})  # fmt: skip


def order(signer, token, price, version, salt):
    return build_order(signer, token, 0, price, 10 * SH, 100, version=version, salt=salt)


@pytest.mark.asyncio
async def test_both_market_generations_at_once(ex):
    add_v3_market(ex)
    async with aiohttp.ClientSession() as http, http.get(f"{ex.gamma_url}/markets") as r:
        gamma = {g["conditionId"]: g for g in await r.json()}
    assert gamma[CID3]["version"] == "v2" and json.loads(gamma[CID3]["positionIds"]) == [UP3, DOWN3]
    assert "clobTokenIds" not in gamma[CID3] and "version" not in gamma[CID] and "positionIds" not in gamma[CID]

    signer = OrderSigner(MAKER_KEY)
    async with RestClient(ex.clob_url, signer, await derive(ex, MAKER_KEY)) as rest:
        v3 = orders.order_version_for(gamma[CID3]["version"])
        v2 = orders.order_version_for(gamma[CID].get("version"), await rest.version())
        ok = await rest.post_orders([order(signer, UP3, 4000, v3, 1), order(signer, UP, 4000, v2, 2)])
        wrong = await rest.post_orders([order(signer, UP3, 4100, 2, 3), order(signer, UP, 4100, 3, 4)])
        forged = order(signer, UP3, 4200, 3, 5)
        forged.signature = forged.signature[:-4] + ("00" if forged.signature[-4:-2] != "00" else "11") + "1b"
        bad = await rest.post_orders([forged])
    assert [(r.accepted, r.status) for r in ok] == [(True, "live"), (True, "live")]
    assert {o.id for o in ex.engine.live_orders()} == {r.order_hash for r in ok}  # orderID = our V3/V2 hash
    assert [(r.accepted, r.error_kind, r.error) for r in wrong] == [
        (False, "version_mismatch", "order_version_mismatch")
    ] * 2
    assert not bad[0].accepted and bad[0].error == "invalid signature"
    assert ex.signature_checks == {"verified_v3": 1, "verified_v2": 1, "version_mismatch": 2, "invalid_signature": 1}


@pytest.mark.asyncio
async def test_official_client_trades_a_position_id(ex):
    """py-clob-client-v2 routes a position_id to ExchangeV3; the exchange accepts it as such."""
    add_v3_market(ex)

    def flow():
        c = ClobClient(ex.clob_url, chain_id=137, key=MAKER_KEY)
        c.set_api_creds(c.create_or_derive_api_key())
        return c.create_and_post_order(
            OrderArgsV2(price=0.42, size=10, side="BUY", position_id=DOWN3),
            options=PartialCreateOrderOptions(tick_size="0.01", neg_risk=False),
            post_only=True,
        )

    posted = await asyncio.to_thread(flow)
    assert posted["success"] and posted["status"] == "live"
    assert [o.token for o in ex.engine.live_orders()] == [DOWN3]
    assert ex.signature_checks == {"verified_v3": 1}


@pytest.mark.asyncio
async def test_deposit_wallet_accounts(ex):
    add_v3_market(ex)
    owner = OrderSigner(MAKER_KEY)
    wallet = ex.require_deposit_wallet(owner.address)
    creds = await derive(ex, MAKER_KEY)
    eoa = owner
    dw = OrderSigner(MAKER_KEY, funder=wallet, signature_type=3)
    intruder = OrderSigner(TAKER_KEY, funder=wallet, signature_type=3)  # someone else's key, our wallet
    async with RestClient(ex.clob_url, eoa, creds) as rest:
        refused = await rest.post_orders([order(eoa, UP, 4000, 2, 1)])
        placed = await rest.post_orders([order(dw, UP, 4000, 2, 2), order(dw, UP3, 4000, 3, 3)])
        stolen = await rest.post_orders([order(intruder, UP, 3900, 2, 4)])
    assert [(r.accepted, r.error) for r in refused] == [(False, DEPOSIT_FLOW)]
    assert [(r.accepted, r.status) for r in placed] == [(True, "live"), (True, "live")]
    assert not stolen[0].accepted and stolen[0].error == "invalid signature"
    assert {o.id for o in ex.engine.live_orders()} == {r.order_hash for r in placed}
    assert ex.signature_checks == {
        "deposit_wallet_required": 1, "verified_1271": 2, "invalid_signature": 1
    }  # fmt: skip

    # An account not flagged still trades as an EOA; the taker has no wallet registered.
    async with RestClient(ex.clob_url, OrderSigner(TAKER_KEY), await derive(ex, TAKER_KEY)) as rest:
        assert (await rest.post_orders([order(OrderSigner(TAKER_KEY), UP, 3800, 2, 5)]))[0].accepted
        stray = OrderSigner(TAKER_KEY, funder="0x" + "77" * 20, signature_type=3)
        assert (await rest.post_orders([order(stray, UP, 3700, 2, 6)]))[0].error == "invalid signature"


@pytest.mark.asyncio
async def test_official_client_deposit_wallet_flow(ex):
    """py-clob-client-v2 with signature_type=3 and the wallet as funder is accepted on both
    generations; without the wallet the flagged account gets the venue's message."""
    add_v3_market(ex)
    wallet = ex.require_deposit_wallet(OrderSigner(MAKER_KEY).address)
    opts = PartialCreateOrderOptions(tick_size="0.01", neg_risk=False)

    def flow():
        creds = ClobClient(ex.clob_url, chain_id=137, key=MAKER_KEY).create_or_derive_api_key()
        plain = ClobClient(ex.clob_url, chain_id=137, key=MAKER_KEY, creds=ApiCreds(**vars(creds)))
        c = ClobClient(ex.clob_url, chain_id=137, key=MAKER_KEY, creds=creds, signature_type=3, funder=wallet)
        out = [c.create_and_post_order(OrderArgsV2(token_id=UP, price=0.41, size=10, side="BUY"), opts, post_only=True),
               c.create_and_post_order(OrderArgsV2(price=0.41, size=10, side="BUY", position_id=UP3), opts, post_only=True)]  # fmt: skip
        try:
            plain.create_and_post_order(OrderArgsV2(token_id=UP, price=0.40, size=10, side="BUY"), opts, post_only=True)
        except Exception as exc:  # the SDK raises PolyApiException on a 400
            out.append(str(exc))
        return out

    first, second, refused = await asyncio.to_thread(flow)
    assert first["success"] and second["success"]
    assert DEPOSIT_FLOW in refused
    assert ex.signature_checks == {"verified_1271": 2, "deposit_wallet_required": 1}
