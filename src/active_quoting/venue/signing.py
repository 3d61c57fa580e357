"""EIP-712 order signing, fast: C keccak (safe-pysha3), libsecp256k1 (coincurve), everything
that does not depend on the order precomputed.

Order version 2 is the venue's current format (domain version "2", no taker/nonce/feeRateBps,
adds timestamp/metadata/builder); version 3 is the same struct signed for ExchangeV3 (domain
version "3"), which Protocol-V2 markets (Gamma ``version: "v2"``, ``positionIds``) need; version
1 is the design document's format (kept because the design asks for it; the venue refuses it
since 2026-04-28). Signatures are byte-identical to ``py-clob-client-v2``'s for the same order
struct; the struct hash's EIP-712 digest is the venue's ``orderID``, so it is known before the
order is sent.

Signature type 3 (POLY_1271, deposit wallets): the order's maker and signer are the deposit
wallet, and the signature is the ERC-7739 ``TypedDataSign`` wrapper the wallet's ERC-1271 check
unpacks: the key's signature over the nested digest, then the app domain separator, the order's
struct hash, the order type string and its length.

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
import orjson
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
    exchange_v3: str  # Protocol V2 (one exchange: no neg-risk variant)


CONTRACTS = {
    137: Contracts(
        exchange_v1="0x4bFb41d5B3570DeFd03C39a9A4D8dE6Bd8B8982E",
        neg_risk_exchange_v1="0xC5d563A36AE78145C45a50134d48A1215220f80a",
        exchange_v2="0xE111180000d2663C0091e4f400237545B87B996B",
        neg_risk_exchange_v2="0xe2222d279d744050d28e00520010520000310F59",
        exchange_v3="0xe3333700cA9d93003F00f0F71f8515005F6c00Aa",
    ),
    80002: Contracts(
        exchange_v1="0xdFE02Eb6733538f8Ea35D585af8DE5958AD99E40",
        neg_risk_exchange_v1="0xC5d563A36AE78145C45a50134d48A1215220f80a",
        exchange_v2="0xE111180000d2663C0091e4f400237545B87B996B",
        neg_risk_exchange_v2="0xe2222d279d744050d28e00520010520000310F59",
        exchange_v3="0x9fE6e61422AdB6F610d8597F9684b16912D50C3D",
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
# ERC-7739 nested typed data (Solady): the wallet's own domain is DepositWallet v1, with the
# wallet as verifyingContract and a zero salt.
TYPED_DATA_SIGN_TYPE = (
    "TypedDataSign(Order contents,string name,string version,uint256 chainId,address verifyingContract,bytes32 salt)"
    + ORDER_TYPE_V2
)
DEPOSIT_WALLET_NAME = "DepositWallet"
DEPOSIT_WALLET_VERSION = "1"

BUY, SELL = 0, 1
POLY_1271 = 3
SIGNATURE_TYPES = (0, 1, 2, 3)  # EOA, POLY_PROXY, POLY_GNOSIS_SAFE, POLY_1271 (deposit wallet)
ORDER_VERSIONS = (1, 2, 3)
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
    (built on first use, in the SDK's key order) and its JSON (serialized once: a pre-signed
    order's is made in idle time, and the journal and the request reuse the same bytes)."""

    __slots__ = ("order_hash", "version", "signature", "_values", "_wire", "_json")

    def __init__(self, order_hash: str, version: int, signature: str, values: tuple[object, ...]) -> None:
        self.order_hash = order_hash
        self.version = version
        self.signature = signature
        self._values = values
        self._wire: dict[str, object] | None = None
        self._json: bytes | None = None

    @property
    def wire(self) -> dict[str, object]:
        if self._wire is None:
            # Versions 2 and 3 share the struct and the wire shape; only the domain differs.
            self._wire = (
                _WIRE_V1(*self._values, self.signature)
                if self.version == 1
                else _WIRE_V2(*self._values, self.signature)
            )
        return self._wire

    @property
    def wire_json(self) -> bytes:
        """The wire ``order`` object as compact JSON (what ``orjson.dumps(self.wire)`` gives),
        serialized on first use only."""
        if self._json is None:
            self._json = orjson.dumps(self.wire)
        return self._json

    def __repr__(self) -> str:
        return f"SignedOrder(v{self.version}, {self.order_hash})"


class OrderSigner:
    """Signs orders and ClobAuth messages with one private key.

    ``funder`` is the maker (the proxy or Safe holding the funds) for signature types 1 and 2,
    and the deposit wallet for type 3 (POLY_1271), where it is also the order's ``signer``; for
    EOA orders (type 0) the maker is the signer itself. ``address`` is always the key's own
    address (the one L1/L2 authentication and the API key belong to); ``order_signer`` is what
    orders carry as ``signer``.
    """

    __slots__ = (
        "_key", "_secret", "_buffers", "address", "chain_id", "maker", "order_signer", "signature_type", "_sep",
        "_maker_b", "_signer_b", "_sigtype_word", "_tokens", "_sep2", "_sep2_neg", "_sep3", "_wallet_tail",
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
            raise SigningError(
                "funder: signature types 1, 2 and 3 need the funder (proxy, Safe or deposit wallet) address"
            )
        pub = self._key.public_key.format(compressed=False)[1:]
        self.address = checksum_address(keccak(pub)[-20:])
        self.chain_id = chain_id
        self.signature_type = signature_type
        self.maker = checksum_address(_address_bytes(funder, "funder")) if funder else self.address
        self.order_signer = self.maker if signature_type == POLY_1271 else self.address
        c = CONTRACTS[chain_id]
        self._sep = {
            (3, False): domain_separator("3", chain_id, c.exchange_v3),
            (3, True): domain_separator("3", chain_id, c.exchange_v3),
            (2, False): domain_separator("2", chain_id, c.exchange_v2),
            (2, True): domain_separator("2", chain_id, c.neg_risk_exchange_v2),
            (1, False): domain_separator("1", chain_id, c.exchange_v1),
            (1, True): domain_separator("1", chain_id, c.neg_risk_exchange_v1),
        }
        self._sep2 = self._sep[(2, False)]
        self._sep2_neg = self._sep[(2, True)]
        self._sep3 = self._sep[(3, False)]
        self._maker_b = b"\x00" * 12 + _address_bytes(self.maker, "maker")
        self._signer_b = b"\x00" * 12 + _address_bytes(self.order_signer, "signer")
        # The TypedDataSign struct's words after the contents hash: they depend on the wallet only.
        self._wallet_tail = _typed_data_sign_tail(chain_id, self.maker) if signature_type == POLY_1271 else b""
        self._sigtype_word = signature_type.to_bytes(32, "big")
        self._tokens: dict[int | str, bytes] = {}
        self._secret = self._key.secret
        self._buffers = (
            _ffi.new("secp256k1_ecdsa_recoverable_signature *"),
            _ffi.new("unsigned char[64]"),
            _ffi.new("int *"),
        )

    def __repr__(self) -> str:
        wallet = f", deposit_wallet={self.maker}" if self.signature_type == POLY_1271 else ""
        return f"OrderSigner(address={self.address}, chain_id={self.chain_id}, type={self.signature_type}{wallet})"

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
        version: int = 2,
    ) -> SignedOrder:
        """Sign a version-2 order (the venue's current format), or with ``version=3`` the same
        struct for ExchangeV3 (Protocol-V2 markets; ``neg_risk`` does not apply there)."""
        if version == 2:
            sep = self._sep2_neg if neg_risk else self._sep2
        elif version == 3:
            sep = self._sep3
        else:
            raise SigningError(f"order version: sign_v2 builds versions 2 and 3, got {version!r}")
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
        digest = keccak(_EIP712_PREFIX + sep + struct)
        values = (salt, self.maker, self.order_signer, token_id, maker_amount, taker_amount, side, expiration,
                  self.signature_type, timestamp_ms, metadata, builder)  # fmt: skip
        if self._wallet_tail:
            signature = self._sign_1271(sep, struct)
        else:
            signature = self._sign_digest(digest)
        return SignedOrder("0x" + digest.hex(), version, signature, values)

    def _sign_1271(self, app_separator: bytes, contents: bytes) -> str:
        """The deposit-wallet signature of an order whose struct hash is ``contents``: the key
        signs the ERC-7739 nested digest, and the wallet needs the pieces to rebuild it."""
        nested = keccak(_EIP712_PREFIX + app_separator + keccak(_TYPEHASH_TDS + contents + self._wallet_tail))
        return self._sign_digest(nested) + app_separator.hex() + contents.hex() + _ORDER_TYPE_V2_HEX_LEN

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
        if self.signature_type == POLY_1271:
            raise SigningError("order version 1 has no deposit-wallet (signature type 3) orders")
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
_TYPEHASH_TDS = keccak(TYPED_DATA_SIGN_TYPE.encode())
_ORDER_TYPE_V2_HEX_LEN = ORDER_TYPE_V2.encode().hex() + len(ORDER_TYPE_V2).to_bytes(2, "big").hex()


def _typed_data_sign_tail(chain_id: int, wallet: str) -> bytes:
    """The TypedDataSign words after ``contents``: the deposit wallet's own EIP-712 domain."""
    return (
        keccak(DEPOSIT_WALLET_NAME.encode())
        + keccak(DEPOSIT_WALLET_VERSION.encode())
        + _word(chain_id, "chain_id")
        + b"\x00" * 12
        + _address_bytes(wallet, "deposit wallet")
        + _ZERO_WORD
    )


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


def _wire_struct_hash(wire: dict[str, Any]) -> tuple[bool, bytes]:
    """(is version 1, the order's EIP-712 struct hash) of a wire ``order`` object."""
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
        return False, keccak(struct)
    struct = _TYPEHASH_V1 + b"".join(
        (_word(int(wire["salt"]), "salt"), maker, signer, b"\x00" * 12 + _address_bytes(wire["taker"], "taker"),
         _word(int(wire["tokenId"]), "tokenId"), _word(int(wire["makerAmount"]), "makerAmount"),
         _word(int(wire["takerAmount"]), "takerAmount"), _word(int(wire["expiration"]), "expiration"),
         _word(int(wire["nonce"]), "nonce"), _word(int(wire["feeRateBps"]), "feeRateBps"),
         _word(side, "side"), _word(int(wire["signatureType"]), "signatureType"))
    )  # fmt: skip
    return True, keccak(struct)


def exchange_domain_separator(version: int, chain_id: int = 137, neg_risk: bool = False) -> bytes:
    """The EIP-712 domain separator of the exchange an order of ``version`` is signed for."""
    c = CONTRACTS.get(chain_id)
    if c is None:
        raise SigningError(f"chain_id: unsupported {chain_id} (known: {sorted(CONTRACTS)})")
    if version == 3:
        return domain_separator("3", chain_id, c.exchange_v3)
    if version == 2:
        return domain_separator("2", chain_id, c.neg_risk_exchange_v2 if neg_risk else c.exchange_v2)
    if version == 1:
        return domain_separator("1", chain_id, c.neg_risk_exchange_v1 if neg_risk else c.exchange_v1)
    raise SigningError(f"order version must be one of {ORDER_VERSIONS}, got {version!r}")


def wire_order_hash(wire: dict[str, Any], chain_id: int = 137, neg_risk: bool = False, version: int = 2) -> str:
    """The EIP-712 hash (the venue's orderID) of a wire ``order`` object. A version-1 order is
    told by its fields; a V2-shaped one is hashed for ``version`` 2 (CTF Exchange V2) or 3
    (ExchangeV3), which the wire cannot tell apart: the market decides. For verifiers (the
    embedded exchange, tests): recompute, then recover the signer."""
    is_v1, struct = _wire_struct_hash(wire)
    sep = exchange_domain_separator(1 if is_v1 else version, chain_id, neg_risk)
    return "0x" + keccak(_EIP712_PREFIX + sep + struct).hex()


def recover_order_signer(
    wire: dict[str, Any], chain_id: int = 137, neg_risk: bool = False, version: int = 2
) -> tuple[str, str]:
    """(orderID, the address whose key signed) of a wire order signed for ``version``.

    For signature types 0-2 that address is the ECDSA signer of the order hash. For type 3
    (POLY_1271) the ERC-7739 wrapper is unpacked as the deposit wallet's ERC-1271 check does:
    the app domain separator, contents hash and contents type it carries must be this order's
    for this exchange, and the address returned is the key that signed the nested digest with
    the wallet (``wire["signer"]``) as verifying contract - the wallet's owner, which the
    caller checks. Raises :class:`SigningError` on any mismatch."""
    is_v1, struct = _wire_struct_hash(wire)
    sep = exchange_domain_separator(1 if is_v1 else version, chain_id, neg_risk)
    digest = keccak(_EIP712_PREFIX + sep + struct)
    order_hash = "0x" + digest.hex()
    signature = str(wire["signature"])
    if int(wire["signatureType"]) != POLY_1271:
        return order_hash, recover_signer(digest, signature)
    if is_v1:
        raise SigningError("signatureType: version-1 orders have no deposit-wallet (type 3) signatures")
    try:
        raw = bytes.fromhex(signature[2:] if signature.startswith("0x") else signature)
    except ValueError:
        raise SigningError("signature: not hex") from None
    if len(raw) < 65 + 64 + 2:
        raise SigningError("signature: too short for a deposit-wallet (ERC-7739) signature")
    type_len = int.from_bytes(raw[-2:], "big")
    if len(raw) != 65 + 64 + type_len + 2:
        raise SigningError("signature: deposit-wallet signature length does not match its contents type")
    inner, app_sep, contents = raw[:65], raw[65:97], raw[97:129]
    if raw[129 : 129 + type_len] != ORDER_TYPE_V2.encode():
        raise SigningError("signature: the contents type is not the order type")
    if app_sep != sep:
        raise SigningError("signature: signed for another exchange (domain separator)")
    if contents != struct:
        raise SigningError("signature: signed for another order (contents hash)")
    tail = _typed_data_sign_tail(chain_id, str(wire["signer"]))
    nested = keccak(_EIP712_PREFIX + app_sep + keccak(_TYPEHASH_TDS + contents + tail))
    return order_hash, recover_signer(nested, "0x" + inner.hex())
