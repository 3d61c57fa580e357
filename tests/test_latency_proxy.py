"""The latency harness's stamping proxy (benchmarks/latency.py): its WebSocket frame parser and
HTTP request stamper on byte streams split at awkward places, the harness's join of the venue's
records with the proxy's, and the proxy itself relaying a real exchange-like server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import time
from urllib.parse import urlsplit

import pytest

from active_quoting.exchange.server import serve_app
from conftest import ROOT, load_benchmark

HARNESS = ROOT / "benchmarks" / "latency.py"


def _harness():
    return load_benchmark("latency.py", "aq_latency_harness_proxy")


h = _harness()

UPGRADE = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)


def frame(payload: bytes, opcode: int = 1, mask: bytes = b"") -> bytes:
    """A final, server-style (unmasked unless ``mask``) WebSocket frame."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, n | (0x80 if mask else 0)])
    elif n < 65536:
        head = bytes([0x80 | opcode, 126 | (0x80 if mask else 0)]) + struct.pack(">H", n)
    else:
        head = bytes([0x80 | opcode, 127 | (0x80 if mask else 0)]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return head + mask + payload


def feed_frames(chunks: list[bytes]) -> list[tuple[int, int, bytes]]:
    st = h.FrameStamper()
    out: list[tuple[int, int, bytes]] = []
    for t, chunk in enumerate(chunks, start=1):
        st.feed(chunk, t, out)
    return out


def split_at(data: bytes, *cuts: int) -> list[bytes]:
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


def test_frames_are_stamped_with_the_chunk_that_completes_them():
    small, mid, big = b'{"event_type":"price_change"}', b"m" * 300, b"B" * 70_000  # 7-bit, 126 and 127 lengths
    stream = UPGRADE + frame(small) + frame(mid) + frame(big) + frame(b"ping", opcode=9) + frame(b"x")
    # every single cut position through the first three frames' headers, and a few more
    for cut in [*range(1, len(UPGRADE) + 40), len(UPGRADE) + len(frame(small)) + 3]:
        out = feed_frames(split_at(stream, cut))
        assert [p for _, _, p in out] == [small, mid, big, b"x"], cut  # the ping is not a data frame
        assert out[-1][0] == 2  # the last frame completes in the second chunk
    # the big frame's 8-byte length split across three chunks, and its payload across two
    start = len(UPGRADE) + len(frame(small)) + len(frame(mid))
    out = feed_frames(split_at(stream, start + 1, start + 4, start + 8, start + 10 + 5000))
    assert [(t, len(p)) for t, _, p in out] == [(1, len(small)), (1, len(mid)), (5, len(big)), (5, 1)]
    # byte by byte
    out = feed_frames([stream[i : i + 1] for i in range(len(UPGRADE) + len(frame(small)) + len(frame(mid)))])
    assert [p for _, _, p in out] == [small, mid]
    assert out[0][0] == len(UPGRADE) + len(frame(small))  # stamped when its last byte went through


def test_two_frames_in_one_chunk_share_its_stamp_and_a_masked_frame_is_unmasked():
    a, b = b'{"a":1}', b"second"
    out = feed_frames([UPGRADE + frame(a) + frame(b, mask=b"\x01\x02\x03\x04")])
    assert out == [(1, 1, a), (1, 1, b)]


def test_a_plain_http_response_turns_the_frame_parser_off():
    st = h.FrameStamper()
    out: list = []
    st.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 1, out)
    st.feed(frame(b"looks like a frame"), 2, out)
    assert out == [] and st.mode == h.FrameStamper.OFF


def request(
    method: str, path: str, body: bytes = b"", sig: str = "", address: str = "", chunked: bool = False
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if address:
        lines.append(f"POLY_ADDRESS: {address}")
    if sig:
        lines.append(f"POLY_SIGNATURE: {sig}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        half = len(body) // 2
        payload = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in (body[:half], body[half:]) if p)
        payload += b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def feed_requests(chunks: list[bytes]) -> list[tuple[int, str, str, str, str]]:
    st = h.RequestStamper()
    out: list[tuple[int, str, str, str, str]] = []
    for t, chunk in enumerate(chunks, start=1):
        st.feed(chunk, t, out)
    return out


def test_each_request_is_stamped_with_its_first_byte_across_any_split():
    body = b'[{"order":{"salt":1,"signature":"0xabc"},"orderType":"GTC"}]'
    r1 = request("POST", "/orders", body, sig="c2lnLTE=", address="0xAbC")
    r2 = request("DELETE", "/order?x=1", b'{"orderID":"0x1"}', sig="c2lnLTI=", chunked=True)
    r3 = request("GET", "/tick-size")
    stream = r1 + r2 + r3
    want = [
        ("POST", "/orders", "0xabc", "c2lnLTE="),
        ("DELETE", "/order", "", "c2lnLTI="),
        ("GET", "/tick-size", "", ""),
    ]
    for cut in range(1, len(stream)):
        out = feed_requests(split_at(stream, cut))
        assert [r[1:] for r in out] == want, cut
        # r1 starts in chunk 1; r2 and r3 start in chunk 1 unless the cut is before their first byte
        assert [r[0] for r in out] == [1, 1 if cut > len(r1) else 2, 1 if cut > len(r1) + len(r2) else 2], cut
    # a head split mid-header, mid-CRLFCRLF and a body split: stamped with the first chunk
    cut = r1.index(b"POLY_SIGNATURE") + 6
    end = r1.index(b"\r\n\r\n")
    out = feed_requests([r1[:cut], r1[cut : end + 2], r1[end + 2 : end + 5], r1[end + 5 :] + r2[:1], r2[1:]])
    assert [(r[0], r[1], r[4]) for r in out] == [(1, "POST", "c2lnLTE="), (4, "DELETE", "c2lnLTI=")]
    # byte by byte
    out = feed_requests([stream[i : i + 1] for i in range(len(stream))])
    assert [r[0] for r in out] == [1, len(r1) + 1, len(r1) + len(r2) + 1]


def test_an_upgrade_request_stops_request_parsing():
    up = b"GET /ws/market HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    out = feed_requests([up + b"\x81\x85abcd" + b"POST / HTTP/1.1\r\n\r\n"])
    assert [r[1:3] for r in out] == [("GET", "/ws/market")]


def test_join_takes_the_proxy_stamps_by_digest_and_signature():
    text = '{"market":"m1","event_type":"price_change"}'
    d = h.payload_digest(text.encode())
    venue = {
        "moves": [[1000, "m1 up 3", d], [5000, "m1 down 3", "f" * 32]],  # the second was never proxied
        "requests": [
            [1900, "DELETE", "/orders", "0xa", 0, True, "", "sig-1"],
            [2300, "POST", "/orders", "0xa", 2, True, "", ""],  # no signature: order of arrival
            [2400, "POST", "/order", "0xb", 1, False, "", "sig-x"],  # the proxy never saw it
        ],
    }
    proxy = {
        "frames": [[900, 1, 1, d], [1100, 3, 1, d], [1050, 2, 1, d]],  # 900: an earlier identical text
        "requests": [
            [1200, 4, "GET", "/book", "", ""],
            [1500, 4, "POST", "/orders", "0xa", "sig-9"],
            [1300, 5, "DELETE", "/orders", "0xa", "sig-1"],
        ],
    }
    moves, requests, counts = h.join(venue, proxy)
    assert moves == [(1050, "m1 up 3")]
    assert requests == [(1300, "DELETE", "/orders", "0xa", 0, True, ""), (1500, "POST", "/orders", "0xa", 2, True, "")]
    assert counts["moves unmatched"] == 1 and counts["by signature"] == 1 and counts["fallbacks"] == 1
    assert counts["requests unmatched"] == 1


def test_table_has_a_floor_column_before_the_ratio():
    us = 1000
    ours = {"one order": [800 * us], "two-sided requote": [], "pure cancel": [], "first request": [800 * us],
            "unanswered": 0}  # fmt: skip
    stock = {**ours, "one order": [400 * us], "first request": [400 * us]}
    floor = {**ours, "one order": [], "pure cancel": [50 * us], "first request": [50 * us], "unanswered": 1}
    lines = h.table(ours, stock, floor).splitlines()
    first = next(line.split() for line in lines if line.startswith("first request"))
    assert first[2:4] == ["1", "800"] and first[6:8] == ["1", "400"] and first[10:12] == ["1", "50"]
    assert first[-1] == "0.50x"
    assert lines[-1] == "moves unanswered: ours 0, stock 0, floor 1"


@pytest.mark.skipif(os.environ.get("AQ_SKIP_SOCKETS") == "1", reason="no sockets")
def test_the_proxy_relays_and_stamps_a_frame_and_a_request():
    import aiohttp
    from aiohttp import web

    async def main() -> None:
        sent: list[tuple[int, str]] = []
        got: list[bytes] = []

        async def ws_market(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for msg in ws:
                text = '{"event_type":"price_change","echo":' + msg.data + "," + '"pad":"' + "p" * 200 + '"}'
                await ws.send_str(text)
                sent.append((time.monotonic_ns(), text))
            return ws

        async def post_order(request: web.Request) -> web.Response:
            got.append(await request.read())
            return web.json_response({"success": True})

        app = web.Application()
        app.router.add_get("/ws/market", ws_market)
        app.router.add_post("/order", post_order)
        runner, base = await serve_app(app)
        px = h.StampingProxy("127.0.0.1", urlsplit(base).port)
        url = await px.start()
        try:
            async with aiohttp.ClientSession() as s:
                async with s.ws_connect(url + "/ws/market") as ws:
                    await ws.send_str("7")
                    received = await asyncio.wait_for(ws.receive_str(), 5)
                body = b'{"order":{"salt":7}}'
                async with s.post(
                    url + "/order", data=body, headers={"POLY_SIGNATURE": "abc=", "POLY_ADDRESS": "0xF"}
                ) as r:
                    assert (await r.json()) == {"success": True}
        finally:
            await px.stop()
            await runner.cleanup()
        assert received == sent[0][1] and got == [body]  # forwarded unchanged both ways
        rec = px.records()
        digest = hashlib.blake2b(received.encode(), digest_size=16).hexdigest()
        assert [f[3] for f in rec["frames"]] == [digest]
        assert rec["frames"][0][0] >= sent[0][0] - 10**9  # one clock, this process
        orders = [r for r in rec["requests"] if r[2] == "POST"]
        assert [(r[3], r[4], r[5]) for r in orders] == [("/order", "0xf", "abc=")]
        assert orders[0][0] > rec["frames"][0][0]
        assert any(r[2:4] == ["GET", "/ws/market"] for r in rec["requests"])

    asyncio.run(main())


def test_a_window_picked_leaves_the_quoting_time_asked_for_even_where_round_lengths_all_end_together():
    from active_quoting.options import stop_before_end

    # 2026-11-30 12:00 UTC is a multiple of 36000 s, where 3600/3000/2400/1800 s windows all end:
    # 100 s before it the flood harness ran the bot in a window with 100 s left (quoted nothing)
    noon = 1_796_040_000
    for t in range(noon - 4000, noon + 4000, 7):
        w = h.pick_window(t, 254)
        # the bot stops quoting stop_before_end(w) before the end (180 s of an hour)
        assert w - t % w - stop_before_end(w) > 254, (t, w)
    assert h.pick_window(noon, 254) == 3600  # a fresh hour: the round length, as before
    with pytest.raises(h.NoWindow):
        h.pick_window(0, 4000)
