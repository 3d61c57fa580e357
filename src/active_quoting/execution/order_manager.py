"""The order manager: the one submit path, from desired quotes to orders on the venue.

Desired quotes (per market, per Up-terms side) are diffed against our live orders; the cancels
(one ``DELETE /orders``) and the new orders (post-only batches of at most 15 across markets) go
out together by default (``concurrent_replace``; cancels first, then orders, as an option).
Orders matching a pre-signed ladder entry (``execution/presign.py``) go out without signing.
A per-market minimum refresh interval and a global refresh cap (token bucket) bound the churn.
The user channel is authoritative for order state; every order is tracked from before it is
sent (its hash is known) until the venue confirms it gone, and reconciliation against
``/data/orders`` resolves unknown outcomes after timeouts, 5xx and reconnects.

Bookkeeping rules that keep an order from being lost:

* Reconciliation concludes "gone" only for orders whose submit answer (or adoption, or restore)
  came back before its ``GET /data/orders`` started: an answer older than an order's acceptance
  says nothing about it. What it concludes gone is ``DONE``: cancelled or filled, unknown which.
* A cancel is retried (with backoff) until the venue confirms the order cancelled, matched or
  gone; until then the order is CANCELING and counts as pending.
* Shutdown and halts cancel our orders by id, never the whole account.
* A post-only refusal ("crosses book") holds that market and quote side back until the book
  moved away or a bounded backoff expired; a price that crosses our view of the book is not sent.

Venue states (``venue.errors.VenueStates``): a 425 (engine restart), a 503 (cancel-only or
post-only mode) or a 429 puts the venue in a state for a while. The submit path never sleeps
through one (the quote pass returns at once): it remembers until when, sends nothing the state
forbids meanwhile (places are dropped, to be decided again; cancels wait, CANCELING), and
:meth:`OrderManager.flush` returns when held orders may go, for the pass scheduler to wake then.
An order whose submit got such an answer was not placed: it is REJECTED with the state as the
reason and forgotten, never tracked as if it might rest. Every order is sent post-only (the
venue's post-only mode after a restart refuses nothing of ours). A 425 or 503 is not an error
of ours (not reported to ``on_error``); a 429 is, and it also slows the refresh cap for a while.

Fees: an order signed as version 1 carries the market's fee rate from ``GET /fee-rate`` (cached
by the REST client for its TTL), never 0; versions 2 and 3 have no fee field.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from active_quoting import core
from active_quoting.aio import start_now
from active_quoting.clock import SYSTEM, Clock
from active_quoting.execution.presign import LadderKey, Ladders
from active_quoting.model import ASK, BID, BUY, SELL, OrderIntent, Pending, up_terms
from active_quoting.observability.metrics import Metrics
from active_quoting.store.journal import Journal
from active_quoting.store.sqlite import Store
from active_quoting.strategy.quoting import MarketDecision, Resting
from active_quoting.venue.errors import OK, RATE_LIMITED, STATE_OF_KIND, VenueError, VenueStates
from active_quoting.venue.orders import build_order, encode, new_salt, order_body, order_version_for
from active_quoting.venue.records import VenueOrder, open_order
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner, SignedOrder, SigningError
from active_quoting.venue.user_codec import CANCELED, INVALID, MATCHED_ORDER, OrderUpdate

_log = logging.getLogger(__name__)

LIVE_STATES = frozenset({"SENT", "LIVE", "UNKNOWN", "CANCELING"})
# Finished by the venue's own word (a cancel answer or event, a full match), as opposed to
# finished by inference (DONE from a listing, REJECTED after an unclear error).
CONFIRMED_FINAL = frozenset({"CANCELED", "MATCHED"})
# What reconciliation records for an order the venue no longer holds: it may have been
# cancelled or filled (a fill the user channel missed is recovered from /data/trades).
GONE_REASON = "not on the venue: cancelled or filled, unknown which"
INF = float("inf")


@dataclass
class Tracked:
    order_id: str
    market: str
    token: str
    side: str  # BUY / SELL (token terms)
    price: int  # token terms
    size: int
    quote: str  # model.BID / model.ASK: which Up-terms quote it expresses
    quote_price: int  # Up terms
    status: str = "SENT"
    matched: int = 0
    cancel_requested: bool = False
    sent_ms: int = 0
    # Order of events on this manager (see OrderManager._seq): when the venue's word on this
    # order (submit answer, adoption, restore) reached us; 0 while its submit is in flight.
    known_seq: int = 0
    cancel_attempts: int = 0
    cancel_due: float = INF  # monotonic time a failed cancel is re-sent; INF: none due

    @property
    def remaining(self) -> int:
        return self.size - self.matched

    def intent(self) -> OrderIntent:
        return OrderIntent(self.market, self.token, self.side, self.price, self.size, self.quote, self.quote_price)


@dataclass(frozen=True)
class MarketRef:
    condition_id: str
    up: str
    down: str
    tick: int
    version: str = ""  # Gamma's market version: "v2" (Protocol V2) signs for ExchangeV3


@dataclass
class _Backoff:
    """A market side held back after a post-only refusal at ``quote_price``."""

    quote_price: int
    until: float
    streak: int
    seen_cross: bool = False  # our book view has since shown the refused price crossing


class RefreshLimiter:
    """Global token bucket for cancel/replace cycles per second. :meth:`slow_down` lowers the
    rate for a while (after a 429); it comes back to ``base_rate`` by itself."""

    min_factor = 0.125  # slowed down to at most 1/8 of the configured rate

    def __init__(self, per_sec: float, clock: Clock = SYSTEM) -> None:
        self.base_rate = per_sec
        self.rate = per_sec
        self.tokens = per_sec
        self.clock = clock
        self.stamp = clock.monotonic()
        self.slow_until = 0.0

    def slow_down(self, until: float) -> None:
        """Halve the rate (down to ``min_factor`` of the base) until ``until`` (monotonic)."""
        self.rate = max(self.rate / 2, self.base_rate * self.min_factor)
        self.tokens = min(self.tokens, self.rate)
        self.slow_until = max(self.slow_until, until)

    def take(self) -> bool:
        now = self.clock.monotonic()
        if self.rate != self.base_rate and now >= self.slow_until:
            self.rate = self.base_rate
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def _never_crosses(intent: OrderIntent) -> bool:
    return False


class OrderManager:
    # Cancel retries: after the n-th failed attempt the next goes out cancel_retry_s * 2**(n-1)
    # later, at most cancel_retry_max_s. Post-only refusals: the side is held back for
    # cross_backoff_s * 2**(streak-1), at most cross_backoff_max_s.
    cancel_retry_s = 0.25
    cancel_retry_max_s = 8.0
    cross_backoff_s = 1.0
    cross_backoff_max_s = 30.0
    sell_hold_s = 10.0  # after the venue refused a SELL for balance, that token is not sold for this long
    # After a 429 the refresh cap is slowed (halved per 429) for this long, or 4x the Retry-After.
    rate_limit_slow_s = 60.0

    def __init__(
        self,
        rest: RestClient,
        signer: OrderSigner,
        store: Store | None = None,
        *,
        min_refresh_ms: int = 500,
        global_cap_per_sec: int = 10,
        on_error: Callable[[str], None] = lambda kind: None,
        on_success: Callable[[], None] = lambda: None,
        on_fault: Callable[[BaseException], None] = lambda exc: None,
        metrics: Metrics | None = None,
        dry_run: bool = False,
        concurrent_replace: bool = True,
        may_place: Callable[[str], bool] = lambda market: True,
        crosses: Callable[[OrderIntent], bool] = _never_crosses,
        adopt_unknown: bool = True,
        salts: Callable[[], int] = new_salt,
        clock: Clock = SYSTEM,
        rng: random.Random | None = None,
    ) -> None:
        self.dry_run = dry_run
        self.concurrent_replace = concurrent_replace
        self.salts = salts
        # Pre-signed ladders (execution/presign.py), filled in idle time after each flush around
        # the last order sent on each market side (_basis: token, side, price, size).
        self.presigned: Ladders | None = None  # enable_presign turns them on
        self._size_at: Callable[[int, int], int] | None = None
        self._basis: dict[tuple[str, str], tuple[str, str, int, int]] = {}
        self._presign_scheduled = False
        self.adopt_unknown = adopt_unknown  # False on a shared account: others' orders are left alone
        self.adopted: list[str] = []  # live orders found on the venue that neither memory nor store knew
        self.metrics = metrics or Metrics()
        self.clock = clock
        self._staged_at = 0.0
        self.journal: Journal | None = None
        self.rest = rest
        self.signer = signer
        self.store = store
        self.min_refresh_ms = min_refresh_ms
        self.limiter = RefreshLimiter(global_cap_per_sec, clock)
        self.on_error = on_error
        self.on_success = on_success
        self.on_fault = on_fault  # a failure outside any task (e.g. recording a sent order)
        self.may_place = may_place
        self.crosses = crosses
        self.markets: dict[str, MarketRef] = {}
        self.orders: dict[str, Tracked] = {}  # every order of a market until forget_market
        self._live: dict[str, dict[str, Tracked]] = {}  # market -> order id -> live order
        self.last_refresh: dict[str, float] = {}
        self._backoff: dict[tuple[str, str], _Backoff] = {}
        self._held: set[str] = set()  # markets whose last decision the refresh limits held back
        self._no_sell_until: dict[str, float] = {}  # token -> monotonic time its SELLs may go again
        self._cancels: list[str] = []
        self._places: list[Tracked] = []
        # Places a flush took and has not registered yet (signed and tracked under their hash,
        # or dropped): still pending for the limits of a pass over other markets meanwhile.
        self._outgoing: list[list[Tracked]] = []
        # orders tracked but not yet stored or journaled (written right after the send)
        self._unrecorded: list[tuple[Tracked, str, SignedOrder | None, str]] = []
        self._record_due = False  # a _record_sent is scheduled
        self._seq = itertools.count(1)
        self.venue = VenueStates(rng)  # 425 / 503 / 429 states; seed ``rng`` for a reproducible jitter
        self._venue_held: set[str] = set()  # markets whose places a venue state held back
        self._venue_deferred = False  # cancels a venue state deferred since take_venue_held
        # Every key the status shows from the start; others (dry_run, off_grid_cancels, ...)
        # appear when first counted.
        self.counts: Counter[str] = Counter(
            placed=0, rejected=0, post_only_rejects=0, canceled=0, unsolicited_cancels=0, cancel_refused=0, unknown=0,
            adopted=0, gone=0, cancel_retries=0, would_cross=0, post_only_backoff=0, signing_refused=0,
            held_by_venue=0, cancels_deferred=0, not_placed=0,
        )  # fmt: skip

    def add_market(self, ref: MarketRef) -> None:
        self.markets[ref.condition_id] = ref

    def forget_market(self, market: str) -> bool:
        """Drop a market and its finished orders (the window lifecycle calls this once the
        window is cancelled and settled). Refused (False) while any of its orders is live or
        staged: those still need the venue's word."""
        if self._live.get(market) or any(t.market == market for t in self._places):
            return False
        self._live.pop(market, None)
        self.forget_presigned(market)
        self.markets.pop(market, None)
        self.last_refresh.pop(market, None)
        self._held.discard(market)
        for side in (BID, ASK):
            self._backoff.pop((market, side), None)
        gone = {oid for oid, t in self.orders.items() if t.market == market}
        for oid in gone:
            tracked = self.orders.pop(oid)
            self._no_sell_until.pop(tracked.token, None)
        self.adopted = [oid for oid in self.adopted if oid not in gone]
        return True

    def enable_presign(
        self,
        depth: int = 2,
        max_age_s: float = 5.0,
        budget: int = 8,
        size_at: Callable[[int, int], int] | None = None,
    ) -> Ladders:
        """Turn pre-signed ladders on (``orders.presign``): ``depth`` ticks either side of each
        side's last order, re-signed after ``max_age_s / 2``, never sent older than ``max_age_s``,
        at most ``budget`` signatures per idle loop turn. Salts come from this manager's source.
        ``size_at(side, price)``: the size the quote engine gives an order of that venue side at
        that token price when nothing but the order size limits it (a fixed notional: fewer
        shares higher up); a side whose last order had exactly that size gets a ladder sized the
        same way at every rung, else every rung has its last order's size."""
        self.presigned = Ladders(self.signer, self.salts, depth=depth, max_age_s=max_age_s, budget=budget)
        self._size_at = size_at
        return self.presigned

    def forget_presigned(self, market: str) -> int:
        """Stop pre-signing for a market and drop its ladders (the bot calls this when the
        market stops quoting; :meth:`forget_market` does it too). Returns the entries dropped."""
        self._basis.pop((market, BID), None)
        self._basis.pop((market, ASK), None)
        return self.presigned.forget(market) if self.presigned is not None else 0

    def presign(self, budget: int | None = None) -> int:
        """Idle-time work: bring each market side's ladder of pre-signed orders up to date around
        the last order sent there (at most ``budget`` signatures, default the ladders' own).
        Never ahead of a send: nothing is signed while cancels or orders are staged. Returns how
        many orders were signed (== budget: more may be due). :meth:`flush` schedules this
        itself after its sends; the bot may also call it from an idle timer, so ladders stay
        fresh while nothing is sent."""
        lad = self.presigned
        if lad is None or self._places or self._cancels or not self._basis:
            return 0
        if not self.venue.may_place(self.clock.monotonic()):
            return 0
        budget = lad.budget if budget is None else budget
        now_ms = self.clock.ms()
        signed = 0
        for (market, quote), (token, side, price, size) in list(self._basis.items()):
            ref = self.markets.get(market)
            if ref is None or not self.may_place(market):
                lad.drop(market, quote)
                continue
            try:
                version = order_version_for(ref.version, self.rest.order_version)
            except SigningError:
                lad.drop(market, quote)
                continue
            fee = self.rest.cached_fee_rate(token) if version == 1 else None
            if version == 1 and fee is None:
                lad.drop(market, quote)  # looked up on the send path first
                continue
            side_i = 0 if side == BUY else 1
            basis = LadderKey(token, side_i, price, size, ref.tick, version, False, fee)
            sized = self._size_at
            per_price = None
            if sized is not None and sized(side_i, price) == size:
                per_price = functools.partial(sized, side_i)
            signed += lad.fill(market, quote, basis, now_ms, budget - signed, per_price)
            if signed >= budget:
                break
        return signed

    def _schedule_presign(self) -> None:
        if self.presigned is None or self._presign_scheduled or not self._basis:
            return
        self._presign_scheduled = True
        asyncio.get_running_loop().call_soon(self._presign_idle)

    def _presign_idle(self) -> None:
        # One budget per loop turn: frames and answers that arrived meanwhile go first.
        self._presign_scheduled = False
        lad = self.presigned
        if lad is not None and self.presign() >= lad.budget:
            self._schedule_presign()

    def _signed_order(self, t: Tracked, venue_version: int) -> SignedOrder:
        """The signed order for ``t``: a ready pre-signed one whose every signed field is what
        ``t`` asks for (checked by the ladder on the serialized fields), or a fresh signature."""
        ref = self.markets[t.market]
        version = order_version_for(ref.version, venue_version)
        fee = self.rest.cached_fee_rate(t.token)
        side = 0 if t.side == BUY else 1
        now_ms = self.clock.ms()
        if self.presigned is not None:
            key = LadderKey(t.token, side, t.price, t.size, ref.tick, version, False, fee if version == 1 else None)
            ready = self.presigned.take(t.market, t.quote, key, now_ms)
            if ready is not None:
                return ready
        return build_order(self.signer, t.token, side, t.price, t.size, ref.tick, version=version,
                           fee_rate_bps=fee, timestamp_ms=now_ms, salt=self.salts())  # fmt: skip

    def may_sell(self, token: str) -> bool:
        """False for a while after the venue refused a SELL of this token for balance."""
        until = self._no_sell_until.get(token)
        if until is None:
            return True
        if self.clock.monotonic() >= until:
            del self._no_sell_until[token]
            return True
        return False

    # -- the venue's state (425 / 503 / 429) -------------------------------------------

    @property
    def venue_state(self) -> str:
        """The venue's state: "ok", "restarting", "cancel_only", "post_only" or "rate_limited"
        (the one that stops the most when several hold)."""
        return self.venue.state(self.clock.monotonic())[0]

    @property
    def venue_state_until(self) -> float:
        """Monotonic time the current venue state ends (0.0 when "ok")."""
        return self.venue.state(self.clock.monotonic())[1]

    def venue_status(self) -> dict[str, object]:
        """For status and metrics: the state, seconds it still holds, every state in force,
        how often each was entered and answered (``<state>`` / ``<state>_answers``), and the
        refresh cap now in force."""
        now = self.clock.monotonic()
        state, until = self.venue.state(now)
        return {
            "state": state,
            "seconds_left": max(0.0, until - now) if state != OK else 0.0,
            "active": self.venue.active(now),
            "counts": dict(self.venue.counts),
            "refresh_cap_per_sec": self.limiter.rate,
        }

    def venue_resume_at(self) -> float:
        """Monotonic time the venue state lets held places (and cancels) go; 0.0 if now."""
        now = self.clock.monotonic()
        return max(self.venue.place_resume_at(now), self.venue.cancel_resume_at(now))

    def take_venue_held(self) -> set[str]:
        """The markets whose places a venue state held back since the last call (to decide
        them again once it passes)."""
        held, self._venue_held = self._venue_held, set()
        self._venue_deferred = False
        return held

    def _venue_answer(self, kind: str, retry_after: float | None, cancel: bool = False) -> bool:
        """Record a venue-state answer; True when ``kind`` is one. A 429 also slows the refresh
        cap for a while; a 425 or 503 is the venue's state, not an error of ours."""
        now = self.clock.monotonic()
        limited_until = self.venue.until.get(RATE_LIMITED, 0.0)
        state = self.venue.note(kind, retry_after, now, cancel)
        if not state:
            return False
        if kind == "rate_limited":
            if now >= limited_until:
                # Once an episode: the other requests already out (concurrent passes, their
                # cancels) come back 429 too, and would halve the cap again each.
                self.limiter.slow_down(now + max(self.rate_limit_slow_s, 4 * (retry_after or 0.0)))
                self.counts["refresh_slowed"] += 1
            self.on_error(kind)
        _log.warning("venue %s (%s) for %.1fs", state, kind, self.venue.until[state] - now)
        return True

    # -- views for the strategy ---------------------------------------------------------

    def _iter_live(self, market: str | None) -> Iterator[Tracked]:
        if market is not None:
            yield from self._live.get(market, {}).values()
        else:
            for by_id in self._live.values():
                yield from by_id.values()

    def live(self, market: str | None = None) -> list[Tracked]:
        return list(self._iter_live(market))

    def resting(self, market: str, quote: str) -> Resting:
        mine = [o for o in self._iter_live(market) if o.quote == quote and not o.cancel_requested]
        if not mine:
            return Resting()
        return Resting(mine[0].quote_price, sum(x.remaining for x in mine))

    def pending(self) -> Pending:
        """What our orders still commit, per market, for the limits: every order not confirmed
        gone (sent, live, unknown, being cancelled) and every order staged and not sent yet, so
        a market decided after another in the same pass sees what that one will place."""
        # and those a flush took but has not signed yet (it waits for a fee-rate lookup)
        outgoing = (o for places in self._outgoing for o in places if not o.order_id)
        out: Pending = {}
        for o in itertools.chain(self._iter_live(None), self._places, outgoing):
            out.setdefault(o.market, []).append((o.token, o.side, o.price, o.remaining))
        return out

    def staged_markets(self) -> set[str]:
        """The markets with a cancel or an order staged and not sent yet."""
        markets = {t.market for t in self._places}
        for oid in self._cancels:
            t = self.orders.get(oid)
            if t is not None:
                markets.add(t.market)
        return markets

    def own_levels(self, market: str) -> tuple[dict[int, int], dict[int, int]]:
        """Our resting remaining size per Up-terms price, (bids, asks), for every order not yet
        confirmed gone (sent, live, unknown, being cancelled): what a signal reading the Up book
        must subtract to see the market without us (a BUY of Down at q rests as an Up ask at 1-q)."""
        bids, asks, _, _ = self.own_and_leaving(market)
        return bids, asks

    def own_and_leaving(self, market: str) -> tuple[dict[int, int], dict[int, int], dict[int, int], dict[int, int]]:
        """:meth:`own_levels` and, of it, what the orders whose cancel is out hold (the book may
        show them gone first), in one pass: (bids, asks, leaving bids, leaving asks)."""
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        leaving_bids: dict[int, int] = {}
        leaving_asks: dict[int, int] = {}
        live = self._live.get(market)
        if live:  # read on every book frame of the market: one plain loop
            for o in live.values():
                price, remaining = o.quote_price, o.size - o.matched  # Tracked.remaining, inline
                levels = bids if o.quote == BID else asks
                levels[price] = levels.get(price, 0) + remaining
                if o.cancel_requested:
                    levels = leaving_bids if o.quote == BID else leaving_asks
                    levels[price] = levels.get(price, 0) + remaining
        return bids, asks, leaving_bids, leaving_asks

    # -- decisions -> orders ------------------------------------------------------------

    def holds_back(self, market: str) -> bool:
        """Whether this market's last decision was held back by the refresh limits, or one of
        its sides is in a post-only backoff: time alone can let it go."""
        backoff = self._backoff  # asked on every frame of every market: no key is built while it is empty
        return market in self._held or (bool(backoff) and ((market, BID) in backoff or (market, ASK) in backoff))

    def stage(self, decision: MarketDecision, intents: Sequence[OrderIntent], now_s: float) -> bool:
        """Queue the cancels and places one market decision asks for; ``intents`` are the orders
        expressing its sides to place or replace. Returns False when the refresh limits hold it
        back (a cancel-only change is never held back)."""
        sides = {BID: decision.bid, ASK: decision.ask}
        # a list, in sides' order (a set of strings iterates in a per-process hash order)
        touching = [s for s, d in sides.items() if d.action in (core.REPLACE, core.CANCEL, core.PLACE)]
        if not touching:
            self._held.discard(decision.market)
            return True
        only_cancels = all(sides[s].action == core.CANCEL for s in touching)
        if not only_cancels:
            last = self.last_refresh.get(decision.market, 0.0)
            if (now_s - last) * 1000 < self.min_refresh_ms or not self.limiter.take():
                # The refresh limits hold back new orders, never a side that must go (pulled,
                # or exposed beyond fair value): its cancel is staged all the same.
                self._stage_side_cancels(decision.market, [s for s in touching if sides[s].action == core.CANCEL])
                self._held.add(decision.market)
                return False
        self._held.discard(decision.market)
        self.last_refresh[decision.market] = now_s
        if not self._staged_at:
            self._staged_at = self.clock.perf()
        going = [s for s in touching if sides[s].action in (core.REPLACE, core.CANCEL)]
        self._stage_side_cancels(decision.market, going)
        for i in intents:
            if sides[i.quote].action in (core.PLACE, core.REPLACE):
                self._places.append(Tracked("", i.market, i.token, i.side, i.price, i.size, i.quote, i.quote_price))
        return True

    def _stage_side_cancels(self, market: str, quotes: list[str]) -> None:
        if not quotes:
            return
        if not self._staged_at:
            self._staged_at = self.clock.perf()
        self._stage_cancels(market, lambda o: o.quote in quotes)

    def _stage_cancels(self, market: str, which: Callable[[Tracked], bool]) -> int:
        """Stage the cancel of every live order of ``market`` that ``which`` selects and that no
        cancel targets yet; returns how many."""
        staged = 0
        for o in self._iter_live(market):
            if not o.cancel_requested and which(o):
                self._stage_cancel(o)
                staged += 1
        return staged

    def _stage_cancel(self, o: Tracked) -> None:
        o.cancel_requested = True
        o.status = "CANCELING"
        o.cancel_due = INF
        self._cancels.append(o.order_id)

    async def flush(self) -> float:
        """Send what was staged: the cancels (one ``DELETE /orders``) and the new orders in
        post-only batches of at most 15. With ``concurrent_replace`` (the default) both go out
        together on separate connections of the order lane, the cancel written first (it needs
        no signing), so the new orders do not wait for its round trip: still within every limit,
        because an order being cancelled counts as pending until the venue confirms it gone.
        Without it, the cancels' answer comes first. Then the pre-signed ladders are refilled in
        idle time (:meth:`presign`, scheduled after the sends). Returns the monotonic time a
        venue state lets what it held back go (0.0: nothing held), for the caller to decide
        those markets again then (:meth:`take_venue_held`)."""
        cancels, self._cancels = self._cancels, []
        places, self._places = self._places, []
        staged_at, self._staged_at = self._staged_at, 0.0
        self._outgoing.append(places)
        try:
            await self._send(cancels, places, staged_at)
        finally:
            self._outgoing = [p for p in self._outgoing if p is not places]
            self._schedule_presign()
        return self.venue_resume_at() if self._venue_held or self._venue_deferred else 0.0

    async def _send(self, cancels: list[str], places: list[Tracked], staged_at: float) -> None:
        if cancels and places and self.concurrent_replace:
            # The cancel's request is written now (start_now runs it up to its wait), the new
            # orders' right after, in the same turn; each answer is handled as it comes.
            cancelling = start_now(self._cancel(cancels))
            try:
                await self._place(places, staged_at)
            finally:
                await cancelling
        elif cancels and places:
            await self._cancel(cancels)
            await self._place(places, staged_at)
        elif cancels:
            await self._cancel(cancels)
        elif places:
            await self._place(places, staged_at)
        # A cancel the venue refused before it had the order (it raced the submit: a pull, the
        # fair-value guard) goes again as soon as the submit's answer says it is there.
        now = self.clock.monotonic()
        if places and self.venue.may_cancel(now):
            await self._cancel_due((t for t in places if t.order_id and t.status in LIVE_STATES), now)

    def _held_back(self, t: Tracked, now: float) -> bool:
        """A post-only refusal on this market side holds back prices at least as aggressive as
        the refused one until the backoff expires or the book moved away (our view showed the
        refused price crossing, and no longer does)."""
        b = self._backoff.get((t.market, t.quote))
        if b is None:
            return False
        if now >= b.until:
            return False
        refused = OrderIntent(t.market, t.token, t.side, t.price, t.size, t.quote, b.quote_price)
        if self.crosses(_at_quote_price(refused, self.markets[t.market])):
            b.seen_cross = True
        elif b.seen_cross:
            b.until = now  # the book moved away from the refused price
            return False
        return t.quote_price >= b.quote_price if t.quote == BID else t.quote_price <= b.quote_price

    async def _place(self, trackers: list[Tracked], staged_at: float) -> None:
        # Between the decision and this send (the cancels go first) the world can change:
        # a halt (risk says the market may not be quoted: nothing new goes out, whatever was
        # decided) or a tick change (the market's tick follows every snapshot and
        # tick_size_change; an order off the grid the venue now enforces would be refused).
        # Such orders are not sent; the next quote pass decides again. Nor is a price that
        # crosses our view of the book or that a post-only refusal holds back: post-only, the
        # venue would only refuse it.
        now = self.clock.monotonic()
        if trackers and not self.dry_run and not self.venue.may_place(now):
            # Restarting, cancel-only or rate limited: nothing is sent, nothing is tracked; the
            # markets are decided again when the state passes.
            self.counts["held_by_venue"] += len(trackers)
            self._venue_held.update(t.market for t in trackers)
            return
        sendable = []
        for t in trackers:
            if not self.may_place(t.market):
                self.counts["held_by_risk"] += 1
            elif t.price % self.markets[t.market].tick:
                self.counts["off_grid_dropped"] += 1
            elif self._held_back(t, now):
                self.counts["post_only_backoff"] += 1
            elif self.crosses(t.intent()):
                self.counts["would_cross"] += 1
            elif not self._signable(t):
                pass  # counted and refused for its market; the others still go
            else:
                sendable.append(t)
        trackers = await self._with_fee_rates(sendable, self.rest.order_version)
        kept = [t for t in trackers if self.may_place(t.market)]  # a halt while a fee lookup waited
        if len(kept) != len(trackers):
            self.counts["held_by_risk"] += len(trackers) - len(kept)
            trackers = kept
        if not trackers:
            return

        def sign(version: int, which: Sequence[Tracked]) -> list[SignedOrder]:
            # Everything is signed before anything is registered: a version the signer cannot
            # build leaves no half-registered batch.
            signed = [self._signed_order(t, version) for t in which]
            for t, o in zip(which, signed, strict=True):
                self._register(t, o.order_hash, o)
                self._basis[(t.market, t.quote)] = (t.token, t.side, t.price, t.size)
            return signed

        def build(version: int) -> list[SignedOrder]:
            out = sign(version, trackers)
            if staged_at:
                self.metrics.observe("decision_to_wire", self.clock.perf() - staged_at)
            return out

        async def prepare(version: int, indices: Sequence[int]) -> None:
            await self._reread_versions(dict.fromkeys(trackers[i].market for i in indices))
            await self._with_fee_rates([trackers[i] for i in indices], version)

        def rebuild(version: int, indices: Sequence[int]) -> list[SignedOrder]:
            # Only the orders the venue refused for their version are signed again (a new
            # hash); the others were answered under their first hash and keep it.
            return sign(version, [trackers[i] for i in indices])

        try:
            if self.dry_run:
                # Signed, journaled, counted; never sent. Nothing rests, so nothing is cancelled.
                build(self.rest.order_version)
                for t in trackers:
                    self._set(t, "DRY_RUN")
                self.counts["dry_run"] += len(trackers)
                return
            started = self.clock.perf()
            # post_only=True on every order: the venue's post-only mode refuses nothing of ours.
            # wait=False: a 425/429 comes back at once; the state below holds what follows.
            results = await self.rest.submit(build, "GTC", True, rebuild=rebuild, prepare=prepare, wait=False)
        except SigningError as err:
            self._signing_refused(trackers, str(err))
            return
        except VenueError as err:
            if self._venue_answer(err.kind, err.retry_after):
                for t in trackers:
                    self._not_placed(t, err.kind)
                return
            self.on_error(err.kind)
            seq = next(self._seq)
            for t in trackers:
                t.known_seq = seq
                self._set(t, "CANCELED" if not err.unknown_outcome else "UNKNOWN", reason=err.kind)
            return
        except BaseException:
            # Anything else (a bug, a cancelled task): whether the venue got them is unknown;
            # they stay tracked so reconciliation settles them and cancels can conclude.
            seq = next(self._seq)
            for t in trackers:
                if t.order_id and t.status == "SENT":
                    t.known_seq = seq
                    self._set(t, "UNKNOWN", reason="submit interrupted")
                elif t.order_id and not t.known_seq and t.status in LIVE_STATES:
                    t.known_seq = seq  # a cancel is wanted for it (re-signed while one targeted it)
                    t.cancel_due = self.clock.monotonic()  # sent again; reconciliation settles it
            raise
        self.metrics.observe("submit_round_trip", self.clock.perf() - started)
        # One answer per request, however many orders it refused: each state noted once.
        for kind, retry_after in dict.fromkeys((r.error_kind, r.retry_after) for r in results):
            self._venue_answer(kind, retry_after)
        if any(r.accepted for r in results):
            self.venue.on_success()
        seq = next(self._seq)
        now = self.clock.monotonic()
        for t, r in zip(trackers, results, strict=True):
            t.known_seq = seq
            if r.accepted:
                self.counts["placed"] += 1
                self._backoff.pop((t.market, t.quote), None)
                if t.status == "SENT":
                    self._set(t, "LIVE" if r.status in ("live", "delayed") else t.status)
                elif t.cancel_requested and t.status == "CANCELING" and t.cancel_due < INF:
                    t.cancel_due = now  # a cancel that found it not yet placed: re-send it now
                self.on_success()
            elif r.error_kind == "signing_refused":
                self._signing_refused([t], r.error)
            elif r.error_kind in STATE_OF_KIND:
                self._not_placed(t, r.error_kind)
            elif r.unknown:
                self.counts["unknown"] += 1
                self._set(t, "UNKNOWN", reason=r.error_kind)
                self.on_error(r.error_kind)
            else:
                lagging_balance = r.error_kind == "balance" and t.side == SELL
                if r.error_kind == "post_only_reject":
                    self.counts["post_only_rejects"] += 1
                    self._back_off(t, now)
                elif lagging_balance:
                    # The venue's balance lags the chain (tokens mined but not yet counted): the
                    # shares are not sellable for now; the side buys the complement instead.
                    self.counts["sell_balance_refusals"] += 1
                    self._no_sell_until[t.token] = now + self.sell_hold_s
                else:
                    self.counts["rejected"] += 1
                self._set(t, "REJECTED", reason=r.error or r.error_kind)
                if not lagging_balance:
                    self.on_error(r.error_kind)

    def _signable(self, t: Tracked) -> bool:
        """Whether this program can sign the order version its market needs (a Protocol-V2
        market signs for ExchangeV3); if not, a counted refusal for that order alone."""
        try:
            order_version_for(self.markets[t.market].version, self.rest.order_version)
        except SigningError as err:
            self._signing_refused([t], str(err))
            return False
        return True

    def _register(self, t: Tracked, order_hash: str, signed: SignedOrder | None = None) -> None:
        """Track ``t`` under the hash it is about to be sent with. A tracker re-signed after its
        first hash was refused leaves that hash behind: the stored row says so, and nothing
        keeps it (a cancel never targets a hash the venue refused).

        Tracking in memory is immediate; the store's row and the journal's copy of the order
        (``signed``) are written just after the request is on the wire (:meth:`_record_sent`,
        scheduled for the end of this loop turn, and before any later write about the order). A
        crash in between loses only those records (the store's writer commits asynchronously
        anyway): after a restart, reconciliation adopts what the venue holds for the account -
        unless ``orders.unknown_orders = "ignore"`` (a shared account), where such an order rests
        unmanaged (with ``orders.heartbeat`` on, the venue's dead-man switch cancels it when the
        crashed bot's heartbeats stop)."""
        replaced = t.order_id
        if replaced:
            self.orders.pop(replaced, None)
            self._live.get(t.market, {}).pop(replaced, None)
        t.order_id = order_hash
        t.sent_ms = self.clock.ms()
        t.status = "SENT"
        if replaced and t.cancel_requested:
            # A cancel went out for the refused hash while the order was re-signed: it stays
            # wanted for the new one, sent when the submit answers (as for a cancel that found
            # an order not yet placed).
            t.status = "CANCELING"
            t.cancel_due = self.clock.monotonic()
        self.orders[order_hash] = t
        self._live.setdefault(t.market, {})[order_hash] = t
        if self.store or (self.journal is not None and signed is not None):
            self._unrecorded.append((t, order_hash, signed, replaced))
            if not self._record_due:
                self._record_due = True
                asyncio.get_running_loop().call_soon(self._record_sent)

    def _record_sent(self) -> None:
        """Write what :meth:`_register` left for after the send: each order's row (and the row
        of a hash it replaced) and its journal copy, in the order they were sent. A write that
        fails (a closed store, a full disk) is reported through ``on_fault`` (the bot's critical
        alert); the records after it stay queued for the next attempt."""
        pending, self._unrecorded = self._unrecorded, []
        self._record_due = False
        api_key = self.rest.creds.api_key if self.rest.creds else ""
        for i, (t, order_hash, signed, replaced) in enumerate(pending):
            try:
                if self.store and replaced:
                    self.store.order_state(
                        replaced, "REJECTED", None, f"order_version_mismatch: re-signed as {order_hash}"
                    )
                if self.journal is not None and signed is not None:
                    self.journal.order(encode(order_body(signed, api_key)))
                if self.store:
                    self.store.order_sent(order_hash, t.market, t.token, t.side, t.price, t.size, "SENT")
            except Exception as exc:  # noqa: BLE001 - reported, never lost silently
                self._unrecorded[:0] = pending[i + 1 :]
                _log.error("order %s… sent but not recorded: %r", order_hash[:10], exc)
                self.counts["record_failed"] += 1
                self.on_fault(exc)
                return

    def _not_placed(self, t: Tracked, kind: str) -> None:
        """The venue answered this order's submit with a state (425, 503, 429): it was not
        placed. Its stored row says so and nothing keeps tracking it; the market is decided
        again once the state passes."""
        self.counts["not_placed"] += 1
        self._set(t, "REJECTED", reason=f"{kind}: not placed")
        self.orders.pop(t.order_id, None)
        self._venue_held.add(t.market)

    async def _reread_versions(self, markets: Iterable[str]) -> None:
        """After ``order_version_mismatch``: besides the venue's ``/version`` (re-read by the
        REST client), each refused order's market is read again (``/clob-markets``, its ``v``), so
        a market that is on Protocol V2 after all signs for ExchangeV3 from now on. A failed read
        keeps what discovery said (counted); nothing here waits out a 425/429."""
        for cid in markets:
            ref = self.markets.get(cid)
            if ref is None:
                continue
            try:
                info = await self.rest.clob_market(cid, wait=False)
            except VenueError as err:
                self.counts["version_reread_failed"] += 1
                _log.warning("order version mismatch: market %s… not read again: %s", cid[:12], err)
                continue
            seen = info.version.lower()
            if seen and seen != (ref.version or "v1").lower():
                _log.warning("market %s… is on version %r (was %r): its orders are re-signed", cid[:12], seen,
                             ref.version)  # fmt: skip
                self.counts["market_version_changes"] += 1
                self.markets[cid] = replace(ref, version=seen)
                self.forget_presigned(cid)

    async def _with_fee_rates(self, trackers: Sequence[Tracked], version: int) -> list[Tracked]:
        """The orders that can be signed for venue order ``version`` now: those signed as
        version 1 need their token's fee rate (``GET /fee-rate``, cached by the REST client),
        never 0; a failed lookup holds back that token's orders (counted), the others go."""
        out = []
        for t in trackers:
            if order_version_for(self.markets[t.market].version, version) != 1:
                out.append(t)
                continue
            if self.rest.cached_fee_rate(t.token) is None:
                try:
                    await self.rest.fee_rate(t.token, wait=False)
                except VenueError as err:
                    self.counts["fee_lookup_failed"] += 1
                    _log.warning("no fee rate for token %s…: %s; its order is not sent", t.token[:10], err)
                    continue
            out.append(t)
        return out

    def _signing_refused(self, trackers: list[Tracked], why: str) -> None:
        _log.error("not sending %d orders: the signer cannot build them (%s)", len(trackers), why)
        self.counts["signing_refused"] += len(trackers)
        for t in trackers:
            self._set(t, "REJECTED", reason=f"signing_refused: {why}")
        self.on_error("signing_refused")

    def _back_off(self, t: Tracked, now: float) -> None:
        b = self._backoff.get((t.market, t.quote))
        streak = b.streak + 1 if b is not None else 1
        delay = min(self.cross_backoff_s * 2 ** (streak - 1), self.cross_backoff_max_s)
        self._backoff[(t.market, t.quote)] = _Backoff(t.quote_price, now + delay, streak)

    async def _cancel(self, ids: list[str]) -> None:
        if self.dry_run or not ids:
            return
        if not self.venue.may_cancel(self.clock.monotonic()):
            self._defer_cancels(ids)
            return
        started = self.clock.perf()
        unanswered_then = self._unanswered(ids)
        try:
            result = await self.rest.cancel_orders(ids, wait=False)
        except VenueError as err:
            if self._venue_answer(err.kind, err.retry_after, cancel=True):
                if not self.venue.may_cancel(self.clock.monotonic()):
                    self._defer_cancels(ids)  # restarting or rate limited: sent when it passes
                    return
            else:
                self.on_error(err.kind)
            self._cancel_failed(ids)  # they stay CANCELING, pending, and are sent again
            return
        self.venue.on_success()
        self.metrics.observe("cancel_round_trip", self.clock.perf() - started)
        self.on_success()
        for oid in result.canceled:
            t = self.orders.get(oid)
            if t is not None:
                self.counts["canceled"] += 1
                t.known_seq = next(self._seq)
                self._set(t, "CANCELED")
        unanswered = []
        raced = []
        for oid, reason in result.not_canceled.items():
            t = self.orders.get(oid)
            self.counts["cancel_refused"] += 1
            if t is None:
                continue
            if not t.known_seq:
                unanswered.append(oid)  # its submit has not answered: the venue may not have it yet
            elif oid in unanswered_then:
                # Its submit answered while this cancel was out: the refusal may be from before
                # the venue had it. Sent again, now (once: it is answered for by then).
                if t.status in LIVE_STATES:
                    raced.append(oid)
            elif t.status in LIVE_STATES:
                # "already canceled or matched" is terminal: never retried in a loop (an order
                # another answer concluded meanwhile keeps that answer's state).
                t.known_seq = next(self._seq)
                self._set(t, "DONE", reason=reason)
        answered = set(result.canceled) | set(result.not_canceled)
        self._cancel_failed(unanswered + [oid for oid in ids if oid not in answered])
        if raced:
            self.counts["cancel_raced_submit"] += len(raced)
            await self._cancel(raced)

    def _unanswered(self, ids: Sequence[str]) -> set[str]:
        """Of ``ids``, the orders whose submit has not answered yet (a cancel may reach the
        venue before they do)."""
        out = set()
        for oid in ids:
            t = self.orders.get(oid)
            if t is not None and not t.known_seq:
                out.add(oid)
        return out

    def _defer_cancels(self, ids: list[str]) -> None:
        """A venue state forbids cancels for now: they stay CANCELING (pending) and go out
        when it passes (:meth:`retry_cancels`), not as failures with a growing backoff."""
        resume = self.venue.cancel_resume_at(self.clock.monotonic())
        self._venue_deferred = True
        for oid in ids:
            t = self.orders.get(oid)
            if t is not None and t.status in LIVE_STATES:
                t.cancel_due = resume
                self.counts["cancels_deferred"] += 1

    def _cancel_failed(self, ids: list[str]) -> None:
        now = self.clock.monotonic()
        for oid in ids:
            t = self.orders.get(oid)
            if t is not None and t.status in LIVE_STATES:
                t.cancel_attempts += 1
                delay = min(self.cancel_retry_s * 2 ** (t.cancel_attempts - 1), self.cancel_retry_max_s)
                t.cancel_due = now + delay

    async def retry_cancels(self) -> int:
        """Send again the cancels that failed (timeout, 5xx, no answer for the order) and whose
        backoff has passed; returns how many. The bot calls this every loop tick; reconciliation
        calls it too. Cheap when nothing is due (a walk over live orders)."""
        now = self.clock.monotonic()
        if not self.venue.may_cancel(now):
            return 0
        return await self._cancel_due(self._iter_live(None), now)

    async def _cancel_due(self, trackers: Iterable[Tracked], now: float) -> int:
        """Send the cancels of ``trackers`` (live) that are wanted and due; returns how many."""
        due = [t for t in trackers if t.cancel_requested and t.cancel_due <= now]
        for t in due:
            t.cancel_due = INF  # in flight
            t.status = "CANCELING"
        if due:
            self.counts["cancel_retries"] += len(due)
            await self._cancel([t.order_id for t in due])
        return len(due)

    def cancel_off_grid(self, market: str, tick: int) -> int:
        """After a tick size change: stage the cancel of our live orders whose price is not on
        the new grid (the venue would refuse them if sent now; the next quote replaces them)."""
        ref = self.markets.get(market)
        if ref is not None:
            # Only the tick changed: the market's version (which order version it signs) stays.
            self.markets[market] = replace(ref, tick=tick)
        staged = self._stage_cancels(market, lambda o: bool(o.price % tick))
        self.counts["off_grid_cancels"] += staged
        return staged

    def stage_pull(self, market: str) -> int:
        """Stage the cancel of every quote of ``market`` the venue has answered for and that no
        cancel targets yet (a momentum pull, sent before the quote pass decides: the bot's
        ``_pull``). An order whose submit is still in flight is left to the pass that follows
        its answer: a cancel by hash could reach the venue before the order does. Unlike
        :meth:`stage`, this touches neither the refresh limits nor the decision's timing.
        Returns how many were staged."""
        return self._stage_cancels(market, lambda o: o.known_seq != 0)

    async def send_cancels(self) -> None:
        """Send the staged cancels now, without waiting for a quote pass: a pass can be held up
        by a slow answer to its submit, and a cancel is always safe to send."""
        cancels, self._cancels = self._cancels, []
        if cancels:
            await self._cancel(cancels)

    async def cancel_all(self) -> set[str]:
        """Cancel every order this bot manages (placed or adopted), by id, in batches within
        the venue's limit: never ``DELETE /cancel-all``, which would also cancel other tools'
        orders on the account. An order the cancel missed (its submit still in flight) is left
        unmarked, so the next pass sees it resting and cancels it; returns those orders'
        markets, for the caller to decide them again now."""
        if self.dry_run:
            return set()
        # Marked before the request: the venue's CANCELLATION events can arrive on the user
        # channel before the HTTP answer, and they are ours, not unsolicited.
        mine = [t for t in self._iter_live(None) if t.order_id]
        marked = [t for t in mine if not t.cancel_requested]
        for t in marked:
            t.cancel_requested = True
        unanswered_then = self._unanswered([t.order_id for t in mine])
        marked_ids = {t.order_id for t in marked}
        try:
            result = await self.rest.cancel_orders([t.order_id for t in mine])
        except VenueError as err:
            for t in marked:  # still ours to manage: the next pass cancels them again
                t.cancel_requested = False
            self._cancel_failed([t.order_id for t in mine if t.cancel_requested])
            self.on_error(err.kind)
            return {t.market for t in marked}
        for oid in result.canceled:
            o = self.orders.get(oid)
            if o is not None:
                self.counts["canceled"] += 1
                o.known_seq = next(self._seq)  # the venue's word: older listings cannot revive it
                self._set(o, "CANCELED", reason="cancel-all")
        for oid, reason in result.not_canceled.items():
            o = self.orders.get(oid)
            if o is None or not o.known_seq or o.status not in LIVE_STATES:
                continue
            if oid in unanswered_then:
                # accepted while this cancel was out: the refusal may predate it, it may rest
                if oid not in marked_ids and o.cancel_due < INF:
                    o.cancel_due = self.clock.monotonic()  # its own cancel goes again (none is out)
                continue
            o.known_seq = next(self._seq)
            self._set(o, "DONE", reason=reason)
        missed = set()
        for t in marked:
            if t.status in LIVE_STATES:
                # The venue did not hold it when the cancel ran (a submit still in flight
                # lands after it): no cancel is outstanding, so the next pass cancels it.
                t.cancel_requested = False
                missed.add(t.market)
        return missed

    def _set(self, t: Tracked, status: str, matched: int | None = None, reason: str = "") -> None:
        t.status = status
        if matched is not None:
            t.matched = matched
        if t.order_id:
            if status in LIVE_STATES:
                self._live.setdefault(t.market, {})[t.order_id] = t
            else:
                by_id = self._live.get(t.market)
                if by_id is not None:
                    by_id.pop(t.order_id, None)
        if self.store and t.order_id:
            if self._unrecorded:
                self._record_sent()  # its row first: a state is never written ahead of it
            self.store.order_state(t.order_id, status, matched, reason)

    # -- the venue's word ---------------------------------------------------------------

    def is_ours(self, order_id: str) -> bool:
        return order_id in self.orders

    def on_order(self, u: OrderUpdate) -> None:
        t = self.orders.get(u.order_id)
        if t is None:
            return
        t.known_seq = next(self._seq)  # the venue's newest word on it: older answers cannot undo it
        if t.status in CONFIRMED_FINAL and u.status not in (CANCELED, INVALID, MATCHED_ORDER):
            # A late UPDATE/PLACEMENT after the venue confirmed the order finished: it cannot
            # make it live again, only tell how much of it traded.
            t.matched = max(t.matched, u.size_matched)
            self.counts["late_order_events"] += 1
            return
        if u.status in (CANCELED, INVALID):
            if not t.cancel_requested:
                self.counts["unsolicited_cancels"] += 1
                _log.warning("order %s… cancelled by the venue (%s %s)", u.order_id[:10], u.status, u.reason)
            self._set(t, "CANCELED", u.size_matched, u.reason or u.status)
        elif u.status == MATCHED_ORDER:
            self._set(t, "MATCHED", u.size_matched)
        else:
            self._set(t, "CANCELING" if t.cancel_requested else "LIVE", u.size_matched)

    def restore(self, rows: list[dict[str, object]]) -> None:
        """Orders a previous run left open in the store, tracked as UNKNOWN until the next
        reconciliation says whether the venue still holds them."""
        seq = next(self._seq)
        for r in rows:
            m = self.markets.get(str(r["market"]))
            if m is None or r["order_id"] in self.orders:
                continue
            t = _venue_order(
                m, str(r["order_id"]), str(r["token"]), str(r["side"]), int(r["price"]),  # type: ignore[call-overload]
                int(r["size"]), "UNKNOWN", int(r["matched"]),  # type: ignore[call-overload]
            )  # fmt: skip
            t.known_seq = seq
            self.orders[t.order_id] = t
            self._live.setdefault(t.market, {})[t.order_id] = t

    async def reconcile(self) -> None:
        """Compare with ``/data/orders``: our orders the venue does not hold are finished (if
        what we know of them predates the request); live orders we do not know are adopted
        (they are ours: same API key). Then re-send the cancels that are due."""
        started = next(self._seq)
        try:
            rows = await self.rest.open_orders()
        except VenueError as err:
            self.on_error(err.kind)
            return
        venue: dict[str, VenueOrder] = {}
        for row in rows:
            try:
                o = open_order(row)
            except (KeyError, ValueError) as exc:  # UnitsError is a ValueError
                self.counts["bad_listing_rows"] += 1
                _log.warning("unusable /data/orders row %s: %s", row.get("id"), exc)
                continue
            venue[o.order_id] = o
        for t in self.live():
            if t.order_id in venue:
                if t.status in ("UNKNOWN", "SENT"):
                    self._set(t, "LIVE")
            elif t.known_seq and t.known_seq < started:
                self._set(t, "DONE", reason=GONE_REASON)
                self.counts["gone"] += 1
        for oid, o in venue.items():
            known = self.orders.get(oid)
            if known is not None and known.status not in LIVE_STATES and known.known_seq < started:
                # Concluded finished (gone from an earlier answer, a submit that seemed to fail)
                # but the venue holds it: it is live and ours to manage again; if we had asked
                # for it to go, the cancel is re-sent now.
                known.known_seq = next(self._seq)
                self._set(known, "CANCELING" if known.cancel_requested else "LIVE", o.matched, "held by the venue")
                if known.cancel_requested:
                    known.cancel_due = self.clock.monotonic()
                self.counts["revived"] += 1
                _log.warning("order %s… is on the venue after all: managed again", oid[:10])
            elif known is None and not self.adopt_unknown:
                self.counts["foreign_seen"] += 1  # another tool's order on a shared account
            elif known is None:
                m = self.markets.get(o.market)
                if m is None:
                    continue
                t = _venue_order(m, oid, o.token, o.side, o.price, o.size, "LIVE", o.matched)
                t.known_seq = next(self._seq)
                self.orders[oid] = t
                self._live.setdefault(t.market, {})[oid] = t
                self.adopted.append(oid)
                self.counts["adopted"] += 1
        await self.retry_cancels()


def _venue_order(
    m: MarketRef, order_id: str, token: str, side: str, price: int, size: int, status: str, matched: int
) -> Tracked:
    """An order known from the venue or the store (token terms) tracked with the quote it
    expresses in Up terms."""
    quote, quote_price = up_terms(token == m.up, side, price)
    return Tracked(order_id, m.condition_id, token, side, price, size, quote, quote_price, status, matched)


def _at_quote_price(i: OrderIntent, m: MarketRef) -> OrderIntent:
    """The same order at Up-terms price ``i.quote_price``, in token terms (the inverse of
    ``up_terms`` on this order's token)."""
    _, price = up_terms(i.token == m.up, i.side, i.quote_price)  # the mapping is its own inverse
    return OrderIntent(i.market, i.token, i.side, price, i.size, i.quote, i.quote_price)
