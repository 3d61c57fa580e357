"""User channel against the captures: order statuses, our fills in trades, de-duplication."""

from __future__ import annotations

import orjson
import pytest

from active_quoting.errors import FrameError
from active_quoting.model import BUY, SELL
from active_quoting.venue.user_codec import (
    CANCELED,
    INVALID,
    LIVE,
    NEW,
    REVERSAL,
    STATUS,
    FillTracker,
    OrderEvent,
    PongFrame,
    TradeEvent,
    UserCodec,
    order_update,
    parse_order_status,
    to_ms,
)
from conftest import capture

SH = 1_000_000
ME = "3e2c94ca-8124-c4c1-c7ea-be1ea21b71fe"  # the owner of the order captures
YES = "21742633143463906290569050155826241533067272736897614950488156847949938836455"
NO = "48331043336612883890938759509493159234755048973500640148014422747788308965732"


def decode_one(name):
    (ev,) = UserCodec().decode(capture(name))
    return ev


@pytest.mark.parametrize(
    ("name", "status", "kind", "reason"),
    [
        ("ws_order_placement.json", LIVE, "PLACEMENT", ""),
        ("ws_order_cancel.json", CANCELED, "CANCELLATION", ""),
        (
            "ws_user_order_fok_killed.json",
            CANCELED,
            "CANCELLATION",
            "order couldn't be fully filled. FOK orders are fully filled or killed.",
        ),
        ("ws_user_order_venue_cancel.json", INVALID, "CANCELLATION", ""),
    ],
)
def test_order_captures(name, status, kind, reason):
    ev = decode_one(name)
    assert type(ev) is OrderEvent
    up = order_update(ev)
    assert (up.status, up.kind, up.reason) == (status, kind, reason)
    raw = orjson.loads(capture(name))
    assert up.order_id == raw["id"] and up.side == raw["side"]
    assert up.t_ms == int(raw["timestamp"])


def test_order_fields_in_fixed_point():
    up = order_update(decode_one("ws_order_cancel.json"))
    assert (up.price, up.original_size, up.size_matched, up.terminal) == (5130, 5 * SH, 5 * SH, True)
    fok = order_update(decode_one("ws_user_order_fok_killed.json"))
    assert fok.size_matched == 0 and fok.terminal  # "" size_matched


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("LIVE", (LIVE, "")), ("live", (LIVE, "")), ("ORDER_STATUS_LIVE", (LIVE, "")), ("CANCELLED", (CANCELED, "")),
     ("CANCELED_market resolved", (CANCELED, "market resolved")), ("MATCHED", ("MATCHED", "")),
     ("SOMETHING_NEW", ("UNKNOWN", "SOMETHING_NEW")), ("", ("UNKNOWN", ""))],
)  # fmt: skip
def test_status_parsing_is_lenient(raw, expected):
    assert parse_order_status(raw) == expected


def test_timestamps_seconds_or_ms():
    assert to_ms("1725868859") == 1_725_868_859_000
    assert to_ms(1725868859) == 1_725_868_859_000
    assert to_ms("1725958682125") == 1_725_958_682_125
    assert to_ms(None) == 0 and to_ms("") == 0


def test_trade1_six_makers_one_ours_on_the_same_token():
    ev = decode_one("ws_user_trade1.json")
    assert type(ev) is TradeEvent and len(ev.maker_orders) == 6 and ev.bucket_index == 0
    (fill,) = FillTracker(ME).fills_in(ev)
    # our maker order sold Yes to the taker who bought Yes at 0.518
    assert (fill.token, fill.side, fill.price, fill.size, fill.status, fill.maker) == (
        YES,
        SELL,
        5180,
        5 * SH,
        "MINED",
        True,
    )
    assert fill.order_id.startswith("0xab679e56") and fill.t_ms == 1_725_868_859_000


def test_trade1_complementary_maker():
    ev = decode_one("ws_user_trade1.json")
    (fill,) = FillTracker("78132bc3-22af-6aa2-79ae-11929f821cae").fills_in(ev)
    assert (fill.token, fill.side, fill.price, fill.size) == (NO, BUY, 4820, 10 * SH)  # BUY No: a mint


def test_trade1_every_maker_found_by_order_id():
    ev = decode_one("ws_user_trade1.json")
    ids = {m.order_id for m in ev.maker_orders}
    fills = FillTracker("not-us", ids.__contains__).fills_in(ev)
    assert {f.order_id for f in fills} == ids and sum(f.size for f in fills) == sum(
        int(round(float(m.matched_amount) * 100)) * 10_000 for m in ev.maker_orders
    )


def test_trade2_we_are_the_taker():
    ev = decode_one("ws_user_trade2.json")
    (fill,) = FillTracker(ME).fills_in(ev)
    assert (fill.side, fill.price, fill.size, fill.maker, fill.status) == (BUY, 5200, 5 * SH, False, "MATCHED")
    assert fill.order_id == ev.taker_order_id and fill.t_ms == 1_725_958_681_000


def test_trade3_cross_token_maker_fill():
    ev = decode_one("ws_user_trade3.json")
    (fill,) = FillTracker("a93a3d32-74fa-dd2b-4b67-98bfa6fc5cb5").fills_in(ev)
    # the taker bought No at 0.49; our resting BUY of Yes at 0.513 was matched against it
    assert ev.asset_id == YES and ev.outcome == "No"
    assert (fill.token, fill.side, fill.price, fill.size, fill.status) == (YES, BUY, 5130, 5 * SH, "CONFIRMED")


def test_trade4_two_of_our_makers():
    fills = FillTracker("a93a3d32-74fa-dd2b-4b67-98bfa6fc5cb5").fills_in(decode_one("ws_user_trade4.json"))
    assert [(f.price, f.size) for f in fills] == [(4000, 5 * SH), (3000, 5 * SH)]


def test_duplicates_and_settlement_progression():
    raw = orjson.loads(capture("ws_user_trade3.json"))
    tracker = FillTracker("a93a3d32-74fa-dd2b-4b67-98bfa6fc5cb5")
    codec = UserCodec()

    def send(status):
        return tracker.on_trade(codec.decode(orjson.dumps(dict(raw, status=status)))[0])

    assert [u.kind for u in send("MATCHED")] == [NEW]
    assert send("MATCHED") == [] and tracker.duplicates == 1  # a repeated message: one fill
    assert [u.kind for u in send("MINED")] == [STATUS]
    assert [u.kind for u in send("RETRYING")] == [STATUS]
    assert [(u.kind, u.fill.status) for u in send("FAILED")] == [(REVERSAL, "FAILED")]
    assert send("CONFIRMED") == [] and tracker.stale == 1  # nothing after a final state


def test_array_frames_pong_and_errors():
    codec = UserCodec()
    frame = b"[" + capture("ws_order_placement.json") + b"," + capture("ws_user_trade2.json") + b"]"
    assert [type(e) for e in codec.decode(frame)] == [OrderEvent, TradeEvent]
    assert [type(e) for e in codec.decode(b"PONG")] == [PongFrame]
    assert codec.decode(b'{"event_type": "notice", "x": 1}') == [] and codec.unknown_event_types == {"notice": 1}
    with pytest.raises(FrameError):
        codec.decode(b"{oops")
    with pytest.raises(FrameError, match="bad trade message"):
        codec.decode(b'{"event_type": "trade", "id": "t"}')
    raw = orjson.loads(capture("ws_user_trade2.json"))
    raw["bucket_index"] = "3"
    raw.pop("match_time")
    raw["matchtime"] = 1725958681
    ev = codec.decode(orjson.dumps(raw))[0]
    assert ev.bucket_index == "3" and FillTracker(ME).fills_in(ev)[0].t_ms == 1_725_958_681_000
