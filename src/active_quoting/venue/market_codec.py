"""Market-channel codec: a WebSocket frame (bytes or str) becomes typed events.

The fast path is one msgspec decode straight into tagged structs (the venue's field names,
decimal strings kept as sent); the core parses those strings to fixed point when it applies
them. Anything the fast path refuses (an unknown ``event_type``, a legacy ``price_change``
shape it cannot express, a malformed frame) goes through a slow path that classifies it:
unknown event types are counted and logged once per type, malformed input raises
:class:`~active_quoting.errors.FrameError`.

Formats: ``../shared/protocol/POLYMARKET.md`` §2; captures in ``../shared/protocol/captures``.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import ClassVar, Union

import msgspec

from active_quoting.errors import FrameError

_log = logging.getLogger(__name__)


class Level(msgspec.Struct, frozen=True, gc=False):
    price: str
    size: str


class BookEvent(msgspec.Struct, tag_field="event_type", tag="book", gc=False):
    """Full L2 snapshot of one token (bids ascending, asks descending as sent)."""

    EVENT_TYPE: ClassVar[str] = "book"
    asset_id: str
    market: str = ""
    bids: list[Level] = []
    asks: list[Level] = []
    timestamp: str | int = ""
    hash: str = ""
    tick_size: str = ""
    last_trade_price: str = ""


class PriceChangeEntry(msgspec.Struct, gc=False):
    """One level change: ``size`` is the new absolute size (``"0"`` removes the level)."""

    asset_id: str
    price: str
    size: str
    side: str
    hash: str = ""
    # Top of book after the whole batch; "" when the format does not state it.
    best_bid: str = ""
    best_ask: str = ""


class PriceChangeEvent(msgspec.Struct, tag_field="event_type", tag="price_change", gc=False):
    """Level changes in the current ``price_changes[]`` format (the legacy formats are
    rewritten into it by the codec)."""

    EVENT_TYPE: ClassVar[str] = "price_change"
    market: str = ""
    price_changes: list[PriceChangeEntry] = []
    timestamp: str | int = ""


class _LegacyChange(msgspec.Struct):
    price: str
    size: str
    side: str


class _LegacyPriceChange(msgspec.Struct):
    """The two pre-2025-09-15 shapes: one level at the top level (format A) or a per-asset
    ``changes[]`` (format B). Neither states the top of book."""

    asset_id: str
    market: str = ""
    changes: list[_LegacyChange] = []
    price: str = ""
    size: str = ""
    side: str = ""
    hash: str = ""
    timestamp: str | int = ""


class LastTradePriceEvent(msgspec.Struct, tag_field="event_type", tag="last_trade_price"):
    """A trade; ``side`` is the taker's side."""

    EVENT_TYPE: ClassVar[str] = "last_trade_price"
    asset_id: str
    price: str
    size: str = ""
    side: str = ""
    market: str = ""
    fee_rate_bps: str = ""
    timestamp: str | int = ""
    transaction_hash: str = ""


class TickSizeChangeEvent(msgspec.Struct, tag_field="event_type", tag="tick_size_change"):
    EVENT_TYPE: ClassVar[str] = "tick_size_change"
    asset_id: str
    new_tick_size: str
    old_tick_size: str = ""
    market: str = ""
    timestamp: str | int = ""


class BestBidAskEvent(msgspec.Struct, tag_field="event_type", tag="best_bid_ask"):
    EVENT_TYPE: ClassVar[str] = "best_bid_ask"
    asset_id: str
    best_bid: str
    best_ask: str
    spread: str = ""
    market: str = ""
    timestamp: str | int = ""


class NewMarketEvent(msgspec.Struct, tag_field="event_type", tag="new_market"):
    EVENT_TYPE: ClassVar[str] = "new_market"
    market: str
    assets_ids: list[str] = []
    outcomes: list[str] = []
    id: str = ""
    question: str = ""
    slug: str = ""
    condition_id: str = ""
    clob_token_ids: list[str] = []
    order_price_min_tick_size: str = ""
    active: bool | None = None
    fees_enabled: bool | None = None
    fee_schedule: dict[str, object] | None = None
    timestamp: str | int = ""


class MarketResolvedEvent(msgspec.Struct, tag_field="event_type", tag="market_resolved"):
    EVENT_TYPE: ClassVar[str] = "market_resolved"
    market: str
    assets_ids: list[str] = []
    winning_asset_id: str = ""
    winning_outcome: str = ""
    id: str = ""
    question: str = ""
    slug: str = ""
    timestamp: str | int = ""


class PongFrame(msgspec.Struct, frozen=True):
    """The text frame ``PONG``: the answer to our ``PING``."""

    EVENT_TYPE: ClassVar[str] = "PONG"


class NoNewAssetsFrame(msgspec.Struct, frozen=True):
    """The text frame ``NO NEW ASSETS`` sent periodically with custom features on."""

    EVENT_TYPE: ClassVar[str] = "NO NEW ASSETS"


MarketMessage = Union[  # noqa: UP007 - msgspec needs a runtime Union object here
    BookEvent,
    PriceChangeEvent,
    LastTradePriceEvent,
    TickSizeChangeEvent,
    BestBidAskEvent,
    NewMarketEvent,
    MarketResolvedEvent,
]
MarketEvent = Union[MarketMessage, PongFrame, NoNewAssetsFrame]  # noqa: UP007

EVENT_TYPES: dict[str, type] = {
    cls.EVENT_TYPE: cls
    for cls in (
        BookEvent,
        PriceChangeEvent,
        LastTradePriceEvent,
        TickSizeChangeEvent,
        BestBidAskEvent,
        NewMarketEvent,
        MarketResolvedEvent,
    )
}

_PONG = PongFrame()
_NO_NEW_ASSETS = NoNewAssetsFrame()
_TEXT_FRAMES: dict[bytes | str, list[MarketEvent]] = {
    b"PONG": [_PONG],
    "PONG": [_PONG],
    b"NO NEW ASSETS": [_NO_NEW_ASSETS],
    "NO NEW ASSETS": [_NO_NEW_ASSETS],
}


def _legacy_price_change(raw: bytes | str | dict[str, object]) -> PriceChangeEvent:
    """Rewrite a legacy ``price_change`` (format A or B) into ``price_changes`` entries."""
    try:
        if isinstance(raw, dict):
            old = msgspec.convert(raw, _LegacyPriceChange)
        else:
            old = _LEGACY_DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        raise FrameError(f"bad price_change message ({exc})", raw if not isinstance(raw, dict) else repr(raw)) from None
    if old.changes:
        levels = [(c.price, c.size, c.side) for c in old.changes]
    elif old.price or old.size or old.side:
        levels = [(old.price, old.size, old.side)]
    else:
        levels = []  # an empty batch: nothing to apply
    return PriceChangeEvent(
        market=old.market,
        timestamp=old.timestamp,
        price_changes=[
            PriceChangeEntry(asset_id=old.asset_id, price=p, size=q, side=side, hash=old.hash) for p, q, side in levels
        ],
    )


_LEGACY_DECODER = msgspec.json.Decoder(_LegacyPriceChange)
# The hot message gets its own decoder: a tagged union whose tag comes last in the object
# (as the venue sends it) costs msgspec a second pass over the frame. The venue's compact
# form ends with this tail; anything else takes the general path, only slower.
_PRICE_CHANGE_DECODER = msgspec.json.Decoder(PriceChangeEvent)
_PRICE_CHANGE_TAIL = b'"event_type":"price_change"}'


class MarketCodec:
    """Decodes market-channel frames. Keeps the counts of what it could not use."""

    def __init__(self) -> None:
        self._decoder = msgspec.json.Decoder(Union[list[MarketMessage], MarketMessage])  # noqa: UP007
        self.unknown_event_types: Counter[str] = Counter()

    def decode(self, frame: bytes | str) -> list[MarketEvent]:
        """Decode one frame into events (a JSON array gives several, ``[]`` gives none).

        Raises FrameError on malformed JSON, a frame that is not an event object or array,
        or a known event missing required fields. Unknown event types are skipped and counted.
        """
        if len(frame) <= 13:  # len("NO NEW ASSETS"): only short frames can be text frames
            key = bytes(frame) if isinstance(frame, bytearray | memoryview) else frame
            text = _TEXT_FRAMES.get(key)
            if text is not None:
                return text
        if type(frame) is bytes and frame.endswith(_PRICE_CHANGE_TAIL):
            try:
                ev = _PRICE_CHANGE_DECODER.decode(frame)
            except msgspec.DecodeError:
                pass  # not what it looked like: the general path below classifies it
            else:
                return [ev if ev.price_changes else _legacy_price_change(frame)]
        try:
            decoded = self._decoder.decode(frame)
        except msgspec.ValidationError:
            return self._decode_slow(frame)
        except msgspec.DecodeError as exc:
            raise FrameError(f"malformed JSON ({exc})", frame) from None
        events = decoded if type(decoded) is list else [decoded]
        for ev in events:
            if type(ev) is PriceChangeEvent and not ev.price_changes:
                return self._decode_slow(frame)  # a legacy format (or an empty batch): rare
        return events  # type: ignore[return-value]

    def _decode_slow(self, frame: bytes | str) -> list[MarketEvent]:
        try:
            raw = msgspec.json.decode(frame)
        except msgspec.DecodeError as exc:
            raise FrameError(f"malformed JSON ({exc})", frame) from None
        items = raw if isinstance(raw, list) else [raw]
        events: list[MarketEvent] = []
        for item in items:
            if not isinstance(item, dict):
                raise FrameError("frame element is not a JSON object", frame)
            event_type = item.get("event_type")
            if not isinstance(event_type, str):
                raise FrameError("message without an event_type", frame)
            cls = EVENT_TYPES.get(event_type)
            if cls is None:
                if event_type not in self.unknown_event_types:
                    _log.warning("unknown market event_type %r (counted, logged once)", event_type)
                self.unknown_event_types[event_type] += 1
                continue
            try:
                ev = msgspec.convert(item, cls)
            except msgspec.ValidationError as exc:
                raise FrameError(f"bad {event_type} message ({exc})", frame) from None
            if cls is PriceChangeEvent and not ev.price_changes:
                ev = _legacy_price_change(item)
            events.append(ev)
        return events
