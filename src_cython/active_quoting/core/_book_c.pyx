# cython: language_level=3
"""L2 order books in fixed point, compiled. The behaviour is defined by _book_py.py.

Each side is a dense array of sizes indexed by price unit plus a bitmap of occupied
levels, so a level update is O(1) and finding the next best price after the best level
empties scans at most N_WORDS machine words.
"""

cimport cython
from cpython.mem cimport PyMem_Realloc, PyMem_Free
from cpython.object cimport PyObject
from cpython.dict cimport PyDict_GetItemWithError
from libc.string cimport memset

from active_quoting.core.ticks cimport (
    int64_t, uint64_t, price_t, qty_t, N_PRICES, N_WORDS, NO_PRICE, BID, ASK, MAX_PRICE, MAX_SIZE,
)
from active_quoting.core._units_c cimport _parse_price, _parse_size, _check_int

from active_quoting.errors import UnitsError

cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil
    int __builtin_ctzll(unsigned long long) nogil

DEFAULT_TICK = 100
MAX_TICK = 1000
DEFAULT_DESYNC_THRESHOLD = 3

# Stated best prices that the message did not carry (legacy formats): no check.
cdef price_t UNSTATED = -2
# Fields per parsed price_change entry in the BookSet scratch buffer.
cdef Py_ssize_t NFIELDS = 5
# Book.depth_without's scratch: our size per price, written and zeroed again within one call
# (the GIL is held throughout and nothing in between runs Python code).
cdef qty_t _OWN[N_PRICES]


cdef inline price_t _highest_at_or_below(const uint64_t* bits, price_t p) noexcept nogil:
    cdef Py_ssize_t w = p >> 6
    # Bits 0..(p & 63) of the word; written without any wrapping shift so the debug build's
    # overflow checks hold.
    cdef uint64_t word = bits[w] & ((~<uint64_t>0) >> (63 - (p & 63)))
    while True:
        if word:
            return (w << 6) + 63 - __builtin_clzll(word)
        if w == 0:
            return NO_PRICE
        w -= 1
        word = bits[w]


cdef inline price_t _lowest_at_or_above(const uint64_t* bits, price_t p) noexcept nogil:
    cdef Py_ssize_t w = p >> 6
    cdef uint64_t word = bits[w] & ~(((<uint64_t>1) << (p & 63)) - 1)
    while True:
        if word:
            return (w << 6) + __builtin_ctzll(word)
        w += 1
        if w >= N_WORDS:
            return NO_PRICE
        word = bits[w]


cdef inline price_t _behind(const uint64_t* bits, int side, price_t p) noexcept nogil:
    """The next level behind ``p`` on ``side`` (``bits`` is that side's bitmap), NO_PRICE past
    the last: walking a side from its best."""
    if side == BID:
        return _highest_at_or_below(bits, p - 1) if p > 0 else NO_PRICE
    return _lowest_at_or_above(bits, p + 1) if p < MAX_PRICE else NO_PRICE


cdef int _check_side(object side) except -1:
    if type(side) is not int or (side != BID and side != ASK):
        raise UnitsError("side", side, "expected BID (0) or ASK (1)")
    return side


cdef int _parse_side(object side) except -1:
    if side == "BUY":
        return BID
    if side == "SELL":
        return ASK
    raise UnitsError("side", side, "expected BUY or SELL")


cdef price_t _parse_stated(object s, str empty_sentinel, str field) except? -3:
    if s is None or s == "":
        return UNSTATED
    if s == empty_sentinel:
        return NO_PRICE
    return _parse_price(s, field)


@cython.auto_pickle(False)
cdef class Book:
    """The L2 book of one token."""

    def __init__(self, asset_id, tick=DEFAULT_TICK, desync_threshold=DEFAULT_DESYNC_THRESHOLD):
        self.asset_id = str(asset_id)
        self._hash = ""
        self._best[BID] = NO_PRICE
        self._best[ASK] = NO_PRICE
        self.set_tick(tick)
        self._threshold = _check_int(desync_threshold, 1, 1000000, "desync_threshold")

    @property
    def tick(self):
        """Tick size in price units (100 = 0.01). Changing it never re-grids the book."""
        return self._tick

    def set_tick(self, tick):
        self._tick = _check_int(tick, 1, MAX_TICK, "tick_size")

    @property
    def hash(self):
        """The venue's hash of the last snapshot or level change applied."""
        return self._hash

    def set_hash(self, str value):
        self._hash = value

    cdef void _set(self, int side, price_t price, qty_t size) noexcept:
        cdef uint64_t bit = (<uint64_t>1) << (price & 63)
        cdef Py_ssize_t w = price >> 6
        cdef price_t best = self._best[side]
        self._updates += 1
        if size:
            if not self._size[side][price]:
                self._bits[side][w] |= bit
                self._count[side] += 1
            self._size[side][price] = size
            if best == NO_PRICE or (price > best if side == BID else price < best):
                self._best[side] = price
        elif self._size[side][price]:
            self._size[side][price] = 0
            self._bits[side][w] &= ~bit
            self._count[side] -= 1
            if price == best:
                if side == BID:
                    self._best[BID] = _highest_at_or_below(self._bits[BID], price)
                else:
                    self._best[ASK] = _lowest_at_or_above(self._bits[ASK], price)

    cdef void _clear(self) noexcept:
        cdef int side
        cdef Py_ssize_t w
        cdef uint64_t word
        for side in range(2):
            for w in range(N_WORDS):
                word = self._bits[side][w]
                while word:
                    self._size[side][(w << 6) + __builtin_ctzll(word)] = 0
                    word &= word - 1
            memset(self._bits[side], 0, sizeof(uint64_t) * N_WORDS)
            self._count[side] = 0
            self._best[side] = NO_PRICE

    def clear(self):
        self._clear()

    def apply_snapshot(self, bids, asks):
        """Replace the book. Input order is irrelevant; zero-size levels are dropped.

        A new snapshot also ends a desync: the book is trusted again.
        """
        checked = [
            [(_check_int(p, 0, MAX_PRICE, "price"), _check_int(q, 0, MAX_SIZE, "size")) for p, q in levels]
            for levels in (bids, asks)
        ]
        self._clear()
        for side in range(2):
            for price, size in checked[side]:
                self._set(side, price, size)
        self._snapshots += 1
        self._streak = 0
        self._desynced = False

    def set_level(self, side, price, size):
        """Set the absolute size at one price; size 0 removes the level."""
        cdef int s = _check_side(side)
        cdef price_t p = _check_int(price, 0, MAX_PRICE, "price")
        cdef qty_t q = _check_int(size, 0, MAX_SIZE, "size")
        self._set(s, p, q)

    cpdef price_t best_bid(self) noexcept:
        return self._best[BID]

    cpdef price_t best_ask(self) noexcept:
        return self._best[ASK]

    cpdef qty_t best_bid_size(self) noexcept:
        return self._size[BID][self._best[BID]] if self._best[BID] != NO_PRICE else 0

    cpdef qty_t best_ask_size(self) noexcept:
        return self._size[ASK][self._best[ASK]] if self._best[ASK] != NO_PRICE else 0

    cpdef price_t spread(self) noexcept:
        """Best ask minus best bid in price units; NO_PRICE when a side is empty."""
        if self._best[BID] == NO_PRICE or self._best[ASK] == NO_PRICE:
            return NO_PRICE
        return self._best[ASK] - self._best[BID]

    cpdef price_t mid_x2(self) noexcept:
        """Twice the mid (best bid + best ask) in price units, exact; NO_PRICE when a side is empty."""
        if self._best[BID] == NO_PRICE or self._best[ASK] == NO_PRICE:
            return NO_PRICE
        return self._best[ASK] + self._best[BID]

    def size_at(self, side, price):
        cdef int s = _check_side(side)
        return self._size[s][_check_int(price, 0, MAX_PRICE, "price")]

    def level_count(self, side):
        return self._count[_check_side(side)]

    def depth_within(self, side, units):
        """Total size of the levels within ``units`` price units of this side's touch."""
        cdef int s = _check_side(side)
        cdef price_t n = _check_int(units, 0, MAX_PRICE, "units")
        cdef price_t best = self._best[s]
        cdef price_t p
        cdef qty_t total = 0
        if best == NO_PRICE:
            return 0
        p = best
        while p != NO_PRICE and (p >= best - n if s == BID else p <= best + n):
            total += self._size[s][p]
            p = _behind(self._bits[s], s, p)
        return total

    def depth_without(self, side, units, own):
        """Depth within ``units`` price units of this side's touch with ``own`` (price -> our
        size resting there) taken out (definition: _book_py.Book.depth_without)."""
        cdef int s = _check_side(side)
        cdef price_t n = _check_int(units, 0, MAX_PRICE, "units")
        cdef dict mine = own if type(own) is dict else dict(own)
        cdef price_t p, touch
        cdef qty_t total = 0, q
        for key, value in mine.items():  # all checked before any is written
            _check_int(key, 0, MAX_PRICE, "price")
            _check_int(value, 0, MAX_SIZE, "size")
        for key, value in mine.items():
            _OWN[<price_t>key] = <qty_t>value
        p = self._best[s]
        while p != NO_PRICE and self._size[s][p] <= _OWN[p]:
            p = _behind(self._bits[s], s, p)
        touch = p
        if touch != NO_PRICE:
            p = self._best[s]
            while p != NO_PRICE and (p >= touch - n if s == BID else p <= touch + n):
                q = self._size[s][p] - _OWN[p]
                if q > 0:
                    total += q
                p = _behind(self._bits[s], s, p)
        for key in mine:
            _OWN[<price_t>key] = 0
        return total

    def top_state(self):
        """(best bid, best ask, tick, desynced) in one call (definition: _book_py.Book.top_state)."""
        return (self._best[BID], self._best[ASK], self._tick, self._desynced)

    def top_levels(self, side, k):
        """Up to ``k`` levels of one side, best first, as (price, size)."""
        cdef int s = _check_side(side)
        cdef int64_t want = _check_int(k, 0, MAX_PRICE + 1, "k")
        cdef price_t p = self._best[s]
        out = []
        while p != NO_PRICE and len(out) < want:
            out.append((p, self._size[s][p]))
            p = _behind(self._bits[s], s, p)
        return out

    cpdef bint is_crossed(self) noexcept:
        """Best bid above best ask (both sides present)."""
        return self._best[BID] != NO_PRICE and self._best[ASK] != NO_PRICE and self._best[BID] > self._best[ASK]

    cpdef bint is_locked(self) noexcept:
        """Best bid equal to best ask (both sides present)."""
        return self._best[BID] != NO_PRICE and self._best[BID] == self._best[ASK]

    cdef bint _check_top(self, price_t bid, price_t ask) noexcept:
        if bid == self._best[BID] and ask == self._best[ASK]:
            self._streak = 0
            return True
        self._disagreements += 1
        self._streak += 1
        if self._streak >= self._threshold:
            self._desynced = True
        return False

    def check_top(self, stated_bid, stated_ask):
        """Compare the venue-stated top (NO_PRICE = empty side) with the book.

        Counts disagreements; ``desync_threshold`` disagreements in a row mark the book
        desynced (a single one can be a race between channels). Returns True on agreement.
        """
        return self._check_top(
            _check_int(stated_bid, NO_PRICE, MAX_PRICE, "best_bid"),
            _check_int(stated_ask, NO_PRICE, MAX_PRICE, "best_ask"),
        )

    @property
    def desynced(self):
        return self._desynced

    @property
    def disagreements(self):
        return self._disagreements

    @property
    def disagreement_streak(self):
        return self._streak

    @property
    def updates(self):
        return self._updates

    @property
    def snapshots(self):
        return self._snapshots

    def __repr__(self):
        return (
            f"Book({self.asset_id[:12]}…, bid={self._best[BID]}, ask={self._best[ASK]}, "
            f"levels={self._count[BID]}/{self._count[ASK]}, desynced={self._desynced})"
        )


@cython.auto_pickle(False)
cdef class BookSet:
    """The books of every subscribed token, fed with decoded market-channel messages."""

    def __init__(self, desync_threshold=DEFAULT_DESYNC_THRESHOLD):
        self._books = {}
        self._threshold = _check_int(desync_threshold, 1, 1000000, "desync_threshold")

    def __dealloc__(self):
        PyMem_Free(self._buf)
        PyMem_Free(self._rowbook)

    cdef int _reserve(self, Py_ssize_t rows) except -1:
        """Grow the scratch buffers to hold ``rows`` parsed entries (or snapshot levels)."""
        cdef int64_t* grown
        cdef PyObject** grown_books
        if rows > self._cap:
            grown = <int64_t*>PyMem_Realloc(self._buf, rows * NFIELDS * sizeof(int64_t))
            if grown == NULL:
                raise MemoryError()
            self._buf = grown
            grown_books = <PyObject**>PyMem_Realloc(self._rowbook, rows * sizeof(PyObject*))
            if grown_books == NULL:
                raise MemoryError()
            self._rowbook = grown_books
            self._cap = rows
        return 0

    def get(self, asset_id):
        return self._books.get(asset_id)

    def __contains__(self, asset_id):
        return asset_id in self._books

    def __len__(self):
        return len(self._books)

    def asset_ids(self):
        return list(self._books)

    def remove(self, asset_id):
        return self._books.pop(asset_id, None) is not None

    @property
    def orphans(self):
        """Level changes received for tokens that have no snapshot (never applied)."""
        return self._orphans

    @property
    def desync_marks(self):
        """How many times a book went from trusted to desynced."""
        return self._desync_marks

    def apply_book(self, msg):
        """Apply a ``book`` snapshot message; creates the book on first sight."""
        cdef Book book
        cdef Py_ssize_t i, nb, na
        asset_id = msg.asset_id
        if type(asset_id) is not str or not asset_id:
            raise UnitsError("asset_id", asset_id, "expected a token id")
        bids = msg.bids
        asks = msg.asks
        nb = len(bids)
        na = len(asks)
        self._reserve(nb + na)
        for i in range(nb):
            lv = bids[i]
            self._buf[2 * i] = _parse_price(lv.price, "price")
            self._buf[2 * i + 1] = _parse_size(lv.size, "size")
        for i in range(na):
            lv = asks[i]
            self._buf[2 * (nb + i)] = _parse_price(lv.price, "price")
            self._buf[2 * (nb + i) + 1] = _parse_size(lv.size, "size")
        tick_text = msg.tick_size
        tick = _parse_price(tick_text, "tick_size") if tick_text else None
        if tick is not None:
            _check_int(tick, 1, MAX_TICK, "tick_size")
        book = self._books.get(asset_id)
        if book is None:
            book = Book(asset_id, DEFAULT_TICK, self._threshold)
            self._books[asset_id] = book
        if tick is not None:
            book._tick = tick
        book._clear()
        for i in range(nb + na):
            book._set(BID if i < nb else ASK, self._buf[2 * i], self._buf[2 * i + 1])
        book._snapshots += 1
        book._streak = 0
        book._desynced = False
        book._hash = msg.hash
        return book

    def apply_price_change(self, msg):
        """Apply every entry of a ``price_change`` batch, then check the venue-stated top.

        Returns the number of entries applied; entries for unknown tokens are orphans.
        """
        cdef list entries = msg.price_changes
        cdef Py_ssize_t n = len(entries), i
        cdef int64_t* row
        cdef PyObject* found
        cdef Book book
        cdef int64_t applied = 0
        cdef bint was
        self._reserve(n)
        # Pass 1 parses everything (a bad entry raises before any book changes) and finds
        # each entry's book. The books are borrowed from self._books, which no code run
        # during this call can change.
        for i in range(n):
            entry = entries[i]
            row = self._buf + i * NFIELDS
            row[0] = _parse_side(entry.side)
            row[1] = _parse_price(entry.price, "price")
            row[2] = _parse_size(entry.size, "size")
            row[3] = _parse_stated(entry.best_bid, "0", "best_bid")
            row[4] = _parse_stated(entry.best_ask, "1", "best_ask")
            self._rowbook[i] = PyDict_GetItemWithError(self._books, entry.asset_id)
        self._epoch += 1
        for i in range(n):
            found = self._rowbook[i]
            if found == NULL:
                self._orphans += 1
                continue
            book = <Book>found
            row = self._buf + i * NFIELDS
            book._set(<int>row[0], row[1], row[2])
            book._hash = (<object>entries[i]).hash
            applied += 1
            # The last entry of a token states its top after the whole batch.
            book._mark = self._epoch
            book._stated_bid = row[3]
            book._stated_ask = row[4]
        for i in range(n):
            found = self._rowbook[i]
            if found == NULL:
                continue
            book = <Book>found
            if book._mark != self._epoch:
                continue
            book._mark = 0
            if book._stated_bid == UNSTATED or book._stated_ask == UNSTATED:
                continue
            was = book._desynced
            book._check_top(book._stated_bid, book._stated_ask)
            if book._desynced and not was:
                self._desync_marks += 1
        return applied

    def apply_tick_size_change(self, msg):
        """Apply a ``tick_size_change``; prices stay valid (they are in 1e-4 units)."""
        tick = _parse_price(msg.new_tick_size, "new_tick_size")
        found = self._books.get(msg.asset_id)
        if found is None:
            self._orphans += 1
            return None
        (<Book>found).set_tick(tick)
        return found
