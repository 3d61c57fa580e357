"""Deterministic synthetic market feeds in the venue's current wire format.

Frames are built from a reference book (plain dicts) so every ``price_change`` states the
true top of book after its batch, as the venue does; a test can then inject disagreements
on purpose. Used by tests, benchmarks and to regenerate the bundled sample feed.
"""

from __future__ import annotations

import random

import orjson

from active_quoting import core as u

UP = "71321045679252212594626385532706912750332728571942532289631379312455583992563"
DOWN = "52114319501245915516055106046884209969926127482827954674443846427813813222426"
MARKET = "0x5f65177b394277fd294cd75650044e32ba009a95022d88a0c1d565897d72f8f1"


class RefBook:
    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}

    def set(self, side: str, price: int, size: int) -> None:
        levels = self.bids if side == "BUY" else self.asks
        if size:
            levels[price] = size
        else:
            levels.pop(price, None)

    def stated(self) -> tuple[str, str]:
        bid = u.format_price(max(self.bids)) if self.bids else "0"
        ask = u.format_price(min(self.asks)) if self.asks else "1"
        return bid, ask


def _levels(levels: dict[int, int], ascending: bool) -> list[dict[str, str]]:
    return [
        {"price": u.format_price(p), "size": u.format_size(q)} for p, q in sorted(levels.items(), reverse=not ascending)
    ]


def book_frame(books: dict[str, RefBook], ts: int, tick: str = "0.01") -> bytes:
    """The subscribe burst: a JSON array with one ``book`` per token (bids asc, asks desc)."""
    return orjson.dumps(
        [
            {
                "market": MARKET,
                "asset_id": aid,
                "timestamp": str(ts),
                "hash": f"{hash((aid, ts)) & 0xFFFFFFFFFF:010x}",
                "bids": _levels(b.bids, ascending=True),
                "asks": _levels(b.asks, ascending=False),
                "tick_size": tick,
                "event_type": "book",
                "last_trade_price": "0.5",
            }
            for aid, b in books.items()
        ]
    )


def price_change_frame(books: dict[str, RefBook], changes: list[tuple[str, str, int, int]], ts: int) -> bytes:
    """A current-format ``price_change``; each entry states its token's top after the batch."""
    for aid, side, price, size in changes:
        books[aid].set(side, price, size)
    entries = []
    for aid, side, price, size in changes:
        bid, ask = books[aid].stated()
        entries.append(
            {
                "asset_id": aid,
                "price": u.format_price(price),
                "size": u.format_size(size),
                "side": side,
                "hash": f"{(ts * 7 + price) & 0xFFFFFFFFFF:010x}",
                "best_bid": bid,
                "best_ask": ask,
            }
        )
    return orjson.dumps(
        {"market": MARKET, "price_changes": entries, "timestamp": str(ts), "event_type": "price_change"}
    )


def initial_books(rng: random.Random, levels: int = 30, tick: int = 100) -> dict[str, RefBook]:
    """Two complementary tokens around 0.50 / 0.50 with ``levels`` levels per side."""
    books = {UP: RefBook(), DOWN: RefBook()}
    for i in range(levels):
        size = rng.randint(5, 5000) * 10_000
        bid = 4900 - i * tick
        ask = 5100 + i * tick
        books[UP].bids[bid] = size
        books[UP].asks[ask] = size + 1_000_000
        books[DOWN].bids[10_000 - ask] = size + 1_000_000
        books[DOWN].asks[10_000 - bid] = size
    return books


def synth_feed(seed: int, n_updates: int) -> list[bytes]:
    """A subscribe snapshot then ``n_updates`` mirrored level changes on both tokens."""
    rng = random.Random(seed)
    books = initial_books(rng)
    ts = 1_785_615_724_645
    frames = [book_frame(books, ts)]
    for _ in range(n_updates):
        ts += rng.randint(1, 400)
        price = rng.randrange(3000, 7001, 100)
        size = rng.choice([0, rng.randint(1, 90_000) * 10_000])
        side = "BUY" if price < 5000 or (price == 5000 and rng.random() < 0.5) else "SELL"
        mirror = "SELL" if side == "BUY" else "BUY"
        frames.append(price_change_frame(books, [(UP, side, price, size), (DOWN, mirror, 10_000 - price, size)], ts))
        if rng.random() < 0.05:
            frames.append(b"PONG")
        if rng.random() < 0.03:
            frames.append(
                orjson.dumps(
                    {
                        "asset_id": UP,
                        "event_type": "last_trade_price",
                        "fee_rate_bps": "0",
                        "market": MARKET,
                        "price": u.format_price(price),
                        "side": side,
                        "size": "10",
                        "timestamp": str(ts),
                    }
                )
            )
    return frames
