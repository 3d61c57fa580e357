"""Order-book core and market-data path, compiled against the pure-Python twin.

Run: ``make bench`` (or ``pytest benchmarks --benchmark-group-by=group``).
Targets (2-core machine): decode+apply of a two-entry price_change <= 2 us median compiled;
apply step >= 5x faster compiled than pure; a level update < 100 ns.
"""

from __future__ import annotations

import random

import orjson
import pytest

from active_quoting.venue.market_codec import MarketCodec
from active_quoting.venue.market_data import MarketData
from synth_feed import DOWN, MARKET, UP, book_frame, initial_books, price_change_frame

BID = 0


def _md(impl):
    rng = random.Random(42)
    books = initial_books(rng, levels=30)
    md = MarketData(impl.BookSet())
    md.on_frame(book_frame(books, 1))
    return md, books


def _two_entry_frame(books) -> bytes:
    # A real-shaped change: one order shows up mirrored on both tokens of the market.
    return price_change_frame(
        books, [(UP, "BUY", 4900, 1_234_560_000), (DOWN, "SELL", 5100, 1_234_560_000)], 1_785_615_736_984
    )


@pytest.mark.benchmark(group="level update (set existing level)")
def test_level_update(benchmark, impl):
    md, _ = _md(impl)
    book = md.books.get(UP)
    benchmark(book.set_level, BID, 4800, 7_000_000)
    assert book.size_at(BID, 4800) == 7_000_000


@pytest.mark.benchmark(group="touch churn (add best bid, remove it: 2 updates)")
def test_touch_churn(benchmark, impl):
    md, _ = _md(impl)
    book = md.books.get(UP)
    best = book.best_bid()

    def churn():
        book.set_level(BID, 4950, 1_000_000)
        book.set_level(BID, 4950, 0)

    benchmark(churn)
    assert book.best_bid() == best


@pytest.mark.benchmark(group="depth within 3 ticks of the touch, our one-level quote taken out")
def test_depth_without(benchmark, impl):
    """The momentum detector's reading of a side, twice per Up-book frame of a quoted market."""
    md, _ = _md(impl)
    book = md.books.get(UP)
    best = book.best_bid()
    own = {best: book.size_at(BID, best) // 2}  # we rest half the best level
    depth = benchmark(book.depth_without, BID, 300, own)
    assert depth == book.depth_within(BID, 300) - own[best]


@pytest.mark.benchmark(group="decode+apply price_change (2 entries)")
def test_decode_apply_price_change(benchmark, impl):
    md, books = _md(impl)
    frame = _two_entry_frame(books)
    events = benchmark(md.on_frame, frame)
    assert len(events) == 1 and md.errors == 0
    assert md.books.get(UP).best_bid_size() == 1_234_560_000 and md.books.get(UP).disagreements == 0


@pytest.mark.benchmark(group="apply price_change (decoded, 2 entries)")
def test_apply_price_change(benchmark, impl):
    md, books = _md(impl)
    (event,) = MarketCodec().decode(_two_entry_frame(books))
    assert benchmark(md.books.apply_price_change, event) == 2


@pytest.mark.benchmark(group="decode+apply book snapshot (60 levels)")
def test_decode_apply_snapshot(benchmark, impl):
    rng = random.Random(43)
    books = initial_books(rng, levels=30)
    frame = orjson.dumps(orjson.loads(book_frame({UP: books[UP]}, 5))[0])
    md = MarketData(impl.BookSet())
    benchmark(md.on_frame, frame)
    book = md.books.get(UP)
    assert book.level_count(0) + book.level_count(1) == 60 and md.errors == 0


@pytest.mark.benchmark(group="decode only (codec, 2-entry price_change)")
def test_decode_only(benchmark):
    codec = MarketCodec()
    frame = orjson.dumps(
        {
            "market": MARKET,
            "price_changes": [
                {
                    "asset_id": UP,
                    "price": "0.49",
                    "size": "1234.56",
                    "side": "BUY",
                    "hash": "940e83",
                    "best_bid": "0.49",
                    "best_ask": "0.51",
                },
                {
                    "asset_id": DOWN,
                    "price": "0.51",
                    "size": "1234.56",
                    "side": "SELL",
                    "hash": "f8f485",
                    "best_bid": "0.49",
                    "best_ask": "0.51",
                },
            ],
            "timestamp": "1785615736984",
            "event_type": "price_change",
        }
    )
    assert len(benchmark(codec.decode, frame)) == 1
