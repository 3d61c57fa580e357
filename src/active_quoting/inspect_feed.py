"""``active-quoting inspect``: replay a recorded market feed through the codec and books.

A recording holds one raw frame per line, exactly as received (JSON objects or arrays, or
text frames such as ``PONG``). The summary is JSON: per token the final top of book as the
venue writes prices, depth, tick, desync state; and counts of events, orphans, errors.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

from active_quoting import core
from active_quoting.venue.market_data import MarketData


def read_frames(path: Path) -> Iterator[bytes]:
    """Yield the frames of a recording (gzip is recognised by its magic bytes)."""
    with path.open("rb") as probe:
        gz = probe.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    with opener(path, "rb") as fh:  # type: ignore[operator]
        for line in fh:
            frame = line.rstrip(b"\r\n")
            if frame.strip():
                yield frame


def _price(units: int) -> str | None:
    return None if units == core.NO_PRICE else core.format_price(units)


def book_summary(book: object) -> dict[str, object]:
    b = book  # a core.Book
    return {
        "best_bid": _price(b.best_bid()),  # type: ignore[attr-defined]
        "best_ask": _price(b.best_ask()),  # type: ignore[attr-defined]
        "best_bid_size": core.format_size(b.best_bid_size()),  # type: ignore[attr-defined]
        "best_ask_size": core.format_size(b.best_ask_size()),  # type: ignore[attr-defined]
        "spread": _price(b.spread()),  # type: ignore[attr-defined]
        "bid_levels": b.level_count(core.BID),  # type: ignore[attr-defined]
        "ask_levels": b.level_count(core.ASK),  # type: ignore[attr-defined]
        "bid_depth": core.format_size(b.depth_within(core.BID, core.MAX_PRICE)),  # type: ignore[attr-defined]
        "ask_depth": core.format_size(b.depth_within(core.ASK, core.MAX_PRICE)),  # type: ignore[attr-defined]
        "tick_size": core.format_price(b.tick),  # type: ignore[attr-defined]
        "crossed": b.is_crossed(),  # type: ignore[attr-defined]
        "locked": b.is_locked(),  # type: ignore[attr-defined]
        "desynced": b.desynced,  # type: ignore[attr-defined]
        "disagreements": b.disagreements,  # type: ignore[attr-defined]
        "snapshots": b.snapshots,  # type: ignore[attr-defined]
        "updates": b.updates,  # type: ignore[attr-defined]
    }


def inspect_file(path: Path, desync_threshold: int = core.DEFAULT_DESYNC_THRESHOLD) -> dict[str, object]:
    md = MarketData(core.BookSet(desync_threshold))
    for frame in read_frames(path):
        md.on_frame(frame)
    books = md.books
    return {
        "file": str(path),
        "core": core.IMPL,
        "frames": md.frames,
        "events": dict(sorted(md.event_counts.items())),
        "unknown_event_types": dict(sorted(md.codec.unknown_event_types.items())),
        "orphans": md.orphans,
        "desync_marks": md.desync_marks,
        "errors": md.errors,
        "error_samples": md.error_samples,
        "books": {aid: book_summary(books.get(aid)) for aid in books.asset_ids()},  # type: ignore[attr-defined]
    }
