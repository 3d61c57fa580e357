"""The quote pass: for the markets that changed, what each strategy wants, as typed order
intents handed to execution.

A strategy sees one market at a time through a :class:`MarketView` (its window, its readable
Up book, our resting quotes, what all our live orders commit) and answers a decision (per
Up-terms side: keep / place / replace / cancel) with the :class:`OrderIntent` s that express it.
Strategies are interchangeable behind :class:`Strategy`; the pass does not know their names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Protocol

from active_quoting import core
from active_quoting.discovery import WindowInfo
from active_quoting.execution.order_manager import OrderManager
from active_quoting.model import ASK, BID, SELL, OrderIntent, Pending, PendingOrder
from active_quoting.strategy.balances import Balances, CapsBudget, QuoteCaps
from active_quoting.strategy.config import Config
from active_quoting.strategy.fair_value import Fair, FairValues
from active_quoting.strategy.inventory import InventoryManager
from active_quoting.strategy.momentum import MomentumDetector
from active_quoting.strategy.only50 import Only50
from active_quoting.strategy.own_book import NO_OWN, OwnLevels
from active_quoting.strategy.quoting import MarketDecision, MarketQuoter, Resting, SideDecision
from active_quoting.strategy.risk import RiskManager
from active_quoting.windows import WindowLifecycle


@dataclass(frozen=True, slots=True)
class MarketView:
    window: WindowInfo
    book: Any  # the Up token's core.Book when readable, else None
    resting_bid: Resting
    resting_ask: Resting
    pending: Pending  # every market's live orders (liability rooms)
    now_ms: int
    reserved: tuple[int, int] = (0, 0)  # Up and Down shares our live SELLs of this market still hold
    fair: Fair | None = None  # Up's fair value from the reference price, when known
    fair_margin: int = 0  # how far inside fair value the quotes stay
    caps: QuoteCaps | None = None  # what the venue balances leave free for new orders (None: not checked)
    own: OwnLevels = NO_OWN  # our remaining size per Up-terms price (bids, asks): the touch is read without it


class Strategy(Protocol):
    def decide(self, view: MarketView) -> tuple[MarketDecision, list[OrderIntent]]: ...

    def pulls_on(self, momentum: MomentumDetector) -> bool:
        """Whether this strategy cancels every quote of a market while ``momentum`` holds that
        market in a cooldown, whatever else its decision reads (so the cancels may go out
        before the decision is made)."""
        ...


class ActiveStrategy:
    """The design's quoter: inventory-skewed quotes around the touch, momentum and risk aware."""

    def __init__(self, quoter: MarketQuoter) -> None:
        self.quoter = quoter

    def decide(self, view: MarketView) -> tuple[MarketDecision, list[OrderIntent]]:
        w = view.window
        f = view.fair
        d = self.quoter.decide(
            w.condition_id, view.book, view.now_ms, view.resting_bid, view.resting_ask, view.pending, w.min_size,
            *((f.price, view.fair_margin, f.band) if f is not None else ()), caps=view.caps, own=view.own,
        )  # fmt: skip
        return d, self.quoter.intents(w.condition_id, w.up, w.down, d, view.reserved, view.caps)

    def pulls_on(self, momentum: MomentumDetector) -> bool:
        return self.quoter.pulls_on(momentum)


class Only50Strategy:
    """The baseline: BUY 0.50 on both tokens, passive."""

    def __init__(self, only50: Only50) -> None:
        self.only50 = only50

    def decide(self, view: MarketView) -> tuple[MarketDecision, list[OrderIntent]]:
        w = view.window
        return self.only50.decide(w.condition_id, w.up, w.down, view.resting_bid, view.resting_ask, w.min_size)

    def pulls_on(self, momentum: MomentumDetector) -> bool:
        return False  # the baseline reads no momentum


def make_strategy(
    name: str, cfg: Config, inventory: InventoryManager, momentum: MomentumDetector, risk: RiskManager
) -> Strategy:
    builders: dict[str, Callable[[], Strategy]] = {
        "active": lambda: ActiveStrategy(MarketQuoter(cfg, inventory, momentum, risk)),
        "spot": lambda: ActiveStrategy(MarketQuoter(strategy_config("spot", cfg), inventory, momentum, risk)),
        "only50": lambda: Only50Strategy(Only50(cfg, inventory, risk)),
        # The control for A/B runs: joins the touch, no inventory skew, no momentum protection
        # (its own detector is never fed), same limits and sizes.
        "naive": lambda: ActiveStrategy(MarketQuoter(naive_config(cfg), inventory, MomentumDetector(), risk)),
    }
    if name not in builders:
        raise ValueError(f"unknown strategy {name!r}: one of {', '.join(sorted(builders))}")
    return builders[name]()


STRATEGY_NAMES = ("active", "only50", "naive", "spot")


def strategy_config(name: str, cfg: Config) -> Config:
    """The configuration a named strategy runs with: ``spot`` is ``active`` with the fair value
    from the reference price and the spot-move guard on."""
    if name == "spot":
        return replace(cfg, fair_value=replace(cfg.fair_value, enabled=True, guard=True))
    return cfg


def naive_config(cfg: Config) -> Config:
    """``cfg`` without the design's protections: quotes join the touch (never improve it) and
    are not skewed by inventory."""
    return replace(
        cfg,
        quote=replace(cfg.quote, offset_ticks=0, improve_when_spread_ticks=core.MAX_PRICE),
        inventory=replace(cfg.inventory, skew_coefficient=Decimal(0)),
    )
_CANCEL_SIDE = SideDecision(core.NO_PRICE, 0, core.CANCEL)


class QuotePass:
    """Runs the strategy over the markets that changed and stages the result with execution."""

    def __init__(
        self,
        strategy: Strategy,
        windows: WindowLifecycle,
        orders: OrderManager,
        readable_book: Callable[[str], Any],  # token -> core.Book or None when not readable
        fair_values: FairValues | None = None,  # the reference price's fair values, when enabled
        balances: Balances | None = None,  # the venue's balances: new orders only within what is free
        chain_id: int = 137,
    ) -> None:
        self.strategy = strategy
        self.windows = windows
        self.orders = orders
        self.readable_book = readable_book
        self.fair_values = fair_values
        self.balances = balances
        self.chain_id = chain_id
        self.passes = 0
        self.decisions = 0

    def run(self, markets: Iterable[str], now: float) -> list[str]:
        """Decide and stage every given market; returns the markets decided (quoted ones).
        A market not being quoted (stopped, ended, halted by its window) has what rests in it
        cancelled."""
        self.passes += 1
        now_ms = int(now * 1000)
        pending: Pending | None = None
        fv = self.fair_values
        budget: CapsBudget | None = None
        decided = []
        for cid in markets:
            w = self.windows.get(cid)
            if w is not None and self.windows.is_quoting(cid):
                if pending is None:
                    pending = self.orders.pending()
                    budget = self.balances.budget(pending) if self.balances is not None else None
                fair = fv.fair(w.info, now_ms) if fv is not None else None
                view = MarketView(
                    w.info, self.readable_book(w.info.up), self.orders.resting(cid, BID),
                    self.orders.resting(cid, ASK), pending, now_ms, self._reserved(w.info, pending.get(cid, [])),
                    fair, fv.margin(fair) if fv is not None and fair is not None else 0,
                    self._caps(budget, w.info), self.orders.own_levels(cid),
                )  # fmt: skip
                if fv is not None:
                    fv.decided(cid, fair)
                decision, intents = self.strategy.decide(view)
                if self.orders.stage(decision, intents, now) and intents:
                    if budget is not None:
                        budget.spend(intents)
                    pending = self.orders.pending()  # what this market staged counts for the markets after it
                decided.append(cid)
            elif self.orders.live(cid):
                self.orders.stage(MarketDecision(cid, _CANCEL_SIDE, _CANCEL_SIDE, False, 0), [], now)
        self.decisions += len(decided)
        return decided

    def _caps(self, budget: CapsBudget | None, info: WindowInfo) -> QuoteCaps | None:
        if budget is None or self.balances is None:
            return None
        self.balances.register_window(info, self.chain_id)  # a window quoted before the next refresh
        return budget.caps(info.condition_id)

    def _reserved(self, info: WindowInfo, mine: list[PendingOrder]) -> tuple[int, int]:
        """Shares our live SELLs in this market (``mine``) hold on the venue (until it confirms
        them gone, a cancelled SELL's shares are not free to sell again)."""
        up_held = down_held = 0
        # the venue refused a SELL for balance a moment ago: buy the complement instead
        up_held += 0 if self.orders.may_sell(info.up) else core.MAX_POSITION
        down_held += 0 if self.orders.may_sell(info.down) else core.MAX_POSITION
        for token, side, _price, remaining in mine:
            if side == SELL:
                if token == info.up:
                    up_held += remaining
                else:
                    down_held += remaining
        return up_held, down_held
