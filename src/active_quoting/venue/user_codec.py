"""User-channel codec: ``order`` and ``trade`` events, and our fills out of the trades.

Formats: ``../shared/protocol/POLYMARKET.md`` §3; captures ``ws_order_*``, ``ws_user_*``.
Parsing is lenient where the venue has been inconsistent: ``matchtime``/``match_time``,
``bucket_index`` as string or integer, seconds or milliseconds, ``status`` values such as
``CANCELED_<reason>`` or ``INVALID``, an empty ``size_matched``.

Our fills in a trade are the ``maker_orders[]`` entries whose ``owner`` is our API key or
whose ``order_id`` is one of our orders (possibly on the complementary token), and the
top-level taker side when the taker order is ours. A fill is identified by (trade id, order
id): the first message emits it, later statuses update it, FAILED after it reverses it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar, Union

import msgspec

from active_quoting import core
from active_quoting.errors import FrameError, UnitsError
from active_quoting.model import BUY, FAILED, FINAL_STATUSES, SELL, STATUSES, Fill

_log = logging.getLogger(__name__)

Stamp = Union[str, int, None]  # noqa: UP007 - msgspec needs a runtime Union


class MakerOrder(msgspec.Struct, gc=False):
    order_id: str
    matched_amount: str
    price: str
    asset_id: str
    owner: str = ""
    side: str = ""
    outcome: str = ""
    maker_address: str = ""
    fee_rate_bps: str = ""


class TradeEvent(msgspec.Struct, tag_field="event_type", tag="trade"):
    EVENT_TYPE: ClassVar[str] = "trade"
    id: str
    asset_id: str
    side: str
    price: str
    size: str
    status: str
    market: str = ""
    taker_order_id: str = ""
    owner: str = ""
    trade_owner: str = ""
    trader_side: str = ""
    maker_orders: list[MakerOrder] = []
    match_time: Stamp = None
    matchtime: Stamp = None
    last_update: Stamp = None
    timestamp: Stamp = None
    bucket_index: Stamp = None
    outcome: str = ""
    fee_rate_bps: str = ""
    transaction_hash: str = ""


class OrderEvent(msgspec.Struct, tag_field="event_type", tag="order"):
    EVENT_TYPE: ClassVar[str] = "order"
    id: str
    type: str = ""
    status: str = ""
    asset_id: str = ""
    market: str = ""
    side: str = ""
    price: str = ""
    original_size: str = ""
    size_matched: str = ""
    owner: str = ""
    order_owner: str = ""
    order_type: str = ""
    outcome: str = ""
    maker_address: str = ""
    associate_trades: list[str] | None = None
    timestamp: Stamp = None
    created_at: Stamp = None
    expiration: Stamp = None


class PongFrame(msgspec.Struct, frozen=True):
    EVENT_TYPE: ClassVar[str] = "PONG"


UserMessage = Union[TradeEvent, OrderEvent]  # noqa: UP007
UserEvent = Union[TradeEvent, OrderEvent, PongFrame]  # noqa: UP007
_PONG = [PongFrame()]

# Normalized order statuses.
LIVE, MATCHED_ORDER, CANCELED, INVALID, DELAYED, UNMATCHED, UNKNOWN = (
    "LIVE", "MATCHED", "CANCELED", "INVALID", "DELAYED", "UNMATCHED", "UNKNOWN",
)  # fmt: skip
_ORDER_STATUSES = (LIVE, MATCHED_ORDER, CANCELED, INVALID, DELAYED, UNMATCHED)
TERMINAL_ORDER_STATUSES = (MATCHED_ORDER, CANCELED, INVALID)


def parse_order_status(raw: str) -> tuple[str, str]:
    """(status, reason): ``CANCELED_order couldn't be fully filled...`` -> (CANCELED, "order
    couldn't ..."); ``ORDER_STATUS_LIVE`` -> LIVE; anything unrecognised -> UNKNOWN."""
    text = (raw or "").strip()
    upper = text.upper()
    if upper.startswith("ORDER_STATUS_"):
        upper = upper[len("ORDER_STATUS_") :]
        text = text[len("ORDER_STATUS_") :]
    if upper.startswith("CANCELLED"):
        upper = "CANCELED" + upper[len("CANCELLED") :]
        text = "CANCELED" + text[len("CANCELLED") :]
    for status in _ORDER_STATUSES:
        if upper == status:
            return status, ""
        if upper.startswith(status + "_"):
            return status, text[len(status) + 1 :]
    return UNKNOWN, text


def to_ms(value: Stamp) -> int:
    """A timestamp in seconds or milliseconds (string or integer) as milliseconds; 0 if absent."""
    if value is None or value == "":
        return 0
    if isinstance(value, str):
        text = value.strip()
        if not text.isdigit():
            raise UnitsError("timestamp", value, "not a whole number")
        value = int(text)
    if type(value) is not int or value < 0:
        raise UnitsError("timestamp", value, "not a whole number")
    return value * 1000 if value < 100_000_000_000 else value


@dataclass(frozen=True)
class OrderUpdate:
    """An ``order`` event in fixed point."""

    order_id: str
    kind: str  # PLACEMENT / UPDATE / CANCELLATION
    status: str
    reason: str
    market: str
    token: str
    side: str
    price: int
    original_size: int
    size_matched: int
    t_ms: int

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_ORDER_STATUSES


def order_update(ev: OrderEvent) -> OrderUpdate:
    status, reason = parse_order_status(ev.status)
    return OrderUpdate(
        order_id=ev.id,
        kind=ev.type.upper(),
        status=status,
        reason=reason,
        market=ev.market,
        token=ev.asset_id,
        side=ev.side.upper(),
        price=core.parse_price(ev.price) if ev.price else core.NO_PRICE,
        original_size=core.parse_size(ev.original_size, "original_size") if ev.original_size else 0,
        size_matched=core.parse_size(ev.size_matched, "size_matched") if ev.size_matched else 0,
        t_ms=to_ms(ev.timestamp) or to_ms(ev.created_at),
    )


class UserCodec:
    """Decodes user-channel frames; counts unknown event types (logged once each)."""

    def __init__(self) -> None:
        self._decoder = msgspec.json.Decoder(Union[list[UserMessage], UserMessage])  # noqa: UP007
        self.unknown_event_types: Counter[str] = Counter()
        self.inferred_event_types: Counter[str] = Counter()

    def decode(self, frame: bytes | str) -> list[UserEvent]:
        if frame in (b"PONG", "PONG"):
            return _PONG  # type: ignore[return-value]
        try:
            decoded = self._decoder.decode(frame)
        except msgspec.ValidationError:
            return self._decode_slow(frame)
        except msgspec.DecodeError as exc:
            raise FrameError(f"malformed JSON ({exc})", frame) from None
        return decoded if type(decoded) is list else [decoded]  # type: ignore[return-value]

    def _decode_slow(self, frame: bytes | str) -> list[UserEvent]:
        try:
            raw = msgspec.json.decode(frame)
        except msgspec.DecodeError as exc:
            raise FrameError(f"malformed JSON ({exc})", frame) from None
        events: list[UserEvent] = []
        for item in raw if isinstance(raw, list) else [raw]:
            if not isinstance(item, dict):
                raise FrameError("user message is not a JSON object", frame)
            event_type = item.get("event_type")
            if event_type is None:
                # Seen on venue-side cancellations: no event_type; the shape says which it is.
                if "maker_orders" in item or "taker_order_id" in item:
                    event_type = "trade"
                elif item.get("type") in ("PLACEMENT", "UPDATE", "CANCELLATION") or "original_size" in item:
                    event_type = "order"
                else:
                    raise FrameError("user message without an event_type", frame)
                self.inferred_event_types[event_type] += 1
                item = dict(item, event_type=event_type)
            cls = {"trade": TradeEvent, "order": OrderEvent}.get(event_type)
            if cls is None:
                if event_type not in self.unknown_event_types:
                    _log.warning("unknown user event_type %r (counted, logged once)", event_type)
                self.unknown_event_types[str(event_type)] += 1
                continue
            try:
                events.append(msgspec.convert(item, cls))
            except msgspec.ValidationError as exc:
                raise FrameError(f"bad {item['event_type']} message ({exc})", frame) from None
        return events


# -- our fills ----------------------------------------------------------------------------

NEW, STATUS, REVERSAL = "fill", "status", "reversal"


@dataclass(frozen=True)
class FillUpdate:
    kind: str  # NEW (first sight), STATUS (settlement progressed), REVERSAL (FAILED)
    fill: Fill


def _opposite(side: str) -> str:
    return SELL if side == BUY else BUY


class FillTracker:
    """Turns trade messages into our fills, once each, through the settlement states."""

    def __init__(self, api_key: str, is_our_order: Callable[[str], bool] = lambda _oid: False) -> None:
        self.api_key = api_key
        self.is_our_order = is_our_order
        self._status: dict[tuple[str, str], str] = {}
        self.duplicates = 0
        self.stale = 0

    def _ours(self, owner: str, order_id: str) -> bool:
        return (bool(owner) and owner == self.api_key) or self.is_our_order(order_id)

    def fills_in(self, ev: TradeEvent) -> list[Fill]:
        """Our fills in one trade message (no de-duplication)."""
        status = ev.status.upper()
        if status not in STATUSES:
            raise UnitsError("status", ev.status, f"expected one of {STATUSES}")
        t_ms = to_ms(ev.match_time) or to_ms(ev.matchtime) or to_ms(ev.timestamp)
        taker_side = ev.side.upper()
        out = []
        for m in ev.maker_orders:
            if not self._ours(m.owner, m.order_id):
                continue
            side = m.side.upper() if m.side else (
                _opposite(taker_side) if m.asset_id == ev.asset_id else taker_side  # a mint or merge
            )  # fmt: skip
            out.append(
                Fill(
                    ev.id,
                    m.order_id,
                    ev.market,
                    m.asset_id,
                    side,
                    core.parse_price(m.price),
                    core.parse_size(m.matched_amount, "matched_amount"),
                    status,
                    t_ms,
                    True,
                )  # fmt: skip
            )
        taker_is_us = ev.trader_side.upper() == "TAKER" and ev.owner == self.api_key
        if taker_is_us or (ev.taker_order_id and self.is_our_order(ev.taker_order_id)):
            out.append(
                Fill(
                    ev.id,
                    ev.taker_order_id,
                    ev.market,
                    ev.asset_id,
                    taker_side,
                    core.parse_price(ev.price),
                    core.parse_size(ev.size),
                    status,
                    t_ms,
                    False,
                )  # fmt: skip
            )
        return out

    def on_trade(self, ev: TradeEvent) -> list[FillUpdate]:
        updates = []
        for fill in self.fills_in(ev):
            known = self._status.get(fill.key)
            if known is None:
                self._status[fill.key] = fill.status
                updates.append(FillUpdate(NEW, fill))
            elif known == fill.status:
                self.duplicates += 1
            elif known in FINAL_STATUSES:
                self.stale += 1  # a late, out-of-order message after the final state
            else:
                self._status[fill.key] = fill.status
                updates.append(FillUpdate(REVERSAL if fill.status == FAILED else STATUS, fill))
        return updates

    def status_of(self, key: tuple[str, str]) -> str | None:
        return self._status.get(key)

    def forget(self, keys: Iterable[tuple[str, str]]) -> None:
        """Fills of a pruned window leave memory: a late repeat is recognised by the store."""
        for key in keys:
            self._status.pop(key, None)
