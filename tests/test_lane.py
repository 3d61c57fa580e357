"""The order lane (venue/lane.py) against the embedded exchange over real sockets, under asyncio
and uvloop: orders and cancels round-trip on pre-opened keep-alive connections with the L2 HMAC
the exchange checks; a cancel does not queue behind a held order; connections the peer closes
are replaced; a held answer is a timeout (unknown outcome) and its connection is not reused; TLS
through the same protocol; every error class comes back exactly as on the aiohttp path; a pool
keeps a spare connection ahead of need within its bound, rotates its connections, fails a
request at once when the venue cannot be reached, and loses no connection to a request that
gave up."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

from active_quoting.exchange.server import Exchange
from active_quoting.venue.errors import VenueError
from active_quoting.venue.lane import CANCELS, ORDERS, LaneReply, OrderLane
from active_quoting.venue.orders import build_order, encode, order_body
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner
from exchange_peer import MAKER_KEY, SH, UP, derive, start_exchange
from loopback_ws import wait_for

LOOPS = ["asyncio", "uvloop"]


def run(kind: str, test: Callable[[Exchange], Awaitable[None]]) -> None:
    """Run ``test(ex)`` on a fresh loop of that kind with the embedded exchange started."""

    async def main() -> None:
        ex = await start_exchange()
        try:
            await test(ex)
        finally:
            await ex.stop()

    if kind == "uvloop":
        uvloop.run(main())
    else:
        asyncio.run(main())


async def client(ex: Exchange, url: str = "", **kw: Any) -> tuple[OrderSigner, RestClient]:
    maker = OrderSigner(MAKER_KEY)
    rest = RestClient(url or ex.clob_url, maker, await derive(ex, MAKER_KEY), **kw)
    await rest.start()
    return maker, rest


def bid(maker: OrderSigner, price: int) -> Any:
    return build_order(maker, UP, 0, price, 10 * SH, 100)


def body_of(maker: OrderSigner, creds: Any, price: int) -> bytes:
    return encode(order_body(bid(maker, price), creds.api_key))


def place(lane: OrderLane, maker: OrderSigner, creds: Any, price: int) -> Awaitable[Any]:
    """One bid of ten Up at ``price`` through the lane's order pool."""
    return lane.request("POST", "/order", body_of(maker, creds, price), creds=creds, address=maker.address, timestamp=1)


class Proxy:
    """A TCP relay on loopback in front of the exchange (optionally terminating TLS) that counts
    the connections it accepts and can drop them all, or kill the next request's connection
    without forwarding it."""

    def __init__(self, target: str, tls: ssl.SSLContext | None = None) -> None:
        host, port = target.replace("http://", "").rsplit(":", 1)
        self.target = (host, int(port))
        self.tls = tls
        self.accepted = self.dropped = self.killed = 0
        self.kill_next = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self.requests: list[int] = []  # per accepted connection, in accept order: request writes seen
        self.slam = False  # close every connection as it is accepted

    async def start(self) -> Proxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def refuse(self) -> None:
        """Stop listening: new connections are refused (those open stay); ``start`` listens again
        on the same port."""
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def stop(self) -> None:
        self.drop_all()
        assert self.server is not None
        self.server.close()

    def drop_all(self) -> None:
        for w in self.writers:
            if not w.is_closing():
                self.dropped += 1
                w.close()
        self.writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.slam:
            writer.close()
            return
        index = len(self.requests)
        self.requests.append(0)
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, inbound: bool) -> None:
            try:
                while data := await src.read(65536):
                    if inbound:
                        self.requests[index] += 1  # each request is written in one write
                    if inbound and self.kill_next:
                        self.kill_next -= 1
                        self.killed += 1
                        writer.close()
                        up_writer.close()
                        return
                    dst.write(data)
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))


@pytest.mark.parametrize("loop", LOOPS)
def test_orders_and_cancels_round_trip_on_the_lane(loop):
    async def test(ex: Exchange) -> None:
        maker, rest = await client(ex)
        try:
            assert rest.lane is not None and rest.lane.started
            assert (rest.lane.connections(ORDERS), rest.lane.connections(CANCELS)) == (2, 2)  # pre-opened
            (one,) = await rest.post_orders([bid(maker, 4000)])
            two = await rest.post_orders([bid(maker, 4100), bid(maker, 4200)])
            assert one.accepted and all(r.accepted for r in two)
            live = {o.id for o in ex.engine.live_orders(maker.address)}
            assert live == {one.order_hash, two[0].order_hash, two[1].order_hash}
            r = await rest.cancel_order(one.order_hash)
            assert r.canceled == (one.order_hash,)
            r = await rest.cancel_orders([two[0].order_hash, two[1].order_hash, one.order_hash])
            assert set(r.canceled) == {two[0].order_hash, two[1].order_hash}
            assert r.not_canceled == {one.order_hash: "already canceled or matched"} or one.order_hash in r.not_canceled
            assert not ex.engine.live_orders(maker.address)
            # Four requests, all on the lane, on the connections opened at start.
            assert rest.lane.counts["requests"] == 4 and rest.lane.counts["opened"] == 4
            assert await rest.open_orders() == []  # the rest of REST still works beside it
        finally:
            await rest.close()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_cancel_does_not_queue_behind_a_held_order(loop):
    async def test(ex: Exchange) -> None:
        maker, rest = await client(ex, timeout=5.0)
        try:
            (first,) = await rest.post_orders([bid(maker, 4000)])
            ex.faults.timeout_after_place, ex.faults.hold_seconds = 1, 1.5
            held = asyncio.ensure_future(rest.post_orders([bid(maker, 4100)]))
            await wait_for(lambda: ex.faults.timeout_after_place == 0)  # the order is placed, its answer held
            start = asyncio.get_running_loop().time()
            r = await rest.cancel_orders([first.order_hash])
            took = asyncio.get_running_loop().time() - start
            assert r.canceled == (first.order_hash,) and not held.done() and took < 0.5
            (late,) = await held
            assert late.accepted
            assert rest.lane is not None and rest.lane.counts["queued"] == 0
        finally:
            await rest.close()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_connections_the_peer_closes_are_replaced(loop):
    async def test(ex: Exchange) -> None:
        proxy = await Proxy(ex.clob_url).start()
        maker, rest = await client(ex, f"http://127.0.0.1:{proxy.port}")
        lane = rest.lane
        assert lane is not None
        try:
            await wait_for(lambda: proxy.accepted >= 4)
            (r,) = await rest.post_orders([bid(maker, 4000)])
            assert r.accepted
            proxy.drop_all()  # the venue closes every idle keep-alive connection
            await wait_for(lambda: lane.counts["reconnected"] >= 4 and lane.connections(ORDERS) == 2)
            assert proxy.dropped >= 4 and lane.counts["lost"] >= 4
            (r,) = await rest.post_orders([bid(maker, 4100)])
            assert r.accepted
            # A connection that dies with the request in flight: the outcome is unknown.
            proxy.kill_next = 1
            order = bid(maker, 4200)
            (r,) = await rest.post_orders([order])
            assert proxy.killed == 1
            assert (r.status, r.error_kind, r.order_hash) == ("unknown", "network", order.order_hash)
            assert rest.counts["network"] == 1
            (r,) = await rest.post_orders([bid(maker, 4300)])
            assert r.accepted
            c = await rest.cancel_orders([o.id for o in ex.engine.live_orders(maker.address)])
            assert len(c.canceled) == 3
        finally:
            await rest.close()
            await proxy.stop()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_held_answer_is_an_unknown_outcome_and_its_connection_is_not_reused(loop):
    async def test(ex: Exchange) -> None:
        maker, rest = await client(ex, timeout=0.4)
        lane = rest.lane
        assert lane is not None
        try:
            ex.faults.timeout_after_place, ex.faults.hold_seconds = 1, 0.8
            order = bid(maker, 4000)
            (r,) = await rest.post_orders([order])
            assert ex.faults.timeout_after_place == 0
            assert (r.status, r.error_kind, r.order_hash) == ("unknown", "timeout", order.order_hash)
            assert rest.counts["timeout"] == 1 and lane.counts["timeout"] == 1 and lane.counts["lost"] == 1
            assert order.order_hash in {o.id for o in ex.engine.live_orders(maker.address)}  # placed after all
            await asyncio.sleep(0.6)  # the held answer would have arrived by now
            results = [await rest.post_orders([bid(maker, 4100 + 100 * i)]) for i in range(4)]
            assert all(r.accepted and r.order_hash for (r,) in results)
            assert len({r.order_hash for (r,) in results}) == 4  # each its own answer, none a late one
            assert lane.counts["unsolicited"] == 0
        finally:
            await rest.close()

    run(loop, test)


def _self_signed(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    client_ctx = ssl.create_default_context(cafile=str(tmp / "cert.pem"))
    return server, client_ctx


@pytest.mark.parametrize("loop", LOOPS)
def test_tls_on_the_same_protocol(loop, tmp_path):
    server_ctx, client_ctx = _self_signed(tmp_path)

    async def test(ex: Exchange) -> None:
        proxy = await Proxy(ex.clob_url, tls=server_ctx).start()
        maker = OrderSigner(MAKER_KEY)
        creds = await derive(ex, MAKER_KEY)
        lane = OrderLane(f"https://localhost:{proxy.port}", ssl=client_ctx, timeout=2.0)
        untrusting = OrderLane(f"https://localhost:{proxy.port}", timeout=2.0)  # the system's CAs only
        try:
            await lane.start()
            assert lane.connections(ORDERS) == 2
            order = bid(maker, 4000)
            body = encode(order_body(order, creds.api_key))
            reply = await lane.request("POST", "/order", body, creds=creds, address=maker.address, timestamp=1)
            assert reply.status == 200 and order.order_hash.encode() in reply.body
            assert order.order_hash in {o.id for o in ex.engine.live_orders(maker.address)}
            with pytest.raises(VenueError) as err:
                await untrusting.request("POST", "/order", body, creds=creds, address=maker.address, timestamp=1)
            # the TLS handshake failed: the request was never written (nothing can have been placed)
            assert err.value.kind == "not_sent" and untrusting.counts["connect_failed"] >= 1
            assert not err.value.unknown_outcome
        finally:
            await lane.close()
            await untrusting.close()
            await proxy.stop()

    run(loop, test)


# (fault set on the exchange, what the request is) -> the results must match on both paths.
FAULTS = {
    "425 then accepted": lambda ex: ex.faults.http_status_queue.append((425, {"error": "Too Early"}, {})),
    "429 retried once": lambda ex: ex.faults.http_status_queue.append(
        (429, {"error": "Too Many Requests"}, {"Retry-After": "2"})
    ),
    "429 twice": lambda ex: ex.faults.http_status_queue.extend(
        [(429, {"error": "Too Many Requests"}, {"Retry-After": "1"})] * 2
    ),
    "429 from the auth gate": lambda ex: setattr(ex.faults, "rate_limit_next", 2),
    "500": lambda ex: ex.faults.http_status_queue.append((500, {"error": "could not run the execution"}, {})),
    "503 post-only mode": lambda ex: ex.faults.http_status_queue.append(
        (503, {"error": "post-only mode", "code": "post_only_mode", "retry_after_seconds": 79}, {"Retry-After": "79"})
    ),
    "503 cancel-only": lambda ex: ex.faults.http_status_queue.append(
        (503, {"error": "Trading is currently cancel-only."}, {})
    ),
    "400 crossing": lambda ex: ex.faults.http_status_queue.append((400, {"error": "order crosses the book"}, {})),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_errors_are_classified_as_on_the_aiohttp_path(fault):
    async def outcome(ex: Exchange, lane: bool) -> tuple[Any, ...]:
        slept: list[float] = []

        async def no_sleep(s: float) -> None:
            slept.append(s)

        maker, rest = await client(ex, sleep=no_sleep, order_lane=lane)
        try:
            assert (rest.lane is not None) == lane
            FAULTS[fault](ex)
            results = await rest.post_orders([bid(maker, 4000), bid(maker, 4100)])
            orders = [(r.accepted, r.status, r.error_kind, r.error) for r in results]
            FAULTS[fault](ex)
            try:
                c = await rest.cancel_orders([r.order_hash for r in results])
                cancel: tuple[Any, ...] = ("ok", len(c.canceled), sorted(c.not_canceled.values()))
            except VenueError as err:
                cancel = ("error", err.kind, err.status, err.retry_after, err.message)
            left = sorted(o.price for o in ex.engine.live_orders(maker.address))
            for o in ex.engine.live_orders(maker.address):
                ex.engine.cancel(o.id, maker.address)
            used = rest.lane.counts["requests"] if rest.lane is not None else 0
            return orders, cancel, slept, dict(rest.counts), rest.post_only_until > 0, left, used
        finally:
            await rest.close()
            ex.faults.http_status_queue.clear()
            ex.faults.rate_limit_next = 0

    async def test(ex: Exchange) -> None:
        plain = await outcome(ex, False)
        ours = await outcome(ex, True)
        assert ours[:-1] == plain[:-1]
        assert plain[-1] == 0 and ours[-1] >= 2  # the lane carried both calls (and their retries)
        assert plain[3], "the fault never took effect"

    run("asyncio", test)


def test_only_order_and_cancel_endpoints_ride_the_lane():
    async def test(ex: Exchange) -> None:
        lane = OrderLane(ex.clob_url)
        try:
            with pytest.raises(ValueError, match="not an order or cancel endpoint"):
                await lane.request("DELETE", "/cancel-all", b"", creds=None, address="", timestamp=0)  # type: ignore[arg-type]
        finally:
            await lane.close()

    run("asyncio", test)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_busy_pool_grows_to_its_bound_then_queues(loop):
    async def test(ex: Exchange) -> None:
        maker = OrderSigner(MAKER_KEY)
        creds = await derive(ex, MAKER_KEY)
        lane = OrderLane(ex.clob_url, order_connections=1, cancel_connections=1, max_per_pool=2, timeout=3.0)
        try:
            await lane.start()
            assert lane.counts["opened"] == 2
            ex.faults.timeout_after_place, ex.faults.hold_seconds = 3, 0.3
            orders = [bid(maker, 4000 + 100 * i) for i in range(3)]
            replies = await asyncio.gather(*(
                lane.request("POST", "/order", encode(order_body(o, creds.api_key)), creds=creds,
                             address=maker.address, timestamp=1)
                for o in orders
            ))  # fmt: skip
            assert ex.faults.timeout_after_place == 0  # all three answers were held
            assert [r.status for r in replies] == [200, 200, 200]
            assert [o.order_hash.encode() in r.body for o, r in zip(orders, replies, strict=True)] == [True] * 3
            # the first took the one connection and opened the spare; the other two queued for
            # whichever came first (the spare, then a freed one); the bound held
            assert lane.counts["opened"] == 3 and lane.connections(ORDERS) == 2 and lane.counts["queued"] == 2
            assert lane.counts["spares"] == 1
        finally:
            await lane.close()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_pool_keeps_a_spare_so_the_next_request_pays_no_handshake(loop):
    """A request that takes a pool's last idle connection opens one more in the background: the
    next request, made while the first is unanswered, is written at once on it (nothing queued,
    no connection opened for it), and the pool opens the next spare up to its bound."""

    async def test(ex: Exchange) -> None:
        maker = OrderSigner(MAKER_KEY)
        creds = await derive(ex, MAKER_KEY)
        lane = OrderLane(ex.clob_url, order_connections=1, cancel_connections=1, max_per_pool=3, timeout=3.0)

        def post(price: int) -> asyncio.Task:
            return asyncio.ensure_future(place(lane, maker, creds, price))

        async def until(cond) -> None:  # type: ignore[no-untyped-def]
            for _ in range(300):
                if cond():
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("timed out")

        try:
            await lane.start()
            ex.faults.timeout_after_place, ex.faults.hold_seconds = 3, 0.5
            first = post(4000)
            await until(lambda: lane.connections(ORDERS) == 2)  # the spare, opened while the first waits
            opened = lane.counts["opened"]
            second = post(4100)
            await asyncio.sleep(0)  # its write: on the spare, in its first step
            assert lane.counts["queued"] == 0 and lane.counts["requests"] == 2
            await until(lambda: lane.connections(ORDERS) == 3)  # and the next spare, the last allowed
            assert lane.counts["opened"] == opened + 1
            third = post(4200)
            await asyncio.sleep(0)
            assert lane.counts["queued"] == 0 and lane.counts["requests"] == 3
            replies = await asyncio.gather(first, second, third)
            assert [r.status for r in replies] == [200, 200, 200]
            await asyncio.sleep(0.05)
            assert lane.connections(ORDERS) == 3 and lane.counts["spares"] == 2  # bounded: no fourth
        finally:
            await lane.close()

    run(loop, test)


def test_start_is_idempotent_and_a_closed_lane_refuses_then_restarts():
    async def test(ex: Exchange) -> None:
        maker = OrderSigner(MAKER_KEY)
        creds = await derive(ex, MAKER_KEY)
        lane = OrderLane(ex.clob_url)
        body = encode(["0x" + "00" * 32])
        try:
            await lane.start()
            await lane.start()
            assert lane.counts["opened"] == 4 and lane.connections(ORDERS) == 2
            await lane.close()
            with pytest.raises(VenueError) as err:
                await lane.request("DELETE", "/orders", body, creds=creds, address=maker.address, timestamp=1)
            assert err.value.kind == "not_sent"
            await lane.start()
            reply = await lane.request("DELETE", "/orders", body, creds=creds, address=maker.address, timestamp=1)
            assert reply.status == 200 and b"not_canceled" in reply.body and lane.counts["opened"] == 8
        finally:
            await lane.close()

    run("asyncio", test)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_pool_never_passes_its_bound_and_a_refused_spare_leaves_waiters_to_busy_connections(loop):
    """Both order connections busy, the venue refusing new connections: the spare fails, and a
    request that waits is not failed for it (the busy connections will free up): it goes out on
    the first freed. The venue back, a burst of four requests while both connections are still
    busy opens one connection (the bound is three), however the requests interleave with its
    opening."""

    async def test(ex: Exchange) -> None:
        proxy = await Proxy(ex.clob_url).start()
        maker = OrderSigner(MAKER_KEY)
        creds = await derive(ex, MAKER_KEY)
        lane = OrderLane(f"http://127.0.0.1:{proxy.port}", order_connections=2, cancel_connections=1,
                         max_per_pool=3, timeout=3.0)  # fmt: skip

        def post(price: int) -> asyncio.Task:
            return asyncio.ensure_future(place(lane, maker, creds, price))

        try:
            await lane.start()
            assert lane.connections(ORDERS) == 2
            await proxy.refuse()
            ex.faults.timeout_after_place, ex.faults.hold_seconds = 2, 0.5
            held = [post(4000), post(4100)]
            await wait_for(lambda: lane.counts["connect_failed"] == 1)  # the spare, refused
            third = await post(4200)  # waited for a freed connection, refused opens or not
            assert third.status == 200 and lane.counts["queued"] == 1 and lane.counts["connect_failed"] >= 2
            assert [r.status for r in await asyncio.gather(*held)] == [200, 200]
            await proxy.start()  # the venue accepts again
            ex.faults.timeout_after_place, ex.faults.hold_seconds = 2, 0.5
            held = [post(4300), post(4400)]
            await asyncio.sleep(0.05)  # both connections wait for their answers; the spare opened
            assert lane.connections(ORDERS) == 3
            opened = lane.counts["opened"]
            ex.faults.timeout_after_place = 5
            burst = [post(4500 + 100 * i) for i in range(4)]
            replies = await asyncio.gather(*held, *burst)
            assert [r.status for r in replies] == [200] * 6
            assert lane.connections(ORDERS) == 3 and lane.counts["opened"] == opened  # bound: no more
        finally:
            await lane.close()
            await proxy.stop()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_connections_are_used_in_turn_and_one_handed_to_a_request_that_gave_up_is_not_lost(loop):
    """Sequential requests rotate over the pool's connections (the least recently used first),
    so none idles until the venue's side closes it. A connection freed for a queued request in
    the turn that request is cancelled (its caller gave up) goes back to the pool."""

    async def test(ex: Exchange) -> None:
        proxy = await Proxy(ex.clob_url).start()
        maker = OrderSigner(MAKER_KEY)
        creds = await derive(ex, MAKER_KEY)
        lane = OrderLane(f"http://127.0.0.1:{proxy.port}", order_connections=2, cancel_connections=1,
                         max_per_pool=2, timeout=3.0)  # fmt: skip
        try:
            await lane.start()
            for i in range(4):
                assert (await place(lane, maker, creds, 4000 + 100 * i)).status == 200
            assert sorted(proxy.requests) == [0, 2, 2]  # the cancel connection, and two requests on each
            # both order connections taken; a request queues, is handed one and gives up in one turn
            a, b = lane._idle(ORDERS), lane._idle(ORDERS)
            assert a is not None and b is not None
            waiting = asyncio.ensure_future(lane._acquire(ORDERS, asyncio.get_running_loop().time() + 3))
            await asyncio.sleep(0)
            assert lane.counts["queued"] == 1
            lane._release(a)  # handed to the queued request...
            waiting.cancel()  # ...which gives up before it runs again
            with pytest.raises(asyncio.CancelledError):
                await waiting
            lane._release(b)
            assert not a.busy and not b.busy and lane.connections(ORDERS) == 2
            assert lane._idle(ORDERS) is not None and lane._idle(ORDERS) is not None  # both usable
        finally:
            await lane.close()
            await proxy.stop()

    run(loop, test)



@pytest.mark.parametrize("loop", LOOPS)
def test_a_close_while_a_spare_opens_leaves_no_phantom_reservation(loop):
    """A request takes the last idle connection and a spare starts opening; the lane closes in
    that turn. Started again, its pools count what they hold (nothing reserved by the dead
    spare) and serve requests on fresh connections."""

    async def test(ex: Exchange) -> None:
        maker = OrderSigner(MAKER_KEY)
        creds = await derive(ex, MAKER_KEY)
        lane = OrderLane(ex.clob_url, order_connections=1, cancel_connections=1, max_per_pool=2, timeout=2.0)
        try:
            await lane.start()
            first = asyncio.ensure_future(place(lane, maker, creds, 4000))
            await asyncio.sleep(0)  # written; the spare is opening
            assert lane._opening[ORDERS] == 1
            await lane.close()
            assert lane._opening == {ORDERS: 0, CANCELS: 0}  # close() waited for the open to unwind
            await asyncio.gather(first, return_exceptions=True)  # answered, or failed by the close
            await lane.start()
            assert lane.connections(ORDERS) == 1 and lane._opening == {ORDERS: 0, CANCELS: 0}
            reply = await place(lane, maker, creds, 4100)
            assert reply.status == 200
        finally:
            await lane.close()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_requests_waiting_on_an_unreachable_venue_all_fail_with_the_connect_error(loop):
    """No connection open and the venue refusing: three requests at once (the bound is two) all
    fail as not sent with the connect error, none by waiting out the timeout."""

    async def test(ex: Exchange) -> None:
        proxy = await Proxy(ex.clob_url).start()
        maker = OrderSigner(MAKER_KEY)
        creds = await derive(ex, MAKER_KEY)
        lane = OrderLane(f"http://127.0.0.1:{proxy.port}", order_connections=1, cancel_connections=1,
                         max_per_pool=2, timeout=5.0)  # fmt: skip
        try:
            await proxy.refuse()
            await lane.start()  # nothing opens: not an error here
            assert lane.connections(ORDERS) == 0
            results = await asyncio.gather(*(
                place(lane, maker, creds, 4000 + 100 * i)
                for i in range(3)
            ), return_exceptions=True)  # fmt: skip
            assert all(isinstance(r, VenueError) and r.kind == "not_sent" for r in results), results
            assert all("cannot connect" in str(r) for r in results), results
            assert lane.counts["no_connection"] == 3 and lane._opening[ORDERS] == 0
        finally:
            await lane.close()
            await proxy.stop()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_connection_closed_after_its_handover_is_not_written_on(loop):
    """A queued request is handed a connection that closes before the request runs again: it
    fails as not sent (nothing was written), not as a timeout or an unknown outcome."""

    async def test(ex: Exchange) -> None:
        maker = OrderSigner(MAKER_KEY)
        creds = await derive(ex, MAKER_KEY)
        lane = OrderLane(ex.clob_url, order_connections=1, cancel_connections=1, max_per_pool=1, timeout=2.0)
        try:
            await lane.start()
            taken = lane._idle(ORDERS)
            assert taken is not None
            waiting = asyncio.ensure_future(place(lane, maker, creds, 4000))
            await asyncio.sleep(0)
            assert lane.counts["queued"] == 1
            lane._release(taken)  # handed to the waiting request...
            taken._abort()  # ...and closed before it runs again
            with pytest.raises(VenueError) as err:
                await waiting
            assert err.value.kind == "not_sent" and "before the write" in str(err.value)
            assert lane.counts["requests"] == 0
        finally:
            await lane.close()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_connections_that_die_as_they_open_are_replaced_with_backoff(loop):
    """A peer that accepts and closes at once: the lane keeps trying to refill its pools, but
    backs off (up to a second) instead of reconnecting in a tight loop."""

    async def test(ex: Exchange) -> None:
        proxy = await Proxy(ex.clob_url).start()
        lane = OrderLane(f"http://127.0.0.1:{proxy.port}", order_connections=1, cancel_connections=1, timeout=2.0)
        try:
            proxy.slam = True
            await lane.start()
            await asyncio.sleep(1.0)
            assert 2 <= proxy.accepted <= 20, proxy.accepted  # ~5 per pool in a second; thousands without
            assert lane.counts["refill_backoffs"] >= 2
            proxy.slam = False
            await wait_for(lambda: lane.connections(ORDERS) == 1 and lane.connections(CANCELS) == 1, timeout=5)
        finally:
            await lane.close()
            await proxy.stop()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_request_that_waited_for_a_connection_gets_the_whole_timeout_for_its_answer(loop):
    """One connection, bound one: the second request waits for the first's held answer, most of
    the timeout, then gets a full timeout from its own write (not what was left)."""

    async def test(ex: Exchange) -> None:
        maker = OrderSigner(MAKER_KEY)
        creds = await derive(ex, MAKER_KEY)
        lane = OrderLane(ex.clob_url, order_connections=1, cancel_connections=1, max_per_pool=1, timeout=1.0)
        try:
            await lane.start()
            ex.faults.timeout_after_place, ex.faults.hold_seconds = 2, 0.7
            replies = await asyncio.gather(*(
                place(lane, maker, creds, 4000 + 100 * i)
                for i in range(2)
            ))  # fmt: skip
            assert [r.status for r in replies] == [200, 200] and lane.counts["queued"] == 1
            assert lane.counts["timeout"] == 0
        finally:
            await lane.close()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_the_room_a_lost_connection_leaves_goes_to_a_waiting_request(loop):
    """Bound two, both connections busy (one above the pool's minimum, so no refill is due), a
    request waiting: one connection closes (the peer, or a timeout): a connection is opened for
    the waiting request at once, not after the other frees up."""

    async def test(ex: Exchange) -> None:
        maker = OrderSigner(MAKER_KEY)
        creds = await derive(ex, MAKER_KEY)
        lane = OrderLane(ex.clob_url, order_connections=1, cancel_connections=1, max_per_pool=2, timeout=2.0)
        try:
            await lane.start()
            lane._offer_one(ORDERS)  # a second connection, above the minimum (a spare, say)
            await wait_for(lambda: lane.connections(ORDERS) == 2)
            a, b = lane._idle(ORDERS), lane._idle(ORDERS)
            assert a is not None and b is not None
            waiting = asyncio.ensure_future(place(lane, maker, creds, 4000))
            await asyncio.sleep(0)
            assert lane.counts["queued"] == 1 and lane._opening[ORDERS] == 0  # at the bound: nothing opens
            a._abort()
            reply = await asyncio.wait_for(waiting, 1.0)  # b stays busy throughout
            assert reply.status == 200 and lane.counts["opened"] == 2 + 1 + 1  # start, the second, the new one
            lane._release(b)
        finally:
            await lane.close()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_close_during_start_returns_quietly_and_gives_every_place_back(loop):
    """The venue accepts TCP but never finishes the TLS handshake: start() waits on its opens; a
    close meanwhile ends them, start() returns (no CancelledError into a caller nobody
    cancelled), and when close() returns no open is still counted against the bound."""

    async def test(ex: Exchange) -> None:
        async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # reads the ClientHello, answers nothing

        server = await asyncio.start_server(mute, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        lane = OrderLane(f"https://127.0.0.1:{port}", order_connections=2, cancel_connections=2, max_per_pool=2,
                         timeout=5.0)  # fmt: skip
        try:
            starting = asyncio.ensure_future(lane.start())
            await asyncio.sleep(0.1)
            assert lane._opening == {ORDERS: 2, CANCELS: 2} and not starting.done()
            await lane.close()
            assert lane._opening == {ORDERS: 0, CANCELS: 0}
            await asyncio.wait_for(starting, 1.0)  # returns; raises nothing
        finally:
            await lane.close()
            server.close()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_connection_whose_transport_is_closing_is_not_written_on(loop):
    """The venue closed an idle connection: its transport is closing and connection_lost is a
    loop turn away. A request in that window goes out on another connection (its bytes would
    be dropped on the closing one and the submit read as an unknown outcome); the end of stream
    itself takes a connection out of the pool at once."""

    async def test(ex: Exchange) -> None:
        maker = OrderSigner(MAKER_KEY)
        creds = await derive(ex, MAKER_KEY)
        lane = OrderLane(ex.clob_url, order_connections=2, cancel_connections=1, timeout=2.0)
        try:
            await lane.start()
            first, second = lane._pools[ORDERS]
            first.transport.close()  # type: ignore[union-attr]  # closing; connection_lost not yet run
            assert first.alive and not first.usable()
            reply = await place(lane, maker, creds, 4000)
            assert reply.status == 200 and second.answered == 1
            assert second.eof_received() is False  # the peer's end of stream, as the transport reports it
            assert not second.alive and second not in lane._pools[ORDERS] and lane.counts["lost"] >= 1
        finally:
            await lane.close()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_cancelled_close_has_already_closed_everything(loop):
    """close() tears down first and only then waits for the lane's background tasks: cancelled
    while it waits (a shutdown deadline), every connection is already closed and no request is
    left waiting."""

    async def test(ex: Exchange) -> None:
        lane = OrderLane(ex.clob_url, order_connections=2, cancel_connections=2, timeout=2.0)
        await lane.start()
        transports = [c.transport for pool in (ORDERS, CANCELS) for c in lane._pools[pool]]
        lane._tasks.spawn(asyncio.sleep(10))  # a background task slow to unwind
        closing = asyncio.ensure_future(lane.close())
        await asyncio.sleep(0)
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        assert len(transports) == 4 and all(t is not None and t.is_closing() for t in transports)
        assert lane.connections(ORDERS) == lane.connections(CANCELS) == 0
        await lane.close()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_request_waits_for_a_connection_no_longer_than_the_acquire_timeout(loop):
    """One connection, held by a slow answer: the next request gives up after acquire_timeout,
    as not sent (a decision that old is re-decided, not sent late)."""

    async def test(ex: Exchange) -> None:
        maker = OrderSigner(MAKER_KEY)
        creds = await derive(ex, MAKER_KEY)
        lane = OrderLane(ex.clob_url, order_connections=1, cancel_connections=1, max_per_pool=1, timeout=3.0,
                         acquire_timeout=0.2)  # fmt: skip
        try:
            await lane.start()
            ex.faults.timeout_after_place, ex.faults.hold_seconds = 1, 0.6
            replies = await asyncio.gather(*(
                place(lane, maker, creds, 4000 + 100 * i)
                for i in range(2)
            ), return_exceptions=True)  # fmt: skip
            assert isinstance(replies[0], LaneReply) and replies[0].status == 200
            err = replies[1]
            assert isinstance(err, VenueError) and err.kind == "not_sent" and "no connection in 0.2s" in str(err)
            assert lane.counts["no_connection"] == 1 and lane.counts["requests"] == 1
        finally:
            await lane.close()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_connections_idle_too_long_are_replaced_ahead_of_use(loop):
    """A connection idle for max_idle_s is replaced by a fresh one, opened before the old one is
    closed (the pool never shrinks); one in use is kept. Requests go out on the fresh ones. (At
    its bound a pool has no room to open first: its idle connections stay as they are.)"""

    async def test(ex: Exchange) -> None:
        proxy = await Proxy(ex.clob_url).start()
        maker = OrderSigner(MAKER_KEY)
        creds = await derive(ex, MAKER_KEY)
        lane = OrderLane(f"http://127.0.0.1:{proxy.port}", order_connections=1, cancel_connections=1,
                         max_per_pool=3, timeout=2.0, max_idle_s=2.0)  # fmt: skip
        try:
            await lane.start()
            order_conn, cancel_conn = lane._pools[ORDERS][0], lane._pools[CANCELS][0]
            for i in range(35):  # the order connections in use every ~0.25 s; the cancel one idle
                assert (await place(lane, maker, creds, 3000 + 100 * (i % 12))).status == 200
                await asyncio.sleep(0.1)
                assert lane.connections(ORDERS) >= 1 and lane.connections(CANCELS) == 1  # never fewer
            assert order_conn in lane._pools[ORDERS] and order_conn.alive  # in use (in turn with its spare): kept
            assert cancel_conn not in lane._pools[CANCELS] and not cancel_conn.alive  # idle: replaced
            assert lane.counts["refreshed_cancels"] >= 1 and lane.counts["refreshed_orders"] == 0
            assert lane.counts["spares"] == 1
            await wait_for(lambda: not lane._opening[ORDERS] and not lane._opening[CANCELS])
            await asyncio.sleep(0.05)  # the proxy's count of the last one in
            assert proxy.accepted == 2 + lane.counts["spares"] + lane.counts["refreshed"]
            reply = await lane.request("DELETE", "/orders", encode(["0x" + "00" * 32]), creds=creds,
                                       address=maker.address, timestamp=1)  # fmt: skip
            assert reply.status == 200
        finally:
            await lane.close()
            await proxy.stop()
        with pytest.raises(ValueError, match="max_idle_s"):
            OrderLane(ex.clob_url, max_idle_s=0)

    run(loop, test)



@pytest.mark.parametrize("loop", LOOPS)
def test_a_pool_grown_by_a_burst_shrinks_back_when_idle_then_stays_fresh(loop):
    """A burst grew the order pool to its bound; idle, the connections above the pool's minimum
    are closed without replacement (none could be opened first at the bound anyway), and the
    one left is then replaced with a fresh one, the pool never below its minimum."""

    async def test(ex: Exchange) -> None:
        maker = OrderSigner(MAKER_KEY)
        creds = await derive(ex, MAKER_KEY)
        lane = OrderLane(ex.clob_url, order_connections=1, cancel_connections=1, max_per_pool=3, timeout=2.0,
                         max_idle_s=0.6)  # fmt: skip
        try:
            await lane.start()
            ex.faults.timeout_after_place, ex.faults.hold_seconds = 3, 0.2
            replies = await asyncio.gather(*(place(lane, maker, creds, 4000 + 100 * i) for i in range(3)))
            assert [r.status for r in replies] == [200] * 3 and lane.connections(ORDERS) == 3  # at the bound
            await wait_for(lambda: lane.counts["retired"] >= 2, timeout=3)
            assert lane.connections(ORDERS) == 1
            await wait_for(lambda: lane.counts["refreshed_orders"] >= 1, timeout=3)
            assert lane.connections(ORDERS) == 1 and lane.connections(CANCELS) == 1
            assert (await place(lane, maker, creds, 4500)).status == 200
        finally:
            await lane.close()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_replacement_never_closes_a_connection_used_meanwhile_or_below_the_minimum(loop):
    """The keeper's replacement closes the old connection only if it is still stale once the
    fresh one is in (a request may have used it meanwhile) and the pool stays at its minimum (the
    venue may have closed another meanwhile)."""

    async def test(ex: Exchange) -> None:
        lane = OrderLane(ex.clob_url, order_connections=2, cancel_connections=1, max_per_pool=4, timeout=2.0,
                         max_idle_s=None)  # fmt: skip
        try:
            await lane.start()
            old, other = lane._pools[ORDERS]
            # used meanwhile (its idle time is short): kept, the pool one larger
            assert lane._reserve(ORDERS)
            await lane._tasks.spawn_now(lane._replace(ORDERS, old, 60.0))
            assert old.alive and lane.connections(ORDERS) == 3 and lane.counts["refreshed"] == 0
            # stale, but another closes while its replacement opens: kept, the pool at its minimum
            lane._pools[ORDERS][-1]._abort()
            assert lane._reserve(ORDERS)
            replacing = lane._tasks.spawn_now(lane._replace(ORDERS, old, -1.0))  # any idle time is stale
            other._abort()
            await replacing
            assert old.alive and lane.connections(ORDERS) == 2 and lane.counts["refreshed"] == 0
            # stale and above the minimum once the fresh one is in: closed
            assert lane._reserve(ORDERS)
            await lane._tasks.spawn_now(lane._replace(ORDERS, old, -1.0))  # (uvloop's clock ticks in ms)
            assert not old.alive and lane.connections(ORDERS) == 2 and lane.counts["refreshed"] == 1
        finally:
            await lane.close()

    run(loop, test)
