"""``active-quoting sign-order`` for a deposit wallet (signature type 3) and a Protocol-V2 market
(order version 3): the exact body py-clob-client-v2 would post, as a subprocess, key never printed."""

from __future__ import annotations

import json

import pytest
from py_clob_client_v2.config import get_contract_config
from py_clob_client_v2.order_utils.exchange_order_builder_v2 import ExchangeOrderBuilderV2
from py_clob_client_v2.order_utils.model.order_data_v2 import OrderDataV2, order_to_json_v2
from py_clob_client_v2.order_utils.model.side import Side
from py_clob_client_v2.signer import Signer

from test_cli_sign_order import KEY, run

WALLET = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
POSITION = "71321045679252212594626385532706912750332728571942532289631379312455583992563"
OWNER = "f4f247b7-4ac7-ff29-a152-04fda0a8755a"


@pytest.mark.parametrize(("version", "sig_type"), [(3, 3), (3, 0), (2, 3)])
def test_body_matches_the_official_client(tmp_path, version, sig_type):
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    funder = ["--funder", WALLET] if sig_type == 3 else []
    out = run(["--key-file", str(key_file), "--token-id", POSITION, "--price", "0.57", "--size", "8.7", "--side",
               "SELL", "--salt", "987654321", "--timestamp", "1780000000000", "--post-only", "--owner", OWNER,
               "--order-version", str(version), "--signature-type", str(sig_type), *funder])  # fmt: skip
    assert out.returncode == 0, out.stderr
    signer = Signer(KEY, 137)
    cfg = get_contract_config(137)
    sdk = ExchangeOrderBuilderV2(
        cfg.exchange_v3 if version == 3 else cfg.exchange_v2, 137, signer, lambda: "987654321", str(version)
    )
    who = WALLET if sig_type == 3 else signer.address()
    data = OrderDataV2(
        maker=who, signer=who, tokenId=POSITION, makerAmount="8700000", takerAmount="4959000", side=Side.SELL,
        signatureType=sig_type, timestamp="1780000000000",
    )  # fmt: skip
    expected = order_to_json_v2(sdk.build_signed_order(data), OWNER, "GTC", post_only=True)
    assert out.stdout == json.dumps(expected, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    assert KEY[2:] not in (out.stdout + out.stderr).decode()
    order_hash = sdk.build_order_hash(sdk.build_order_typed_data(sdk.build_order(data)))
    assert f"order hash (orderID): {order_hash}".encode() in out.stderr


def test_what_cannot_be_signed_is_refused_clearly():
    env = {"AQ_PRIVATE_KEY": KEY}
    base = ["--token-id", "1", "--price", "0.5", "--size", "5", "--side", "BUY"]
    out = run([*base, "--signature-type", "3"], env)
    assert out.returncode == 2 and b"funder" in out.stderr
    out = run([*base, "--signature-type", "3", "--funder", WALLET, "--order-version", "1", "--fee-rate-bps", "0"], env)
    assert out.returncode == 2 and b"deposit-wallet" in out.stderr and not out.stdout
    out = run([*base, "--order-version", "4"], env)
    assert out.returncode == 2 and b"--order-version" in out.stderr
    assert KEY[2:].encode() not in out.stderr
