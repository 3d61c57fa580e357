"""EIP-712 order signing, fast: C keccak (safe-pysha3), libsecp256k1 (coincurve), everything
that does not depend on the order precomputed.

Order version 2 is the venue's current format (domain version "2", no taker/nonce/feeRateBps,
adds timestamp/metadata/builder); version 1 is the design document's format (kept because the
design asks for it; the venue refuses it since 2026-04-28). Signatures are byte-identical to
``py-clob-client-v2``'s for the same order struct; the struct hash's EIP-712 digest is the
venue's ``orderID``, so it is known before the order is sent.

The private key never leaves :class:`OrderSigner`: it is not in its repr, and nothing here
prints or logs it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import coincurve
import sha3
from coincurve._libsecp256k1 import ffi as _ffi
from coincurve._libsecp256k1 import lib as _lib
from coincurve.context import GLOBAL_CONTEXT

from active_quoting.errors import ActiveQuotingError

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
BYTES32_ZERO = "0x" + "00" * 32


@dataclass(frozen=True)
class Contracts:
    exchange_v1: str
    neg_risk_exchange_v1: str
    exchange_v2: str
    neg_risk_exchange_v2: str


CONTRACTS = {
    137: Contracts(
        exchange_v1="0x4bFb41d5B3570DeFd03C39a9A4D8dE6Bd8B8982E",
        neg_risk_exchange_v1="0xC5d563A36AE78145C45a50134d48A1215220f80a",
        exchange_v2="0xE111180000d2663C0091e4f400237545B87B996B",
        neg_risk_exchange_v2="0xe2222d279d744050d28e00520010520000310F59",
    ),
    80002: Contracts(
        exchange_v1="0xdFE02Eb6733538f8Ea35D585af8DE5958AD99E40",
        neg_risk_exchange_v1="0xC5d563A36AE78145C45a50134d48A1215220f80a",
        exchange_v2="0xE111180000d2663C0091e4f400237545B87B996B",
        neg_risk_exchange_v2="0xe2222d279d744050d28e00520010520000310F59",
    ),
}

DOMAIN_NAME = "Polymarket CTF Exchange"
ORDER_TYPE_V2 = (
    "Order(uint256 salt,address maker,address signer,uint256 tokenId,uint256 makerAmount,"
    "uint256 takerAmount,uint8 side,uint8 signatureType,uint256 timestamp,bytes32 metadata,bytes32 builder)"
)
ORDER_TYPE_V1 = (
    "Order(uint256 salt,address maker,address signer,address taker,uint256 tokenId,uint256 makerAmount,"
    "uint256 takerAmount,uint256 expiration,uint256 nonce,uint256 feeRateBps,uint8 side,uint8 signatureType)"
)
DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
CLOB_AUTH_DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId)"
CLOB_AUTH_TYPE = "ClobAuth(address address,string timestamp,uint256 nonce,string message)"
CLOB_AUTH_MESSAGE = "This message attests that I control the given wallet"

BUY, SELL = 0, 1
SIGNATURE_TYPES = (0, 1, 2)  # EOA, POLY_PROXY, POLY_GNOSIS_SAFE
_UINT256_MAX = (1 << 256) - 1


class SigningError(ActiveQuotingError, ValueError):
    """An order or key that cannot be signed (bad field, bad key)."""


def keccak(data: bytes) -> bytes:
    return sha3.keccak_256(data).digest()


def _word(value: int, field: str) -> bytes:
    if type(value) is not int or not 0 <= value <= _UINT256_MAX:
        raise SigningError(f"{field}: expected an unsigned 256-bit integer, got {value!r}")
    return value.to_bytes(32, "big")


def _address_bytes(address: str, field: str) -> bytes:
    if not isinstance(address, str) or len(address) != 42 or not address.startswith("0x"):
        raise SigningError(f"{field}: expected a 0x-prefixed 20-byte address, got {address!r}")
    try:
        return bytes.fromhex(address[2:])
    except ValueError:
        raise SigningError(f"{field}: not hex: {address!r}") from None


def _bytes32(value: str, field: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) > 66:
        raise SigningError(f"{field}: expected 0x-prefixed bytes32, got {value!r}")
    try:
        return bytes.fromhex(value[2:].zfill(64))
    except ValueError:
        raise SigningError(f"{field}: not hex: {value!r}") from None


def checksum_address(raw20: bytes) -> str:
    """EIP-55 mixed-case address."""
    hexaddr = raw20.hex()
    digest = keccak(hexaddr.encode()).hex()
    return "0x" + "".join(c.upper() if int(digest[i], 16) >= 8 else c for i, c in enumerate(hexaddr))


def domain_separator(version: str, chain_id: int, contract: str) -> bytes:
    return keccak(
        keccak(DOMAIN_TYPE.encode())
        + keccak(DOMAIN_NAME.encode())
        + keccak(version.encode())
        + _word(chain_id, "chain_id")
        + b"\x00" * 12
        + _address_bytes(contract, "verifyingContract")
    )


class SignedOrder:
    """A signed order: its hash (the venue's orderID), signature, and the wire ``order`` object
    (built on first use, in the SDK's key order)."""

    __slots__ = ("order_hash", "version", "signature", "_values", "_wire")

    def __init__(self, order_hash: str, version: int, signature: str, values: tuple[object, ...]) -> None:
        self.order_hash = order_hash
        self.version = version
        self.signature = signature
        self._values = values
        self._wire: dict[str, object] | None = None

    @property
    def wire(self) -> dict[str, object]:
        if self._wire is None:
            self._wire = (
                _WIRE_V2(*self._values, self.signature)
                if self.version == 2
                else _WIRE_V1(*self._values, self.signature)
            )
        return self._wire

    def __repr__(self) -> str:
        return f"SignedOrder(v{self.version}, {self.order_hash})"


class OrderSigner:
    """Signs orders and ClobAuth messages with one private key.

    ``funder`` is the maker (the proxy or Safe holding the funds) for signature types 1 and 2;
    for EOA orders (type 0) the maker is the signer itself.
    """

    __slots__ = (
        "_key", "_secret", "_buffers", "address", "chain_id", "maker", "signature_type", "_sep", "_maker_b",
        "_signer_b", "_sigtype_word", "_tokens", "_sep2", "_sep2_neg",
    )  # fmt: skip

    def __init__(
        self, private_key: str | bytes, chain_id: int = 137, funder: str | None = None, signature_type: int = 0
    ):
        raw = private_key
        if isinstance(raw, str):
            text = raw.strip()
            text = text[2:] if text.startswith("0x") else text
            try:
                raw = bytes.fromhex(text)
            except ValueError:
                raise SigningError("private key: not hex") from None
        if len(raw) != 32:
            raise SigningError("private key: expected 32 bytes")
        try:
            self._key = coincurve.PrivateKey(raw)
        except ValueError:
            raise SigningError("private key: not a valid secp256k1 key") from None
        if chain_id not in CONTRACTS:
            raise SigningError(f"chain_id: unsupported {chain_id} (known: {sorted(CONTRACTS)})")
        if signature_type not in SIGNATURE_TYPES:
            raise SigningError(f"signature_type: expected one of {SIGNATURE_TYPES}, got {signature_type!r}")
        if signature_type != 0 and not funder:
            raise SigningError("funder: signature types 1 and 2 need the funder (proxy or Safe) address")
        pub = self._key.public_key.format(compressed=False)[1:]
        self.address = checksum_address(keccak(pub)[-20:])
        self.chain_id = chain_id
        self.signature_type = signature_type
        self.maker = checksum_address(_address_bytes(funder, "funder")) if funder else self.address
        c = CONTRACTS[chain_id]
        self._sep = {
            (2, False): domain_separator("2", chain_id, c.exchange_v2),
            (2, True): domain_separator("2", chain_id, c.neg_risk_exchange_v2),
            (1, False): domain_separator("1", chain_id, c.exchange_v1),
            (1, True): domain_separator("1", chain_id, c.neg_risk_exchange_v1),
        }
        self._sep2 = self._sep[(2, False)]
        self._sep2_neg = self._sep[(2, True)]
        self._maker_b = b"\x00" * 12 + _address_bytes(self.maker, "maker")
        self._signer_b = b"\x00" * 12 + _address_bytes(self.address, "signer")
        self._sigtype_word = signature_type.to_bytes(32, "big")
        self._tokens: dict[int | str, bytes] = {}
        self._secret = self._key.secret
        self._buffers = (
            _ffi.new("secp256k1_ecdsa_recoverable_signature *"),
            _ffi.new("unsigned char[64]"),
            _ffi.new("int *"),
        )

    def __repr__(self) -> str:
        return f"OrderSigner(address={self.address}, chain_id={self.chain_id}, signature_type={self.signature_type})"

    def _token_word(self, token_id: int | str) -> bytes:
        """The 32-byte word of a token id (decimal string as the venue writes it, or int), cached:
        a bot signs many orders for few tokens."""
        word = self._tokens.get(token_id)
        if word is None:
            value = token_id
            if type(token_id) is str:
                if not token_id.isdigit() or not token_id.isascii():
                    raise SigningError(f"token_id: expected a decimal token id, got {token_id!r}")
                value = int(token_id)
            word = _word(value, "token_id")
            if len(self._tokens) > 4096:
                self._tokens.clear()
            self._tokens[token_id] = word
        return word

    def _sign_digest(self, digest: bytes) -> str:
        # libsecp256k1 through coincurve's cffi binding with buffers allocated once: the same
        # RFC 6979 deterministic, low-s signature as PrivateKey.sign_recoverable, minus the
        # per-call allocations. Not for concurrent use from several threads.
        sig, out, recid = self._buffers
        if not _lib.secp256k1_ecdsa_sign_recoverable(_CTX, sig, digest, self._secret, _ffi.NULL, _ffi.NULL):
            raise SigningError("signing failed")
        _lib.secp256k1_ecdsa_recoverable_signature_serialize_compact(_CTX, out, recid, sig)
        return "0x" + _ffi.buffer(out, 64)[:].hex() + _V_HEX[recid[0]]

    def sign_v2(
        self,
        token_id: int | str,
        maker_amount: int,
        taker_amount: int,
        side: int,
        salt: int,
        timestamp_ms: int,
        neg_risk: bool = False,
        expiration: int = 0,
        metadata: str = BYTES32_ZERO,
        builder: str = BYTES32_ZERO,
    ) -> SignedOrder:
        """Sign a version-2 order (the venue's current format)."""
        try:
            # int.to_bytes refuses negatives, values past 256 bits and non-integers in C; the
            # slow path below only runs to name the bad field.
            struct = keccak(
                b"".join(
                    (
                        _TYPEHASH_V2,
                        salt.to_bytes(32, "big"),
                        self._maker_b,
                        self._signer_b,
                        self._token_word(token_id),
                        maker_amount.to_bytes(32, "big"),
                        taker_amount.to_bytes(32, "big"),
                        _SIDE_WORD[side],
                        self._sigtype_word,
                        timestamp_ms.to_bytes(32, "big"),
                        _ZERO_WORD if metadata is BYTES32_ZERO else _bytes32(metadata, "metadata"),
                        _ZERO_WORD if builder is BYTES32_ZERO else _bytes32(builder, "builder"),
                    )
                )
            )
            expiration.to_bytes(32, "big")
        except (OverflowError, AttributeError, KeyError, TypeError):
            for name, value in (("maker_amount", maker_amount), ("taker_amount", taker_amount),
                                ("salt", salt), ("timestamp", timestamp_ms), ("expiration", expiration)):  # fmt: skip
                _word(value, name)
            raise SigningError(f"side: expected 0 (BUY) or 1 (SELL), got {side!r}") from None
        digest = keccak(_EIP712_PREFIX + (self._sep2_neg if neg_risk else self._sep2) + struct)
        values = (salt, self.maker, self.address, token_id, maker_amount, taker_amount, side, expiration,
                  self.signature_type, timestamp_ms, metadata, builder)  # fmt: skip
        return SignedOrder("0x" + digest.hex(), 2, self._sign_digest(digest), values)

    def sign_v1(
        self,
        token_id: int | str,
        maker_amount: int,
        taker_amount: int,
        side: int,
        salt: int,
        fee_rate_bps: int,
        neg_risk: bool = False,
        expiration: int = 0,
        nonce: int = 0,
        taker: str = ZERO_ADDRESS,
    ) -> SignedOrder:
        """Sign a version-1 order (the design document's format, with ``feeRateBps``)."""
        if side not in (BUY, SELL):
            raise SigningError(f"side: expected 0 (BUY) or 1 (SELL), got {side!r}")
        struct = keccak(
            _TYPEHASH_V1
            + _word(salt, "salt")
            + self._maker_b
            + self._signer_b
            + b"\x00" * 12
            + _address_bytes(taker, "taker")
            + self._token_word(token_id)
            + _word(maker_amount, "maker_amount")
            + _word(taker_amount, "taker_amount")
            + _word(expiration, "expiration")
            + _word(nonce, "nonce")
            + _word(fee_rate_bps, "fee_rate_bps")
            + _word(side, "side")
            + _word(self.signature_type, "signature_type")
        )
        digest = keccak(b"\x19\x01" + self._sep[(1, bool(neg_risk))] + struct)
        values = (salt, self.maker, self.address, taker, token_id, maker_amount, taker_amount, expiration, nonce,
                  fee_rate_bps, side, self.signature_type)  # fmt: skip
        return SignedOrder("0x" + digest.hex(), 1, self._sign_digest(digest), values)

    def clob_auth_signature(self, timestamp: int, nonce: int = 0) -> str:
        """The L1 ``ClobAuth`` signature (POLY_SIGNATURE of the api-key endpoints)."""
        return self._sign_digest(clob_auth_digest(self.address, timestamp, nonce, self.chain_id))


_TYPEHASH_V2 = keccak(ORDER_TYPE_V2.encode())
_EIP712_PREFIX = b"\x19\x01"
_ZERO_WORD = b"\x00" * 32
_SIDE_WORD = {BUY: BUY.to_bytes(32, "big"), SELL: SELL.to_bytes(32, "big")}
_V_HEX = {0: "1b", 1: "1c", 2: "1d", 3: "1e"}
_CTX = GLOBAL_CONTEXT.ctx
_TYPEHASH_V1 = keccak(ORDER_TYPE_V1.encode())


def _token_text(token_id: int | str) -> str:
    return token_id if type(token_id) is str else str(token_id)


def _WIRE_V2(salt, maker, signer, token_id, maker_amount, taker_amount, side, expiration, sig_type, ts, metadata,
             builder, signature):  # type: ignore[no-untyped-def]  # fmt: skip
    """The V2 wire ``order`` object, in the official client's key order and value types."""
    return {
        "salt": salt,
        "maker": maker,
        "signer": signer,
        "tokenId": _token_text(token_id),
        "makerAmount": str(maker_amount),
        "takerAmount": str(taker_amount),
        "side": "BUY" if side == BUY else "SELL",
        "expiration": str(expiration),
        "signatureType": sig_type,
        "timestamp": str(ts),
        "metadata": metadata,
        "builder": builder,
        "signature": signature,
    }


def _WIRE_V1(salt, maker, signer, taker, token_id, maker_amount, taker_amount, expiration, nonce, fee_rate_bps, side,
             sig_type, signature):  # type: ignore[no-untyped-def]  # fmt: skip
    """The V1 wire ``order`` object (the archived client's key order)."""
    return {
        "salt": salt,
        "maker": maker,
        "signer": signer,
        "taker": taker,
        "tokenId": _token_text(token_id),
        "makerAmount": str(maker_amount),
        "takerAmount": str(taker_amount),
        "expiration": str(expiration),
        "nonce": str(nonce),
        "feeRateBps": str(fee_rate_bps),
        "side": "BUY" if side == BUY else "SELL",
        "signatureType": sig_type,
        "signature": signature,
    }


def clob_auth_digest(address: str, timestamp: int | str, nonce: int, chain_id: int = 137) -> bytes:
    """The EIP-712 digest an L1 ``ClobAuth`` signature signs."""
    domain = keccak(
        keccak(CLOB_AUTH_DOMAIN_TYPE.encode()) + keccak(b"ClobAuthDomain") + keccak(b"1") + _word(chain_id, "chain_id")
    )
    struct = keccak(
        keccak(CLOB_AUTH_TYPE.encode())
        + b"\x00" * 12
        + _address_bytes(address, "address")
        + keccak(str(timestamp).encode())
        + _word(nonce, "nonce")
        + keccak(CLOB_AUTH_MESSAGE.encode())
    )
    return keccak(b"\x19\x01" + domain + struct)


def recover_signer(digest: bytes, signature: str) -> str:
    """The address that produced ``signature`` over ``digest`` (used to verify, e.g. by the
    embedded exchange)."""
    raw = bytes.fromhex(signature[2:] if signature.startswith("0x") else signature)
    if len(raw) != 65 or raw[64] not in (27, 28):
        raise SigningError("signature: expected 65 bytes with v of 27 or 28")
    pub = coincurve.PublicKey.from_signature_and_message(raw[:64] + bytes([raw[64] - 27]), digest, hasher=None)
    return checksum_address(keccak(pub.format(compressed=False)[1:])[-20:])


def l2_signature(secret: str, timestamp: int, method: str, path: str, body: bytes | str | None) -> str:
    """The L2 ``POLY_SIGNATURE``: URL-safe base64 HMAC-SHA256 over timestamp+method+path+body,
    exactly as the SDK computes it (``body`` must be the bytes that are sent)."""
    key = base64.urlsafe_b64decode(secret)
    message = f"{timestamp}{method}{path}".encode()
    if body:
        text = body.decode() if isinstance(body, bytes) else body
        message += text.replace("'", '"').encode()
    return base64.urlsafe_b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


@dataclass(frozen=True)
class ApiCredentials:
    """L2 API credentials. The repr shows the key's first characters only."""

    api_key: str
    secret: str
    passphrase: str

    def __repr__(self) -> str:
        return f"ApiCredentials(api_key={self.api_key[:8]}…, secret=***, passphrase=***)"


def l2_headers(
    creds: ApiCredentials, address: str, timestamp: int, method: str, path: str, body: bytes | None = None
) -> dict[str, str]:
    """The five POLY_* headers of an L2-authenticated request (``path`` without the query)."""
    return {
        "POLY_ADDRESS": address,
        "POLY_SIGNATURE": l2_signature(creds.secret, timestamp, method, path, body),
        "POLY_TIMESTAMP": str(timestamp),
        "POLY_API_KEY": creds.api_key,
        "POLY_PASSPHRASE": creds.passphrase,
    }


def wire_order_hash(wire: dict[str, Any], chain_id: int = 137, neg_risk: bool = False) -> str:
    """The EIP-712 hash (the venue's orderID) of a wire ``order`` object, version 2 or 1 by its
    fields. For verifiers (the embedded exchange, tests): recompute, then recover the signer."""
    c = CONTRACTS[chain_id]
    maker = b"\x00" * 12 + _address_bytes(wire["maker"], "maker")
    signer = b"\x00" * 12 + _address_bytes(wire["signer"], "signer")
    side = {"BUY": BUY, "SELL": SELL}.get(wire["side"])
    if side is None:
        raise SigningError(f"side: expected BUY or SELL, got {wire['side']!r}")
    if "timestamp" in wire:
        struct = _TYPEHASH_V2 + b"".join(
            (_word(int(wire["salt"]), "salt"), maker, signer, _word(int(wire["tokenId"]), "tokenId"),
             _word(int(wire["makerAmount"]), "makerAmount"), _word(int(wire["takerAmount"]), "takerAmount"),
             _word(side, "side"), _word(int(wire["signatureType"]), "signatureType"),
             _word(int(wire["timestamp"]), "timestamp"), _bytes32(wire["metadata"], "metadata"),
             _bytes32(wire["builder"], "builder"))
        )  # fmt: skip
        sep = domain_separator("2", chain_id, c.neg_risk_exchange_v2 if neg_risk else c.exchange_v2)
    else:
        struct = _TYPEHASH_V1 + b"".join(
            (_word(int(wire["salt"]), "salt"), maker, signer, b"\x00" * 12 + _address_bytes(wire["taker"], "taker"),
             _word(int(wire["tokenId"]), "tokenId"), _word(int(wire["makerAmount"]), "makerAmount"),
             _word(int(wire["takerAmount"]), "takerAmount"), _word(int(wire["expiration"]), "expiration"),
             _word(int(wire["nonce"]), "nonce"), _word(int(wire["feeRateBps"]), "feeRateBps"),
             _word(side, "side"), _word(int(wire["signatureType"]), "signatureType"))
        )  # fmt: skip
        sep = domain_separator("1", chain_id, c.neg_risk_exchange_v1 if neg_risk else c.exchange_v1)
    return "0x" + keccak(_EIP712_PREFIX + sep + keccak(struct)).hex()
