"""A minimal venue on 127.0.0.1 that speaks the real REST shapes, for the venue-layer tests
(until the embedded exchange is the peer). It checks L2 HMAC headers against the raw body it
received, recomputes each order's hash and recovers its signer, and can be told to misbehave."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections import deque
from typing import Any

import orjson
from aiohttp import web

from active_quoting.exchange.server import serve_app
from active_quoting.venue.signing import recover_signer, wire_order_hash

SECRET = base64.urlsafe_b64encode(b"loopback-venue-test-secret-0001").decode()
API_KEY = "00000000-0000-4000-8000-000000000001"
PASSPHRASE = "loopback"


def _json(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), headers=headers, content_type="application/json")


class LoopbackVenue:
    def __init__(self) -> None:
        self.app = web.Application()
        self.faults: deque[tuple[int, object, dict[str, str]]] = deque()
        self.hang_next = 0
        self.hang_seconds = 1.5
        self.requests: list[tuple[str, str, bytes]] = []
        self.orders: dict[str, dict[str, Any]] = {}
        self.version = 2
        self.server_time: int | None = None
        self.heartbeat_id = "hb-1"
        self.leg_errors: dict[int, str] = {}
        self.fee_calls = 0
        self.book_replies: dict[str, dict[str, Any]] = {}
        self.runner: web.AppRunner | None = None
        self.url = ""
        r = self.app.router
        r.add_get("/time", self.h_time)
        r.add_get("/version", self.h_version)
        r.add_get("/book", self.h_book)
        r.add_get("/tick-size", self.h_tick)
        r.add_get("/neg-risk", self.h_neg_risk)
        r.add_get("/fee-rate", self.h_fee)
        r.add_get("/clob-markets/{cid}", self.h_clob_market)
        r.add_post("/order", self.h_order)
        r.add_post("/orders", self.h_orders)
        r.add_delete("/order", self.h_cancel)
        r.add_delete("/orders", self.h_cancel_many)
        r.add_delete("/cancel-all", self.h_cancel_all)
        r.add_delete("/cancel-market-orders", self.h_cancel_market)
        r.add_get("/data/orders", self.h_open_orders)
        r.add_get("/data/trades", self.h_trades)
        r.add_post("/v1/heartbeats", self.h_heartbeat)

    async def start(self) -> str:
        self.runner, url = await serve_app(self.app)
        self.url = url.replace("http://", "http://")
        return self.url

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()

    async def _gate(self, request: web.Request, auth: bool) -> tuple[bytes, web.Response | None]:
        body = await request.read()
        self.requests.append((request.method, request.path, body))
        if self.hang_next:
            self.hang_next -= 1
            await asyncio.sleep(self.hang_seconds)
        if self.faults:
            status, payload, headers = self.faults.popleft()
            return body, _json(payload, status, headers)
        if auth:
            h = request.headers
            msg = f"{h.get('POLY_TIMESTAMP')}{request.method}{request.path}".encode() + body.replace(b"'", b'"')
            want = base64.urlsafe_b64encode(hmac.new(base64.urlsafe_b64decode(SECRET), msg, hashlib.sha256).digest())
            if (h.get("POLY_API_KEY"), h.get("POLY_PASSPHRASE")) != (API_KEY, PASSPHRASE) or h.get(
                "POLY_SIGNATURE", ""
            ).encode() != want:
                return body, _json({"error": "Unauthorized/Invalid api key"}, 401)
        return body, None

    async def h_time(self, request):
        _, fault = await self._gate(request, False)
        return fault or web.Response(text=str(self.server_time if self.server_time is not None else int(time.time())))

    async def h_version(self, request):
        _, fault = await self._gate(request, False)
        return fault or _json({"version": self.version})

    async def h_book(self, request):
        _, fault = await self._gate(request, False)
        if not fault and request.query["token_id"] in self.book_replies:
            return _json(self.book_replies[request.query["token_id"]])
        return fault or _json({"market": "0x1", "asset_id": request.query["token_id"], "bids": [{"price": "0.48", "size": "10"}],
                               "asks": [], "hash": "abc", "timestamp": "1", "tick_size": "0.01", "min_order_size": "5"})  # fmt: skip

    async def h_tick(self, request):
        _, fault = await self._gate(request, False)
        return fault or _json({"minimum_tick_size": 0.001})

    async def h_neg_risk(self, request):
        _, fault = await self._gate(request, False)
        return fault or _json({"neg_risk": False})

    async def h_fee(self, request):
        self.fee_calls += 1
        _, fault = await self._gate(request, False)
        return fault or _json({"base_fee": 1000})

    async def h_clob_market(self, request):
        _, fault = await self._gate(request, False)
        return fault or _json({"r": {"mi": 200}, "t": [{"t": "111", "o": "Up"}, {"t": "222", "o": "Down"}],
                               "c": request.match_info["cid"], "mos": 5, "mts": 0.01, "ao": True,
                               "fd": {"r": 0.072, "e": 1, "to": True}, "v": "v1"})  # fmt: skip

    def _accept(self, entry: dict[str, Any], index: int) -> dict[str, Any]:
        order = entry["order"]
        if index in self.leg_errors:
            return {"success": True, "orderID": "", "status": "", "errorMsg": self.leg_errors[index]}
        if ("timestamp" in order) != (self.version == 2):
            return {"success": False, "orderID": "", "errorMsg": "order_version_mismatch"}
        oid = wire_order_hash(order)
        if recover_signer(bytes.fromhex(oid[2:]), order["signature"]) != order["signer"]:
            return {"success": False, "orderID": "", "errorMsg": "invalid signature"}
        if entry["owner"] != API_KEY:
            return {"success": False, "orderID": "", "errorMsg": "the order owner has to be the owner of the API KEY"}
        self.orders[oid] = entry
        return {
            "success": True,
            "orderID": oid,
            "status": "live",
            "makingAmount": "",
            "takingAmount": "",
            "errorMsg": "",
        }

    async def h_order(self, request):
        body, fault = await self._gate(request, True)
        if fault:
            return fault
        reply = self._accept(orjson.loads(body), 0)
        if not reply["success"] and reply["errorMsg"]:
            return _json({"error": reply["errorMsg"]}, 400)
        return _json(reply)

    async def h_orders(self, request):
        body, fault = await self._gate(request, True)
        if fault:
            return fault
        entries = orjson.loads(body)
        if len(entries) > 15:
            return _json({"error": "too many orders in a batch"}, 400)
        return _json([self._accept(e, i) for i, e in enumerate(entries)])

    def _cancel(self, ids):
        done = [i for i in ids if self.orders.pop(i, None) is not None]
        return {"canceled": done, "not_canceled": {i: "already canceled or matched" for i in ids if i not in done}}

    async def h_cancel(self, request):
        body, fault = await self._gate(request, True)
        return fault or _json(self._cancel([orjson.loads(body)["orderID"]]))

    async def h_cancel_many(self, request):
        body, fault = await self._gate(request, True)
        return fault or _json(self._cancel(orjson.loads(body)))

    async def h_cancel_all(self, request):
        _, fault = await self._gate(request, True)
        return fault or _json(self._cancel(list(self.orders)))

    async def h_cancel_market(self, request):
        body, fault = await self._gate(request, True)
        if fault:
            return fault
        token = orjson.loads(body).get("asset_id")
        return _json(self._cancel([i for i, e in self.orders.items() if not token or e["order"]["tokenId"] == token]))

    async def h_trades(self, request):
        _, fault = await self._gate(request, True)
        if fault:
            return fault
        pages = {"MA==": ("MQ==", [{"id": "t1"}]), "MQ==": ("LTE=", [{"id": "t2"}])}
        nxt, data = pages[request.query.get("next_cursor", "MA==")]
        return _json({"limit": 1, "count": 1, "next_cursor": nxt, "data": data})

    async def h_open_orders(self, request):
        _, fault = await self._gate(request, True)
        if fault:
            return fault
        ids = sorted(self.orders)
        cursor = request.query.get("next_cursor", "MA==")
        if cursor == "LTE=":
            return _json({"error": "invalid cursor"}, 400)
        start = int(base64.b64decode(cursor).decode())
        nxt = base64.b64encode(str(start + 2).encode()).decode() if start + 2 < len(ids) else "LTE="
        page = ids[start : start + 2]
        return _json(
            {"limit": 2, "count": len(page), "next_cursor": nxt, "data": [{"id": i, "status": "LIVE"} for i in page]}
        )

    async def h_heartbeat(self, request):
        body, fault = await self._gate(request, True)
        if fault:
            return fault
        sent = orjson.loads(body)["heartbeat_id"]
        if sent not in ("", self.heartbeat_id):
            return _json({"error": "Invalid Heartbeat ID", "heartbeat_id": self.heartbeat_id}, 400)
        self.heartbeat_id = f"hb-{int(self.heartbeat_id.split('-')[1]) + 1}"
        return _json({"heartbeat_id": self.heartbeat_id})
