"""Per-market quote decisions: config, book, inventory, momentum and risk into the core engine.

Pure decision code (the caller passes the clock). Produces, for one market, the desired
Up-terms bid and ask with a keep/place/replace/cancel action per side, and the venue orders
those sides become (:func:`venue_leg`: an ask without Up inventory is a BUY of Down).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from active_quoting import core
from active_quoting.model import ASK, BID, BUY, SELL, OrderIntent, Pending
from active_quoting.strategy.balances import QuoteCaps
from active_quoting.strategy.config import Config
from active_quoting.strategy.inventory import SHARE, InventoryManager
from active_quoting.strategy.momentum import MomentumDetector
from active_quoting.strategy.own_book import BOOK_ASK, BOOK_BID, NO_OWN, OwnLevels, touch_without
from active_quoting.strategy.risk import RiskManager

ACTION_NAMES = {
    core.NONE: "none",
    core.KEEP: "keep",
    core.PLACE: "place",
    core.REPLACE: "replace",
    core.CANCEL: "cancel",
}


def engine_from_config(cfg: Config):  # -> core.QuoteEngine
    return core.QuoteEngine(
        cfg.quote.offset_ticks,
        cfg.quote.improve_when_spread_ticks,
        cfg.quote.max_spread_ticks,
        cfg.refresh.threshold_ticks,
        int(cfg.inventory.skew_coefficient * 1_000_000),
        int(cfg.orders.order_size_usdc * 1_000_000),
        cfg.momentum.action == "widen",
        core.parse_price(format(cfg.fair_value.max_band, "f"), "fair_value.max_band"),
    )


def notional_size(cfg: Config) -> Callable[[int, int], int]:
    """``size(side, price)``: the size the quote engine gives an order of a venue side (0 BUY,
    1 SELL) at a token price when only the order size limits it: its risk at that price (a BUY
    risks its price, a SELL the complement). For pre-signing the rungs a quote may move to."""
    engine = engine_from_config(cfg)

    def size(side: int, price: int) -> int:
        return engine.size_for(price, price if side == 0 else core.MAX_PRICE - price, 0, core.MAX_AMOUNT, core.MAX_USDC)

    return size


@dataclass(frozen=True)
class Resting:
    """Our live order on one Up-terms side (NO_PRICE when none)."""

    price: int = core.NO_PRICE
    size: int = 0


@dataclass(frozen=True)
class SideDecision:
    price: int  # Up-terms target, NO_PRICE when the side is not quoted
    size: int
    action: int

    @property
    def action_name(self) -> str:
        return ACTION_NAMES[self.action]


@dataclass(frozen=True)
class MarketDecision:
    market: str
    bid: SideDecision
    ask: SideDecision
    momentum: bool
    multiplier_pct: int


class MarketQuoter:
    """Decides the quotes of every market from the shared managers."""

    def __init__(
        self,
        cfg: Config,
        inventory: InventoryManager,
        momentum: MomentumDetector,
        risk: RiskManager,
    ) -> None:
        self.cfg = cfg
        self.engine = engine_from_config(cfg)
        self.inventory = inventory
        self.momentum = momentum
        self.risk = risk
        self.min_size_default = 5 * SHARE

    def pulls_on(self, momentum: MomentumDetector) -> bool:
        """Whether a cooldown of ``momentum`` makes :meth:`decide` cancel both sides of its
        market, whatever the book says: it is this quoter's detector, and the configuration
        pulls (``momentum.action = "pull"``, ``orders.cancel_on_momentum``) rather than widens
        or keeps, for a cooldown that lasts (with none, a trigger never makes a market hot)."""
        m = self.cfg.momentum
        pulls = m.action == "pull" and m.cooldown_seconds > 0 and self.cfg.orders.cancel_on_momentum
        return momentum is self.momentum and pulls

    def decide(
        self,
        market: str,
        book,  # core.Book of the market's Up token  # type: ignore[no-untyped-def]
        now_ms: int,
        resting_bid: Resting = Resting(),
        resting_ask: Resting = Resting(),
        pending: Pending | None = None,
        min_size: int | None = None,
        fair: int = core.NO_PRICE,
        fair_margin: int = 0,
        fair_band: int = 0,
        caps: QuoteCaps | None = None,
        own: OwnLevels = NO_OWN,
    ) -> MarketDecision:
        """``fair``: Up's fair value from the reference price (NO_PRICE: none); the bid stays at
        or below fair - ``fair_margin``, the ask at or above fair + margin, both pulled while
        ``fair_band`` is wider than the configured maximum. ``caps``: what the venue balances
        leave free; each side's new BUY notional is held to half the free collateral (either
        side may be expressed as a BUY). ``own``: our resting sizes per Up-terms level, read out
        of the book's touch (:func:`touch_without`)."""
        mult = self.risk.multiplier_pct(market)
        hot = self.momentum.is_active(market, now_ms)
        readable = book is not None and not book.desynced
        if mult == 0 or not readable:
            # Halted, killed or no trustworthy book: nothing is quoted, everything resting goes.
            best_bid = best_ask = core.NO_PRICE
            tick = book.tick if book is not None else core.DEFAULT_TICK
        else:
            best_bid = touch_without(book, BOOK_BID, own[0], exact=True)
            best_ask = touch_without(book, BOOK_ASK, own[1], exact=True)
            tick = book.tick
        rooms = self.inventory.rooms(market, pending, mult) if mult else (0, 0, 0, 0)
        if caps is not None:
            half = caps.buy_usdc // 2
            rooms = (rooms[0], rooms[1], min(rooms[2], half), min(rooms[3], half))
        position = max(-core.MAX_POSITION, min(core.MAX_POSITION, self.inventory.net_up(market)))
        out = self.engine.decide(
            best_bid,
            best_ask,
            tick,
            self.min_size_default if min_size is None else min_size,
            position,
            hot,
            resting_bid.price,
            resting_bid.size,
            resting_ask.price,
            resting_ask.size,
            *rooms,
            fair,
            fair_margin,
            fair_band,
        )
        bid = SideDecision(out[0], out[1], out[2])
        ask = SideDecision(out[3], out[4], out[5])
        if own is not NO_OWN:
            min_sz = self.min_size_default if min_size is None else min_size
            bid, ask = self._clear_of_own(bid, ask, resting_bid, resting_ask, own, tick, min_sz, rooms)
        if hot and mult and not self.cfg.orders.cancel_on_momentum:
            # Momentum without cancel-on-momentum: place nothing new, leave resting orders.
            bid = SideDecision(bid.price, bid.size, core.KEEP if bid.action == core.CANCEL else bid.action)
            ask = SideDecision(ask.price, ask.size, core.KEEP if ask.action == core.CANCEL else ask.action)
        return MarketDecision(market, bid, ask, hot, mult)

    def _clear_of_own(
        self, bid: SideDecision, ask: SideDecision, resting_bid: Resting, resting_ask: Resting, own: OwnLevels,
        tick: int, min_size: int, rooms: tuple[int, int, int, int],
    ) -> tuple[SideDecision, SideDecision]:
        """Targets made on the others' touch can reach our own orders on the other side (our ask
        alone inside the others' spread, their bid a tick below it; or an ask whose cancel is
        out and which the venue still holds): held a tick clear of every order of ours not yet
        confirmed gone (``own``), sized there, since the venue refuses a post-only order
        crossing it (and with concurrent replaces, the new order can arrive before the old one's
        cancel)."""
        engine = self.engine
        lowest_ask = min(own[1], default=core.NO_PRICE)
        highest_bid = max(own[0], default=core.NO_PRICE)
        if bid.price != core.NO_PRICE and lowest_ask != core.NO_PRICE and bid.price >= lowest_ask:
            price = lowest_ask - tick
            size = engine.size_for(price, price, min_size, rooms[0], rooms[2]) if price >= tick else 0
            price = price if size else core.NO_PRICE
            bid = SideDecision(price, size, engine.action(resting_bid.price, resting_bid.size, price, size, tick))
        if ask.price != core.NO_PRICE and highest_bid != core.NO_PRICE and ask.price <= highest_bid:
            price = highest_bid + tick
            ok = price <= core.MAX_PRICE - tick
            size = engine.size_for(price, core.MAX_PRICE - price, min_size, rooms[1], rooms[3]) if ok else 0
            price = price if size else core.NO_PRICE
            ask = SideDecision(price, size, engine.action(resting_ask.price, resting_ask.size, price, size, tick))
        return bid, ask

    def intents(
        self, market: str, up: str, down: str, decision: MarketDecision, reserved: tuple[int, int] = (0, 0),
        caps: QuoteCaps | None = None,
    ) -> list[OrderIntent]:
        """The venue orders the sides to place or replace become. Only settled shares not
        reserved by our resting SELLs can be sold (the venue refuses a SELL of tokens not yet
        delivered or already offered), so an ask without such Up is a BUY of Down at 1 - p, a
        bid without such Down a BUY of Up. ``reserved``: (Up, Down) shares our live SELLs hold."""
        up_held, down_held = self.inventory.sellable(market)
        up_free, down_free = max(0, up_held - reserved[0]), max(0, down_held - reserved[1])
        if caps is not None:  # the venue's word on what is settled and not offered
            up_free, down_free = min(up_free, caps.sell_up), min(down_free, caps.sell_down)
        out = []
        if decision.bid.action in (core.PLACE, core.REPLACE):
            out.append(intent(market, up, down, BID, decision.bid.price, decision.bid.size, down_free))
        if decision.ask.action in (core.PLACE, core.REPLACE):
            out.append(intent(market, up, down, ASK, decision.ask.price, decision.ask.size, up_free))
        return out


def intent(market: str, up: str, down: str, quote: str, price: int, size: int, held: int) -> OrderIntent:
    """One Up-terms quote side as the venue order that expresses it (the core's venue_leg
    chooses between selling held shares and buying the complement)."""
    token_index, side, token_price, token_size = core.venue_leg(quote == ASK, price, size, held)
    return OrderIntent(
        market, up if token_index == core.UP else down, BUY if side == core.BUY else SELL, token_price, token_size,
        quote, price,
    )  # fmt: skip
