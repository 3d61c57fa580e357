"""The market-channel codec against the real captured messages and the documented framings."""

from __future__ import annotations

import logging

import orjson
import pytest

from active_quoting.errors import FrameError
from active_quoting.venue.market_codec import (
    BestBidAskEvent,
    BookEvent,
    LastTradePriceEvent,
    MarketCodec,
    MarketResolvedEvent,
    NewMarketEvent,
    NoNewAssetsFrame,
    PongFrame,
    PriceChangeEvent,
    TickSizeChangeEvent,
)
from conftest import CAPTURES, capture

MARKET_CAPTURES = {
    "ws_book.json": BookEvent,
    "ws_price_change.json": PriceChangeEvent,
    "ws_price_change_legacy_changes.json": PriceChangeEvent,
    "ws_price_change_current.json": PriceChangeEvent,
    "ws_last_trade_price.json": LastTradePriceEvent,
    "ws_tick_size_change.json": TickSizeChangeEvent,
    "ws_market_best_bid_ask_msg.json": BestBidAskEvent,
    "ws_market_new_market_msg.json": NewMarketEvent,
    "ws_market_resolved_msg.json": MarketResolvedEvent,
}


def test_every_market_capture_is_covered():
    """A market capture added to shared/ must be added here too."""
    market_types = set(MARKET_CAPTURES.values())
    on_disk = set()
    for path in CAPTURES.glob("ws_*.json"):
        raw = orjson.loads(path.read_bytes())
        if isinstance(raw, dict) and raw.get("event_type") in {c.EVENT_TYPE for c in market_types}:
            on_disk.add(path.name)
    assert on_disk == set(MARKET_CAPTURES)


@pytest.mark.parametrize(("name", "cls"), MARKET_CAPTURES.items())
@pytest.mark.parametrize("as_text", [False, True])
def test_capture_decodes_to_its_event(name, cls, as_text):
    frame = capture(name)
    events = MarketCodec().decode(frame.decode() if as_text else frame)
    assert len(events) == 1 and type(events[0]) is cls


def test_book_capture_fields():
    (ev,) = MarketCodec().decode(capture("ws_book.json"))
    raw = orjson.loads(capture("ws_book.json"))
    assert ev.asset_id == raw["asset_id"] and ev.market == raw["market"] and ev.hash == raw["hash"]
    assert [(lv.price, lv.size) for lv in ev.bids] == [(d["price"], d["size"]) for d in raw["bids"]]
    assert len(ev.asks) == len(raw["asks"]) == 86 and len(ev.bids) == 76
    assert ev.tick_size == ""  # pre-2025 capture carries no tick_size


def test_subscribe_burst_is_an_array_of_books():
    raw = orjson.loads(capture("ws_book.json"))
    other = dict(raw, asset_id="123", tick_size="0.001", last_trade_price="0.95")
    events = MarketCodec().decode(orjson.dumps([raw, other]))
    assert [type(e) for e in events] == [BookEvent, BookEvent]
    assert events[1].tick_size == "0.001" and events[1].last_trade_price == "0.95"


def test_empty_array_frame_is_no_events():
    assert MarketCodec().decode(b"[]") == []


def test_current_price_change_entries():
    (ev,) = MarketCodec().decode(capture("ws_price_change_current.json"))
    assert [(e.price, e.size, e.side, e.best_bid, e.best_ask) for e in ev.price_changes] == [
        ("0.6", "3300", "BUY", "0.6", "0.7"),
        ("0.5", "3400", "BUY", "0.6", "0.7"),
        ("0.7", "3400", "BUY", "0.6", "0.7"),
    ]
    assert ev.price_changes[0].hash == "bf32b3746fff40c76c98021b7f3f07261169dd26"


def test_legacy_formats_normalize_to_entries_without_stated_top():
    (a,) = MarketCodec().decode(capture("ws_price_change.json"))
    assert [(e.asset_id[:8], e.price, e.size, e.side, e.best_bid) for e in a.price_changes] == [
        ("48331043", "0.514", "21574.08", "SELL", "")
    ]
    (b,) = MarketCodec().decode(capture("ws_price_change_legacy_changes.json"))
    assert [(e.price, e.size, e.side) for e in b.price_changes] == [
        ("0.6", "3300", "BUY"),
        ("0.5", "3400", "BUY"),
        ("0.7", "3400", "BUY"),
    ]
    assert {e.asset_id for e in b.price_changes} == {
        orjson.loads(capture("ws_price_change_legacy_changes.json"))["asset_id"]
    }


def test_other_event_fields():
    codec = MarketCodec()
    (ltp,) = codec.decode(capture("ws_last_trade_price.json"))
    assert (ltp.price, ltp.size, ltp.side, ltp.fee_rate_bps) == ("0.491", "85.36", "SELL", "0")
    (tsc,) = codec.decode(capture("ws_tick_size_change.json"))
    assert (tsc.old_tick_size, tsc.new_tick_size) == ("0.01", "0.001")
    (bba,) = codec.decode(capture("ws_market_best_bid_ask_msg.json"))
    assert (bba.best_bid, bba.best_ask, bba.spread) == ("0.73", "0.77", "0.04")
    (nm,) = codec.decode(capture("ws_market_new_market_msg.json"))
    assert nm.outcomes == ["Yes", "No"] and len(nm.assets_ids) == 2 and nm.order_price_min_tick_size == "0.01"
    (mr,) = codec.decode(capture("ws_market_resolved_msg.json"))
    assert mr.winning_outcome == "Yes" and mr.winning_asset_id == mr.assets_ids[0]


@pytest.mark.parametrize("frame", [b"PONG", "PONG", bytearray(b"PONG")])
def test_pong_text_frame(frame):
    assert [type(e) for e in MarketCodec().decode(frame)] == [PongFrame]


def test_no_new_assets_text_frame():
    assert [type(e) for e in MarketCodec().decode(b"NO NEW ASSETS")] == [NoNewAssetsFrame]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"PING?", "malformed JSON"),
        (b"", "malformed JSON"),
        (b'{"event_type": "book"', "malformed JSON"),
        (b"42", "frame element is not a JSON object"),
        (b'[{"event_type":"book","asset_id":"1","bids":[]}, 7]', "frame element is not a JSON object"),
        (b'{"asset_id": "1"}', "message without an event_type"),
        (b'{"event_type": "book", "bids": []}', "bad book message"),
        (
            b'{"event_type": "price_change", "price_changes": '
            b'[{"asset_id": "1", "price": 0.5, "size": "1", "side": "BUY"}]}',
            "bad price_change message",
        ),
        (b'{"event_type": "tick_size_change", "asset_id": "1"}', "bad tick_size_change message"),
    ],
)
def test_malformed_frames_are_typed_errors(frame, reason):
    with pytest.raises(FrameError) as err:
        MarketCodec().decode(frame)
    assert err.value.reason.startswith(reason)


def test_unknown_event_types_counted_and_logged_once(caplog):
    codec = MarketCodec()
    frame = b'[{"event_type": "mystery", "x": 1}, {"event_type": "last_trade_price", "asset_id": "1", "price": "0.5"}]'
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            events = codec.decode(frame)
            assert [type(e) for e in events] == [LastTradePriceEvent]
        codec.decode(b'{"event_type": "other"}')
    assert codec.unknown_event_types == {"mystery": 3, "other": 1}
    assert sum("mystery" in r.getMessage() for r in caplog.records) == 1


def test_legacy_price_change_inside_an_array_frame():
    legacy = orjson.loads(capture("ws_price_change.json"))
    current = orjson.loads(capture("ws_price_change_current.json"))
    events = MarketCodec().decode(orjson.dumps([current, legacy]))
    assert [len(e.price_changes) for e in events] == [3, 1]
    assert events[1].price_changes[0].price == "0.514"


def test_price_change_lookalike_falls_back_to_general_path():
    frame = orjson.dumps(
        {"event_type": "last_trade_price", "asset_id": "1", "price": "0.5", "market": '"price_change"'}
    )
    (ev,) = MarketCodec().decode(frame)
    assert type(ev) is LastTradePriceEvent
