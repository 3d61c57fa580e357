"""Analytics persisted as they resolve, not at shutdown: markouts (the first value stored wins, so
a fill replayed after a restart cannot overwrite it), cooldown totals per market, run time as a
heartbeat; and the latest stored fill time, where fill recovery after a restart starts."""

from __future__ import annotations

import json
import sqlite3

from active_quoting.model import MATCHED, Fill
from active_quoting.report import build_report
from active_quoting.store.sqlite import MIGRATIONS, Store

SH = 1_000_000


def test_a_stored_markout_is_never_overwritten_by_a_later_measurement(tmp_path):
    store = Store(tmp_path / "s.db")
    store.markout("t1", "0xa", 5, 140)  # measured from the fill
    store.close()
    again = Store(tmp_path / "s.db")  # restart: the venue replays the fill, analytics measure anew
    again.markout("t1", "0xa", 5, -900)
    again.markout("t1", "0xa", 15, 60)  # a horizon not stored before is stored
    assert sorted(again.markouts()) == [("t1", "0xa", 5, 140), ("t1", "0xa", 15, 60)]
    again.close()


def test_cooldown_accumulates_per_market_in_the_key_the_report_reads(tmp_path):
    store = Store(tmp_path / "s.db")
    store.market("0xa", "btc-updown-1m-1", "1", "2", 0, 60)
    store.market("0xb", "eth-updown-1m-1", "3", "4", 0, 60)
    store.add_cooldown_ms("0xa", 1_500)
    store.add_cooldown_ms("0xb", 250)
    store.add_cooldown_ms("0xa", 2_000)
    assert store.cooldown_ms() == {"0xa": 3_500, "0xb": 250}
    assert json.loads(store.get("cooldown_ms")) == {"0xa": 3_500, "0xb": 250}
    store.close()
    again = Store(tmp_path / "s.db")
    again.add_cooldown_ms("0xb", 750)  # a later run adds to the same total
    report = build_report(again)
    per = report["markets"]
    assert per["btc-updown-1m-1"]["cooldown_s"] == 3.5 and per["eth-updown-1m-1"]["cooldown_s"] == 1
    assert report["total"]["cooldown_s"] == 4.5
    again.close()


def test_run_time_is_the_sum_of_runs_each_counted_to_its_last_heartbeat(tmp_path):
    store = Store(tmp_path / "s.db")
    store.run_heartbeat("run-1", 1_000, 11_000)
    store.run_heartbeat("run-1", 1_000, 31_000)  # then killed: no shutdown write
    store.close()
    again = Store(tmp_path / "s.db")
    again.run_heartbeat("run-2", 100_000, 130_000)
    again.run_heartbeat("run-2", 100_000, 125_000)  # a heartbeat out of order never shortens a run
    assert again.run_ms() == 60_000
    assert again.get("run_ms") == "60000" and again.get("last_run_end_ms") == "130000"
    assert build_report(again)["total"]["run_s"] == 60
    again.close()


def test_a_store_of_the_previous_schema_keeps_its_cooldown_and_run_time(tmp_path):
    old = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    old.executescript("BEGIN;" + MIGRATIONS[0] + "PRAGMA user_version=1; COMMIT;")
    old.execute("INSERT INTO kv VALUES ('cooldown_ms', ?)", (json.dumps({"0xa": 4_000}),))
    old.execute("INSERT INTO kv VALUES ('run_ms', '90000')")
    old.close()
    store = Store(tmp_path / "s.db")
    assert store.cooldown_ms() == {"0xa": 4_000} and store.run_ms() == 90_000
    store.add_cooldown_ms("0xa", 1_000)
    store.run_heartbeat("run-2", 0, 30_000)
    assert json.loads(store.get("cooldown_ms")) == {"0xa": 5_000} and store.get("run_ms") == "120000"
    store.close()


def test_last_fill_ms_is_the_latest_fill_time_stored(tmp_path):
    store = Store(tmp_path / "s.db")
    assert store.last_fill_ms() is None
    for trade, t_ms in (("t1", 5_000), ("t2", 9_000), ("t3", 7_000)):  # the venue's order, not time order
        store.fill(Fill(trade, "0xa", "0xcid", "1001", "BUY", 4_900, 10 * SH, MATCHED, t_ms))
    assert store.last_fill_ms() == 9_000
    store.close()
    again = Store(tmp_path / "s.db")
    assert again.last_fill_ms() == 9_000
    again.close()
