"""Market and user WebSocket peers on 127.0.0.1 speaking the venue's framing (text PING/PONG,
JSON-array book burst on subscribe), with the failure modes the venue has shown."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from active_quoting.exchange.server import serve_app
from synth_feed import RefBook, book_frame


class LoopbackWS:
    def __init__(self, books: dict[str, RefBook] | None = None) -> None:
        self.books = books or {}
        self.app = web.Application()
        self.app.router.add_get("/ws/market", self.market)
        self.app.router.add_get("/ws/user", self.user)
        self.received: list[tuple[str, Any]] = []
        self.market_sockets: list[web.WebSocketResponse] = []
        self.user_sockets: list[web.WebSocketResponse] = []
        self.pings = 0
        self.answer_pong = True
        self.connections = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        self.runner, url = await serve_app(self.app)
        self.url = url.replace("http://", "ws://")
        return self.url

    async def stop(self) -> None:
        for ws in self.market_sockets + self.user_sockets:
            await ws.close()
        if self.runner:
            await self.runner.cleanup()

    async def _serve(self, request: web.Request, channel: str, sockets: list) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections += 1
        sockets.append(ws)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                if msg.data == "PING":
                    self.pings += 1
                    if self.answer_pong:
                        await ws.send_str("PONG")
                    continue
                payload = orjson.loads(msg.data)
                self.received.append((channel, payload))
                if channel == "market" and (payload.get("type") == "market" or payload.get("operation") == "subscribe"):
                    wanted = {a: self.books[a] for a in payload["assets_ids"] if a in self.books}
                    await ws.send_str(book_frame(wanted, 1).decode())
        finally:
            sockets.remove(ws)
        return ws

    async def market(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve(request, "market", self.market_sockets)

    async def user(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve(request, "user", self.user_sockets)

    async def send_market(self, frame: bytes) -> None:
        for ws in list(self.market_sockets):
            await ws.send_str(frame.decode())

    async def send_user(self, frame: bytes) -> None:
        for ws in list(self.user_sockets):
            await ws.send_str(frame.decode())

    async def drop(self, channel: str = "market") -> None:
        for ws in list(self.market_sockets if channel == "market" else self.user_sockets):
            await ws.close()


async def wait_for(predicate, timeout: float = 5.0, step: float = 0.01) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)
