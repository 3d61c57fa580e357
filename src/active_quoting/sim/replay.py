"""Replay: recorded market-channel frames served to the production bot on virtual time, our
orders filled against the recorded trades by a queue model.

A recording is either the bot's own journal (``DB.journal/``: ``market-NNNNNN.jsonl.gz``, the
frames exactly as received) or an ``active-quoting exchange --record`` file (one frame per line,
plain or gzip). Each line is sent to the bot unchanged, at its recorded time (the largest
``timestamp`` it carries; a line without one goes with the line before it). The markets come
from the recording: ``new_market`` events (slug, tokens), ``book`` snapshots (tick size) and
``market_resolved`` events (winner); for a bot journal, the ``markets`` table of the store next
to it (``DB``) fills in windows announced before the bot connected. They are listed on the
replay venue's Gamma and in its engine (REST order entry, user channel, settlement: the embedded
exchange's, unchanged) when the recording first mentions them.

The queue model (:class:`QueueModel`), per Up-terms level, in integer micro-shares:

- an order of ours joins the back of its level: ``ahead`` = the recorded size at that level
  when the order reaches the engine;
- recorded frames are taken in batches of equal timestamp. A recorded trade (``last_trade_price``)
  of size ``s`` at price ``p`` takes the makers' side at ``p``: its volume is matched to the
  decreases of that side in the same batch, from ``p`` away from the touch (a sweep reported as
  one trade); what no decrease accounts for stays at ``p``. The deepest level it reached eats
  ``ahead`` first, then our orders there in arrival order; our orders at better prices than
  that level were traded through and fill fully;
- a recorded decrease at a level that no trade accounts for is a cancel, assumed spread evenly
  over the level's queue: ``ahead`` shrinks in proportion, ``ahead * after // before`` (floor);
  an increase joins behind us (``ahead`` unchanged); ``ahead`` never exceeds the level's size;
- fills are whole 0.01-share lots unless they complete the order.

Limitations (stated): our orders do not change the recorded book (the bot never sees its own
liquidity in the feed, and a trade that fills us still consumes the recorded queue); a trade
through our price fills us fully whatever its size; marketable orders of ours (not post-only)
are refused (the bot sends post-only orders only); only net changes within one timestamp are
seen; markets of other window lengths than the most common one are not listed; fee schedules
not in the recording are the flow's (7% taker fee, 20% rebate).
"""

from __future__ import annotations

import asyncio
import gzip
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import orjson

from active_quoting import core, model
from active_quoting.clock import Clock
from active_quoting.exchange.engine import BUY, LOT, EngineError, FeeSchedule, Market, Order
from active_quoting.exchange.server import ApiKey, Exchange, ExchangeConfig
from active_quoting.sim.runner import SimConfig, Simulation

REPLAY_TAKER = "0x0000000000000000000000000000000000000003"  # the recorded takers, as one account
DEFAULT_MIN_SIZE = 5_000_000
DEFAULT_FEES = (Fraction(7, 100), Fraction(1, 5))
TAIL_S = 5.0  # the run goes on this long after the last frame (settlement, last user events)


class ReplayError(ValueError):
    """A recording that cannot be replayed (missing, empty or malformed), with where and why."""


# -- the recording -------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    t_ms: int
    raw: bytes  # exactly the recorded bytes
    events: tuple[dict[str, Any], ...]
    tokens: frozenset[str]  # the assets it concerns; empty: a market-wide event (new_market, ...)


@dataclass
class MarketInfo:
    condition_id: str
    up: str = ""
    down: str = ""
    slug: str = ""
    tick: int = 100
    first_ms: int = 0
    winner: str = ""
    fees: tuple[Fraction, Fraction] = DEFAULT_FEES

    @property
    def asset(self) -> str:
        return self.slug.partition("-updown-")[0]

    @property
    def window_s(self) -> int:
        label = self.slug.split("-")[-2] if self.slug.count("-") >= 3 else ""
        try:
            return int(label[:-1]) * 60 if label.endswith("m") else int(label[:-1])
        except ValueError:
            return 0

    @property
    def start_s(self) -> int:
        try:
            return int(self.slug.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            return 0


@dataclass
class Recording:
    source: str
    frames: list[Frame]
    markets: dict[str, MarketInfo]  # condition id -> market (only the replayable ones)
    skipped: dict[str, str] = field(default_factory=dict)  # condition id -> why not replayed

    @property
    def start_ms(self) -> int:
        return self.frames[0].t_ms

    @property
    def end_ms(self) -> int:
        return self.frames[-1].t_ms

    @property
    def window_s(self) -> int:
        return next(iter(self.markets.values())).window_s

    @property
    def assets(self) -> tuple[str, ...]:
        return tuple(sorted({m.asset for m in self.markets.values()}))


def _files(path: Path) -> list[Path]:
    if not path.exists():
        raise ReplayError(f"{path}: no such file or directory")
    if path.is_dir():
        found = sorted(path.glob("market-*.jsonl.gz"))
        if not found:
            raise ReplayError(f"{path}: no market-NNNNNN.jsonl.gz files (not a bot journal directory)")
        return found
    return [path]


def _lines(path: Path) -> list[bytes]:
    try:
        with path.open("rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        if gz:
            with gzip.open(path, "rb") as g:
                data = g.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError) as exc:
        raise ReplayError(f"{path}: unreadable ({exc})") from None
    return data.splitlines()


def _events(parsed: Any) -> list[dict[str, Any]]:
    items = parsed if isinstance(parsed, list) else [parsed]
    if not all(isinstance(e, dict) for e in items):
        raise ValueError("a frame is a JSON object or a list of objects")
    return items


def _t_ms(events: list[dict[str, Any]]) -> int | None:
    stamps = [int(e["timestamp"]) for e in events if str(e.get("timestamp", "")).isdigit()]
    return max(stamps) if stamps else None


def load_recording(path: str | Path) -> Recording:
    """Read a bot journal directory or an ``exchange --record`` file; raise :class:`ReplayError`
    naming the file and line of the first malformed frame, or saying it is empty."""
    base = Path(path)
    frames: list[Frame] = []
    markets: dict[str, MarketInfo] = {}
    last = -1
    for file in _files(base):
        for number, line in enumerate(_lines(file), 1):
            if not line.strip():
                continue
            try:
                events = _events(orjson.loads(line))
                t = _t_ms(events)
            except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
                raise ReplayError(f"{file}:{number}: malformed frame ({exc})") from None
            if t is None:
                if last < 0:
                    continue  # nothing to place it in time by yet (a PONG, an ack)
                t = last
            t = max(t, last)  # served in recorded order: a clock that stepped back waits
            last = t
            tokens: set[str] = set()
            for ev in events:
                _note_market(markets, ev, t)
                if "asset_id" in ev:
                    tokens.add(str(ev["asset_id"]))
                for pc in ev.get("price_changes") or ():
                    tokens.add(str(pc.get("asset_id", "")))
            frames.append(Frame(t, line.strip(), tuple(events), frozenset(tokens) - {""}))
    if not frames:
        raise ReplayError(f"{base}: no market frames with a timestamp (an empty recording)")
    if base.is_dir():
        _from_store(markets, Path(str(base).removesuffix("/").removesuffix(".journal")))
    return _select(str(base), frames, markets)


def _note_market(markets: dict[str, MarketInfo], ev: dict[str, Any], t: int) -> None:
    cid = str(ev.get("market") or ev.get("condition_id") or "")
    if not cid:
        return
    info = markets.get(cid)
    if info is None:
        info = markets[cid] = MarketInfo(cid, first_ms=t)
    kind = ev.get("event_type")
    if kind == "new_market":
        assets = [str(a) for a in ev.get("assets_ids") or ev.get("clob_token_ids") or ()]
        outcomes = [str(o).lower() for o in ev.get("outcomes") or ("up", "down")]
        if len(assets) == 2 and sorted(outcomes) == ["down", "up"]:
            info.up, info.down = (assets[0], assets[1]) if outcomes[0] == "up" else (assets[1], assets[0])
        info.slug = str(ev.get("slug") or info.slug)
        if ev.get("order_price_min_tick_size"):
            info.tick = core.parse_price(str(ev["order_price_min_tick_size"]))
    elif kind == "book" and ev.get("tick_size"):
        info.tick = core.parse_price(str(ev["tick_size"]))
    elif kind == "market_resolved":
        info.winner = str(ev.get("winning_asset_id") or "")


def _from_store(markets: dict[str, MarketInfo], db: Path) -> None:
    """A bot journal's windows from its store (those announced before the bot connected)."""
    if not db.is_file():
        return
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT condition_id, slug, up, down, winner, fee_rate, rebate_share FROM markets")
            for cid, slug, up, down, winner, fee, rebate in rows:
                info = markets.get(cid)
                if info is None:
                    continue  # never in the journal: nothing to replay for it
                info.slug, info.up, info.down = info.slug or slug, info.up or up, info.down or down
                info.winner = info.winner or winner
                if Fraction(fee or "0"):
                    info.fees = (Fraction(fee), Fraction(rebate or "0"))
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise ReplayError(f"{db}: the journal's store is unreadable ({exc})") from None


def _select(source: str, frames: list[Frame], markets: dict[str, MarketInfo]) -> Recording:
    skipped: dict[str, str] = {}
    usable: dict[str, MarketInfo] = {}
    for cid, info in markets.items():
        if not (info.up and info.down and info.slug and info.window_s > 0 and info.start_s > 0):
            skipped[cid] = "no slug and tokens (no new_market event, no store row)"
        else:
            usable[cid] = info
    if not usable:
        raise ReplayError(f"{source}: no replayable market (no new_market event or store row names one)")
    common = Counter(m.window_s for m in usable.values()).most_common(1)[0][0]
    for cid in [c for c, m in usable.items() if m.window_s != common]:
        skipped[cid] = f"window of {usable.pop(cid).window_s} s (replaying the {common} s windows)"
    return Recording(source, frames, usable, skipped)


# -- the queue model -------------------------------------------------------------------------


@dataclass
class Resting:
    order_id: str
    market: str
    quote: str  # model.BID / model.ASK, Up terms
    price: int  # Up terms
    remaining: int
    ahead: int


Level = tuple[str, str, int]  # (market, quote, Up-terms price)


def _token_terms(is_up: bool, quote: str, price: int) -> tuple[str, int]:
    """(side, token price) on a token of an Up-terms level: ``model.up_terms`` read backwards
    (its price mapping is its own inverse)."""
    side = BUY if (quote == model.BID) == is_up else "SELL"
    token_price = model.up_terms(is_up, side, price)[1]
    assert model.up_terms(is_up, side, token_price) == (quote, price)
    return side, token_price


def _better(quote: str, a: int, b: int) -> bool:
    """Price ``a`` comes before ``b`` in the queue of ``quote`` (a higher bid, a lower ask)."""
    return a > b if quote == model.BID else a < b


class QueueModel:
    """The recorded book in Up terms and our orders' places in its queues (see the module
    docstring for the rule). Feed it a batch of frames with :meth:`apply`; it returns the fills
    the batch gives our orders (order id -> micro-shares)."""

    def __init__(self) -> None:
        self.levels: dict[Level, int] = {}
        self.orders: dict[str, Resting] = {}  # arrival order
        self.up_token: dict[str, tuple[str, bool]] = {}  # asset id -> (market, is Up)
        self.trades = 0
        self.trade_volume = 0
        self.cancel_volume = 0

    def add_market(self, market: str, up: str, down: str) -> None:
        self.up_token[up] = (market, True)
        self.up_token[down] = (market, False)

    def size(self, market: str, quote: str, price: int) -> int:
        return self.levels.get((market, quote, price), 0)

    def best(self, market: str, quote: str) -> int | None:
        prices = [p for (m, q, p), s in self.levels.items() if m == market and q == quote and s > 0]
        if not prices:
            return None
        return max(prices) if quote == model.BID else min(prices)

    def join(self, order_id: str, market: str, quote: str, price: int, size: int) -> Resting:
        r = Resting(order_id, market, quote, price, size, self.size(market, quote, price))
        self.orders[order_id] = r
        return r

    def leave(self, order_id: str) -> None:
        self.orders.pop(order_id, None)

    def apply(self, events: list[dict[str, Any]]) -> dict[str, int]:
        """One batch (frames of one timestamp): book changes, then trades, then cancels."""
        start: dict[Level, int] = {}
        trades: list[tuple[str, str, int, int]] = []  # market, makers' quote, price, size

        def put(level: Level, size: int) -> None:
            start.setdefault(level, self.levels.get(level, 0))
            if size:
                self.levels[level] = size
            else:
                self.levels.pop(level, None)

        for ev in events:
            kind = ev.get("event_type")
            if kind == "book":
                where = self.up_token.get(str(ev.get("asset_id")))
                if where is None:
                    continue
                market, is_up = where
                old = [lv for lv in self.levels if lv[0] == market]
                fresh: dict[Level, int] = {}
                for side, rows in ((BUY, ev.get("bids") or ()), ("SELL", ev.get("asks") or ())):
                    for row in rows:
                        quote, price = model.up_terms(is_up, side, core.parse_price(str(row["price"])))
                        fresh[(market, quote, price)] = core.parse_size(str(row["size"]))
                for lv in old:
                    if lv not in fresh:
                        put(lv, 0)
                for lv, size in fresh.items():
                    put(lv, size)
            elif kind == "price_change":
                for pc in ev.get("price_changes") or ():
                    where = self.up_token.get(str(pc.get("asset_id")))
                    if where is None:
                        continue
                    quote, price = model.up_terms(where[1], str(pc["side"]), core.parse_price(str(pc["price"])))
                    put((where[0], quote, price), core.parse_size(str(pc["size"])))
            elif kind == "last_trade_price":
                where = self.up_token.get(str(ev.get("asset_id")))
                if where is None:
                    continue
                taker_quote, price = model.up_terms(where[1], str(ev["side"]), core.parse_price(str(ev["price"])))
                makers = model.ASK if taker_quote == model.BID else model.BID
                trades.append((where[0], makers, price, core.parse_size(str(ev["size"]))))
        decrease = {lv: s - self.levels.get(lv, 0) for lv, s in start.items() if s > self.levels.get(lv, 0)}
        traded: Counter[Level] = Counter()
        fills: Counter[str] = Counter()
        for market, quote, price, size in trades:
            self.trades += 1
            self.trade_volume += size
            self._trade(market, quote, price, size, decrease, traded, fills)
        for lv, d in decrease.items():
            cancelled = d - traded[lv]
            before = start[lv] - traded[lv]
            if cancelled > 0 and before > 0:
                self.cancel_volume += cancelled
                for r in self._at(lv):
                    r.ahead = r.ahead * (before - cancelled) // before
        for r in self.orders.values():
            r.ahead = min(r.ahead, self.size(r.market, r.quote, r.price))
        return {oid: n for oid, n in fills.items() if n > 0}

    def _at(self, lv: Level) -> list[Resting]:
        return [r for r in self.orders.values() if (r.market, r.quote, r.price) == lv and r.remaining > 0]

    def _trade(self, market: str, quote: str, price: int, size: int, decrease: dict[Level, int],
               traded: Counter[Level], fills: Counter[str]) -> None:  # fmt: skip
        # The trade's volume over the decreases of the makers' side, from its price outward.
        at_price: Level = (market, quote, price)
        deeper = sorted(
            (lv for lv in decrease if lv[:2] == (market, quote) and _better(quote, price, lv[2])),
            key=lambda lv: lv[2], reverse=(quote == model.BID),
        )  # fmt: skip
        mine: dict[Level, int] = {}  # this trade's volume per level
        left = size
        for lv in [at_price, *deeper]:
            take = min(left, decrease.get(lv, 0) - traded[lv])
            if take > 0:
                mine[lv] = take
                traded[lv] += take
                left -= take
        if left > 0:  # not seen in the book: it happened at its price
            mine[at_price] = mine.get(at_price, 0) + left
            traded[at_price] += left
        deepest = max(mine, key=lambda lv: (lv != at_price, -lv[2] if quote == model.BID else lv[2]))
        for r in self.orders.values():  # traded through: our orders before the deepest level fill fully
            if r.market == market and r.quote == quote and r.remaining > 0 and _better(quote, r.price, deepest[2]):
                fills[r.order_id] += r.remaining
                r.remaining = 0
        volume = mine[deepest]
        used = 0  # what our earlier orders at the level took of this trade
        blocked = False
        for r in self._at(deepest):
            avail = volume - used
            fill = 0 if blocked else min(r.remaining, max(0, avail - r.ahead))
            if fill < r.remaining:
                fill = fill // LOT * LOT
                blocked = True  # FIFO among ours: an order not filled holds those behind it
            r.ahead = max(0, r.ahead - avail)
            r.remaining -= fill
            used += fill
            fills[r.order_id] += fill


# -- the replay venue ------------------------------------------------------------------------


class ReplayExchange(Exchange):
    """The embedded exchange with its market channel replaced by the recording: REST, the
    user channel, balances and settlement are the exchange's; the engine's book holds only
    our orders, and they are matched when the queue model says so (by an order of the
    recorded takers' account, so the engine settles them as any maker fill)."""

    def __init__(self, config: ExchangeConfig, clock: Clock, recording: Recording) -> None:
        super().__init__(config, clock)
        self.recording = recording
        self.queue = QueueModel()
        self.counts: Counter[str] = Counter()
        self._taker_seq = 0
        self.engine.credit(REPLAY_TAKER, collateral=10**15)

    # -- the market channel is the recording --

    def _broadcast_market(self, tokens: set[str] | None, msg: dict[str, Any]) -> None:
        self.counts["engine_frames_withheld"] += 1  # our orders do not change the recorded book

    def _check_tick(self, m: Market) -> None:
        return None  # the tick follows the recording

    def send_recorded(self, frame: Frame) -> None:
        global_only = not frame.tokens
        for ws, subs in list(self.market_sockets.items()):
            if (global_only and ws in self.custom_feature) or subs & frame.tokens:
                self._send(ws, frame.raw)
                self.counts["frames_sent"] += 1

    def _book(self, token: str) -> dict[str, Any]:
        market, is_up = self.queue.up_token[token]
        m = self.engine.markets[market]
        bids: list[tuple[int, int]] = []
        asks: list[tuple[int, int]] = []
        for (cid, quote, price), size in self.queue.levels.items():
            if cid == market:
                side, p = _token_terms(is_up, quote, price)
                (bids if side == BUY else asks).append((p, size))
        return {
            "market": market, "asset_id": token, "timestamp": str(self.clock.ms()), "hash": m.next_hash(),
            "bids": [{"price": core.format_price(p), "size": core.format_size(s)} for p, s in sorted(bids)],
            "asks": [{"price": core.format_price(p), "size": core.format_size(s)}
                     for p, s in sorted(asks, reverse=True)],
            "tick_size": core.format_price(m.tick), "event_type": "book", "last_trade_price": "",
        }  # fmt: skip

    def _subscribed_books(self, assets: list[str]) -> list[dict[str, Any]]:
        return [self._book(a) for a in assets if a in self.queue.up_token]  # the recorded books

    def _rest_book(self, token: str) -> dict[str, Any]:
        m = self._market_of(token)
        msg = self._book(token)
        msg.pop("event_type")
        msg.update(min_order_size=core.format_size(m.min_size), neg_risk=False)
        return msg

    # -- markets --

    def list_market(self, info: MarketInfo) -> None:
        fee, rebate = info.fees
        m = Market(info.condition_id, info.up, info.down, tick=info.tick, base_tick=info.tick,
                   min_size=DEFAULT_MIN_SIZE, fees=FeeSchedule(fee, 1, rebate, True))  # fmt: skip
        window = info.window_s
        iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
        gamma = {
            "id": str(1_000_000 + len(self.gamma_markets) + 1), "slug": info.slug, "conditionId": info.condition_id,
            "question": f"{info.asset.upper()} Up or Down - {max(1, window // 60)} minutes from {iso(info.start_s)}",
            "clobTokenIds": f'["{info.up}", "{info.down}"]', "outcomes": '["Up", "Down"]',
            "eventStartTime": iso(info.start_s), "startDate": iso(info.start_s - window),
            "endDate": iso(info.start_s + window),
            "orderPriceMinTickSize": float(Fraction(info.tick, core.PRICE_SCALE)),
            "orderMinSize": DEFAULT_MIN_SIZE // 1_000_000, "active": True, "closed": False, "acceptingOrders": True,
            "feesEnabled": bool(fee),
            "feeSchedule": {"exponent": 1, "rate": float(fee), "takerOnly": True, "rebateRate": float(rebate)},
        }  # fmt: skip
        self.queue.add_market(info.condition_id, info.up, info.down)
        self.add_market(m, gamma)
        self.counts["markets_listed"] += 1

    def resolve(self, condition_id: str, winner: str) -> None:
        m = self.engine.markets.get(condition_id)
        if m is None or m.resolved or winner not in (m.up, m.down):
            return
        for g in self.gamma_markets:
            if g["conditionId"] == condition_id:
                g.update(closed=True, active=False, acceptingOrders=False)
        self._publish(self.engine.resolve(condition_id, winner))
        for r in [r for r in self.queue.orders.values() if r.market == condition_id]:
            self.queue.leave(r.order_id)
        self.counts["markets_resolved"] += 1

    def _events_of(self, frame: Frame) -> None:
        for ev in frame.events:
            kind = ev.get("event_type")
            cid = str(ev.get("market") or "")
            m = self.engine.markets.get(cid)
            if m is None:
                continue
            if kind == "tick_size_change" and ev.get("asset_id") == m.up:
                m.tick = m.base_tick = core.parse_price(str(ev["new_tick_size"]))
            elif kind == "book" and ev.get("asset_id") == m.up and ev.get("tick_size"):
                m.tick = m.base_tick = core.parse_price(str(ev["tick_size"]))
            elif kind == "market_resolved":
                self.resolve(cid, str(ev.get("winning_asset_id") or ""))

    # -- orders: resting in the engine, filled by the queue model --

    def _place(self, entry: dict[str, Any], key: ApiKey) -> dict[str, Any]:
        try:
            order = self._parse_order(entry, key)
        except EngineError as exc:
            return {"success": False, "orderID": "", "status": "", "errorMsg": exc.message, "_code": exc.code}
        m = self.engine.by_token[order.token]
        quote, price = model.up_terms(order.token == m.up, order.side, order.price)
        opposite = self.queue.best(m.condition_id, model.ASK if quote == model.BID else model.BID)
        crosses = opposite is not None and (opposite <= price if quote == model.BID else opposite >= price)
        if crosses:
            self.counts["crossing_refused"] += 1
            why = (
                f"invalid post-only order: order {order.id} crosses book"
                if order.post_only
                else "replay: marketable orders are not modelled (the recorded book does not take them)"
            )
            return {"success": False, "orderID": "", "status": "", "errorMsg": why, "_code": "INVALID_POST_ONLY_ORDER"}
        try:
            result = self.engine.place(order, self.clock.ms())
        except EngineError as exc:
            return {"success": False, "orderID": "", "status": "", "errorMsg": exc.message, "_code": exc.code}
        if order.status == "LIVE":
            self.queue.join(order.id, m.condition_id, quote, price, order.remaining)
            self.counts["orders_joined"] += 1
        self._publish(result)
        return {"success": True, "orderID": order.id, "status": "live" if order.status == "LIVE" else "unmatched",
                "makingAmount": "", "takingAmount": "", "errorMsg": "", "tradeIDs": []}  # fmt: skip

    def play(self, frames: list[Frame]) -> None:
        """One batch of recorded frames (one timestamp): served, then our fills."""
        for r in [r for r in self.queue.orders.values() if r.order_id not in self.engine.live]:
            self.queue.leave(r.order_id)  # cancelled (or resolved) since: out of the queue
        for r in self.queue.orders.values():
            r.remaining = self.engine.live[r.order_id].remaining
        events: list[dict[str, Any]] = []
        for frame in frames:
            self.send_recorded(frame)
            self._events_of(frame)
            events += frame.events
        fills = self.queue.apply(events)
        if fills:
            self._fill(fills)

    def _fill(self, fills: dict[str, int]) -> None:
        by_level: dict[tuple[str, str, int], int] = {}
        for oid, size in fills.items():
            o = self.engine.live[oid]
            m = self.engine.by_token[o.token]
            quote, price = model.up_terms(o.token == m.up, o.side, o.price)
            key = (m.condition_id, quote, price)
            by_level[key] = by_level.get(key, 0) + size
        ordered = sorted(by_level.items(), key=lambda kv: (kv[0][0], kv[0][1], -kv[0][2] if kv[0][1] == model.BID
                                                                            else kv[0][2]))  # fmt: skip
        for (cid, quote, price), size in ordered:
            m = self.engine.markets[cid]
            # The recorded taker: a BUY of the token that takes this side (no tokens needed).
            is_up = quote == model.ASK  # an Up BUY takes the asks, a Down BUY the bids
            token = m.up if is_up else m.down
            p = model.up_terms(is_up, BUY, price)[1]
            self._taker_seq += 1
            oid = f"replay-{self._taker_seq:08d}"
            taker = Order(oid, REPLAY_TAKER, "replay-takers", cid, token, BUY, p, size, "FAK")
            result = self.engine.place(taker, self.clock.ms())
            matched = sum(mf.size for t in result.trades for mf in t.makers)
            self.counts["fills"] += len([mf for t in result.trades for mf in t.makers])
            self.counts["filled_micro_shares"] += matched
            if matched != size:
                self.counts["fill_mismatch"] += 1
            self._publish(result)


# -- the run ---------------------------------------------------------------------------------


class ReplaySimulation(Simulation):
    """The simulator's run (the production bot, the store, invariants, the summary) with the
    replay venue in place of the exchange's market flow."""

    def __init__(self, cfg: SimConfig, recording: Recording) -> None:
        super().__init__(cfg)
        self.recording = recording
        self.clock.epoch = recording.start_ms / 1000

    async def _replay(self, ex: ReplayExchange) -> None:
        rec = self.recording
        listing = sorted(rec.markets.values(), key=lambda m: (_listed_at(m, rec.start_ms), m.condition_id))
        frames = rec.frames
        i = j = 0
        while i < len(frames) or j < len(listing):
            list_at = _listed_at(listing[j], rec.start_ms) if j < len(listing) else None
            t = frames[i].t_ms if i < len(frames) else None
            if list_at is not None and (t is None or list_at <= t):
                await self._until(list_at)
                ex.list_market(listing[j])
                j += 1
                continue
            assert t is not None
            await self._until(t)
            batch = []
            while i < len(frames) and frames[i].t_ms == t:
                batch.append(frames[i])
                i += 1
            ex.play(batch)
        for info in rec.markets.values():  # a winner known from the store, no event for it
            if info.winner:
                ex.resolve(info.condition_id, info.winner)

    async def _until(self, t_ms: int) -> None:
        wait = t_ms / 1000 - self.clock.time()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _main(self) -> dict[str, Any]:
        rec = self.recording
        ex = self.exchange = ReplayExchange(
            ExchangeConfig(seed=self.cfg.seed, entry_delay_ms=self.cfg.entry_delay_ms), self.clock, rec
        )
        await ex.start()
        total = self.cfg.hours * 3600
        player = self.loop.create_task(self._replay(ex))
        helpers = [self.loop.create_task(c) for c in (self._operator(), self._watch())]
        t_wall = time.perf_counter()
        try:
            await asyncio.sleep(0)
            bot = self.bot = self._new_bot(total)
            task = self.loop.create_task(bot.run())
            await self._started(bot, task)
            await task
            if player.done():
                player.result()  # a replay that failed raises here
        finally:
            self._stopping = True
            for h in [*helpers, player]:
                h.cancel()
            await ex.stop()
            leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in leftovers:
                t.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
        wall = time.perf_counter() - t_wall
        self._final_check()
        self._hour(max(1, int(total // 3600)))
        if self.cfg.progress:
            import sys

            sys.stderr.write("\n")
        summary = self._summary(wall)
        summary["replay"] = {
            "source": rec.source, "frames": len(rec.frames), "markets": len(rec.markets),
            "skipped_markets": rec.skipped, "recorded_trades": ex.queue.trades,
            "recorded_trade_volume": ex.queue.trade_volume, "recorded_cancel_volume": ex.queue.cancel_volume,
            **dict(ex.counts),
        }  # fmt: skip
        return summary


def _listed_at(info: MarketInfo, start_ms: int) -> int:
    """When the replay venue lists a market: one window before its start (as the flow lists
    one ahead) or when the recording first names it, whichever is earlier, not before the
    recording starts."""
    return max(start_ms, min(info.first_ms, (info.start_s - info.window_s) * 1000))


def replay_config(cfg: SimConfig, recording: Recording) -> SimConfig:
    """The run's settings from the recording: its assets, window length and span."""
    span = (recording.end_ms - recording.start_ms) / 1000 + TAIL_S
    # A recording holds no reference feed: nothing observes fair value (a variant may still ask).
    env = {"AQ_FAIR_VALUE_OBSERVE": "false", **cfg.config_env}
    return replace(cfg, assets=recording.assets, window_s=recording.window_s, hours=span / 3600,
                   faults="none", crashes=0, spot_csv="", config_env=env)  # fmt: skip


def run_replay(cfg: SimConfig, path: str | Path) -> dict[str, Any]:
    recording = load_recording(path)
    return ReplaySimulation(replay_config(cfg, recording), recording).run()
