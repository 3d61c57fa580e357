"""Replay (issue 10 item 7): a recorded market feed served to the production bot on virtual
time, our orders filled against the recorded trades by the queue model. The queue rule is
checked with known numbers on hand-built frames; a feed recorded by the embedded exchange
(``exchange --record``, on virtual time) is replayed through the bot and through the CLI."""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from active_quoting.exchange.engine import BUY, SELL, Order
from active_quoting.exchange.flow import FlowConfig, MarketFlow
from active_quoting.exchange.server import Exchange, ExchangeConfig
from active_quoting.model import ASK, BID
from active_quoting.sim.loop import LoopClock, VirtualTimeLoop
from active_quoting.sim.replay import (
    QueueModel,
    ReplayError,
    ReplayExchange,
    ReplaySimulation,
    load_recording,
    replay_config,
)
from active_quoting.sim.runner import EPOCH, SimConfig

EXE = shutil.which("active-quoting") or str(Path(sys.executable).parent / "active-quoting")
CID, UP, DOWN = "0xabc", "111", "222"
SH = 1_000_000  # micro-shares per share
T0 = 1_780_000_200_000


def _pc(t: int, *levels: tuple[str, str, int]) -> dict:
    """A price_change on the Up token: (side, price text, shares)."""
    return {"event_type": "price_change", "market": CID, "timestamp": str(t),
            "price_changes": [{"asset_id": UP, "side": s, "price": p, "size": str(n)} for s, p, n in levels]}  # fmt: skip


def _trade(t: int, token: str, side: str, price: str, shares: int) -> dict:
    return {"event_type": "last_trade_price", "market": CID, "asset_id": token, "side": side, "price": price,
            "size": str(shares), "timestamp": str(t)}  # fmt: skip


def _model(bids: dict[int, int], asks: dict[int, int] | None = None) -> QueueModel:
    q = QueueModel()
    q.add_market(CID, UP, DOWN)
    book = {"event_type": "book", "market": CID, "asset_id": UP, "timestamp": str(T0),
            "bids": [{"price": f"0.{p // 100:02d}", "size": str(n)} for p, n in bids.items()],
            "asks": [{"price": f"0.{p // 100:02d}", "size": str(n)} for p, n in (asks or {}).items()]}  # fmt: skip
    assert q.apply([book]) == {}
    return q


# -- the queue rule, known numbers ------------------------------------------------------------


def test_we_join_the_back_and_trades_eat_the_queue_ahead_first():
    q = _model({4800: 100})
    us = q.join("o1", CID, BID, 4800, 20 * SH)
    assert us.ahead == 100 * SH
    # 90 sold into 0.48 (the level drops with it, same timestamp): all of it was ahead of us
    assert q.apply([_pc(T0 + 1, (BUY, "0.48", 10)), _trade(T0 + 1, UP, SELL, "0.48", 90)]) == {}
    assert us.ahead == 10 * SH and q.cancel_volume == 0  # a trade, not a cancel
    # 25 more: 10 ahead, then 15 of ours
    assert q.apply([_pc(T0 + 2, (BUY, "0.48", 0)), _trade(T0 + 2, UP, SELL, "0.48", 25)]) == {"o1": 15 * SH}
    assert us.ahead == 0 and us.remaining == 5 * SH


def test_cancels_shrink_the_queue_ahead_in_proportion_and_joins_go_behind():
    q = _model({4800: 100})
    us = q.join("o1", CID, BID, 4800, 10 * SH)
    assert q.apply([_pc(T0 + 1, (BUY, "0.48", 60))]) == {}  # 40 cancelled, no trade
    assert us.ahead == 60 * SH and q.cancel_volume == 40 * SH  # 100 * 60 // 100
    assert q.apply([_pc(T0 + 2, (BUY, "0.48", 90))]) == {}  # 30 joined behind us
    assert us.ahead == 60 * SH
    assert q.apply([_pc(T0 + 3, (BUY, "0.48", 45))]) == {}  # half the level cancelled: half of what is ahead
    assert us.ahead == 30 * SH
    # 35 sold: 30 ahead, 5 of ours
    assert q.apply([_pc(T0 + 4, (BUY, "0.48", 10)), _trade(T0 + 4, UP, SELL, "0.48", 35)]) == {"o1": 5 * SH}


def test_a_trade_through_our_price_fills_us_fully_and_a_sweep_is_traded_through():
    q = _model({4800: 50, 4700: 50, 4600: 50})
    better = q.join("b", CID, BID, 4900, 30 * SH)  # alone at 0.49, better than the book
    at_48 = q.join("c", CID, BID, 4800, 10 * SH)
    at_46 = q.join("d", CID, BID, 4600, 10 * SH)
    # One taker SELL of 120 reported at 0.48 (the first maker's price) sweeping 0.48 and 0.47 and 20 of 0.46:
    fills = q.apply([
        _pc(T0 + 1, (BUY, "0.48", 0), (BUY, "0.47", 0), (BUY, "0.46", 30)),
        _trade(T0 + 1, UP, SELL, "0.48", 120),
    ])  # fmt: skip
    # 0.49 and 0.48 were traded through (fully, whatever the trade's size); at 0.46 the 20 took
    # from the 50 ahead of us
    assert fills == {"b": 30 * SH, "c": 10 * SH}
    assert better.remaining == 0 and at_48.remaining == 0
    assert at_46.ahead == 30 * SH and at_46.remaining == 10 * SH


def test_a_down_token_order_is_an_up_ask_and_is_taken_by_up_buyers():
    q = _model({}, {5200: 40})
    # BUY Down at 0.48 rests as an Up ask at 0.52: ahead = the 40 already there
    us = q.join("o1", CID, ASK, 5200, 10 * SH)
    assert us.ahead == 40 * SH
    # a taker BUY of Up at 0.52 for 45 (the Down feed shows the same trade as BUY Up)
    assert q.apply([_pc(T0 + 1, (SELL, "0.52", 0)), _trade(T0 + 1, UP, BUY, "0.52", 45)]) == {"o1": 5 * SH}
    # the same side taken from the Down token: a SELL of Down at 0.48 is a BUY of Up at 0.52
    assert q.apply([_trade(T0 + 2, DOWN, SELL, "0.48", 3)]) == {"o1": 3 * SH}


def test_two_of_ours_at_one_level_fill_in_arrival_order():
    q = _model({4800: 10})
    first = q.join("a", CID, BID, 4800, 10 * SH)
    q.apply([_pc(T0 + 1, (BUY, "0.48", 20))])  # 10 joined behind the first
    second = q.join("b", CID, BID, 4800, 10 * SH)
    assert (first.ahead, second.ahead) == (10 * SH, 20 * SH)
    # 25 sold: 10 ahead, 10 of the first, 5 of the 10 between: the second is still 5 behind
    assert q.apply([_pc(T0 + 2, (BUY, "0.48", 0)), _trade(T0 + 2, UP, SELL, "0.48", 25)]) == {"a": 10 * SH}
    assert second.ahead == 0  # the level is empty now: nothing can be ahead
    assert second.remaining == 10 * SH


# -- the replay venue on a hand-built journal --------------------------------------------------


def _journal(path: Path) -> Path:
    """A tiny recording: a market announced, its book, then a cancel, a trade, a sweep."""
    frames = [
        {"event_type": "new_market", "market": CID, "slug": "btc-updown-1m-1780000200", "assets_ids": [UP, DOWN],
         "outcomes": ["Up", "Down"], "order_price_min_tick_size": "0.01", "timestamp": str(T0)},
        [{"event_type": "book", "market": CID, "asset_id": UP, "timestamp": str(T0), "tick_size": "0.01",
          "bids": [{"price": "0.48", "size": "100"}], "asks": [{"price": "0.52", "size": "100"}]}],
        _pc(T0 + 1000, (BUY, "0.48", 50)),  # 50 cancelled: half of what is ahead
        {**_pc(T0 + 2000, (BUY, "0.48", 10)), "note": "traded"},
        _trade(T0 + 2000, UP, SELL, "0.48", 60),  # 50 ahead, then 10 of ours
        _pc(T0 + 3000, (BUY, "0.48", 0)),
    ]  # fmt: skip
    path.write_bytes(b"".join(orjson.dumps(f) + b"\n" for f in frames))
    return path


def test_a_hand_built_journal_gives_exactly_the_fills_the_rule_implies(tmp_path: Path):
    rec = load_recording(_journal(tmp_path / "tiny.jsonl"))
    assert list(rec.markets) == [CID] and rec.window_s == 60 and rec.assets == ("btc",)
    ex = ReplayExchange(ExchangeConfig(), LoopClock(VirtualTimeLoop(), T0 / 1000), rec)
    ex.list_market(rec.markets[CID])
    batches: dict[int, list] = {}
    for f in rec.frames:
        batches.setdefault(f.t_ms, []).append(f)
    ex.play(batches.pop(T0))
    me = "0x00000000000000000000000000000000000000aa"
    ex.engine.credit(me, collateral=1_000 * SH)
    order = Order("ours", me, "k", CID, UP, BUY, 4800, 20 * SH, post_only=True)
    ex.engine.place(order, T0)
    ex.queue.join(order.id, CID, BID, 4800, order.remaining)
    for t in sorted(batches):
        ex.play(batches[t])
    # 100 ahead; 50 cancelled -> 50 ahead; 60 sold -> 50 ahead, 10 ours; the level then empties
    assert order.matched == 10 * SH and order.status == "LIVE"
    assert ex.counts["fills"] == 1 and ex.counts["filled_micro_shares"] == 10 * SH
    assert ex.counts.get("fill_mismatch", 0) == 0
    assert ex.engine.account(me).reserved == 10 * SH * 4800 // 10_000  # the unfilled 10 still reserved
    # our order changed nothing in the recorded book
    assert ex.queue.size(CID, BID, 4800) == 0 and ex.counts["engine_frames_withheld"] > 0


def test_a_missing_empty_or_malformed_recording_is_refused_with_where_and_why(tmp_path: Path):
    with pytest.raises(ReplayError, match="no such file"):
        load_recording(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_bytes(b"")
    with pytest.raises(ReplayError, match="empty recording"):
        load_recording(tmp_path / "empty.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(_journal(tmp_path / "ok.jsonl").read_bytes() + b'{"event_type": "book", broken\n')
    with pytest.raises(ReplayError, match=r"bad\.jsonl:7: malformed frame"):
        load_recording(bad)
    (tmp_path / "journal").mkdir()
    with pytest.raises(ReplayError, match="not a bot journal directory"):
        load_recording(tmp_path / "journal")
    nomarket = tmp_path / "nomarket.jsonl"
    nomarket.write_bytes(orjson.dumps(_pc(T0, (BUY, "0.48", 5))) + b"\n")
    with pytest.raises(ReplayError, match="no replayable market"):
        load_recording(nomarket)


# -- a recorded feed through the production bot ----------------------------------------------


def _record(path: Path, seconds: float, seed: int = 3) -> Path:
    """``exchange --record`` of the embedded exchange's flow, on virtual time (a second of CPU)."""
    loop = VirtualTimeLoop()
    clock = LoopClock(loop, EPOCH)

    async def main() -> None:
        ex = Exchange(ExchangeConfig(seed=seed, record=str(path)), clock=clock)
        await ex.start()
        flow = MarketFlow(ex, FlowConfig(assets=("btc",), window_s=60, seed=seed, step_ms=1000, taker_delay_ms=50))
        flow.start()
        await asyncio.sleep(seconds)
        await flow.stop()
        await ex.stop()

    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    return path


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _record(tmp_path_factory.mktemp("rec") / "feed.jsonl", 180)


def test_a_recorded_feed_replayed_through_the_bot_fills_by_the_queue_and_is_reproducible(recorded: Path):
    rec = load_recording(recorded)
    assert len(rec.markets) >= 3 and not rec.skipped
    runs = [ReplaySimulation(replay_config(SimConfig(strategy="active"), rec), rec).run() for _ in range(2)]
    a, b = runs
    rp = a["replay"]
    assert rp["recorded_trades"] > 20 and rp["frames_sent"] > 100
    assert a["fills"] > 0 and rp["fills"] == a["fills"]  # every fill the bot stored came from the queue model
    assert rp.get("fill_mismatch", 0) == 0 and rp["orders_joined"] > 0
    assert a["invariants"]["ok"], a["invariants"]
    assert rp["markets_resolved"] >= 2 and len(a["resolutions"]) >= 2
    assert a["fills_digest"] == b["fills_digest"] and a["report"] == b["report"]


def test_a_bot_journal_directory_is_read_like_a_recording(tmp_path: Path, recorded: Path):
    journal = tmp_path / "run.db.journal"
    journal.mkdir()
    lines = recorded.read_bytes().splitlines()
    for i, part in enumerate((lines[: len(lines) // 2], lines[len(lines) // 2 :]), 1):
        with gzip.open(journal / f"market-{i:06d}.jsonl.gz", "wb") as f:
            f.write(b"\n".join(part) + b"\n")
    rec, flat = load_recording(journal), load_recording(recorded)
    assert [f.raw for f in rec.frames] == [f.raw for f in flat.frames]
    assert rec.markets.keys() == flat.markets.keys()


def test_sim_replay_as_typed(tmp_path: Path, recorded: Path):
    out = tmp_path / "replay.json"
    run = subprocess.run([EXE, "sim", "--replay", str(recorded), "--strategy", "active", "--quiet", "--json", str(out)],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "replay active:" in run.stdout and "all held" in run.stdout
    summary = json.loads(out.read_text())
    assert summary["fills"] > 0 and summary["replay"]["source"] == str(recorded)
    for args, why in (
        (["--replay", str(tmp_path / "absent")], "no such file"),
        (["--replay", str(recorded), "--faults", "default"], "do not apply"),
        (["--replay", str(recorded), "--seeds", "1-2"], "one seed"),
    ):
        bad = subprocess.run([EXE, "sim", *args], capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and why in bad.stderr, (args, bad.stderr)
