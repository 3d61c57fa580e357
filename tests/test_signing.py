"""Order signing: the published vectors, byte-identity with py-clob-client-v2 on random orders,
exact amounts where the SDK's floats lose a hundredth of a share, and L1/L2 auth."""

from __future__ import annotations

import secrets

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st
from py_clob_client_v2.order_builder.builder import ROUNDING_CONFIG, OrderBuilder
from py_clob_client_v2.order_utils.exchange_order_builder_v1 import ExchangeOrderBuilderV1
from py_clob_client_v2.order_utils.exchange_order_builder_v2 import ExchangeOrderBuilderV2, _hash_message
from py_clob_client_v2.order_utils.model.order_data_v1 import OrderDataV1
from py_clob_client_v2.order_utils.model.order_data_v2 import OrderDataV2, order_to_json_v2
from py_clob_client_v2.order_utils.model.side import Side
from py_clob_client_v2.signer import Signer

from active_quoting.errors import UnitsError
from active_quoting.venue.amounts import order_amounts
from active_quoting.venue.signing import CONTRACTS, OrderSigner, SigningError, keccak, l2_signature, recover_signer

ANVIL0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ANVIL0_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


# -- published vectors (POLYMARKET.md §5, §6) ---------------------------------------------


@pytest.mark.parametrize(
    ("chain", "neg_risk", "ts", "digest", "sig"),
    [
        (137, False, 1713398400000, "0x9a5c03e1e68d332686aba0ff15be80abccd917f28873c37304487b6ca6578471",
         "0x1048923a4542e743d5827534db4df2d1f0de831011c287566bd6aa2e9cad01c10732fb3b3a602a8d47c181f2e3c7d304cbdff4221ba37dc0f2f4212b7303a0601c"),
        (137, True, 1713398400000, "0x3a07c6dc76b5e66e4c0d0e3a8d270171493a058800249f43f75093ff3592f440",
         "0x50d3cdfc5662f5a84ab4777445fa1a61ccc3dd52f18f7dc049356a405883918710854a0c7417a73f9ff00f1b6104c00b4c8fa9cb3455c1d5d15092d4b9e363d21c"),
        (80002, False, 1780449126930, "0xf4b817f06f351bdc415e904135e806faee2d88050b2fab12370717143dc923b8",
         "0xa96be879ff1c5b94c1f7bbb4e253e2283748c1261f8b21390979d31ee6a164656132219cf49fd86574380b4f5f11232945497b29ffbc74d4bf9a0623c17af0071b"),
    ],
)  # fmt: skip
def test_v2_vectors(chain, neg_risk, ts, digest, sig):
    s = OrderSigner(ANVIL0, chain)
    o = s.sign_v2(1234, 100_000_000, 50_000_000, 0, 479249096354, ts, neg_risk=neg_risk)
    assert (o.order_hash, o.signature) == (digest, sig)


def test_v1_vector():
    o = OrderSigner(ANVIL0, 80002).sign_v1(1234, 100_000_000, 50_000_000, 0, 479249096354, fee_rate_bps=100)
    assert o.order_hash == "0x02ca1d1aa31103804173ad1acd70066cb6c1258a4be6dada055111f9a7ea4e55"
    assert o.signature == (
        "0x302cd9abd0b5fcaa202a344437ec0b6660da984e24ae9ad915a592a90facf5a51bb8a873cd8d270f070217fea1986531"
        "d5eec66f1162a81f66e026db653bf7ce1c"
    )


def test_clob_auth_vectors():
    assert OrderSigner(ANVIL0, 80002).clob_auth_signature(10000000, 23) == (
        "0xf62319a987514da40e57e2f4d7529f7bac38f0355bd88bb5adbb3768d80de6c1682518e0af677d5260366425f4361e7b"
        "70c25ae232aff0ab2331e2b164a1aedc1b"
    )
    assert OrderSigner(ANVIL0, 137).clob_auth_signature(1700000000, 42) == (
        "0x8e61f918d542a48ff9433fb6cc4c172a2763ad53dda8afa07f77321e2e0a1e3055f29fac1408e0020dca977190fd4f01"
        "b1c73b5e2078be29c88a32887945fe2a1b"
    )


def test_l2_hmac_vector():
    sig = l2_signature(
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 1000000, "test-sign", "/orders", '{"hash": "0x123"}'
    )
    assert sig == "ZwAdJKvoYRlEKDkNMwd5BuwNNtg93kNaR_oU2HrfVvc="
    assert l2_signature("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 1, "GET", "/x", None) == l2_signature(
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 1, "GET", "/x", b""
    )


# -- byte-identity with the official client on random orders ------------------------------

KEYS = [ANVIL0] + ["0x" + secrets.token_hex(32) for _ in range(3)]
u256 = st.integers(0, (1 << 256) - 1)
amounts = st.integers(1, 10**15)


@settings(max_examples=60, deadline=None)
@given(
    key=st.sampled_from(KEYS),
    chain=st.sampled_from([137, 80002]),
    neg_risk=st.booleans(),
    sig_type=st.sampled_from([0, 1, 2]),
    salt=st.integers(0, 2**64),
    token=u256,
    maker_amount=amounts,
    taker_amount=amounts,
    side=st.sampled_from([0, 1]),
    ts=st.integers(0, 2**48),
    expiration=st.integers(0, 2**40),
)
def test_v2_matches_sdk(key, chain, neg_risk, sig_type, salt, token, maker_amount, taker_amount, side, ts, expiration):
    funder = "0x" + keccak(key.encode())[-20:].hex() if sig_type else None
    ours = OrderSigner(key, chain, funder=funder, signature_type=sig_type)
    mine = ours.sign_v2(token, maker_amount, taker_amount, side, salt, ts, neg_risk=neg_risk, expiration=expiration)
    c = CONTRACTS[chain]
    sdk = ExchangeOrderBuilderV2(
        c.neg_risk_exchange_v2 if neg_risk else c.exchange_v2,
        chain,
        Signer(key, chain),
        generate_salt=lambda: str(salt),
    )
    data = OrderDataV2(
        maker=ours.maker, tokenId=str(token), makerAmount=str(maker_amount), takerAmount=str(taker_amount),
        side=Side(side), signer=ours.address, signatureType=sig_type, timestamp=str(ts), expiration=str(expiration),
    )  # fmt: skip
    order = sdk.build_order(data)
    signed = sdk.build_signed_order(data)
    digest = _hash_message(encode_typed_data(full_message=sdk.build_order_typed_data(order)))
    assert mine.order_hash == "0x" + digest.hex()
    assert mine.signature == signed.signature
    assert mine.wire == order_to_json_v2(signed, "owner", "GTC")["order"]
    assert recover_signer(digest, mine.signature) == ours.address == Account.from_key(key).address


@settings(max_examples=30, deadline=None)
@given(
    key=st.sampled_from(KEYS),
    neg_risk=st.booleans(),
    salt=st.integers(0, 2**64),
    token=u256,
    maker_amount=amounts,
    taker_amount=amounts,
    side=st.sampled_from([0, 1]),
    fee=st.integers(0, 10_000),
    nonce=st.integers(0, 2**32),
)
def test_v1_matches_sdk(key, neg_risk, salt, token, maker_amount, taker_amount, side, fee, nonce):
    ours = OrderSigner(key, 137)
    mine = ours.sign_v1(token, maker_amount, taker_amount, side, salt, fee, neg_risk=neg_risk, nonce=nonce)
    c = CONTRACTS[137]
    sdk = ExchangeOrderBuilderV1(
        c.neg_risk_exchange_v1 if neg_risk else c.exchange_v1, 137, Signer(key, 137), generate_salt=lambda: str(salt)
    )
    data = OrderDataV1(
        maker=ours.maker, taker="0x0000000000000000000000000000000000000000", tokenId=str(token),
        makerAmount=str(maker_amount), takerAmount=str(taker_amount), side=Side(side), feeRateBps=str(fee),
        nonce=str(nonce), signer=ours.address, signatureType=0,
    )  # fmt: skip
    signed = sdk.build_signed_order(data)
    assert mine.signature == signed.signature
    digest = _hash_message(encode_typed_data(full_message=sdk.build_order_typed_data(sdk.build_order(data))))
    assert mine.order_hash == "0x" + digest.hex()


# -- exact amounts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "price", "size", "tick", "maker", "taker"),
    [
        (0, 2400, 15_000_000, 100, 3_600_000, 15_000_000),
        (1, 2400, 15_000_000, 100, 15_000_000, 3_600_000),
        (0, 8200, 101_000_000, 100, 82_820_000, 101_000_000),
        (0, 7800, 12_820_500, 100, 9_999_600, 12_820_000),
        (1, 3900, 2_435_890_000, 100, 2_435_890_000, 949_997_100),
        (0, 5800, 18_233_330_000, 100, 10_575_331_400, 18_233_330_000),
        (0, 5000, 21_040_000, 1000, 10_520_000, 21_040_000),
        (0, 4950, 10_000_000, 50, 4_950_000, 10_000_000),
        (1, 4975, 3_330_000, 25, 3_330_000, 1_656_675),
        (0, 1, 10_000, 1, 1, 10_000),
    ],
)
def test_amounts_match_the_sdk_published_examples(side, price, size, tick, maker, taker):
    assert order_amounts(side, price, size, tick)[:2] == (maker, taker)


SDK_LOSSES = [(4.35, 0.50), (1.13, 0.50), (8.7, 0.50), (19.99, 0.50)]


@pytest.mark.parametrize(("size", "price"), SDK_LOSSES)
def test_exact_where_the_sdk_float_arithmetic_loses_a_hundredth(size, price):
    sdk = OrderBuilder(Signer(ANVIL0, 137))
    _, sdk_maker, sdk_taker = sdk.get_order_amounts("BUY", size, price, ROUNDING_CONFIG["0.01"])
    size_micro = round(size * 100) * 10_000
    maker, taker, _ = order_amounts(0, int(price * 10_000), size_micro, 100)
    assert taker == size_micro and maker == size_micro * int(price * 10_000) // 10_000
    assert sdk_taker == size_micro - 10_000  # the SDK's float round_down drops 0.01 share


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([1000, 100, 50, 10, 25, 1]), st.integers(10_000, 10**11), st.integers(0, 1), st.data())
def test_amounts_are_exact_and_priced(tick, size, side, data):
    price = data.draw(st.integers(1, 10_000 // tick - 1)) * tick
    maker, taker, used = order_amounts(side, price, size, tick)
    assert used == size // 10_000 * 10_000
    shares, collateral = (taker, maker) if side == 0 else (maker, taker)
    assert collateral * 10_000 == shares * price  # implied price is exactly the order price


@pytest.mark.parametrize(
    ("args", "field"),
    [((0, 5050, 10_000_000, 100), "price"), ((0, 0, 10_000_000, 100), "price"), ((0, 9950, 10_000_000, 100), "price"),
     ((0, 5000, 9_999, 100), "size"), ((0, 5000, 10_000_000, 7), "tick_size"), ((2, 5000, 10_000_000, 100), "side")],
)  # fmt: skip
def test_amounts_refuse_bad_orders(args, field):
    with pytest.raises(UnitsError) as err:
        order_amounts(*args)
    assert err.value.field == field


# -- keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["0x1234", "zz" * 32, "0x" + "00" * 32, ""])
def test_bad_keys_are_refused_without_echo(key):
    with pytest.raises(SigningError) as err:
        OrderSigner(key)
    assert str(err.value).startswith("private key:") and (not key or key not in str(err.value))


def test_key_never_in_repr():
    s = OrderSigner(ANVIL0)
    assert ANVIL0[2:] not in repr(s) and ANVIL0[2:] not in str(vars(s) if hasattr(s, "__dict__") else "")
    with pytest.raises(SigningError, match="funder"):
        OrderSigner(ANVIL0, signature_type=2)
