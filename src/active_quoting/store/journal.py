"""A journal of raw frames: market frames as received, user frames, and the order bodies sent.

Three streams, each a series of gzip files of one record per line, rotated by size:
``market-NNNNNN.jsonl.gz`` holds market-channel frames exactly as received, so
``active-quoting inspect`` reads any of them directly. The hot path only appends bytes to a
deque; compression and writing happen in the journal's own thread. :meth:`Journal.flush` (the
bot's loop calls it every second) only wakes that thread and returns; :meth:`Journal.sync`
waits until everything appended so far is on disk; :meth:`Journal.close` syncs and stops it.
A kill -9 loses what was appended since the last write (at most one flush interval).
"""

from __future__ import annotations

import gzip
import logging
import threading
import weakref
from collections import deque
from pathlib import Path

_log = logging.getLogger(__name__)

STREAMS = ("market", "user", "orders")


class JournalWriteError(RuntimeError):
    """Journal records the writer thread could not write (their count and the first error)."""


class _Files:
    """The gzip files of the three streams; touched only by the journal's thread (and by
    :meth:`Journal.close` after that thread has stopped)."""

    def __init__(self, directory: Path, max_bytes: int, keep: int) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.keep = keep
        self.open: dict[str, gzip.GzipFile | None] = dict.fromkeys(STREAMS)
        self.written: dict[str, int] = dict.fromkeys(STREAMS, 0)
        self.index: dict[str, int] = {s: self._last_index(s) for s in STREAMS}

    def _last_index(self, stream: str) -> int:
        found = [int(p.name.split("-")[1].split(".")[0]) for p in self.dir.glob(f"{stream}-*.jsonl.gz")]
        return max(found, default=0)

    def _file(self, stream: str) -> gzip.GzipFile:
        f = self.open[stream]
        if f is None or self.written[stream] >= self.max_bytes:
            if f is not None:
                f.close()
            self.index[stream] += 1
            path = self.dir / f"{stream}-{self.index[stream]:06d}.jsonl.gz"
            f = self.open[stream] = gzip.GzipFile(path, "ab", compresslevel=3)
            self.written[stream] = 0
            for old in sorted(self.dir.glob(f"{stream}-*.jsonl.gz"))[: -self.keep]:  # the newest `keep` stay
                old.unlink()
        return f

    def write(self, stream: str, items: list[bytes]) -> None:
        """One line per record; a file is rotated once it holds ``max_bytes``, however the
        records were grouped into writes."""
        chunk: list[bytes] = []
        size = 0
        for x in items:
            line = x.replace(b"\n", b" ") + b"\n"
            chunk.append(line)
            size += len(line)
            if self.written[stream] + size >= self.max_bytes:
                self._put(stream, chunk, size)
                chunk, size = [], 0
        if chunk:
            self._put(stream, chunk, size)

    def _put(self, stream: str, chunk: list[bytes], size: int) -> None:
        f = self._file(stream)
        f.write(b"".join(chunk))
        f.flush()
        self.written[stream] += size

    def close(self) -> None:
        for stream, f in self.open.items():
            if f is not None:
                f.close()
                self.open[stream] = None


class _Worker:
    """The journal's thread: drains the stream deques into the files whenever woken."""

    def __init__(self, files: _Files, pending: dict[str, deque[bytes]]) -> None:
        self.files = files
        self.pending = pending
        self.errors = 0  # records lost, ever
        self.unreported: list[tuple[int, BaseException]] = []
        self.cond = threading.Condition()  # guards the counters below, never held across I/O
        self.requested = 0  # wake-ups asked for
        self.handled = 0  # wake-ups whose drain has finished
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name=f"journal {files.dir.name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            with self.cond:
                while self.handled == self.requested and not self.stopping:
                    self.cond.wait()
                target, stop = self.requested, self.stopping
            self._drain()
            with self.cond:
                self.handled = target
                self.cond.notify_all()
                if stop and self.handled == self.requested:
                    return

    def _drain(self) -> None:
        for stream, dq in self.pending.items():
            items: list[bytes] = []
            try:  # popleft is atomic against the hot path's append: nothing is taken twice or lost
                while True:
                    items.append(dq.popleft())
            except IndexError:
                pass
            if not items:
                continue
            try:
                self.files.write(stream, items)
            except Exception as exc:  # noqa: BLE001 - the thread must survive a full disk
                _log.error("journal: %d %s record(s) lost: %s", len(items), stream, exc)
                with self.cond:
                    self.errors += len(items)
                    self.unreported.append((len(items), exc))

    def wake(self) -> int:
        with self.cond:
            self.requested += 1
            self.cond.notify_all()
            return self.requested

    def wait(self, ticket: int) -> None:
        with self.cond:
            while self.handled < ticket:
                if not self.thread.is_alive():
                    raise JournalWriteError("the journal's thread has stopped")
                self.cond.wait(0.5)

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.requested += 1
            self.cond.notify_all()
        self.thread.join()
        self.files.close()


class Journal:
    def __init__(self, directory: str | Path, max_bytes: int = 64 * 1024 * 1024, keep: int = 20) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._pending: dict[str, deque[bytes]] = {s: deque() for s in STREAMS}
        # The hot path's appends: bound methods of the deques, no Python frame in between.
        self.market = self._pending["market"].append
        self.user = self._pending["user"].append
        self.order = self._pending["orders"].append
        self._worker = _Worker(_Files(self.dir, max_bytes, keep), self._pending)
        self._closed = False
        self._finalizer = weakref.finalize(self, _Worker.stop, self._worker)

    @property
    def errors(self) -> int:
        """Records the journal's thread could not write, since open."""
        return self._worker.errors

    def files(self, stream: str) -> list[Path]:
        return sorted(self.dir.glob(f"{stream}-*.jsonl.gz"))

    def flush(self) -> None:
        """Ask the journal's thread to write what has been appended; returns at once."""
        self._worker.wake()

    def sync(self) -> None:
        """Wait until everything appended so far is written; raise :class:`JournalWriteError` if
        records were lost since the last sync (they were logged when they were)."""
        self._worker.wait(self._worker.wake())
        with self._worker.cond:
            found, self._worker.unreported = self._worker.unreported, []
        if found:
            raise JournalWriteError(
                f"{self.dir}: {sum(n for n, _ in found)} journal record(s) lost; first: {found[0][1]!r}"
            )

    def close(self) -> None:
        """Write everything, stop the thread and close the files (raises like :meth:`sync`)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.sync()
        finally:
            self._finalizer()
