"""CLOB REST client: one keep-alive aiohttp session, L2 auth, classified errors.

Public market data (``/book``, ``/tick-size``, ``/neg-risk``, ``/fee-rate``,
``/clob-markets/{condition_id}``, ``/version``, ``/time``) and the L2-authenticated trading
endpoints (orders, batches of at most 15, cancels, open orders and trades with cursor
pagination, the heartbeat). Every body is encoded once; those exact bytes are HMAC-signed and
sent. The L2 timestamp follows the server clock when the local one is off.

Orders and cancels (``POST /order(s)``, ``DELETE /order(s)``) go over the order lane
(``venue/lane.py``: pre-opened keep-alive connections of our own, separate for orders and
cancels) once the client is started; their answers are classified by the same code as every
other request. ``order_lane=False`` keeps everything on aiohttp.

Submits never lose an order: each order's hash is computed before sending, so a timeout or a
5xx comes back as an *unknown* outcome carrying that hash, for reconciliation to resolve.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from active_quoting import core
from active_quoting.venue.errors import STATE_OF_KIND, VenueError, classify, kind_of_message
from active_quoting.venue.lane import LANE_ENDPOINTS, OrderLane
from active_quoting.venue.orders import MAX_BATCH, encode, order_body
from active_quoting.venue.signing import ApiCredentials, OrderSigner, SignedOrder, SigningError, l2_headers

_log = logging.getLogger(__name__)

INITIAL_CURSOR = "MA=="
END_CURSOR = "LTE="
# Beyond this many seconds of difference the server clock is used for L2 timestamps.
CLOCK_SKEW_TOLERANCE = 2
# Ids per ``DELETE /orders`` (POLYMARKET.md: at most 1000 since 2026-06-15).
MAX_CANCEL_BATCH = 1000


@dataclass(frozen=True)
class MarketInfo:
    """``/clob-markets/{condition_id}``: the compact market record (authoritative fees)."""

    condition_id: str
    tokens: tuple[tuple[str, str], ...]  # (token id, outcome)
    min_tick: int  # price units
    min_size: int  # micro-shares
    fee_rate: str  # ``fd.r`` as text ("0.07"), "" on fee-free markets
    fee_exponent: int
    taker_only: bool
    neg_risk: bool
    accepting_orders: bool
    version: str


@dataclass(frozen=True)
class OrderResult:
    """What became of one submitted order."""

    order_hash: str  # computed locally before sending: the venue's orderID
    accepted: bool
    status: str  # live / matched / delayed / unmatched, "rejected", or "unknown"
    error_kind: str = ""
    error: str = ""
    retry_after: float | None = None  # what a 425/429/503 answer said (Retry-After)

    @property
    def unknown(self) -> bool:
        return self.status == "unknown"


@dataclass(frozen=True)
class BalanceAllowance:
    """``GET /balance-allowance``: the balance (micro-USDC for collateral, micro-shares for a
    token) and the allowance per spender (micro-USDC; for tokens the CTF approval: 0 when not
    approved)."""

    balance: int
    allowances: dict[str, int]


@dataclass(frozen=True)
class CancelResult:
    canceled: tuple[str, ...]
    not_canceled: dict[str, str]


class RestClient:
    def __init__(
        self,
        base_url: str,
        signer: OrderSigner | None = None,
        creds: ApiCredentials | None = None,
        *,
        timeout: float = 5.0,
        fee_ttl: float = 300.0,
        backoff_base: float = 1.0,
        max_restart_retries: int = 4,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
        order_lane: bool = True,
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.ssl = ssl  # the context for https (None: the system's verified default)
        self.signer = signer
        self.creds = creds
        self.timeout = timeout
        self.fee_ttl = fee_ttl
        self.backoff_base = backoff_base
        self.max_restart_retries = max_restart_retries
        self.clock = clock
        self.sleep = sleep
        self.order_version = 2
        self.clock_offset = 0
        self.post_only_until = 0.0
        self.heartbeat_id = ""
        self.counts: Counter[str] = Counter()
        self._fees: dict[str, tuple[int, float]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.lane: OrderLane | None = OrderLane(self.base_url, timeout=timeout, ssl=ssl) if order_lane else None

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> RestClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=16, keepalive_timeout=60, ttl_dns_cache=300, ssl=self.ssl if self.ssl is not None else True
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
            if self.lane is not None and not self.lane.started:
                await self.lane.start()

    async def close(self) -> None:
        if self.lane is not None:
            await self.lane.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- transport ----------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: object = None,
        auth: bool = False,
        wait: bool = True,
    ) -> Any:
        """One request; returns the decoded JSON or raises. With ``wait`` a 425 is retried with
        backoff and a 429 waited out once for its whole ``Retry-After`` (a caller with no state
        of its own); without, both are raised at once for the caller to hold back (the order
        manager: a quote pass must not sleep through a restart)."""
        if self._session is None:
            await self.start()
        data = encode(body) if body is not None else None
        lane = self.lane if auth and data is not None and not params and (method, path) in LANE_ENDPOINTS else None
        attempt = 0
        while True:
            try:
                if lane is not None and lane.started:
                    if self.signer is None or self.creds is None:
                        raise VenueError("auth", f"{method} {path} needs L2 credentials and a signer")
                    ts = int(self.clock()) + self.clock_offset
                    reply = await lane.request(
                        method, path, data, creds=self.creds, address=self.signer.address, timestamp=ts  # type: ignore[arg-type]
                    )
                    raw, status, retry_header = reply.body, reply.status, reply.retry_after
                else:
                    headers = {"Content-Type": "application/json"} if data is not None else {}
                    if auth:
                        headers.update(self._l2(method, path, data))
                    async with self._session.request(  # type: ignore[union-attr]
                        method, self.base_url + path, params=params, data=data, headers=headers
                    ) as resp:
                        raw = await resp.read()
                        status = resp.status
                        retry_header = resp.headers.get("Retry-After")
            except VenueError as failed:
                if failed.kind in ("timeout", "network", "not_sent"):
                    self.counts[failed.kind] += 1
                raise
            except asyncio.TimeoutError:
                self.counts["timeout"] += 1
                raise VenueError("timeout", f"{method} {path}: no answer in {self.timeout}s") from None
            except aiohttp.ClientConnectionError as exc:
                self.counts["network"] += 1
                raise VenueError("network", f"{method} {path}: {exc}") from None
            try:
                decoded = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                decoded = raw.decode("utf-8", "replace")
            if 200 <= status < 300:
                return decoded
            err = classify(status, decoded, retry_header, self.clock())
            self.counts[err.kind] += 1
            if wait and err.kind == "engine_restart" and attempt < self.max_restart_retries:
                # The engine restarts in ~90 s windows; nothing was accepted, state is kept.
                await self.sleep(min(self.backoff_base * 2**attempt, 8 * self.backoff_base))
                attempt += 1
                continue
            if wait and err.kind == "rate_limited" and attempt == 0 and err.retry_after is not None:
                await self.sleep(err.retry_after)  # whatever its length: sending sooner only earns another 429
                attempt += 1
                continue
            if err.kind == "post_only_mode":
                self.post_only_until = self.clock() + (err.retry_after or 120)
            raise err

    def _l2(self, method: str, path: str, body: bytes | None) -> dict[str, str]:
        if self.signer is None or self.creds is None:
            raise VenueError("auth", f"{method} {path} needs L2 credentials and a signer")
        ts = int(self.clock()) + self.clock_offset
        return l2_headers(self.creds, self.signer.address, ts, method, path, body)

    # -- L1: API credentials ------------------------------------------------------------

    async def create_or_derive_api_key(self, nonce: int = 0) -> ApiCredentials:
        """L1 ``ClobAuth``-signed: create the key (``POST /auth/api-key``), or derive the
        existing one (``GET /auth/derive-api-key``), as the official client does."""
        if self.signer is None:
            raise VenueError("auth", "deriving API credentials needs a signer")
        for method, path in (("POST", "/auth/api-key"), ("GET", "/auth/derive-api-key")):
            ts = int(self.clock()) + self.clock_offset
            headers = {
                "POLY_ADDRESS": self.signer.address,
                "POLY_SIGNATURE": self.signer.clob_auth_signature(ts, nonce),
                "POLY_TIMESTAMP": str(ts),
                "POLY_NONCE": str(nonce),
            }
            if self._session is None:
                await self.start()
            async with self._session.request(method, self.base_url + path, headers=headers) as resp:  # type: ignore[union-attr]
                if resp.status == 200:
                    out = orjson.loads(await resp.read())
                    self.creds = ApiCredentials(out["apiKey"], out["secret"], out["passphrase"])
                    return self.creds
        raise VenueError("auth", "could not create or derive API credentials")

    # -- public -------------------------------------------------------------------------

    async def server_time(self) -> int:
        return int(await self._request("GET", "/time"))

    async def sync_clock(self) -> int:
        """Measure the server clock; use it for L2 timestamps when the local one is skewed."""
        before = self.clock()
        server = await self.server_time()
        local = (before + self.clock()) / 2
        offset = int(round(server - local))
        self.clock_offset = offset if abs(offset) > CLOCK_SKEW_TOLERANCE else 0
        return offset

    async def version(self, *, wait: bool = True) -> int:
        """``GET /version``: the venue's order version (``wait``: see :meth:`_request`)."""
        out = await self._request("GET", "/version", wait=wait)
        self.order_version = int(out["version"])
        return self.order_version

    async def market(self, condition_id: str) -> dict[str, Any]:
        """``/markets/{condition_id}``: the full CLOB market (``tokens[].winner`` once resolved)."""
        return await self._request("GET", f"/markets/{condition_id}")  # type: ignore[no-any-return]

    async def book(self, token_id: str) -> dict[str, Any]:
        return await self._request("GET", "/book", params={"token_id": token_id})  # type: ignore[no-any-return]

    async def tick_size(self, token_id: str) -> int:
        out = await self._request("GET", "/tick-size", params={"token_id": token_id})
        # The venue sends a JSON number (0.01); its shortest repr is the decimal that was meant.
        return core.parse_price(repr(out["minimum_tick_size"]) if isinstance(out["minimum_tick_size"], float)
                                else str(out["minimum_tick_size"]), "minimum_tick_size")  # fmt: skip

    async def neg_risk(self, token_id: str) -> bool:
        out = await self._request("GET", "/neg-risk", params={"token_id": token_id})
        return bool(out["neg_risk"])

    async def fee_rate(self, token_id: str, *, wait: bool = True) -> int:
        """``/fee-rate`` ``base_fee`` (bps), cached for ``fee_ttl`` seconds (``wait``: see
        :meth:`_request`; the order path passes False, a flush must not sleep)."""
        now = self.clock()
        hit = self._fees.get(token_id)
        if hit is not None and now - hit[1] < self.fee_ttl:
            return hit[0]
        out = await self._request("GET", "/fee-rate", params={"token_id": token_id}, wait=wait)
        fee = int(out.get("base_fee") or 0)
        self._fees[token_id] = (fee, now)
        return fee

    def cached_fee_rate(self, token_id: str) -> int | None:
        """The fee rate :meth:`fee_rate` looked up less than ``fee_ttl`` ago, else None."""
        hit = self._fees.get(token_id)
        if hit is None or self.clock() - hit[1] >= self.fee_ttl:
            return None
        return hit[0]

    async def clob_market(self, condition_id: str, *, wait: bool = True) -> MarketInfo:
        r = await self._request("GET", f"/clob-markets/{condition_id}", wait=wait)
        fd = r.get("fd") or {}
        rate = fd.get("r")
        return MarketInfo(
            condition_id=r.get("c", condition_id),
            tokens=tuple((t["t"], t.get("o", "")) for t in r.get("t", [])),
            min_tick=core.parse_price(_num_text(r["mts"]), "mts"),
            min_size=core.parse_size(_num_text(r.get("mos", 0)), "mos"),
            fee_rate=_num_text(rate) if rate is not None else "",
            fee_exponent=int(fd.get("e", 1) or 1),
            taker_only=bool(fd.get("to", True)),
            neg_risk=bool(r.get("nr", False)),
            accepting_orders=bool(r.get("ao", True)),
            version=str(r.get("v", "")),
        )

    # -- orders -------------------------------------------------------------------------

    def _check_post_only(self, post_only: bool) -> None:
        if not post_only and self.clock() < self.post_only_until:
            raise VenueError(
                "post_only_mode",
                f"venue in post-only mode for {self.post_only_until - self.clock():.0f}s more: only post-only orders",
            )

    async def post_order(self, order: SignedOrder, order_type: str = "GTC", post_only: bool = True) -> OrderResult:
        return (await self.post_orders([order], order_type, post_only))[0]

    async def post_orders(
        self, orders: Sequence[SignedOrder], order_type: str = "GTC", post_only: bool = True, *, wait: bool = True
    ) -> list[OrderResult]:
        """Submit orders in batches of at most 15 (one ``POST /order`` for a single order).
        Every order gets a result: accepted, rejected with its reason, or unknown. Without
        ``wait`` (see :meth:`_request`) a 425/429/503 ends the submit: the batches not yet sent
        come back rejected with the same kind (none of them reached the venue)."""
        self._check_post_only(post_only)
        owner = self.creds.api_key if self.creds else ""
        results: list[OrderResult] = []
        for start in range(0, len(orders), MAX_BATCH):
            chunk = orders[start : start + MAX_BATCH]
            bodies = [order_body(o, owner, order_type, post_only) for o in chunk]
            try:
                if len(chunk) == 1:
                    replies = [await self._request("POST", "/order", body=bodies[0], auth=True, wait=wait)]
                else:
                    replies = await self._request("POST", "/orders", body=bodies, auth=True, wait=wait)
            except VenueError as err:
                if err.unknown_outcome:
                    results += [OrderResult(o.order_hash, False, "unknown", err.kind, err.message) for o in chunk]
                    continue
                rest = chunk if wait or err.kind not in STATE_OF_KIND else orders[start:]
                results += [
                    OrderResult(o.order_hash, False, "rejected", err.kind, err.message, err.retry_after) for o in rest
                ]
                if rest is chunk:
                    continue
                break
            if not isinstance(replies, list) or len(replies) != len(chunk):
                # A reply we cannot match to the orders: treat every order as unknown.
                results += [OrderResult(o.order_hash, False, "unknown", "bad_reply", str(replies)[:200]) for o in chunk]
                continue
            results += [_order_result(o, r) for o, r in zip(chunk, replies, strict=True)]
        return results

    async def submit(
        self,
        build: Callable[[int], Sequence[SignedOrder]],
        order_type: str = "GTC",
        post_only: bool = True,
        *,
        rebuild: Callable[[int, Sequence[int]], Sequence[SignedOrder]] | None = None,
        prepare: Callable[[int, Sequence[int]], Awaitable[object]] | None = None,
        wait: bool = True,
    ) -> list[OrderResult]:
        """Sign (``build(order_version)``) and post orders. On ``order_version_mismatch`` the
        venue's version is re-read (a failed read is counted, never raised: it keeps the version
        known), the refused orders are re-signed for it and posted once more:
        ``rebuild(version, indices)`` signs just those (in that order) when given, otherwise
        ``build(version)`` is called again and those indices taken. A ``SigningError`` from the
        first signing propagates (nothing was sent); from the re-signing, the refused orders come
        back rejected with ``error_kind`` "signing_refused" and the others keep their answers.
        ``prepare(version, indices)`` is awaited before that re-signing (a move to version 1
        needs the fee rates looked up)."""
        orders = build(self.order_version)
        results = await self.post_orders(orders, order_type, post_only, wait=wait)
        redo = [i for i, r in enumerate(results) if r.error_kind == "version_mismatch"]
        if redo:
            before = self.order_version
            try:
                await self.version(wait=wait)
            except VenueError as err:
                # Not raised: the others keep the answers the venue gave them (raising would lose
                # what it accepted); the refused ones are re-signed all the same (``prepare`` may
                # find their market's own version moved).
                self.counts["version_reread_failed"] += 1
                _log.warning("order version mismatch: the venue's version could not be read again: %s", err)
            _log.warning(
                "order version mismatch: venue is on version %s (was %s); re-signing", self.order_version, before
            )
            if prepare is not None:
                await prepare(self.order_version, redo)
            try:
                if rebuild is not None:
                    again = list(rebuild(self.order_version, redo))
                else:
                    everything = build(self.order_version)
                    again = [everything[i] for i in redo]
            except SigningError as err:
                self.counts["signing_refused"] += len(redo)
                _log.error("cannot sign for order version %s: %s", self.order_version, err)
                for i in redo:
                    results[i] = OrderResult(results[i].order_hash, False, "rejected", "signing_refused", str(err))
                return results
            retried = await self.post_orders(again, order_type, post_only, wait=wait)
            for i, r in zip(redo, retried, strict=True):
                results[i] = r
        return results

    async def cancel_order(self, order_id: str) -> CancelResult:
        return _cancel_result(await self._request("DELETE", "/order", body={"orderID": order_id}, auth=True))

    async def cancel_orders(self, order_ids: Sequence[str], *, wait: bool = True) -> CancelResult:
        """Cancel by id, in requests of at most ``MAX_CANCEL_BATCH`` ids (the venue's limit);
        ``wait`` as in :meth:`_request`."""
        canceled: list[str] = []
        not_canceled: dict[str, str] = {}
        for start in range(0, len(order_ids), MAX_CANCEL_BATCH):
            r = _cancel_result(
                await self._request(
                    "DELETE", "/orders", body=list(order_ids[start : start + MAX_CANCEL_BATCH]), auth=True, wait=wait
                )
            )
            canceled += r.canceled
            not_canceled.update(r.not_canceled)
        return CancelResult(tuple(canceled), not_canceled)

    async def cancel_all(self) -> CancelResult:
        return _cancel_result(await self._request("DELETE", "/cancel-all", auth=True))

    async def cancel_market_orders(self, market: str = "", asset_id: str = "") -> CancelResult:
        body = {"market": market, "asset_id": asset_id}
        return _cancel_result(await self._request("DELETE", "/cancel-market-orders", body=body, auth=True))

    async def _paginated(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor = INITIAL_CURSOR
        for _ in range(10_000):  # a venue that never ends its cursor must not hang the bot
            page = await self._request("GET", path, params={**params, "next_cursor": cursor}, auth=True)
            out += page.get("data") or []
            cursor = page.get("next_cursor") or END_CURSOR
            if cursor == END_CURSOR:
                return out
        raise VenueError("bad_request", f"{path}: pagination did not end")

    async def open_orders(self, market: str = "", asset_id: str = "", order_id: str = "") -> list[dict[str, Any]]:
        params = {k: v for k, v in (("market", market), ("asset_id", asset_id), ("id", order_id)) if v}
        return await self._paginated("/data/orders", params)

    async def trades(self, market: str = "", asset_id: str = "", after: int = 0) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("market", market), ("asset_id", asset_id)) if v}
        if after:
            params["after"] = str(after)
        return await self._paginated("/data/trades", params)

    async def balance_allowance(self, token_id: str = "", signature_type: int | None = None) -> BalanceAllowance:
        """The collateral balance and allowances (no ``token_id``) or one conditional token's.
        ``signature_type`` defaults to the signer's (the venue answers for that wallet)."""
        if signature_type is None:
            signature_type = self.signer.signature_type if self.signer is not None else 0
        params = {"asset_type": "CONDITIONAL" if token_id else "COLLATERAL", "signature_type": str(signature_type)}
        if token_id:
            params["token_id"] = token_id
        out = await self._request("GET", "/balance-allowance", params=params, auth=True)
        if not isinstance(out, dict):
            raise VenueError("bad_request", f"unexpected balance-allowance reply: {str(out)[:200]}")
        try:
            allowances = {str(s): int(a or 0) for s, a in (out.get("allowances") or {}).items()}
            return BalanceAllowance(int(out.get("balance") or 0), allowances)
        except (TypeError, ValueError, AttributeError):
            raise VenueError("bad_request", f"unexpected balance-allowance reply: {str(out)[:200]}") from None

    async def heartbeat(self) -> str:
        """``POST /v1/heartbeats`` chaining the returned id; on 400 the id in the body is adopted."""
        try:
            out = await self._request("POST", "/v1/heartbeats", body={"heartbeat_id": self.heartbeat_id}, auth=True)
        except VenueError as err:
            adopted = _heartbeat_id_in(err)
            if err.status == 400 and adopted:
                self.heartbeat_id = adopted
                out = await self._request("POST", "/v1/heartbeats", body={"heartbeat_id": adopted}, auth=True)
            else:
                raise
        self.heartbeat_id = str(out.get("heartbeat_id") or self.heartbeat_id)
        return self.heartbeat_id


def _num_text(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _heartbeat_id_in(err: VenueError) -> str:
    body = err.body
    return str(body.get("heartbeat_id") or "") if isinstance(body, dict) else ""


def _order_result(order: SignedOrder, reply: object) -> OrderResult:
    if not isinstance(reply, dict):
        return OrderResult(order.order_hash, False, "unknown", "bad_reply", str(reply)[:200])
    order_id = reply.get("orderID") or ""
    message = str(reply.get("errorMsg") or reply.get("error") or "")
    if reply.get("success") and order_id:
        if order_id != order.order_hash:
            _log.error("venue orderID %s differs from the local hash %s", order_id, order.order_hash)
        return OrderResult(order_id, True, str(reply.get("status") or "live"))
    return OrderResult(order.order_hash, False, "rejected", kind_of_message(message) or "rejected", message)


def _cancel_result(reply: object) -> CancelResult:
    if not isinstance(reply, dict):
        raise VenueError("bad_request", f"unexpected cancel reply: {str(reply)[:200]}")
    return CancelResult(tuple(reply.get("canceled") or ()), dict(reply.get("not_canceled") or {}))
