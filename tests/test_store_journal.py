"""The frame journal compresses and writes in its own thread: flush() hands over and returns,
sync() waits for the disk, a write that fails is counted and raised, never silently lost."""

from __future__ import annotations

import gzip
import random
import shutil
import time

import pytest

from active_quoting.store.journal import Journal, JournalWriteError


def _frames(n: int, size: int) -> list[bytes]:
    rnd = random.Random(7)  # incompressible: gzip has real work to do
    return [rnd.randbytes(size).hex().encode() for _ in range(n)]


def test_flush_returns_before_the_compression_is_done(tmp_path):
    j = Journal(tmp_path)
    frames = _frames(200, 20_000)  # 8 MB of hex
    for f in frames:
        j.market(f)
    t0 = time.perf_counter()
    j.flush()
    handed_over = time.perf_counter() - t0
    assert handed_over < 0.02, f"flush took {handed_over:.3f} s on the caller"
    t0 = time.perf_counter()
    j.sync()
    written = time.perf_counter() - t0
    assert written > 3 * handed_over  # the work happened, elsewhere
    j.close()
    (path,) = j.files("market")
    assert gzip.open(path).read().splitlines() == frames


def test_records_appended_while_the_thread_writes_are_all_kept_in_order(tmp_path):
    j = Journal(tmp_path, max_bytes=4_000, keep=1_000)
    for i in range(3_000):
        j.user(b'{"n":%d}' % i)
        if i % 97 == 0:
            j.flush()
    j.close()
    lines = b"".join(gzip.open(p).read() for p in j.files("user")).splitlines()
    assert lines == [b'{"n":%d}' % i for i in range(3_000)]
    assert len(j.files("user")) > 1  # rotated by size across the writes


def test_a_write_that_fails_is_counted_and_raised(tmp_path):
    d = tmp_path / "journal"
    j = Journal(d)
    shutil.rmtree(d)
    d.write_bytes(b"")  # the directory is gone: no stream file can be created
    j.order(b'{"order":1}')
    j.order(b'{"order":2}')
    with pytest.raises(JournalWriteError, match="2 journal record"):
        j.sync()
    assert j.errors == 2
    j.close()  # already reported
