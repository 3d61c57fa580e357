"""Persistence in one SQLite file (WAL): orders and their state changes, fills with settlement
status, markouts, risk state and the kill switch, run metadata. Positions and realized P&L are
rebuilt from the fills on start, so a restart after a crash (kill -9) restores them exactly,
and a fill seen again after the restart is recognised by its key and not counted twice.

Nothing here makes the caller wait on the disk. Every write method only puts its statements on
a queue; a writer thread with its own connection commits them in small batches (whatever has
queued up while the previous commit ran, at most ``batch_max`` statements per transaction), so
a WAL checkpoint's fsync lands in that thread, never on the event loop. What a caller needs to
know synchronously is answered from memory: :meth:`Store.fill` says whether a fill is new or a
status change from an index of fill keys and statuses loaded at open. Reads wait until every
write enqueued before them is committed, then read on their own connection; they happen at
startup, in reports and in the status, not on the hot path.

Kill -9: a process killed between enqueue and commit loses what was still queued plus the batch
being committed (a transaction is all or nothing, so the file is never half-written; committed
batches survive a process crash with ``synchronous=NORMAL``, only a power loss may lose the last
ones). That is at most a few milliseconds of writes, and it is safe: orders are recovered from
the venue by reconciliation (``GET /data/orders``), fills from ``/data/trades?after=``
:meth:`Store.last_fill_ms`, markouts are measured again for those fills, and run time is kept by
:meth:`Store.run_heartbeat`, so a killed run loses at most one heartbeat interval.

A write that fails in the thread is logged and counted (:attr:`Store.errors`), and the next
:meth:`Store.flush` (or :meth:`Store.close`) raises :class:`StoreWriteError` naming how many
statements were lost: never silently.

The schema is versioned with ``PRAGMA user_version``; each migration runs once, in order.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from active_quoting.clock import SYSTEM, Clock
from active_quoting.model import Fill

_log = logging.getLogger(__name__)

MIGRATIONS = [
    """
    CREATE TABLE orders (
        order_id TEXT PRIMARY KEY, market TEXT NOT NULL, token TEXT NOT NULL, side TEXT NOT NULL,
        price INTEGER NOT NULL, size INTEGER NOT NULL, status TEXT NOT NULL, matched INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, reason TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE order_events (
        id INTEGER PRIMARY KEY, order_id TEXT NOT NULL, t_ms INTEGER NOT NULL, status TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE TABLE fills (
        trade_id TEXT NOT NULL, order_id TEXT NOT NULL, market TEXT NOT NULL, token TEXT NOT NULL, side TEXT NOT NULL,
        price INTEGER NOT NULL, size INTEGER NOT NULL, status TEXT NOT NULL, t_ms INTEGER NOT NULL,
        maker INTEGER NOT NULL,
        PRIMARY KEY (trade_id, order_id)
    );
    CREATE TABLE markouts (
        trade_id TEXT NOT NULL, order_id TEXT NOT NULL, horizon_s INTEGER NOT NULL, value_x2 INTEGER NOT NULL,
        PRIMARY KEY (trade_id, order_id, horizon_s)
    );
    CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE markets (
        condition_id TEXT PRIMARY KEY, slug TEXT NOT NULL, up TEXT NOT NULL, down TEXT NOT NULL,
        start_s INTEGER NOT NULL, end_s INTEGER NOT NULL, winner TEXT NOT NULL DEFAULT '',
        fee_rate TEXT NOT NULL DEFAULT '0', rebate_share TEXT NOT NULL DEFAULT '0',
        fee_exponent INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE risk_events (
        id INTEGER PRIMARY KEY, t_ms INTEGER NOT NULL, scope TEXT NOT NULL, old TEXT NOT NULL, new TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    """,
    # Cooldown totals and run time are written as they happen instead of at shutdown, so a killed
    # run keeps them. The kv keys 'cooldown_ms' (JSON market -> ms) and 'run_ms' written by
    # earlier versions become rows here; the store keeps those keys up to date from these tables.
    """
    CREATE TABLE cooldown (market TEXT PRIMARY KEY, ms INTEGER NOT NULL);
    INSERT INTO cooldown SELECT key, CAST(value AS INTEGER)
        FROM json_each((SELECT value FROM kv WHERE key = 'cooldown_ms'));
    CREATE TABLE runs (run_id TEXT PRIMARY KEY, started_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL);
    INSERT INTO runs SELECT 'before-schema-2', 0, CAST(value AS INTEGER) FROM kv WHERE key = 'run_ms';
    """,
    # Markouts against the window's fair value (from the reference price) beside the mid's.
    """
    CREATE TABLE fair_markouts (
        trade_id TEXT NOT NULL, order_id TEXT NOT NULL, horizon_s INTEGER NOT NULL, value_x2 INTEGER NOT NULL,
        PRIMARY KEY (trade_id, order_id, horizon_s)
    );
    """,
]

_OPEN_STATUSES = "('LIVE', 'SENT', 'UNKNOWN', 'CANCELING')"
_SYNC_KV_COOLDOWN = (
    "INSERT OR REPLACE INTO kv VALUES ('cooldown_ms', (SELECT json_group_object(market, ms) FROM cooldown))"
)
_SYNC_KV_RUN = (
    "INSERT OR REPLACE INTO kv SELECT 'run_ms', CAST(SUM(last_ms - started_ms) AS TEXT) FROM runs "
    "UNION ALL SELECT 'last_run_end_ms', CAST(MAX(last_ms) AS TEXT) FROM runs"
)

_EVENT = "INSERT INTO order_events (order_id,t_ms,status,detail) VALUES (?,?,?,?)"

Statement = tuple[str, tuple[Any, ...]]


class StoreWriteError(RuntimeError):
    """Writes the writer thread could not commit (their count and the first error)."""


class StoreClosed(RuntimeError):
    """A write after :meth:`Store.close`: it would never be committed."""


class _Flush:
    """A marker in the write queue: set once every statement queued before it is committed."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class _Writer:
    """The thread that owns the writing connection. Items are tuples of statements (never split
    across transactions), :class:`_Flush` markers and :data:`_STOP`; a batch is everything queued
    while the previous one committed, up to ``batch_max`` statements."""

    def __init__(self, path: str, busy_timeout_s: float, batch_max: int) -> None:
        self.q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.batch_max = batch_max
        self.db = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.errors = 0  # statements lost, ever
        self.batches = 0  # transactions committed
        self._unreported: list[tuple[int, BaseException]] = []
        self._lock = threading.Lock()  # guards _unreported only, never held across I/O
        self.thread = threading.Thread(target=self._run, name=f"store-writer {Path(path).name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[Statement] = []
            markers: list[_Flush] = []
            item = self.q.get()
            while True:
                if item is _STOP:
                    stop = True
                elif isinstance(item, _Flush):
                    markers.append(item)
                else:
                    batch.extend(item)
                if stop or len(batch) >= self.batch_max:
                    break
                try:
                    item = self.q.get_nowait()
                except queue.Empty:
                    break
            if batch:
                try:
                    self._commit(batch)
                except BaseException as exc:  # noqa: BLE001 - the thread must outlive any one batch
                    self._rollback()
                    self._lost(len(batch), exc, "batch")
            for m in markers:
                m.done.set()
        self.db.close()

    def _commit(self, batch: list[Statement]) -> None:
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")  # takes the write lock now (waits busy_timeout), not mid-batch
        except sqlite3.Error as exc:
            self._lost(len(batch), exc, "BEGIN")
            return
        done = 0
        for i, (sql, params) in enumerate(batch):
            try:
                db.execute(sql, params)
                done += 1
            except Exception as exc:  # noqa: BLE001 - e.g. OverflowError on a bad value: that write only
                if db.in_transaction:  # only this statement was undone
                    self._lost(1, exc, sql)
                    continue
                # Disk full, I/O error: SQLite rolled the whole transaction back.
                self._lost(done + len(batch) - i, exc, sql)
                return
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            self._lost(done, exc, "COMMIT")
            return
        self.batches += 1

    def _rollback(self) -> None:
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                _log.error("store: rollback failed: %s", exc)

    def _lost(self, n: int, exc: BaseException, what: str) -> None:
        if n <= 0:
            return
        _log.error("store: %d write(s) lost (%s): %s", n, " ".join(what.split())[:60], exc)
        with self._lock:
            self.errors += n
            self._unreported.append((n, exc))

    def take_unreported(self) -> tuple[int, BaseException | None]:
        with self._lock:
            found, self._unreported = self._unreported, []
        return sum(n for n, _ in found), (found[0][1] if found else None)

    def wait(self, timeout: float | None = None) -> None:
        """Block until every item queued before this call has been handled."""
        marker = _Flush()
        self.q.put(marker)
        waited = 0.0
        while not marker.done.wait(0.5):
            waited += 0.5
            if not self.thread.is_alive():
                raise StoreWriteError("the store's writer thread has stopped; queued writes are lost")
            if timeout is not None and waited >= timeout:
                raise TimeoutError(f"store writes not committed after {timeout} s")

    def stop(self) -> None:
        if self.thread.is_alive():
            self.q.put(_STOP)
            self.thread.join()


class Store:
    """The store. Write methods enqueue and return at once; reads see every earlier write.

    ``busy_timeout_s`` is how long the writer waits for another connection's write lock before
    a batch counts as failed; ``batch_max`` caps the statements per transaction.
    """

    def __init__(
        self, path: str | Path, clock: Clock = SYSTEM, busy_timeout_s: float = 5.0, batch_max: int = 512
    ) -> None:
        self.path = str(path)
        self.clock = clock
        setup = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None)
        try:
            setup.execute("PRAGMA journal_mode=WAL")
            self._migrate(setup)
            # What fill() must answer without a disk round trip: every fill key and its status.
            self._fills: dict[tuple[str, str], str] = {}
            self._last_fill_ms: int | None = None
            for trade_id, order_id, status, t_ms in setup.execute("SELECT trade_id, order_id, status, t_ms FROM fills"):
                self._fills[(trade_id, order_id)] = status
                if self._last_fill_ms is None or t_ms > self._last_fill_ms:
                    self._last_fill_ms = t_ms
        finally:
            setup.close()
        self._reader = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        self._reader.execute("PRAGMA query_only=1")  # a write through .db would bypass the writer
        self._read_lock = threading.Lock()
        self._writer = _Writer(self.path, busy_timeout_s, batch_max)
        self._put = self._writer.q.put
        self._closed = False
        # A store dropped without close() still commits what it queued (at exit at the latest).
        self._finalizer = weakref.finalize(self, _Writer.stop, self._writer)

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise RuntimeError(f"{self.path}: schema version {version} is newer than this program ({len(MIGRATIONS)})")
        for i in range(version, len(MIGRATIONS)):
            db.executescript("BEGIN;" + MIGRATIONS[i] + f"PRAGMA user_version={i + 1}; COMMIT;")

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def errors(self) -> int:
        """Statements the writer thread could not commit, since open."""
        return self._writer.errors

    @property
    def batches(self) -> int:
        """Transactions the writer thread has committed, since open."""
        return self._writer.batches

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every write enqueued so far is committed; raise :class:`StoreWriteError`
        if any write failed since the last flush (they were logged when they failed)."""
        self._writer.wait(timeout)
        lost, first = self._writer.take_unreported()
        if lost:
            raise StoreWriteError(f"{self.path}: {lost} store write(s) failed; first: {first!r}") from first

    def close(self) -> None:
        """Flush, stop the writer thread and close both connections (raises like :meth:`flush`,
        after closing)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            self._finalizer()
            self._reader.close()

    def abandon(self) -> int:
        """What a kill -9 does to the store (the simulator's crashes): writes still queued are
        dropped, the batch being committed finishes or not, the connections close. Returns
        how many queued items were dropped."""
        dropped = 0
        while True:
            try:
                self._writer.q.get_nowait()
                dropped += 1
            except queue.Empty:
                break
        self._closed = True
        self._finalizer()
        self._reader.close()
        return dropped

    def _write(self, *statements: Statement) -> None:
        """Enqueue statements that belong together (they land in one transaction)."""
        if self._closed:
            raise StoreClosed(f"{self.path}: write after close")
        self._put(statements)

    # -- writes (enqueue only) ----------------------------------------------------------

    def order_sent(self, order_id: str, market: str, token: str, side: str, price: int, size: int, status: str) -> None:
        now = self.clock.ms()
        self._write(
            (
                "INSERT OR IGNORE INTO orders VALUES (?,?,?,?,?,?,?,0,?,?,'')",
                (order_id, market, token, side, price, size, status, now, now),
            ),
            (_EVENT, (order_id, now, status, "sent")),
        )

    def order_state(self, order_id: str, status: str, matched: int | None = None, reason: str = "") -> None:
        now = self.clock.ms()
        update: Statement = (
            ("UPDATE orders SET status=?, updated_ms=?, reason=? WHERE order_id=?", (status, now, reason, order_id))
            if matched is None
            else (
                "UPDATE orders SET status=?, matched=?, updated_ms=?, reason=? WHERE order_id=?",
                (status, matched, now, reason, order_id),
            )
        )
        self._write(update, (_EVENT, (order_id, now, status, reason)))

    def fill(self, f: Fill) -> bool:
        """Record a fill or its new status; returns False when this exact state was already stored.
        Answered from memory (the index loaded at open), so the caller never waits on the disk."""
        known = self._fills.get(f.key)
        if known == f.status:
            return False
        if known is None:
            self._write((
                "INSERT INTO fills VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(trade_id, order_id) "
                "DO UPDATE SET status=excluded.status WHERE fills.status NOT IN ('CONFIRMED', 'FAILED')",
                (f.trade_id, f.order_id, f.market, f.token, f.side, f.price, f.size, f.status, f.t_ms, int(f.maker)),
            ))  # fmt: skip
            if self._last_fill_ms is None or f.t_ms > self._last_fill_ms:
                self._last_fill_ms = f.t_ms
        else:
            self._write(
                ("UPDATE fills SET status=? WHERE trade_id=? AND order_id=?", (f.status, f.trade_id, f.order_id))
            )
        self._fills[f.key] = f.status
        return True

    def forget_fills(self, keys: Iterable[tuple[str, str]]) -> None:
        """Fills of a pruned window leave the in-memory index (the rows stay): a late message
        for one is written again, and a final status on disk is never changed by it."""
        for key in keys:
            self._fills.pop(key, None)

    def markout(self, trade_id: str, order_id: str, horizon_s: int, value_x2: int) -> None:
        """Store a resolved markout. The first value stored wins: a fill seen again after a restart
        is measured from the restart, not from the fill, and must not replace the real one."""
        self._write(("INSERT OR IGNORE INTO markouts VALUES (?,?,?,?)", (trade_id, order_id, horizon_s, value_x2)))

    def add_cooldown_ms(self, market: str, ms: int) -> None:
        """Add ``ms`` of momentum cooldown to ``market``'s total (call as cooldowns are decided)."""
        self._write(
            ("INSERT INTO cooldown VALUES (?,?) ON CONFLICT(market) DO UPDATE SET ms = ms + excluded.ms", (market, ms)),
            (_SYNC_KV_COOLDOWN, ()),
        )

    def run_heartbeat(self, run_id: str, started_ms: int, now_ms: int) -> None:
        """Record that run ``run_id`` (started at ``started_ms``) was alive at ``now_ms``. Call it
        periodically and at shutdown: a killed run's time counts up to its last heartbeat."""
        self._write(
            (
                "INSERT INTO runs VALUES (?,?,?) "
                "ON CONFLICT(run_id) DO UPDATE SET last_ms = MAX(last_ms, excluded.last_ms)",
                (run_id, started_ms, now_ms),
            ),
            (_SYNC_KV_RUN, ()),
        )

    def market(
        self, condition_id: str, slug: str, up: str, down: str, start_s: int, end_s: int,
        fee_rate: str = "0", rebate_share: str = "0", fee_exponent: int = 1,
    ) -> None:  # fmt: skip
        self._write((
            "INSERT OR IGNORE INTO markets VALUES (?,?,?,?,?,?,'',?,?,?)",
            (condition_id, slug, up, down, start_s, end_s, fee_rate, rebate_share, fee_exponent),
        ))  # fmt: skip

    def resolved(self, condition_id: str, winner: str) -> None:
        self._write(("UPDATE markets SET winner=? WHERE condition_id=?", (winner, condition_id)))

    def risk_event(self, t_ms: int, scope: str, old: str, new: str, reason: str) -> None:
        self._write(
            ("INSERT INTO risk_events (t_ms,scope,old,new,reason) VALUES (?,?,?,?,?)", (t_ms, scope, old, new, reason))
        )

    def put(self, key: str, value: str) -> None:
        self._write(("INSERT OR REPLACE INTO kv VALUES (?,?)", (key, value)))

    # -- reads (after every earlier write is committed) ---------------------------------

    def last_fill_ms(self) -> int | None:
        """The latest fill time stored (None before the first fill): where a restarted bot asks
        ``/data/trades?after=`` from, for every market. From memory, no disk access."""
        return self._last_fill_ms

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        self._writer.wait()
        with self._read_lock:
            return self._reader.execute(sql, params).fetchall()

    @property
    def db(self) -> sqlite3.Connection:
        """A read-only connection for ad-hoc queries (reports, tests), current as of this call."""
        self._writer.wait()
        return self._reader

    def get(self, key: str, default: str = "") -> str:
        rows = self._query("SELECT value FROM kv WHERE key=?", (key,))
        return rows[0][0] if rows else default

    def get_committed(self, key: str, default: str = "") -> str:
        """``key`` as committed now, without waiting for this store's queued writes: for values
        another process writes (operator requests), read on the event loop. A WAL read never
        waits for a writer's lock."""
        with self._read_lock:
            row = self._reader.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def fills(self) -> list[Fill]:
        rows = self._query(
            "SELECT trade_id, order_id, market, token, side, price, size, status, t_ms, maker "
            "FROM fills ORDER BY t_ms, rowid"
        )
        return [Fill(t, o, m, tok, sd, p, sz, st, ms, bool(mk)) for t, o, m, tok, sd, p, sz, st, ms, mk in rows]

    def open_orders(self) -> list[dict[str, Any]]:
        cols = ("order_id", "market", "token", "side", "price", "size", "status", "matched")
        rows = self._query(f"SELECT {', '.join(cols)} FROM orders WHERE status IN {_OPEN_STATUSES}")
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def markets(self) -> list[dict[str, Any]]:
        cols = (
            "condition_id",
            "slug",
            "up",
            "down",
            "start_s",
            "end_s",
            "winner",
            "fee_rate",
            "rebate_share",
            "fee_exponent",
        )
        return [dict(zip(cols, r, strict=True)) for r in self._query(f"SELECT {', '.join(cols)} FROM markets")]

    def markouts(self) -> list[tuple[str, str, int, int]]:
        return self._query("SELECT trade_id, order_id, horizon_s, value_x2 FROM markouts")

    def fair_markout(self, trade_id: str, order_id: str, horizon_s: int, value_x2: int) -> None:
        """A resolved markout against fair value (horizon 0: the edge at the fill); first wins."""
        self._write(("INSERT OR IGNORE INTO fair_markouts VALUES (?,?,?,?)", (trade_id, order_id, horizon_s, value_x2)))

    def fair_markouts(self) -> list[tuple[str, str, int, int]]:
        return self._query("SELECT trade_id, order_id, horizon_s, value_x2 FROM fair_markouts")

    def risk_events(self) -> list[tuple[int, str, str, str, str]]:
        return self._query("SELECT t_ms, scope, old, new, reason FROM risk_events ORDER BY id")

    def order_counts(self) -> dict[str, int]:
        return dict(self._query("SELECT status, COUNT(*) FROM orders GROUP BY status"))

    def cooldown_ms(self) -> dict[str, int]:
        """Momentum cooldown per market, in milliseconds, over every run."""
        return dict(self._query("SELECT market, ms FROM cooldown"))

    def run_ms(self) -> int:
        """Total run time over every run, each counted up to its last heartbeat."""
        return int(self._query("SELECT COALESCE(SUM(last_ms - started_ms), 0) FROM runs")[0][0])
