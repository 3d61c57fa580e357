"""The market-window lifecycle: a window is registered everywhere when listed, quoted only
inside its quoting span, stopped before its end, resolved, unsubscribed and pruned from every
component that held state for it - so a day of rollovers leaves nothing behind."""

from __future__ import annotations

from fractions import Fraction

from active_quoting.analytics.fills import FillAnalytics
from active_quoting.clock import ManualClock
from active_quoting.discovery import WindowInfo
from active_quoting.execution.order_manager import OrderManager
from active_quoting.fill_intake import FillIntake
from active_quoting.model import Fill
from active_quoting.store.sqlite import Store
from active_quoting.strategy.inventory import InventoryManager
from active_quoting.strategy.momentum import MomentumDetector
from active_quoting.venue.market_data import MarketData
from active_quoting.venue.signing import ApiCredentials, OrderSigner
from active_quoting.venue.user_codec import FillUpdate
from active_quoting.venue.ws import MarketStream, UserStream
from active_quoting.windows import ENDED, LISTED, QUOTING, RESOLVED, STOPPING, WindowLifecycle, WindowParts

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # throwaway
SH = 1_000_000


class Alerts:
    def __init__(self) -> None:
        self.fills: list[str] = []

    def fill(self, text: str) -> None:
        self.fills.append(text)


def info(i: int, start: int, length: int = 60) -> WindowInfo:
    return WindowInfo(
        asset="btc", slug=f"btc-updown-1m-{start}", condition_id=f"0xc{i}", up=f"{i}1", down=f"{i}2", start=start,
        end=start + length, tick=100, min_size=5 * SH, fee_rate=Fraction(0), fee_exponent=1,
        rebate_share=Fraction(0), closed=False,
    )  # fmt: skip


def lifecycle(tmp_path):
    store = Store(tmp_path / "w.db")
    orders = OrderManager(None, OrderSigner(KEY), store)  # type: ignore[arg-type] - nothing is sent here
    parts = WindowParts(
        InventoryManager(), FillAnalytics(), orders, MomentumDetector(), store,
        MarketStream("ws://127.0.0.1:9/ws/market", MarketData()),
        UserStream("ws://127.0.0.1:9/ws/user", ApiCredentials("k", "s", "p"), None, []),
    )  # fmt: skip
    return WindowLifecycle(parts, stop_before_end_s=10, linger_s=30), store


def test_phases_follow_the_clock_and_prune_leaves_nothing(tmp_path):
    windows, store = lifecycle(tmp_path)
    p = windows.parts
    t0 = 1_000_000_020
    intake = FillIntake(windows, Alerts(), ManualClock(t0))
    assert windows.add(info(1, t0 - 20), t0) and not windows.add(info(1, t0 - 20), t0)  # known once
    assert windows.add(info(2, t0 + 40), t0)
    assert [windows.get(c).phase for c in ("0xc1", "0xc2")] == [QUOTING, LISTED]
    assert windows.lookup("12") == ("0xc1", windows.get("0xc1")) and windows.lookup("99") == (None, None)
    assert set(p.market.assets()) == {"11", "12", "21", "22"}
    assert windows.quoting() == ["0xc1"]
    # 10 s before its end the first window stops quoting: the bot is told, to cancel there
    assert windows.advance(t0 + 29) == [] and windows.advance(t0 + 30) == ["0xc1"]
    assert windows.get("0xc1").phase == STOPPING and windows.quoting() == []
    assert windows.advance(t0 + 40) == [] and windows.get("0xc1").phase == ENDED
    assert windows.get("0xc2").phase == QUOTING
    f = Fill("t1", "o1", "0xc1", "11", "BUY", 4000, 10 * SH, "MATCHED", (t0 + 1) * 1000)
    intake.on_fill(FillUpdate("fill", f))
    assert p.inventory.held("0xc1") == (10 * SH, 0)
    # no prune before the resolution, however late
    assert windows.prune(t0 + 69) == [] and set(p.market.assets()) == {"11", "12", "21", "22"}
    assert windows.prune(t0 + 75) == [] and "0xc1" in windows.windows
    assert set(p.market.assets()) == {"21", "22"}  # but its book is unsubscribed after the linger
    assert windows.resolve("0xc1", "11") is not None and windows.resolve("0xc1", "11") is None
    assert windows.get("0xc1").phase == RESOLVED
    assert windows.prune(t0 + 75) == ["0xc1"]
    intake.forget("0xc1")
    # every component forgot it
    assert "0xc1" not in windows.windows and "11" not in windows.token_market
    assert windows.lookup("11") == (None, None) and windows.lookup("21")[0] == "0xc2"
    assert "0xc1" not in p.inventory.markets() and "0xc1" not in p.analytics.markets()
    assert "0xc1" not in p.orders.markets and "0xc1" not in intake.known
    assert "0xc1" not in p.user.markets
    assert p.inventory.realized_total() == Fraction(6)  # 10 shares bought at 0.40, won: +6 USDC kept
    store.close()


def test_a_day_of_rollovers_keeps_state_flat(tmp_path):
    windows, store = lifecycle(tmp_path)
    p = windows.parts
    t = 1_000_000_000
    sizes = []
    for i in range(300):  # 300 one-minute windows
        windows.add(info(i, t + 60 * i), t + 60 * i)
        for token in (f"{i}1", f"{i}2"):  # mids create markout trackers before any fill
            p.analytics.on_mid(token, (t + 60 * i + 1) * 1000, 10_000)
        now = t + 60 * i + 59
        windows.advance(now)
        for old in list(windows.windows):
            w = windows.get(old)
            if w.phase == ENDED:
                windows.resolve(old, w.info.up)
        windows.prune(now)
        sizes.append((len(windows.windows), len(p.market.assets()), len(p.orders.markets), len(p.inventory.markets()),
                      len(p.analytics._trackers)))  # fmt: skip
    assert max(s[0] for s in sizes[50:]) <= 3 and sizes[-1] == sizes[100]
    assert windows.pruned >= 295
    store.close()
