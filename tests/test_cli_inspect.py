"""``active-quoting inspect`` run as a user runs it: the installed console script on real files."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import orjson

from conftest import capture
from synth_feed import DOWN, UP, synth_feed

EXE = shutil.which("active-quoting") or str(Path(sys.executable).parent / "active-quoting")


def run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([EXE, *args], capture_output=True, check=False, timeout=60)


def test_inspect_recorded_feed(tmp_path):
    frames = synth_feed(11, 200)
    frames[5:5] = [
        b"PONG",
        b"NO NEW ASSETS",
        b"{broken",
        b'{"event_type":"surprise"}',
        capture("ws_price_change.json").replace(b"\n", b""),
    ]
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b"\n".join(frames) + b"\n\n")
    out = run("inspect", str(path))
    assert out.returncode == 0, out.stderr
    summary = orjson.loads(out.stdout)
    assert summary["frames"] == len(frames)
    assert summary["events"]["book"] == 2 and summary["events"]["price_change"] == 201
    assert summary["events"]["PONG"] >= 1 and summary["events"]["NO NEW ASSETS"] == 1
    assert summary["unknown_event_types"] == {"surprise": 1}
    assert summary["errors"] == 1 and "malformed JSON" in summary["error_samples"][0]
    assert summary["orphans"] == 1 and summary["desync_marks"] == 0
    up, down = summary["books"][UP], summary["books"][DOWN]
    assert up["best_bid"] is not None and up["disagreements"] == 0
    # complementary tokens mirror each other: Up's best bid p is Down's best ask 1 - p
    assert round(1 - float(up["best_bid"]), 4) == float(down["best_ask"])
    assert up["bid_depth"] == down["ask_depth"]


def test_inspect_gzip_and_single_book(tmp_path):
    path = tmp_path / "book.jsonl.gz"
    path.write_bytes(gzip.compress(capture("ws_book.json").replace(b"\n", b"") + b"\n"))
    summary = orjson.loads(run("inspect", str(path)).stdout)
    (book,) = summary["books"].values()
    assert (book["best_bid"], book["best_ask"]) == ("0.511", "0.514")  # max bid / min ask of the capture
    assert (book["bid_levels"], book["ask_levels"]) == (76, 86)


def test_inspect_bundled_sample():
    out = run("inspect", "--sample")
    assert out.returncode == 0
    summary = orjson.loads(out.stdout)
    assert summary["errors"] == 0 and summary["events"]["price_change"] == 400
    assert all(not b["desynced"] and not b["crossed"] for b in summary["books"].values())


def test_inspect_missing_file_is_a_clear_error(tmp_path):
    out = run("inspect", str(tmp_path / "nope.jsonl"))
    assert out.returncode == 2 and b"no such file" in out.stderr and out.stdout == b""
    out = run("inspect")
    assert out.returncode == 2 and b"FILE or --sample" in out.stderr
