"""Frames through the codec into the books: the capture book, orphans, desync marks, errors."""

from __future__ import annotations

import random

import orjson
import pytest

from active_quoting.venue.market_codec import LastTradePriceEvent, PriceChangeEvent
from active_quoting.venue.market_data import MarketData
from conftest import capture
from synth_feed import DOWN, MARKET, UP, book_frame, initial_books, price_change_frame, synth_feed

BID, ASK, NO = 0, 1, -1


def feed(impl, threshold=3):
    return MarketData(impl.BookSet(threshold))


def test_capture_book_has_max_bid_and_min_ask(impl):
    md = feed(impl)
    md.on_frame(capture("ws_book.json"))
    raw = orjson.loads(capture("ws_book.json"))
    book = md.books.get(raw["asset_id"])
    max_bid = max(raw["bids"], key=lambda lv: float(lv["price"]))
    min_ask = min(raw["asks"], key=lambda lv: float(lv["price"]))
    assert impl.format_price(book.best_bid()) == max_bid["price"]
    assert impl.format_price(book.best_ask()) == min_ask["price"]
    assert book.best_bid_size() == impl.parse_size(max_bid["size"])
    assert book.best_ask_size() == impl.parse_size(min_ask["size"])
    assert book.level_count(BID) == 76 and book.level_count(ASK) == 86
    assert book.hash == raw["hash"]


def test_price_change_without_snapshot_is_orphan(impl):
    md = feed(impl)
    md.on_frame(capture("ws_price_change_current.json"))
    md.on_frame(capture("ws_price_change.json"))
    assert md.orphans == 4 and len(md.books) == 0


def test_current_price_change_applies_and_checks_stated_top(impl):
    md = feed(impl)
    asset = orjson.loads(capture("ws_price_change_current.json"))["price_changes"][0]["asset_id"]
    md.on_frame(
        orjson.dumps({"event_type": "book", "asset_id": asset, "bids": [], "asks": [{"price": "0.7", "size": "10"}]})
    )
    md.on_frame(capture("ws_price_change_current.json"))
    book = md.books.get(asset)
    # The capture states best_bid 0.6 though it also bids 0.7 into the 0.7 ask: a disagreement.
    assert book.best_bid() == 7000 and book.is_locked()
    assert book.disagreements == 1 and not book.desynced
    assert book.hash == "cf32b3746fff40c76c98021b7f3f07261169dd28"


def test_desync_marked_after_threshold_and_cleared_by_snapshot(impl):
    rng = random.Random(1)
    books = initial_books(rng, levels=5)
    md = feed(impl, threshold=2)
    md.on_frame(book_frame(books, 1))
    lie = orjson.loads(price_change_frame(books, [(UP, "BUY", 4000, 10_000_000)], 2))
    lie["price_changes"][0]["best_bid"] = "0.3"
    md.on_frame(orjson.dumps(lie))
    assert not md.books.get(UP).desynced
    md.on_frame(orjson.dumps(lie))
    assert md.books.get(UP).desynced and md.desync_marks == 1
    md.on_frame(orjson.dumps(lie))
    assert md.desync_marks == 1  # counted once per transition
    md.on_frame(book_frame(books, 3))
    assert not md.books.get(UP).desynced and not md.books.get(DOWN).desynced


def test_empty_side_sentinels(impl):
    md = feed(impl)
    md.on_frame(
        orjson.dumps([{"event_type": "book", "asset_id": "7", "bids": [{"price": "0.4", "size": "1"}], "asks": []}])
    )
    frame = {
        "event_type": "price_change",
        "market": MARKET,
        "price_changes": [
            {"asset_id": "7", "price": "0.4", "size": "0", "side": "BUY", "best_bid": "0", "best_ask": "1"}
        ],
    }
    md.on_frame(orjson.dumps(frame))
    book = md.books.get("7")
    assert (book.best_bid(), book.best_ask(), book.disagreements) == (NO, NO, 0)


def test_tick_size_change_updates_tick_only(impl):
    md = feed(impl)
    raw = orjson.loads(capture("ws_tick_size_change.json"))
    md.on_frame(
        orjson.dumps(
            {
                "event_type": "book",
                "asset_id": raw["asset_id"],
                "bids": [{"price": "0.95", "size": "5"}],
                "asks": [],
                "tick_size": "0.01",
            }
        )
    )
    book = md.books.get(raw["asset_id"])
    assert book.tick == 100
    md.on_frame(capture("ws_tick_size_change.json"))
    assert book.tick == 10 and book.best_bid() == 9500


def test_bad_value_is_counted_and_leaves_books_untouched(impl):
    rng = random.Random(2)
    books = initial_books(rng, levels=3)
    md = feed(impl)
    md.on_frame(book_frame(books, 1))
    before = md.books.get(UP).top_levels(BID, 10)
    bad = {
        "event_type": "price_change",
        "price_changes": [
            {"asset_id": UP, "price": "0.45", "size": "5", "side": "BUY"},
            {"asset_id": UP, "price": "0.451234", "size": "5", "side": "BUY"},
        ],
    }
    trade = {"event_type": "last_trade_price", "asset_id": UP, "price": "0.5"}
    events = md.on_frame(orjson.dumps([bad, trade]))
    assert [type(e) for e in events] == [LastTradePriceEvent]
    assert md.errors == 1 and "too many decimals" in md.error_samples[0]
    assert md.books.get(UP).top_levels(BID, 10) == before
    md.on_frame(b"{garbage")
    assert md.errors == 2
    events = md.on_frame(price_change_frame(books, [(UP, "BUY", 4950, 1_000_000)], 5))
    assert [type(e) for e in events] == [PriceChangeEvent]
    assert md.books.get(UP).best_bid() == 4950


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_compiled_feed_matches_twin_and_reference(c_core, py_core, seed):
    """A long synthetic feed leaves identical books in both cores, agreeing with the venue's stated tops."""
    frames = synth_feed(seed, 600)
    mds = [feed(c_core), feed(py_core)]
    for frame in frames:
        for md in mds:
            md.on_frame(frame)
    c, p = mds
    assert c.event_counts == p.event_counts and c.errors == p.errors == 0
    for aid in (UP, DOWN):
        bc, bp = c.books.get(aid), p.books.get(aid)
        assert bc.top_levels(BID, 10_001) == bp.top_levels(BID, 10_001)
        assert bc.top_levels(ASK, 10_001) == bp.top_levels(ASK, 10_001)
        assert bc.disagreements == bp.disagreements == 0
        assert bc.updates == bp.updates
