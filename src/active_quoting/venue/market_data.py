"""Market data processing: frames in, books updated, events out. No I/O, never awaits.

The WebSocket client hands every received frame to :meth:`MarketData.on_frame`, which decodes
it (``market_codec``), applies ``book`` / ``price_change`` / ``tick_size_change`` straight to
the core's :class:`BookSet`, and returns the events for listeners. A bad frame or a bad value
is counted and logged; the feed carries on with its books untouched by it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from active_quoting import core
from active_quoting.errors import FrameError, UnitsError
from active_quoting.venue.market_codec import (
    BookEvent,
    MarketCodec,
    MarketEvent,
    PriceChangeEvent,
    TickSizeChangeEvent,
)

_log = logging.getLogger(__name__)

# How many error messages are kept for reports (the count is always exact).
ERROR_SAMPLES = 20


class MarketData:
    """Feeds decoded market-channel events into a BookSet and keeps feed statistics."""

    def __init__(self, books: object | None = None, codec: MarketCodec | None = None) -> None:
        self.books = books if books is not None else core.BookSet()
        self.codec = codec if codec is not None else MarketCodec()
        self.frames = 0
        self.errors = 0
        self.error_samples: list[str] = []
        self.event_counts: Counter[str] = Counter()
        self._apply: dict[type, Callable[[object], object]] = {
            BookEvent: self.books.apply_book,  # type: ignore[attr-defined]
            PriceChangeEvent: self.books.apply_price_change,  # type: ignore[attr-defined]
            TickSizeChangeEvent: self.books.apply_tick_size_change,  # type: ignore[attr-defined]
        }

    def on_frame(self, frame: bytes | str) -> list[MarketEvent]:
        """Decode one frame and apply it to the books; returns the events it carried.

        Events whose values the core refuses are dropped from the result (and counted), so a
        listener never sees an event that did not reach the books.
        """
        self.frames += 1
        try:
            events = self.codec.decode(frame)
        except FrameError as exc:
            self._error(str(exc))
            return []
        apply = self._apply
        counts = self.event_counts
        refused: list[MarketEvent] | None = None
        for ev in events:
            counts[ev.EVENT_TYPE] += 1
            fn = apply.get(type(ev))
            if fn is not None:
                try:
                    fn(ev)
                except UnitsError as exc:
                    self._error(f"{ev.EVENT_TYPE}: {exc}")
                    refused = (refused or []) + [ev]
        if refused:
            return [ev for ev in events if not any(ev is r for r in refused)]
        return events

    def _error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < ERROR_SAMPLES:
            self.error_samples.append(message)
        _log.warning("market frame refused: %s", message)

    @property
    def orphans(self) -> int:
        return self.books.orphans  # type: ignore[attr-defined,no-any-return]

    @property
    def desync_marks(self) -> int:
        return self.books.desync_marks  # type: ignore[attr-defined,no-any-return]
