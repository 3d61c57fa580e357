"""Fixed-point units: venue strings parse exactly, bad input is refused with a named field."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from active_quoting.errors import UnitsError

VENUE_PRICES = {
    ".48": 4800,
    "0.5": 5000,
    "0": 0,
    "1": 10_000,
    "0.951": 9510,
    "0.001": 10,
    "0.0001": 1,
    "0.005": 50,
    "0.0025": 25,
    "0.1": 1000,
    "0.50000": 5000,  # exact trailing zeros past the scale are accepted
}
VENUE_SIZES = {
    "1016.87": 1_016_870_000,
    "219.217767": 219_217_767,
    "0": 0,
    "1": 1_000_000,
    "9000023.58": 9_000_023_580_000,
    "16069385.26": 16_069_385_260_000,
    "5": 5_000_000,
    ".5": 500_000,
}


@pytest.mark.parametrize(("text", "units"), VENUE_PRICES.items())
def test_parse_price_venue_strings(impl, text, units):
    assert impl.parse_price(text) == units


@pytest.mark.parametrize(("text", "micro"), VENUE_SIZES.items())
def test_parse_size_venue_strings(impl, text, micro):
    assert impl.parse_size(text) == micro


def test_every_venue_tick_is_whole_units(impl):
    for tick in ("0.1", "0.01", "0.005", "0.001", "0.0025", "0.0001"):
        assert impl.parse_price(tick) >= 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0.00001", "too many decimals"),
        ("0.12345", "too many decimals"),
        ("abc", "not a plain decimal string"),
        ("", "not a plain decimal string"),
        (".", "not a plain decimal string"),
        ("1.", "not a plain decimal string"),
        ("1.2.3", "not a plain decimal string"),
        (" 0.5", "not a plain decimal string"),
        ("0.5 ", "not a plain decimal string"),
        ("+0.5", "not a plain decimal string"),
        ("1e-3", "not a plain decimal string"),
        ("0,5", "not a plain decimal string"),
        ("٠.٥", "not a plain decimal string"),  # Arabic-Indic digits are not ASCII digits
        ("NaN", "not a plain decimal string"),
        ("-0.5", "negative value"),
        ("-0", "negative value"),
        ("1.0001", "out of range"),
        ("2", "out of range"),
        ("9" * 40, "out of range"),
    ],
)
def test_parse_price_refuses(impl, text, reason):
    with pytest.raises(UnitsError) as err:
        impl.parse_price(text, "best_bid")
    assert err.value.field == "best_bid"
    assert err.value.reason == reason
    assert str(err.value).startswith(f"best_bid: {reason}")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0.0000001", "too many decimals"),
        ("900000000.000001", "out of range"),
        ("1000000000", "out of range"),
        ("-5", "negative value"),
        ("5x", "not a plain decimal string"),
    ],
)
def test_parse_size_refuses(impl, value, reason):
    with pytest.raises(UnitsError, match=f"^size: {reason}"):
        impl.parse_size(value)


@pytest.mark.parametrize("value", [0.5, 5, None, b"0.5"])
def test_parse_refuses_non_strings(impl, value):
    with pytest.raises(UnitsError, match="expected a decimal string"):
        impl.parse_price(value)


def test_max_size_is_accepted(impl):
    assert impl.parse_size("900000000") == impl.MAX_SIZE


@pytest.mark.parametrize(
    ("units", "text"),
    [(0, "0"), (10_000, "1"), (5000, "0.5"), (9510, "0.951"), (1, "0.0001"), (25, "0.0025")],
)
def test_format_price(impl, units, text):
    assert impl.format_price(units) == text


@pytest.mark.parametrize(
    ("micro", "text"),
    [(1_016_870_000, "1016.87"), (219_217_767, "219.217767"), (40_000_000, "40"), (0, "0"), (1, "0.000001")],
)
def test_format_size(impl, micro, text):
    assert impl.format_size(micro) == text


@pytest.mark.parametrize(
    ("fn", "value"), [("format_price", -1), ("format_price", 10_001), ("format_size", -1), ("format_price", 0.5)]
)
def test_format_refuses(impl, fn, value):
    with pytest.raises(UnitsError):
        getattr(impl, fn)(value)


@given(st.integers(min_value=0, max_value=10_000))
def test_price_round_trip(c_core, py_core, units):
    for m in (c_core, py_core):
        text = m.format_price(units)
        assert m.parse_price(text) == units
        assert m.format_price(m.parse_price(text)) == text


@given(st.integers(min_value=0, max_value=900_000_000_000_000))
def test_size_round_trip(c_core, py_core, micro):
    for m in (c_core, py_core):
        assert m.parse_size(m.format_size(micro)) == micro


def _outcome(fn, value):
    try:
        return ("ok", fn(value))
    except UnitsError as exc:
        return ("err", str(exc))


decimal_like = st.from_regex(r"\A-?[0-9]{0,12}(\.[0-9]{0,9})?\Z", fullmatch=True)


@given(st.one_of(decimal_like, st.text(max_size=40), st.text(alphabet="0123456789.-", max_size=40)))
def test_twins_agree_on_any_string(c_core, py_core, text):
    assert _outcome(c_core.parse_price, text) == _outcome(py_core.parse_price, text)
    assert _outcome(c_core.parse_size, text) == _outcome(py_core.parse_size, text)
