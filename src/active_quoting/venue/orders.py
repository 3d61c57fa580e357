"""Building order bodies: price and size to exact amounts, signed, in the wire shape.

One path for every order the bot sends: :func:`build_order` then :func:`order_body` (and
:func:`encode` for the exact bytes that are both signed by the L2 HMAC and sent).

Order versions: 1 (the design's, signed ``feeRateBps``), 2 (CTF Exchange V2, the venue's
current format) and 3 (ExchangeV3: Protocol-V2 markets, Gamma ``version: "v2"``). A market's
version decides which one its orders need (:func:`order_version_for`); one bot can sign
several versions at once, per order.
"""

from __future__ import annotations

import secrets

import orjson

from active_quoting.clock import SYSTEM, Clock
from active_quoting.venue.amounts import BUY, SELL, order_amounts
from active_quoting.venue.signing import ORDER_VERSIONS, OrderSigner, SignedOrder, SigningError

ORDER_TYPES = ("GTC", "GTD", "FOK", "FAK")
MAX_BATCH = 15


def new_salt() -> int:
    """A random salt (the SDK uses ``random() * now_ms``; any uint256 is valid)."""
    return secrets.randbits(48)


# Gamma's market ``version`` (the protocol generation) -> the order version its orders need.
MARKET_ORDER_VERSIONS = {"v2": 3}


def order_version_for(market_version: str | None, venue_version: int = 2) -> int:
    """The order version an order on a market needs: ExchangeV3 (3) for a Protocol-V2 market
    (Gamma ``version: "v2"``), else the venue's order version (``GET /version``: 2, or 1 on a
    venue still on V1) for a market with no version or ``"v1"``. A version this program cannot
    sign raises :class:`SigningError` (the order manager counts it as a refusal for that market)."""
    if market_version is None or market_version in ("", "v1"):
        if venue_version not in ORDER_VERSIONS:
            raise SigningError(f"order version: the venue asks for {venue_version!r}, known {ORDER_VERSIONS}")
        return venue_version
    version = MARKET_ORDER_VERSIONS.get(str(market_version).lower())
    if version is None:
        raise SigningError(f"market version {market_version!r}: no order version known for it")
    return version


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
    clock: Clock = SYSTEM,
) -> SignedOrder:
    """Sign a limit order: ``price`` in 1e-4 units on the ``tick`` grid, ``size`` in micro-shares.

    ``version`` 2 or 3 (ExchangeV3, for Protocol-V2 markets; ``token_id`` is then the market's
    position id) or 1 (needs ``fee_rate_bps``); anything else raises :class:`SigningError`, as
    does a deposit-wallet signer (signature type 3) asked for version 1. ``timestamp_ms``
    defaults to ``clock.ms()``."""
    if version not in ORDER_VERSIONS:
        raise SigningError(f"order version must be one of {ORDER_VERSIONS}, got {version!r}")
    maker_amount, taker_amount, _ = order_amounts(side, price, size, tick)
    salt = new_salt() if salt is None else salt
    if version != 1:
        ts = clock.ms() if timestamp_ms is None else timestamp_ms
        return signer.sign_v2(
            token_id, maker_amount, taker_amount, side, salt, ts, neg_risk, expiration, version=version
        )
    if fee_rate_bps is None:
        raise SigningError("fee_rate_bps: order version 1 signs the fee rate; look it up first")
    return signer.sign_v1(token_id, maker_amount, taker_amount, side, salt, fee_rate_bps, neg_risk, expiration)


def order_body(
    order: SignedOrder, owner: str, order_type: str = "GTC", post_only: bool = True, defer_exec: bool = False
) -> dict[str, object]:
    """The ``POST /order`` body (the SDK's key order; V1 bodies have no ``deferExec``). Its
    ``order`` is the signed order's JSON, serialized once (:attr:`SignedOrder.wire_json`) and
    embedded as is by :func:`encode`: the bytes are those of ``order.wire``."""
    if order_type not in ORDER_TYPES:
        raise SigningError(f"order_type: expected one of {ORDER_TYPES}, got {order_type!r}")
    if post_only and order_type not in ("GTC", "GTD"):
        raise SigningError("post_only is only valid for GTC and GTD orders")
    if order.version == 1:
        order_json = orjson.Fragment(order.wire_json)
        return {"order": order_json, "owner": owner, "orderType": order_type, "postOnly": post_only}
    return {
        "order": orjson.Fragment(order.wire_json),
        "owner": owner,
        "orderType": order_type,
        "deferExec": defer_exec,
        "postOnly": post_only,
    }


def encode(body: object) -> bytes:
    """Compact JSON, as the SDK serializes (``separators=(",", ":")``, no ASCII escaping)."""
    return orjson.dumps(body)


__all__ = [
    "BUY", "SELL", "MAX_BATCH", "MARKET_ORDER_VERSIONS", "build_order", "order_body", "encode", "new_salt",
    "order_version_for",
]  # fmt: skip
