"""``active-quoting sign-order``: the exact body the official client would post, key never printed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from py_clob_client_v2.order_utils.exchange_order_builder_v2 import ExchangeOrderBuilderV2
from py_clob_client_v2.order_utils.model.order_data_v2 import OrderDataV2, order_to_json_v2
from py_clob_client_v2.order_utils.model.side import Side
from py_clob_client_v2.signer import Signer

EXE = shutil.which("active-quoting") or str(Path(sys.executable).parent / "active-quoting")
KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"  # a throwaway test key


def run(args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQ_")}
    env.update(env_extra or {})
    return subprocess.run([EXE, "sign-order", *args], capture_output=True, env=env, check=False, timeout=60)


def test_body_matches_the_official_client(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    out = run(["--key-file", str(key_file), "--token-id", "71321045679252212594626385532706912750332728571942532289631379312455583992563",
               "--price", "0.57", "--size", "8.7", "--side", "SELL", "--salt", "987654321", "--timestamp", "1780000000000",
               "--post-only", "--owner", "f4f247b7-4ac7-ff29-a152-04fda0a8755a"])  # fmt: skip
    assert out.returncode == 0, out.stderr
    signer = Signer(KEY, 137)
    sdk = ExchangeOrderBuilderV2(
        "0xE111180000d2663C0091e4f400237545B87B996B", 137, signer, generate_salt=lambda: "987654321"
    )
    data = OrderDataV2(
        maker=signer.address(), signer=signer.address(), tokenId="71321045679252212594626385532706912750332728571942532289631379312455583992563",
        makerAmount="8700000", takerAmount="4959000", side=Side.SELL, signatureType=0, timestamp="1780000000000",
    )  # fmt: skip
    expected = order_to_json_v2(
        sdk.build_signed_order(data), "f4f247b7-4ac7-ff29-a152-04fda0a8755a", "GTC", post_only=True
    )
    assert out.stdout == json.dumps(expected, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    assert KEY[2:] not in (out.stdout + out.stderr).decode()
    assert b"order hash (orderID): 0x" in out.stderr


def test_version_1_needs_the_fee_rate():
    out = run(["--token-id", "1", "--price", "0.5", "--size", "5", "--side", "BUY", "--order-version", "1"],
              {"AQ_PRIVATE_KEY": KEY})  # fmt: skip
    assert out.returncode == 2 and b"fee_rate_bps" in out.stderr
    out = run(["--token-id", "1", "--price", "0.5", "--size", "5", "--side", "BUY", "--order-version", "1",
               "--fee-rate-bps", "1000"], {"AQ_PRIVATE_KEY": KEY})  # fmt: skip
    body = json.loads(out.stdout)
    assert out.returncode == 0 and body["order"]["feeRateBps"] == "1000" and "deferExec" not in body


def test_errors_are_clear_and_secret_free(tmp_path):
    out = run(["--token-id", "1", "--price", "0.5", "--size", "5", "--side", "BUY"])
    assert out.returncode == 2 and b"no private key" in out.stderr
    out = run(["--token-id", "1", "--price", "0.505", "--size", "5", "--side", "BUY"], {"AQ_PRIVATE_KEY": KEY})
    assert out.returncode == 2 and b"tick grid" in out.stderr
    out = run(["--token-id", "1", "--price", "0.5", "--size", "5", "--side", "BUY", "--order-type", "FOK", "--post-only"],
              {"AQ_PRIVATE_KEY": KEY})  # fmt: skip
    assert out.returncode == 2 and b"post_only" in out.stderr
    bad = "0x" + "zz" * 32
    out = run(["--token-id", "1", "--price", "0.5", "--size", "5", "--side", "BUY"], {"AQ_PRIVATE_KEY": bad})
    assert out.returncode == 2 and bad.encode() not in out.stderr
