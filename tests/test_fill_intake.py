"""The fill intake: each fill counted once, settlement only forward, recovery asking the venue
from the oldest unsettled fill (a MINED, CONFIRMED or FAILED the channel missed comes back)
but never before the store's first run, and never re-tracking a retired window."""

from __future__ import annotations

from active_quoting.clock import ManualClock
from active_quoting.fill_intake import FillIntake
from active_quoting.model import Fill
from active_quoting.venue.user_codec import FillUpdate
from test_windows import Alerts, info, lifecycle

SH = 1_000_000
T0 = 1_000_000_000


def fill(trade: str, status: str, t_s: int, market: str = "0xc1", token: str = "11") -> FillUpdate:
    return FillUpdate("fill", Fill(trade, "o-" + trade, market, token, "BUY", 4000, 10 * SH, status, t_s * 1000))


def test_recovery_asks_from_the_oldest_unsettled_fill_never_before_the_floor(tmp_path):
    windows, store = lifecycle(tmp_path)
    windows.add(info(1, T0), T0)
    intake = FillIntake(windows, Alerts(), ManualClock(T0 + 30))
    intake.floor_ms = (T0 - 100) * 1000
    assert intake.recovery_from_ms() == intake.floor_ms  # nothing known: from the store's first run
    intake.on_fill(fill("a", "MATCHED", T0 + 1))
    intake.on_fill(fill("b", "CONFIRMED", T0 + 20))
    assert intake.recovery_from_ms() == (T0 + 1) * 1000  # "a" may still be MINED, CONFIRMED or FAILED
    intake.on_fill(fill("a", "CONFIRMED", T0 + 1))
    assert intake.recovery_from_ms() == (T0 + 20) * 1000  # all final: from the newest
    intake.floor_ms = (T0 + 50) * 1000
    assert intake.recovery_from_ms() == intake.floor_ms
    store.close()


def test_settlement_only_moves_forward_and_repeats_count_once(tmp_path):
    windows, store = lifecycle(tmp_path)
    windows.add(info(1, T0), T0)
    alerts = Alerts()
    intake = FillIntake(windows, alerts, ManualClock(T0 + 30))
    assert intake.on_fill(fill("a", "MATCHED", T0 + 1))
    assert not intake.on_fill(fill("a", "MATCHED", T0 + 1))  # a duplicate
    assert intake.on_fill(fill("a", "CONFIRMED", T0 + 1))
    assert not intake.on_fill(fill("a", "MINED", T0 + 1))  # late, out of order: ignored
    assert not intake.on_fill(fill("a", "FAILED", T0 + 1))  # after CONFIRMED nothing changes it
    assert intake.known["0xc1"][("a", "o-a")] == "CONFIRMED"
    assert intake.seen == 1 and len(alerts.fills) == 1
    assert windows.parts.inventory.held("0xc1") == (10 * SH, 0)
    store.close()


def test_a_retired_window_is_never_tracked_again(tmp_path):
    windows, store = lifecycle(tmp_path)
    windows.add(info(1, T0), T0)
    intake = FillIntake(windows, Alerts(), ManualClock(T0))
    windows.advance(T0 + 60)
    windows.resolve("0xc1", "11")
    assert windows.prune(T0 + 200) == ["0xc1"] and windows.is_retired("0xc1")
    late = [fill("z", "CONFIRMED", T0 + 5), fill("y", "MATCHED", T0 + 5, market="0xc9", token="91")]
    assert intake.unknown_markets(late) == {"0xc9"}  # the retired one is not adopted again
    assert intake.on_fill(late[0]) is True  # its fill still reaches the store
    assert "0xc1" not in windows.windows and intake.seen == 0
    store.close()


def test_a_fill_recovered_late_is_counted_but_not_measured_from_now(tmp_path):
    windows, store = lifecycle(tmp_path)
    windows.add(info(1, T0), T0)
    alerts = Alerts()
    intake = FillIntake(windows, alerts, ManualClock(T0 + 30))
    analytics = windows.parts.analytics
    assert intake.on_fill(fill("old", "MATCHED", T0 + 1), recovered=True)  # 29 s late
    assert intake.on_fill(fill("new", "MATCHED", T0 + 30), recovered=True)  # just now
    assert analytics.is_known(("old", "o-old")) and analytics.is_known(("new", "o-new"))
    assert analytics.market_report("0xc1")["fills"] == 1  # only the fresh one is analysed
    assert windows.parts.inventory.held("0xc1") == (20 * SH, 0) and intake.recovered == 2
    assert alerts.fills[0].endswith("(recovered)")
    store.close()
