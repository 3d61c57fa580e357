"""The caller-side cost of recording a sent order: what the submit path pays on the event loop.

"queued" is :meth:`Store.order_sent` (enqueue for the writer thread, which commits meanwhile on
the other core and competes for the GIL, as in production); "synchronous" is what 936eec7 did
inline: the same two statements executed and autocommitted on the caller's connection (WAL,
``synchronous=NORMAL``), so every call pays SQLite's write and, now and then, a checkpoint.
The store is not part of the compiled core, so there is no c/py split here.

Target: a few microseconds queued.
"""

from __future__ import annotations

import itertools
import sqlite3

import pytest

from active_quoting.store.sqlite import MIGRATIONS, Store

SH = 1_000_000


@pytest.mark.benchmark(group="store: order_sent on the caller")
def test_order_sent_queued(benchmark, tmp_path):
    store = Store(tmp_path / "q.db")
    ids = (f"0x{i:064x}" for i in itertools.count())
    benchmark(lambda: store.order_sent(next(ids), "0xcid", "1001", "BUY", 4_900, 10 * SH, "SENT"))
    store.close()  # commits the whole queue; raises if a write failed
    assert store.errors == 0 and store.batches >= 1


@pytest.mark.benchmark(group="store: order_sent on the caller")
def test_order_sent_synchronous(benchmark, tmp_path):
    db = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(MIGRATIONS[0])
    ids = (f"0x{i:064x}" for i in itertools.count())

    def sent() -> None:
        oid = next(ids)
        db.execute(
            "INSERT OR IGNORE INTO orders VALUES (?,?,?,?,?,?,?,0,?,?,'')",
            (oid, "0xcid", "1001", "BUY", 4_900, 10 * SH, "SENT", 1, 1),
        )
        db.execute("INSERT INTO order_events (order_id,t_ms,status,detail) VALUES (?,?,?,?)", (oid, 1, "SENT", "sent"))

    benchmark(sent)
    assert db.execute("SELECT COUNT(*) FROM orders").fetchone()[0] >= 1
    db.close()
