"""Building order bodies: price and size to exact amounts, signed, in the wire shape.

One path for every order the bot sends: :func:`build_order` then :func:`order_body` (and
:func:`encode` for the exact bytes that are both signed by the L2 HMAC and sent).
"""

from __future__ import annotations

import secrets
import time

import orjson

from active_quoting.venue.amounts import BUY, SELL, order_amounts
from active_quoting.venue.signing import OrderSigner, SignedOrder, SigningError

ORDER_TYPES = ("GTC", "GTD", "FOK", "FAK")
MAX_BATCH = 15


def new_salt() -> int:
    """A random salt (the SDK uses ``random() * now_ms``; any uint256 is valid)."""
    return secrets.randbits(48)


def build_order(
    signer: OrderSigner,
    token_id: str | int,
    side: int,
    price: int,
    size: int,
    tick: int,
    *,
    version: int = 2,
    neg_risk: bool = False,
    salt: int | None = None,
    timestamp_ms: int | None = None,
    expiration: int = 0,
    fee_rate_bps: int | None = None,
) -> SignedOrder:
    """Sign a limit order: ``price`` in 1e-4 units on the ``tick`` grid, ``size`` in micro-shares."""
    maker_amount, taker_amount, _ = order_amounts(side, price, size, tick)
    salt = new_salt() if salt is None else salt
    if version == 2:
        ts = time.time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms
        return signer.sign_v2(token_id, maker_amount, taker_amount, side, salt, ts, neg_risk, expiration)
    if version == 1:
        if fee_rate_bps is None:
            raise SigningError("fee_rate_bps: order version 1 signs the fee rate; look it up first")
        return signer.sign_v1(token_id, maker_amount, taker_amount, side, salt, fee_rate_bps, neg_risk, expiration)
    raise SigningError(f"order version must be 1 or 2, got {version!r}")


def order_body(
    order: SignedOrder, owner: str, order_type: str = "GTC", post_only: bool = True, defer_exec: bool = False
) -> dict[str, object]:
    """The ``POST /order`` body (the SDK's key order; V1 bodies have no ``deferExec``)."""
    if order_type not in ORDER_TYPES:
        raise SigningError(f"order_type: expected one of {ORDER_TYPES}, got {order_type!r}")
    if post_only and order_type not in ("GTC", "GTD"):
        raise SigningError("post_only is only valid for GTC and GTD orders")
    if order.version == 1:
        return {"order": order.wire, "owner": owner, "orderType": order_type, "postOnly": post_only}
    return {
        "order": order.wire,
        "owner": owner,
        "orderType": order_type,
        "deferExec": defer_exec,
        "postOnly": post_only,
    }


def encode(body: object) -> bytes:
    """Compact JSON, as the SDK serializes (``separators=(",", ":")``, no ASCII escaping)."""
    return orjson.dumps(body)


__all__ = ["BUY", "SELL", "MAX_BATCH", "build_order", "order_body", "encode", "new_salt"]
