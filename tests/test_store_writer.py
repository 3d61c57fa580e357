"""The store never makes its caller wait on the disk: writes are enqueued for a writer thread
that commits them in batches on its own connection; reads see every earlier write; a write that
fails in the thread is counted and raised on flush; a kill -9 loses at most the last batch.

The "slow disk" is real: another SQLite connection holding the write lock, as a checkpoint or a
second process would."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from active_quoting.clock import ManualClock
from active_quoting.model import CONFIRMED, MATCHED, Fill
from active_quoting.store.sqlite import Store, StoreClosed, StoreWriteError

SH = 1_000_000


@contextlib.contextmanager
def write_lock_held(path: Path, release_after_s: float | None = None) -> Iterator[sqlite3.Connection]:
    """Another connection holds the store's write lock (released on exit, or by a timer thread
    after ``release_after_s`` so a caller blocked on the lock cannot deadlock the test)."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")
    assert other.in_transaction
    timer = None
    if release_after_s is not None:
        timer = threading.Timer(release_after_s, other.execute, ("ROLLBACK",))
        timer.start()
    try:
        yield other
    finally:
        if timer is not None:
            timer.join()
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()


def _fill(trade: str, status: str = MATCHED, t_ms: int = 1_000) -> Fill:
    return Fill(trade, "0xorder", "0xcid", "1001", "BUY", 4_900, 10 * SH, status, t_ms)


def test_writes_return_at_once_while_the_disk_is_held_and_commit_after(tmp_path):
    store = Store(tmp_path / "s.db", clock=ManualClock(1_700_000_000.0))
    with write_lock_held(tmp_path / "s.db", release_after_s=1.0):
        slowest = 0.0
        calls = [
            lambda: store.order_sent("0xa", "0xcid", "1001", "BUY", 4_900, 10 * SH, "SENT"),
            lambda: store.order_state("0xa", "LIVE"),
            lambda: store.fill(_fill("t1")),
            lambda: store.markout("t1", "0xorder", 5, 120),
            lambda: store.market("0xcid", "btc-updown-1m-1", "1001", "1002", 0, 60),
            lambda: store.put("status", "{}"),
            lambda: store.risk_event(1, "global", "NORMAL", "HALTED", "test"),
            lambda: store.add_cooldown_ms("0xcid", 1_500),
            lambda: store.run_heartbeat("run-1", 1_000, 2_000),
        ]
        for call in calls:
            t0 = time.perf_counter()
            call()
            slowest = max(slowest, time.perf_counter() - t0)
        assert slowest < 0.05, f"a write waited {slowest:.3f} s on the held disk"
        assert store.batches == 0  # the lock really held the writer back
    store.flush()
    assert store.batches >= 1 and store.errors == 0
    assert store.open_orders()[0]["status"] == "LIVE"
    created = store.db.execute("SELECT created_ms FROM orders").fetchone()[0]
    assert created == 1_700_000_000_000  # the injected clock, not the machine's
    assert store.markouts() == [("t1", "0xorder", 5, 120)]
    assert store.get("status") == "{}" and len(store.risk_events()) == 1
    store.close()


def test_reads_see_every_write_enqueued_before_them(tmp_path):
    store = Store(tmp_path / "s.db")
    for i in range(300):
        store.order_sent(f"0x{i}", "0xcid", "1001", "BUY", 4_900, 10 * SH, "SENT")
    store.order_state("0x7", "CANCELED", reason="ours")
    store.fill(_fill("t1"))
    store.market("0xcid", "btc-updown-1m-1", "1001", "1002", 0, 60)
    store.put("kill_switch", "1")
    # no flush: each read waits for the queue ahead of it
    assert store.order_counts() == {"SENT": 299, "CANCELED": 1}
    assert len(store.open_orders()) == 299
    assert [f.trade_id for f in store.fills()] == ["t1"]
    assert store.markets()[0]["slug"] == "btc-updown-1m-1"
    assert store.get("kill_switch") == "1"
    assert store.db.execute("SELECT COUNT(*) FROM order_events").fetchone()[0] == 301
    with pytest.raises(sqlite3.OperationalError):  # the read connection cannot write around the queue
        store.db.execute("DELETE FROM orders")
    store.close()


def test_fill_answers_new_or_changed_from_memory_even_while_the_disk_is_held(tmp_path):
    store = Store(tmp_path / "s.db")
    with write_lock_held(tmp_path / "s.db", release_after_s=0.5):
        t0 = time.perf_counter()
        assert store.fill(_fill("t1")) is True  # new
        assert store.fill(_fill("t1")) is False  # the same state again
        assert store.fill(_fill("t1", CONFIRMED)) is True  # a status change
        assert store.fill(_fill("t1", CONFIRMED)) is False
        assert store.fill(_fill("t2")) is True
        assert time.perf_counter() - t0 < 0.05
        assert store.batches == 0
    store.close()
    again = Store(tmp_path / "s.db")  # the index is loaded from the file at open
    assert {(f.trade_id, f.status) for f in again.fills()} == {("t1", CONFIRMED), ("t2", MATCHED)}
    assert again.fill(_fill("t1", CONFIRMED)) is False
    assert again.fill(_fill("t2")) is False
    assert again.fill(_fill("t2", CONFIRMED)) is True
    again.close()


def test_a_write_that_fails_in_the_thread_is_counted_and_raised_on_flush(tmp_path):
    store = Store(tmp_path / "s.db", busy_timeout_s=0.05)
    with write_lock_held(tmp_path / "s.db"):  # held longer than the writer waits
        store.order_sent("0xlost", "0xcid", "1001", "BUY", 4_900, 10 * SH, "SENT")
        with pytest.raises(StoreWriteError, match="2 store write"):
            store.flush()
    assert store.errors == 2  # the order row and its event
    store.flush()  # reported once
    # A value SQLite cannot hold fails alone; the rest of its batch commits.
    store.order_sent("0xbad", "0xcid", "1001", "BUY", 4_900, 2**70, "SENT")
    store.order_sent("0xgood", "0xcid", "1001", "BUY", 4_900, 10 * SH, "SENT")
    with pytest.raises(StoreWriteError, match="1 store write"):
        store.flush()
    assert store.errors == 3
    assert [o["order_id"] for o in store.open_orders()] == ["0xgood"]
    store.close()


def test_close_commits_everything_and_stops_the_writer(tmp_path):
    store = Store(tmp_path / "s.db")
    for i in range(2_000):
        store.order_sent(f"0x{i}", "0xcid", "1001", "BUY", 4_900, 10 * SH, "SENT")
    writer = store._writer.thread
    store.close()
    assert not writer.is_alive()
    with pytest.raises(StoreClosed):
        store.put("late", "1")
    check = sqlite3.connect(tmp_path / "s.db")
    assert check.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 2_000
    check.close()


_KILLED_WRITER = """
import sys
from active_quoting.model import Fill
from active_quoting.store.sqlite import Store

store = Store(sys.argv[1])
for i in range(200):
    store.order_sent(f"0x{i}", "0xcid", "1001", "BUY", 4900, 10_000_000, "SENT")
store.market("0xcid", "btc-updown-1m-1", "1001", "1002", 0, 60)
store.fill(Fill("t1", "0x1", "0xcid", "1001", "BUY", 4900, 10_000_000, "MATCHED", 5_000))
store.markout("t1", "0x1", 5, 140)
store.add_cooldown_ms("0xcid", 1_500)
store.run_heartbeat("run-1", 1_000, 61_000)
store.flush()
print("flushed", flush=True)
i = 0
while True:  # never flushed: the kill lands between enqueue and commit
    store.order_sent(f"0xlate{i}", "0xcid", "1001", "BUY", 4900, 10_000_000, "SENT")
    i += 1
"""


def _committed_orders(db) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_a_process_killed_mid_write_leaves_every_flushed_write_and_whole_batches(tmp_path):
    db = tmp_path / "k.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_KILLED_WRITER), str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    try:
        line = proc.stdout.readline() if proc.stdout else b""
        assert line == b"flushed\n", (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else b"")
        deadline = time.monotonic() + 20
        while _committed_orders(db) <= 200 and time.monotonic() < deadline:
            time.sleep(0.05)  # until the writer has committed some late orders (a loaded machine is slow)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    store = Store(db)
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ids = {o["order_id"] for o in store.open_orders()}
    assert {f"0x{i}" for i in range(200)} <= ids
    late = len(ids) - 200
    assert late > 0  # batches committed after the flush survived too
    # An order and its event are one item: never one without the other.
    assert store.db.execute("SELECT COUNT(*) FROM order_events").fetchone()[0] == len(ids)
    assert [f.trade_id for f in store.fills()] == ["t1"] and store.markouts() == [("t1", "0x1", 5, 140)]
    # The run's analytics, written as they happened, survived the kill.
    assert store.cooldown_ms() == {"0xcid": 1_500} and store.run_ms() == 60_000
    store.close()


def test_get_committed_reads_what_another_process_wrote_without_waiting_for_the_queue(tmp_path):
    store = Store(tmp_path / "s.db")
    operator = sqlite3.connect(tmp_path / "s.db", isolation_level=None)  # e.g. the halts command
    operator.execute("INSERT INTO kv VALUES ('halt_requests', '[1]')")
    operator.close()
    with write_lock_held(tmp_path / "s.db", release_after_s=0.5):
        store.put("status", "{}")  # queued behind the held lock
        t0 = time.perf_counter()
        assert store.get_committed("halt_requests") == "[1]"
        assert store.get_committed("status", "none") == "none"  # not committed yet: not seen
        assert time.perf_counter() - t0 < 0.05 and store.batches == 0
    assert store.get("status") == "{}"  # get() waits for the queue
    store.close()
