"""The RTDS price parser on the documented shapes (tests/fixtures/rtds_*.json): exact fixed-point
prices, malformed frames refused with a typed error, other topics ignored and counted, and the
subscribe message in the documented form."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from active_quoting.venue.spot_feed import (
    SPOT_SCALE,
    SpotFeedError,
    SpotTick,
    decode_rtds,
    parse_rtds,
    subscribe_message,
)

FIXTURES = Path(__file__).parent / "fixtures"
MESSAGES = orjson.loads((FIXTURES / "rtds_messages.json").read_bytes())
SUBSCRIBE = orjson.loads((FIXTURES / "rtds_subscribe.json").read_bytes())


def test_scale_is_1e8():
    assert SPOT_SCALE == 10**8


@pytest.mark.parametrize("case", MESSAGES["messages"], ids=lambda c: c["frame"]["payload"]["symbol"])
def test_documented_messages_parse_to_exact_ticks(case):
    assert parse_rtds(orjson.dumps(case["frame"])) == [SpotTick(**case["tick"])]


def test_other_topics_are_ignored_and_counted():
    for frame in MESSAGES["ignored"]:
        assert decode_rtds(orjson.dumps(frame)) == ([], 1)
    # A price topic with another message type is not a price either.
    other = dict(MESSAGES["messages"][0]["frame"], type="snapshot")
    assert decode_rtds(orjson.dumps(other)) == ([], 1)


def test_pong_and_empty_frames_are_nothing():
    assert parse_rtds(b"PONG") == [] and parse_rtds(b"") == []
    assert decode_rtds(b"PONG") == ([], 0)


def test_the_number_is_read_from_its_text_not_a_float():
    frame = (
        b'{"topic":"crypto_prices_chainlink","type":"update","timestamp":1,'
        b'"payload":{"symbol":"BTC/USD","timestamp":1753314088000,"value":%s}}'
    )
    # 0.1 + 0.2 style values: a float round trip would give ...0000000004 or similar.
    assert parse_rtds(frame % b"97000.30000000")[0].price == 9_700_030_000_000
    # Past 8 decimals: rounded half to even (…785 -> …78, …795 -> …80, …7851 -> …79).
    assert parse_rtds(frame % b"1.000000785")[0].price == 100_000_078
    assert parse_rtds(frame % b"1.000000795")[0].price == 100_000_080
    assert parse_rtds(frame % b"1.0000007851")[0].price == 100_000_079
    assert parse_rtds(frame % b"6.7e4")[0].price == 6_700_000_000_000
    assert parse_rtds(frame % b'"67234.5"')[0].price == 6_723_450_000_000  # a string value
    # A value past float precision stays exact.
    assert parse_rtds(frame % b"123456789012.12345678")[0].price == 12_345_678_901_212_345_678
    assert parse_rtds(frame % b"1")[0] == SpotTick("chainlink", "btc", SPOT_SCALE, 1753314088000)


_FRAME = (
    b'{"topic":"crypto_prices_chainlink","type":"update","timestamp":1,'
    b'"payload":{"symbol":"BTC/USD","timestamp":1753314088000,"value":%s%s}}'
)


@given(
    whole=st.integers(0, 10**15),
    frac=st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=24)),
    exp=st.one_of(
        st.just(""),
        st.builds(
            lambda e, sign, mark: f"{mark}{sign}{e}",
            st.integers(0, 30),
            st.sampled_from(["", "+", "-"]),
            st.sampled_from(["e", "E"]),
        ),
    ),
    quoted=st.booleans(),
)
@example(whole=1, frac="000000785", exp="", quoted=False)  # a tie: half to even, down
@example(whole=1, frac="000000795", exp="", quoted=False)  # a tie: half to even, up
@example(whole=0, frac="5", exp="e-8", quoted=True)  # exactly half a unit: 0
@example(whole=1, frac="5", exp="e-8", quoted=False)  # 1.5 units: 2
def test_the_price_is_the_exact_decimal_rounded_half_to_even(whole, frac, exp, quoted):
    """The integer parse is the definition's: round() of the exact Fraction of the text."""
    text = f"{whole}{'.' + frac if frac else ''}{exp}"
    want = round(Fraction(text) * SPOT_SCALE)
    quote = b'"' if quoted else b""
    frame = _FRAME % (quote + text.encode(), quote)
    if want <= 0:
        with pytest.raises(SpotFeedError, match="below 1e-8"):
            parse_rtds(frame)
    else:
        assert parse_rtds(frame)[0].price == want


@given(st.integers(1, 10**30))
@example(5 * 10**9)  # half a unit: rounds to 0, refused
@example(15 * 10**9)  # 1.5 units: 2
def test_full_accuracy_value_rounds_as_its_fraction(value):
    frame = orjson.dumps({
        "topic": "crypto_prices_chainlink", "type": "update", "timestamp": 2,
        "payload": {"symbol": "btc/usd", "timestamp": 1780000000000, "value": 1.0,
                    "full_accuracy_value": str(value)},
    })  # fmt: skip
    want = round(Fraction(value, 10**10))
    if want <= 0:  # a price of 0 is refused as the decimal value's is
        with pytest.raises(SpotFeedError, match="below 1e-8"):
            parse_rtds(frame)
    else:
        assert parse_rtds(frame)[0].price == want


def test_full_accuracy_value_is_preferred():
    frame = orjson.dumps({
        "topic": "crypto_prices_chainlink", "type": "update", "timestamp": 2,
        "payload": {"symbol": "btc/usd", "timestamp": 1780000000000, "value": 105123.45,
                    "full_accuracy_value": "105123456789012345678901"},
    })  # fmt: skip
    # 105123.456789012345678901 -> 1e-8 units, half to even: ...45678|9012... rounds up.
    assert parse_rtds(frame)[0].price == 10_512_345_678_901


def test_an_array_of_messages_is_read_whole():
    frames = [case["frame"] for case in MESSAGES["messages"]]
    ticks = parse_rtds(orjson.dumps(frames))
    assert ticks == [SpotTick(**case["tick"]) for case in MESSAGES["messages"]]


def _price(value: object, symbol: str = "btc/usd", topic: str = "crypto_prices_chainlink") -> bytes:
    return orjson.dumps(
        {
            "topic": topic,
            "type": "update",
            "timestamp": 1,
            "payload": {"symbol": symbol, "timestamp": 5, "value": value},
        }
    )


@pytest.mark.parametrize(
    "frame",
    [
        b"{not json",
        b"[1, 2]",
        b'"PING"',
        b'{"topic":"crypto_prices_chainlink","type":"update","timestamp":1}',  # no payload
        b'{"topic":"crypto_prices","type":"update","timestamp":1,"payload":{"symbol":"btcusdt","timestamp":5}}',
        b'{"topic":"crypto_prices","type":"update","timestamp":1,"payload":{"symbol":"btcusdt","value":1.5}}',
        _price(-1.5),
        _price(0),
        _price("1/2"),
        _price("nan"),
        _price(" 1.5"),
        _price(True),
        _price(None),
        _price(1e-9),
        _price(1.5, symbol="btc-usd"),
        _price(1.5, symbol="btcusdt"),  # a Binance symbol on the Chainlink topic
        _price(1.5, symbol="btc/usd", topic="crypto_prices"),
        _price(1.5, symbol="usdt", topic="crypto_prices"),
        orjson.dumps({"topic": "crypto_prices_chainlink", "type": "update", "timestamp": 1,
                      "payload": {"symbol": "btc/usd", "timestamp": 5, "value": 1.5, "full_accuracy_value": "1.5"}}),
    ],
)  # fmt: skip
def test_malformed_frames_raise_a_typed_error(frame):
    with pytest.raises(SpotFeedError) as info:
        parse_rtds(frame)
    assert isinstance(info.value, ValueError)
    assert str(info.value)  # says what is wrong and shows the frame


def test_subscribe_message_has_the_documented_shape():
    msg = orjson.loads(subscribe_message(["eth"], ["chainlink"]))
    assert msg == SUBSCRIBE["chainlink_one_symbol"]
    msg = orjson.loads(subscribe_message(["sol", "btc", "eth"], ["binance"]))
    assert msg == SUBSCRIBE["binance_some"]
    both = orjson.loads(subscribe_message(["btc", "eth"], ["chainlink", "binance"], action="unsubscribe"))
    assert both["action"] == "unsubscribe"
    assert [(s["topic"], s["type"]) for s in both["subscriptions"]] == [
        ("crypto_prices_chainlink", "*"), ("crypto_prices_chainlink", "*"), ("crypto_prices", "update"),
    ]  # fmt: skip
    assert orjson.loads(both["subscriptions"][1]["filters"]) == {"symbol": "eth/usd"}
