"""L2 order books in fixed point: the executable specification (twin of ``_book_c``).

One ``Book`` per token holds absolute level sizes (micro-shares) keyed by price (units of
1e-4, 0..10000). A ``BookSet`` applies decoded market-channel messages to the books: it
reads the message objects the codec produces (``book``, ``price_change``,
``tick_size_change``) attribute by attribute, parses their decimal strings, and never
creates a book from a ``price_change`` (those are counted as orphans).

Every message is validated whole before any of it is applied, so a malformed entry leaves
the books exactly as they were.
"""

from collections.abc import Mapping

from active_quoting.core._units_py import ASK, BID, MAX_PRICE, MAX_SIZE, NO_PRICE, parse_price, parse_size
from active_quoting.core._units_py import check_int as _check_int
from active_quoting.errors import UnitsError

DEFAULT_TICK = 100  # 0.01
MAX_TICK = 1000  # 0.1, the coarsest tick the venue uses
DEFAULT_DESYNC_THRESHOLD = 3


def _check_side(side: object) -> int:
    if type(side) is not int or (side != BID and side != ASK):
        raise UnitsError("side", side, "expected BID (0) or ASK (1)")
    return side


def _parse_side(side: object) -> int:
    if side == "BUY":
        return BID
    if side == "SELL":
        return ASK
    raise UnitsError("side", side, "expected BUY or SELL")


def _parse_stated(s: str, empty_sentinel: str, field: str) -> int | None:
    """A venue-stated best price: None when not stated, NO_PRICE for the empty-side sentinel."""
    if s is None or s == "":
        return None
    if s == empty_sentinel:
        return NO_PRICE
    return parse_price(s, field)


class Book:
    """The L2 book of one token."""

    def __init__(
        self, asset_id: str, tick: int = DEFAULT_TICK, desync_threshold: int = DEFAULT_DESYNC_THRESHOLD
    ) -> None:
        self._asset_id = str(asset_id)
        self._levels: tuple[dict[int, int], dict[int, int]] = ({}, {})
        self._best = [NO_PRICE, NO_PRICE]
        self._tick = DEFAULT_TICK
        self.set_tick(tick)
        self._desync_threshold = _check_int(desync_threshold, 1, 1_000_000, "desync_threshold")
        self._streak = 0
        self._disagreements = 0
        self._desynced = False
        self._updates = 0
        self._snapshots = 0
        self._hash = ""

    # -- identity and tick ------------------------------------------------------------

    @property
    def asset_id(self) -> str:
        return self._asset_id

    @property
    def tick(self) -> int:
        """Tick size in price units (100 = 0.01). Changing it never re-grids the book."""
        return self._tick

    def set_tick(self, tick: int) -> None:
        self._tick = _check_int(tick, 1, MAX_TICK, "tick_size")

    @property
    def hash(self) -> str:
        """The venue's hash of the last snapshot or level change applied."""
        return self._hash

    def set_hash(self, value: str) -> None:
        self._hash = value

    # -- updates ----------------------------------------------------------------------

    def clear(self) -> None:
        self._levels[BID].clear()
        self._levels[ASK].clear()
        self._best = [NO_PRICE, NO_PRICE]

    def apply_snapshot(self, bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> None:
        """Replace the book. Input order is irrelevant; zero-size levels are dropped.

        A new snapshot also ends a desync: the book is trusted again.
        """
        checked = [
            [(_check_int(p, 0, MAX_PRICE, "price"), _check_int(q, 0, MAX_SIZE, "size")) for p, q in levels]
            for levels in (bids, asks)
        ]
        self.clear()
        for side, levels in ((BID, checked[0]), (ASK, checked[1])):
            for price, size in levels:
                self._set(side, price, size)
        self._snapshots += 1
        self._streak = 0
        self._desynced = False

    def set_level(self, side: int, price: int, size: int) -> None:
        """Set the absolute size at one price; size 0 removes the level."""
        self._set(
            _check_side(side),
            _check_int(price, 0, MAX_PRICE, "price"),
            _check_int(size, 0, MAX_SIZE, "size"),
        )

    def _set(self, side: int, price: int, size: int) -> None:
        levels = self._levels[side]
        self._updates += 1
        if size:
            levels[price] = size
            best = self._best[side]
            if best == NO_PRICE or (price > best if side == BID else price < best):
                self._best[side] = price
        elif levels.pop(price, None) is not None and price == self._best[side]:
            if not levels:
                self._best[side] = NO_PRICE
            else:
                self._best[side] = max(levels) if side == BID else min(levels)

    # -- reads ------------------------------------------------------------------------

    def best_bid(self) -> int:
        return self._best[BID]

    def best_ask(self) -> int:
        return self._best[ASK]

    def best_bid_size(self) -> int:
        return self._levels[BID].get(self._best[BID], 0)

    def best_ask_size(self) -> int:
        return self._levels[ASK].get(self._best[ASK], 0)

    def spread(self) -> int:
        """Best ask minus best bid in price units; NO_PRICE when a side is empty."""
        bid, ask = self._best
        if bid == NO_PRICE or ask == NO_PRICE:
            return NO_PRICE
        return ask - bid

    def mid_x2(self) -> int:
        """Twice the mid (best bid + best ask) in price units, exact; NO_PRICE when a side is empty."""
        bid, ask = self._best
        if bid == NO_PRICE or ask == NO_PRICE:
            return NO_PRICE
        return ask + bid

    def size_at(self, side: int, price: int) -> int:
        return self._levels[_check_side(side)].get(_check_int(price, 0, MAX_PRICE, "price"), 0)

    def level_count(self, side: int) -> int:
        return len(self._levels[_check_side(side)])

    def depth_within(self, side: int, units: int) -> int:
        """Total size of the levels within ``units`` price units of this side's touch."""
        side = _check_side(side)
        units = _check_int(units, 0, MAX_PRICE, "units")
        best = self._best[side]
        if best == NO_PRICE:
            return 0
        if side == BID:
            return sum(q for p, q in self._levels[BID].items() if p >= best - units)
        return sum(q for p, q in self._levels[ASK].items() if p <= best + units)

    def depth_without(self, side: int, units: int, own: Mapping[int, int]) -> int:
        """Depth within ``units`` price units of this side's touch with ``own`` (price -> our
        size resting there) taken out: what the market holds near its touch, not us.

        The touch is the best level holding more than our size there (a level holding no more
        reads as ours alone: our order alone at a better price does not move it); every level
        from the side's best to ``units`` behind that touch counts the size beyond ours (its
        whole size where we rest nothing). 0 when no level holds more than ours. Raises on a
        price or size out of range in ``own``."""
        side = _check_side(side)
        units = _check_int(units, 0, MAX_PRICE, "units")
        mine = {_check_int(p, 0, MAX_PRICE, "price"): _check_int(q, 0, MAX_SIZE, "size") for p, q in own.items()}
        levels = self._levels[side]
        prices = sorted(levels, reverse=side == BID)
        touch = next((p for p in prices if levels[p] > mine.get(p, 0)), NO_PRICE)
        if touch == NO_PRICE:
            return 0
        near = [p for p in prices if (p >= touch - units if side == BID else p <= touch + units)]
        return sum(max(0, levels[p] - mine.get(p, 0)) for p in near)

    def top_state(self) -> tuple[int, int, int, bool]:
        """(best bid, best ask, tick, desynced): what a quote decision reads of the book beyond
        our own levels, in one call (compared on every frame to tell a frame that decides
        nothing)."""
        return self._best[BID], self._best[ASK], self._tick, self._desynced

    def top_levels(self, side: int, k: int) -> list[tuple[int, int]]:
        """Up to ``k`` levels of one side, best first, as (price, size)."""
        side = _check_side(side)
        k = _check_int(k, 0, MAX_PRICE + 1, "k")
        levels = self._levels[side]
        prices = sorted(levels, reverse=side == BID)[:k]
        return [(p, levels[p]) for p in prices]

    def is_crossed(self) -> bool:
        """Best bid above best ask (both sides present)."""
        bid, ask = self._best
        return bid != NO_PRICE and ask != NO_PRICE and bid > ask

    def is_locked(self) -> bool:
        """Best bid equal to best ask (both sides present)."""
        bid, ask = self._best
        return bid != NO_PRICE and bid == ask

    # -- venue consistency ------------------------------------------------------------

    def check_top(self, stated_bid: int, stated_ask: int) -> bool:
        """Compare the venue-stated top (NO_PRICE = empty side) with the book.

        Counts disagreements; ``desync_threshold`` disagreements in a row mark the book
        desynced (a single one can be a race between channels). Returns True on agreement.
        """
        if stated_bid == self._best[BID] and stated_ask == self._best[ASK]:
            self._streak = 0
            return True
        self._disagreements += 1
        self._streak += 1
        if self._streak >= self._desync_threshold:
            self._desynced = True
        return False

    @property
    def desynced(self) -> bool:
        return self._desynced

    @property
    def disagreements(self) -> int:
        return self._disagreements

    @property
    def disagreement_streak(self) -> int:
        return self._streak

    @property
    def updates(self) -> int:
        return self._updates

    @property
    def snapshots(self) -> int:
        return self._snapshots

    def __repr__(self) -> str:
        return (
            f"Book({self._asset_id[:12]}…, bid={self._best[BID]}, ask={self._best[ASK]}, "
            f"levels={len(self._levels[BID])}/{len(self._levels[ASK])}, desynced={self._desynced})"
        )


class BookSet:
    """The books of every subscribed token, fed with decoded market-channel messages."""

    def __init__(self, desync_threshold: int = DEFAULT_DESYNC_THRESHOLD) -> None:
        self._books: dict[str, Book] = {}
        self._desync_threshold = _check_int(desync_threshold, 1, 1_000_000, "desync_threshold")
        self._orphans = 0
        self._desync_marks = 0

    def get(self, asset_id: str) -> Book | None:
        return self._books.get(asset_id)

    def __contains__(self, asset_id: object) -> bool:
        return asset_id in self._books

    def __len__(self) -> int:
        return len(self._books)

    def asset_ids(self) -> list[str]:
        return list(self._books)

    def remove(self, asset_id: str) -> bool:
        return self._books.pop(asset_id, None) is not None

    @property
    def orphans(self) -> int:
        """Level changes received for tokens that have no snapshot (never applied)."""
        return self._orphans

    @property
    def desync_marks(self) -> int:
        """How many times a book went from trusted to desynced."""
        return self._desync_marks

    def apply_book(self, msg: object) -> Book:
        """Apply a ``book`` snapshot message; creates the book on first sight."""
        asset_id = msg.asset_id  # type: ignore[attr-defined]
        if type(asset_id) is not str or not asset_id:
            raise UnitsError("asset_id", asset_id, "expected a token id")
        bids = [(parse_price(lv.price), parse_size(lv.size)) for lv in msg.bids]  # type: ignore[attr-defined]
        asks = [(parse_price(lv.price), parse_size(lv.size)) for lv in msg.asks]  # type: ignore[attr-defined]
        tick_text = msg.tick_size  # type: ignore[attr-defined]
        tick = parse_price(tick_text, "tick_size") if tick_text else None
        if tick is not None:
            _check_int(tick, 1, MAX_TICK, "tick_size")
        book = self._books.get(asset_id)
        if book is None:
            book = Book(asset_id, DEFAULT_TICK, self._desync_threshold)
            self._books[asset_id] = book
        if tick is not None:
            book.set_tick(tick)
        book.apply_snapshot(bids, asks)
        book.set_hash(msg.hash)  # type: ignore[attr-defined]
        return book

    def apply_price_change(self, msg: object) -> int:
        """Apply every entry of a ``price_change`` batch, then check the venue-stated top.

        Returns the number of entries applied; entries for unknown tokens are orphans.
        """
        parsed = []
        for entry in msg.price_changes:  # type: ignore[attr-defined]
            parsed.append(
                (
                    entry.asset_id,
                    _parse_side(entry.side),
                    parse_price(entry.price),
                    parse_size(entry.size),
                    _parse_stated(entry.best_bid, "0", "best_bid"),
                    _parse_stated(entry.best_ask, "1", "best_ask"),
                    entry.hash,
                )
            )
        applied = 0
        stated: dict[str, tuple[Book, int | None, int | None]] = {}
        for asset_id, side, price, size, bid, ask, hash_ in parsed:
            book = self._books.get(asset_id)
            if book is None:
                self._orphans += 1
                continue
            book._set(side, price, size)
            book.set_hash(hash_)
            applied += 1
            stated[asset_id] = (book, bid, ask)  # the last entry of a token states its top
        for book, bid, ask in stated.values():
            if bid is None or ask is None:
                continue
            was = book.desynced
            book.check_top(bid, ask)
            if book.desynced and not was:
                self._desync_marks += 1
        return applied

    def apply_tick_size_change(self, msg: object) -> Book | None:
        """Apply a ``tick_size_change``; prices stay valid (they are in 1e-4 units)."""
        tick = parse_price(msg.new_tick_size, "new_tick_size")  # type: ignore[attr-defined]
        book = self._books.get(msg.asset_id)  # type: ignore[attr-defined]
        if book is None:
            self._orphans += 1
            return None
        book.set_tick(tick)
        return book
