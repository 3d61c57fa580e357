"""The frame journal: gzip streams, rotation by size, and inspect reading what it wrote."""

from __future__ import annotations

import gzip

from active_quoting.inspect_feed import inspect_file
from active_quoting.store.journal import Journal
from conftest import capture


def test_rotation_and_retention(tmp_path):
    j = Journal(tmp_path, max_bytes=300, keep=2)
    for i in range(12):
        j.market(b'{"event_type":"other","n":%d,"pad":"%s"}' % (i, b"x" * 60))
        j.flush()
    j.order(b'{"order":1}')
    j.close()
    files = j.files("market")
    assert len(files) == 2 and files[-1].name.startswith("market-0000")  # rotated, only the newest kept
    lines = b"".join(gzip.open(f).read() for f in files).splitlines()
    assert lines and all(line.startswith(b'{"event_type":"other"') for line in lines)
    assert gzip.open(j.files("orders")[0]).read() == b'{"order":1}\n'
    again = Journal(tmp_path, max_bytes=300)
    again.market(b"PONG")
    again.close()
    assert len(again.files("market")) == 3  # appends after the last index, never overwrites


def test_inspect_reads_a_market_journal(tmp_path):
    j = Journal(tmp_path)
    j.market(capture("ws_book.json"))  # a multi-line capture is stored as one line
    j.market(b"PONG")
    j.close()
    summary = inspect_file(j.files("market")[0])
    assert summary["errors"] == 0 and summary["events"] == {"PONG": 1, "book": 1}
