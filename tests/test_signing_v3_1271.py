"""Deposit-wallet (signature type 3, POLY_1271) and ExchangeV3 (order version 3, Protocol-V2
markets) signing: byte-identity with py-clob-client-v2 on random orders, the V3 digest and both
signatures checked against eth_account's independent EIP-712 encoder, the verifier the embedded
exchange uses, and clear SigningErrors for what cannot be built."""

from __future__ import annotations

import secrets

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st
from py_clob_client_v2.clob_types import CreateOrderOptions, OrderArgsV2
from py_clob_client_v2.config import get_contract_config
from py_clob_client_v2.order_builder.builder import OrderBuilder
from py_clob_client_v2.order_utils.exchange_order_builder_v2 import ExchangeOrderBuilderV2, _hash_message
from py_clob_client_v2.order_utils.model.order_data_v2 import OrderDataV2, order_to_json_v2
from py_clob_client_v2.order_utils.model.side import Side
from py_clob_client_v2.order_utils.model.signature_type_v2 import SignatureTypeV2
from py_clob_client_v2.signer import Signer

from active_quoting.clock import ManualClock
from active_quoting.venue import orders, signing
from active_quoting.venue.orders import build_order, order_body
from active_quoting.venue.signing import (
    CONTRACTS,
    ORDER_TYPE_V2,
    OrderSigner,
    SigningError,
    checksum_address,
    keccak,
    wire_order_hash,
)

ANVIL0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
KEYS = [ANVIL0] + ["0x" + secrets.token_hex(32) for _ in range(3)]
u256 = st.integers(0, (1 << 256) - 1)
amounts = st.integers(1, 10**15)
ORDER_FIELDS = [
    {"name": "salt", "type": "uint256"}, {"name": "maker", "type": "address"}, {"name": "signer", "type": "address"},
    {"name": "tokenId", "type": "uint256"}, {"name": "makerAmount", "type": "uint256"},
    {"name": "takerAmount", "type": "uint256"}, {"name": "side", "type": "uint8"},
    {"name": "signatureType", "type": "uint8"}, {"name": "timestamp", "type": "uint256"},
    {"name": "metadata", "type": "bytes32"}, {"name": "builder", "type": "bytes32"},
]  # fmt: skip
DOMAIN_FIELDS = [
    {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"},
]  # fmt: skip


def wallet_of(key: str) -> str:
    return checksum_address(keccak(b"wallet" + key.encode())[-20:])


def sdk_builder(key: str, chain: int, version: int, neg_risk: bool, salt: int) -> ExchangeOrderBuilderV2:
    """The official builder configured as py-clob-client-v2's OrderBuilder routes an order."""
    cfg = get_contract_config(chain)
    contract = cfg.exchange_v3 if version == 3 else cfg.neg_risk_exchange_v2 if neg_risk else cfg.exchange_v2
    return ExchangeOrderBuilderV2(
        contract, chain, Signer(key, chain), generate_salt=lambda: str(salt), domain_version=str(version)
    )


def test_exchange_v3_addresses_are_the_sdk_s():
    for chain in (137, 80002):
        assert CONTRACTS[chain].exchange_v3 == get_contract_config(chain).exchange_v3
    assert CONTRACTS[137].exchange_v3 == "0xe3333700cA9d93003F00f0F71f8515005F6c00Aa"  # POLYMARKET.md §6.1


# -- byte-identity with the official client on random orders ------------------------------


@settings(max_examples=60, deadline=None)
@given(
    key=st.sampled_from(KEYS),
    chain=st.sampled_from([137, 80002]),
    version=st.sampled_from([2, 3]),
    neg_risk=st.booleans(),
    sig_type=st.sampled_from([0, 1, 2, 3]),
    salt=st.integers(0, 2**64),
    token=u256,
    maker_amount=amounts,
    taker_amount=amounts,
    side=st.sampled_from([0, 1]),
    ts=st.integers(0, 2**48),
    expiration=st.integers(0, 2**40),
)
def test_types_and_versions_match_the_sdk(
    key, chain, version, neg_risk, sig_type, salt, token, maker_amount, taker_amount, side, ts, expiration
):
    funder = wallet_of(key) if sig_type else None
    ours = OrderSigner(key, chain, funder=funder, signature_type=sig_type)
    mine = ours.sign_v2(
        token, maker_amount, taker_amount, side, salt, ts, neg_risk=neg_risk, expiration=expiration, version=version
    )
    sdk = sdk_builder(key, chain, version, neg_risk, salt)
    data = OrderDataV2(
        maker=ours.maker, tokenId=str(token), makerAmount=str(maker_amount), takerAmount=str(taker_amount),
        side=Side(side), signer=ours.order_signer, signatureType=sig_type, timestamp=str(ts),
        expiration=str(expiration),
    )  # fmt: skip
    signed = sdk.build_signed_order(data)
    assert mine.signature == signed.signature
    assert mine.order_hash == sdk.build_order_hash(sdk.build_order_typed_data(sdk.build_order(data)))
    assert mine.wire == order_to_json_v2(signed, "owner", "GTC")["order"]
    assert mine.version == version
    # What the embedded exchange recovers: the key's own address, whatever the type.
    assert signing.recover_order_signer(mine.wire, chain, neg_risk, version) == (mine.order_hash, ours.address)
    if sig_type == 3:
        assert mine.wire["signer"] == mine.wire["maker"] == ours.maker != ours.address
        assert len(mine.signature) == 2 + 2 * (65 + 32 + 32 + len(ORDER_TYPE_V2) + 2)
    else:
        assert len(mine.signature) == 132


@settings(max_examples=25, deadline=None)
@given(
    key=st.sampled_from(KEYS),
    sig_type=st.sampled_from([0, 3]),
    position=u256.map(str),
    cents=st.integers(1, 99),
    hundredths=st.integers(500, 10**7),
    side=st.sampled_from(["BUY", "SELL"]),
    neg_risk=st.booleans(),
)
def test_sdk_order_builder_routing_for_position_ids(key, sig_type, position, cents, hundredths, side, neg_risk):
    """py-clob-client-v2's own OrderBuilder (maker, signer, exchange chosen by it) for an order on
    a Protocol-V2 position: ours signs the same order to the same bytes with version 3."""
    wallet = wallet_of(key) if sig_type == 3 else None
    sdk = OrderBuilder(Signer(key, 137), signature_type=SignatureTypeV2(sig_type), funder=wallet)
    args = OrderArgsV2(price=cents / 100, size=hundredths / 100, side=side, position_id=position)
    theirs = sdk.build_order(args, CreateOrderOptions(tick_size="0.01", neg_risk=neg_risk))
    ours = OrderSigner(key, 137, funder=wallet, signature_type=sig_type)
    mine = ours.sign_v2(
        position, int(theirs.makerAmount), int(theirs.takerAmount), 0 if side == "BUY" else 1, int(theirs.salt),
        int(theirs.timestamp), neg_risk=neg_risk, version=3,
    )  # fmt: skip
    assert mine.wire == order_to_json_v2(theirs, "owner", "GTC")["order"]


# -- independent EIP-712 (eth_account's encode_typed_data, not the SDK's builder) -------------


def typed_order(o, chain: int, version: str, contract: str) -> dict:
    w = o.wire
    return {
        "primaryType": "Order",
        "types": {"EIP712Domain": DOMAIN_FIELDS, "Order": ORDER_FIELDS},
        "domain": {"name": "Polymarket CTF Exchange", "version": version, "chainId": chain, "verifyingContract": contract},
        "message": {
            "salt": w["salt"], "maker": w["maker"], "signer": w["signer"], "tokenId": int(w["tokenId"]),
            "makerAmount": int(w["makerAmount"]), "takerAmount": int(w["takerAmount"]),
            "side": 0 if w["side"] == "BUY" else 1, "signatureType": w["signatureType"],
            "timestamp": int(w["timestamp"]), "metadata": bytes(32), "builder": bytes(32),
        },
    }  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(key=st.sampled_from(KEYS), chain=st.sampled_from([137, 80002]), salt=st.integers(0, 2**64), token=u256,
       maker_amount=amounts, taker_amount=amounts, side=st.sampled_from([0, 1]), ts=st.integers(0, 2**48))  # fmt: skip
def test_v3_digest_and_signature_against_eth_account(key, chain, salt, token, maker_amount, taker_amount, side, ts):
    mine = OrderSigner(key, chain).sign_v2(token, maker_amount, taker_amount, side, salt, ts, version=3)
    signed = Account.sign_message(
        encode_typed_data(full_message=typed_order(mine, chain, "3", CONTRACTS[chain].exchange_v3)), key
    )
    assert mine.order_hash == "0x" + bytes(signed.message_hash).hex()
    assert mine.signature == "0x" + bytes(signed.signature).hex()
    # and it is not the V2 digest: the domain really changed
    assert mine.order_hash != wire_order_hash(mine.wire, chain, version=2)


@settings(max_examples=40, deadline=None)
@given(key=st.sampled_from(KEYS), chain=st.sampled_from([137, 80002]), version=st.sampled_from([2, 3]),
       salt=st.integers(0, 2**64), token=u256, maker_amount=amounts, side=st.sampled_from([0, 1]),
       ts=st.integers(0, 2**48))  # fmt: skip
def test_1271_wrapper_against_eth_account(key, chain, version, salt, token, maker_amount, side, ts):
    """The nested ERC-7739 digest, built as plain EIP-712 typed data (TypedDataSign with the
    order as ``contents``, under the exchange's domain) by eth_account: the inner signature is
    the key's signature over it, and the rest of the wrapper is domain, contents hash, type."""
    wallet = wallet_of(key)
    mine = OrderSigner(key, chain, funder=wallet, signature_type=3).sign_v2(
        token, maker_amount, 7, side, salt, ts, version=version
    )
    c = CONTRACTS[chain]
    contract = c.exchange_v3 if version == 3 else c.exchange_v2
    order = typed_order(mine, chain, str(version), contract)
    nested = {
        "primaryType": "TypedDataSign",
        "types": {
            "EIP712Domain": DOMAIN_FIELDS,
            "TypedDataSign": [
                {"name": "contents", "type": "Order"}, {"name": "name", "type": "string"},
                {"name": "version", "type": "string"}, {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"}, {"name": "salt", "type": "bytes32"},
            ],
            "Order": ORDER_FIELDS,
        },
        "domain": order["domain"],
        "message": {"contents": order["message"], "name": "DepositWallet", "version": "1", "chainId": chain,
                    "verifyingContract": wallet, "salt": bytes(32)},
    }  # fmt: skip
    inner = Account.sign_message(encode_typed_data(full_message=nested), key)
    plain = encode_typed_data(full_message=order)
    raw = bytes.fromhex(mine.signature[2:])
    assert raw[:65] == bytes(inner.signature)
    assert raw[65:97] == plain.header  # the app domain separator
    assert raw[97:129] == plain.body  # the contents (order struct) hash
    assert raw[129:-2] == ORDER_TYPE_V2.encode() and int.from_bytes(raw[-2:], "big") == len(ORDER_TYPE_V2)
    assert mine.order_hash == "0x" + _hash_message(plain).hex()


# -- the verifier refuses what a deposit wallet would refuse ------------------------------


def _tamper(sig: str, offset: int) -> str:
    raw = bytearray(bytes.fromhex(sig[2:]))
    raw[offset] ^= 1
    return "0x" + raw.hex()


def test_1271_verifier_refuses_foreign_wrappers():
    signer = OrderSigner(ANVIL0, 137, funder=wallet_of(ANVIL0), signature_type=3)
    o = signer.sign_v2("1234", 5_000_000, 10_000_000, 0, 99, 1_780_000_000_000, version=3)
    assert signing.recover_order_signer(o.wire, 137, version=3)[1] == signer.address
    with pytest.raises(SigningError, match="another exchange"):
        signing.recover_order_signer(o.wire, 137, version=2)
    for offset, what in ((70, "another exchange"), (100, "another order"), (140, "contents type"), (-1, "length")):
        with pytest.raises(SigningError, match=what):
            signing.recover_order_signer(dict(o.wire, signature=_tamper(o.signature, offset)), 137, version=3)
    # the inner signature over someone else's wallet recovers to a different key
    moved = dict(o.wire, signer=wallet_of("other"), maker=wallet_of("other"))
    with pytest.raises(SigningError, match="another order"):
        signing.recover_order_signer(moved, 137, version=3)


# -- what cannot be built is a SigningError -------------------------------------------------


def test_versions_the_signer_cannot_build_raise_signing_error():
    eoa = OrderSigner(ANVIL0)
    wallet = OrderSigner(ANVIL0, funder=wallet_of(ANVIL0), signature_type=3)
    for version in (0, 4, "3", None):
        with pytest.raises(SigningError, match="order version"):
            build_order(eoa, "1", 0, 5000, 10_000_000, 100, version=version)  # type: ignore[arg-type]
    with pytest.raises(SigningError, match="order version"):
        eoa.sign_v2("1", 1, 1, 0, 1, 1, version=1)
    with pytest.raises(SigningError, match="deposit-wallet"):
        build_order(wallet, "1", 0, 5000, 10_000_000, 100, version=1, fee_rate_bps=0)
    with pytest.raises(SigningError, match="funder"):
        OrderSigner(ANVIL0, signature_type=3)
    assert "deposit_wallet=" in repr(wallet) and ANVIL0[2:] not in repr(wallet)


def test_market_version_maps_to_order_version():
    assert orders.order_version_for("v2") == 3 and orders.order_version_for("V2", venue_version=1) == 3
    assert (
        orders.order_version_for(None) == 2
        and orders.order_version_for("") == 2
        and orders.order_version_for("v1") == 2
    )
    assert orders.order_version_for(None, venue_version=1) == 1
    for bad, venue in (("v3", 2), ("protocol-9", 2), (None, 4)):
        with pytest.raises(SigningError):
            orders.order_version_for(bad, venue)


def test_one_signer_builds_both_versions_per_order():
    """One bot trades markets of both generations at once: the version is per order."""
    s = OrderSigner(ANVIL0, funder=wallet_of(ANVIL0), signature_type=3)
    clock = ManualClock(1_780_000_000.0)
    v2 = build_order(s, "1001", 0, 4500, 10_000_000, 100, salt=7, clock=clock, version=orders.order_version_for(None))
    v3 = build_order(s, "1001", 0, 4500, 10_000_000, 100, salt=7, clock=clock, version=orders.order_version_for("v2"))
    assert v2.wire["timestamp"] == v3.wire["timestamp"] == str(clock.ms())
    assert (v2.version, v3.version) == (2, 3) and v2.order_hash != v3.order_hash
    assert {k: v for k, v in v2.wire.items() if k != "signature"} == {
        k: v for k, v in v3.wire.items() if k != "signature"
    }
    assert signing.recover_order_signer(v3.wire, version=3)[0] == v3.order_hash
    assert order_body(v3, "owner")["deferExec"] is False  # the V2 body shape
