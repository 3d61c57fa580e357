"""A journal of raw frames: market frames as received, user frames, and the order bodies sent.

Three streams, each a series of gzip files of one record per line, rotated by size:
``market-NNNNNN.jsonl.gz`` holds market-channel frames exactly as received, so
``active-quoting inspect`` reads any of them directly. The hot path only appends bytes to a
list; compression and writing happen in :meth:`flush`, called from the bot's loop.
"""

from __future__ import annotations

import gzip
from pathlib import Path

STREAMS = ("market", "user", "orders")


class Journal:
    def __init__(self, directory: str | Path, max_bytes: int = 64 * 1024 * 1024, keep: int = 20) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.keep = keep
        self._pending: dict[str, list[bytes]] = {s: [] for s in STREAMS}
        self._files: dict[str, gzip.GzipFile | None] = dict.fromkeys(STREAMS)
        self._written: dict[str, int] = dict.fromkeys(STREAMS, 0)
        self._index: dict[str, int] = {s: self._last_index(s) for s in STREAMS}

    def _last_index(self, stream: str) -> int:
        found = [int(p.name.split("-")[1].split(".")[0]) for p in self.dir.glob(f"{stream}-*.jsonl.gz")]
        return max(found, default=0)

    def market(self, frame: bytes) -> None:
        self._pending["market"].append(frame)

    def user(self, frame: bytes) -> None:
        self._pending["user"].append(frame)

    def order(self, body: bytes) -> None:
        self._pending["orders"].append(body)

    def files(self, stream: str) -> list[Path]:
        return sorted(self.dir.glob(f"{stream}-*.jsonl.gz"))

    def _open(self, stream: str) -> gzip.GzipFile:
        f = self._files[stream]
        if f is None or self._written[stream] >= self.max_bytes:
            if f is not None:
                f.close()
            self._index[stream] += 1
            path = self.dir / f"{stream}-{self._index[stream]:06d}.jsonl.gz"
            f = self._files[stream] = gzip.GzipFile(path, "ab", compresslevel=3)
            self._written[stream] = 0
            for old in self.files(stream)[: -self.keep]:  # the newest `keep` files stay
                old.unlink()
        return f

    def flush(self) -> None:
        for stream, items in self._pending.items():
            if not items:
                continue
            self._pending[stream] = []
            f = self._open(stream)
            data = b"".join(x.replace(b"\n", b" ") + b"\n" for x in items)
            f.write(data)
            f.flush()
            self._written[stream] += len(data)

    def close(self) -> None:
        self.flush()
        for stream, f in self._files.items():
            if f is not None:
                f.close()
                self._files[stream] = None
