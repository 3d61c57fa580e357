"""Inventory: positions from fills, average entry, worst-case liability and hard limits.

Positions are per token in micro-shares and per market (Up and Down token of one binary
market). Money is exact (``Fraction`` of USDC) in the fill path; the limits the quote engine
asks for are integers in 1e-10 USDC units (price unit x micro-share). A fill is keyed by
(trade id, order id): the first sight applies it (MATCHED is provisional), CONFIRMED makes it
final, FAILED reverses it (the market is replayed without it), RETRYING keeps it provisional;
repeats of a status are ignored, so nothing is counted twice.

Replaying never raises. A FAILED fill is taken out whatever followed it, so a SELL that the
replay finds without enough shares (it sold shares whose purchase then failed) leaves a
negative, short position: the shares held go below zero, the proceeds are carried as negative
cost, a later BUY covers it at its average. Such a market is counted in ``oversold`` and logged;
it is a state to report (the venue's own books disagree with ours), not an exception that
would lose every later fill of the market.

Worst-case liability of a binary market: what is lost if the worse outcome wins, i.e. the
cost of everything held minus what every outcome pays (an Up/Down pair is worth 1 at
resolution): ``max(0, cost_up + cost_down - min(up, down))``; it holds for short positions too.

With pending orders the worst case is taken over which of them fill, outcome by outcome: the
loss if Up wins counts every pending order that raises it (BUYs of Down, SELLs of Up) and none
that would lower it (an order that may never fill pairs nothing off), and the loss if Down wins
likewise. So a resting ask never makes room for a bid (nor a bid for an ask): whatever subset of
our orders fills, a limit the rooms respected holds. A pending SELL raises its token's loss by
what the fill takes off the cost basis ``(1 - min(avg, price))`` per share, for the shares held
(the venue sells only tokens it holds for us; any it holds that we have not counted yet come
from buys whose fills more than offset it).

Settled shares: holdings count MATCHED shares, but the venue delivers a token only when its
trade is mined. ``sellable(market)`` is what may be SOLD now: shares of MINED/CONFIRMED buys
minus every SELL already matched (the venue has already taken those from the balance).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from active_quoting import core
from active_quoting.model import (
    BUY,
    CONFIRMED,
    FAILED,
    MATCHED,
    MINED,
    RETRYING,
    SELL,
    STATUSES,
    Fill,
    Pending,
    PendingOrder,
)  # fmt: skip
from active_quoting.strategy.config import InventoryConfig

__all__ = ["BUY", "SELL", "MATCHED", "MINED", "CONFIRMED", "RETRYING", "FAILED", "STATUSES", "Fill", "InventoryManager"]

_log = logging.getLogger(__name__)

SHARE = 1_000_000  # micro-shares per share
USDC_PER_UNIT_SHARE = Fraction(1, core.PRICE_SCALE * SHARE)  # price unit x micro-share -> USDC
UNITS_PER_USDC = core.PRICE_SCALE * SHARE  # 1e10: price unit x micro-share units in one USDC
SETTLED = (MINED, CONFIRMED)  # the venue has delivered what the trade bought
FORGOTTEN_KEPT = 4096  # pruned market ids remembered, so a late message for one is not an error

MarketPending = list[PendingOrder] | tuple[()]  # one market's live orders


class InventoryError(ValueError):
    """A fill or query the inventory cannot account for (unknown market, bad side)."""


@dataclass
class Position:
    shares: int = 0  # negative: short (sold more than the fills we still count bought)
    cost: Fraction = Fraction(0)  # USDC paid for the shares held (negative: received for a short)
    realized: Fraction = Fraction(0)

    def avg_price(self) -> Fraction | None:
        """Average entry in price units per share, None when flat."""
        return self.cost * core.PRICE_SCALE * SHARE / self.shares if self.shares else None


@dataclass
class _Market:
    up: str
    down: str
    fills: list[Fill] = field(default_factory=list)
    positions: dict[str, Position] = field(default_factory=dict)
    resolved: str | None = None
    keys: list[tuple[str, str]] = field(default_factory=list)  # every fill key seen, FAILED ones too
    oversold: int = 0  # micro-shares the last replay sold without holding them
    # Settlement bookkeeping per token, kept incrementally: shares of settled buys and of
    # every matched (not failed) sell.
    settled_bought: dict[str, int] = field(default_factory=dict)
    sold: dict[str, int] = field(default_factory=dict)
    # Cached integer figures for the limits (1e-10 USDC), None until asked after a change.
    cost_units: int | None = None
    liability_units: int | None = None
    # (loss if Up wins, loss if Down wins) per pending-order list, until the positions change:
    # a quote pass asks for every market's figure once per market it decides.
    losses: dict[tuple[PendingOrder, ...], tuple[int, int]] = field(default_factory=dict)


def _usdc(price_units: int, micro: int) -> Fraction:
    return price_units * micro * USDC_PER_UNIT_SHARE


class InventoryManager:
    # The liability limits in USDC (Fractions, as configured) and, kept with them, in the 1e-10
    # USDC units the room arithmetic uses (computed once, not on every quote decision).
    @property
    def max_liability_market(self) -> Fraction:
        return self._max_liability_market

    @max_liability_market.setter
    def max_liability_market(self, usdc: Fraction) -> None:
        self._max_liability_market = Fraction(usdc)
        self._limit_market_units = int(self._max_liability_market * UNITS_PER_USDC)

    @property
    def max_liability_total(self) -> Fraction:
        return self._max_liability_total

    @max_liability_total.setter
    def max_liability_total(self, usdc: Fraction) -> None:
        self._max_liability_total = Fraction(usdc)
        self._limit_total_units = int(self._max_liability_total * UNITS_PER_USDC)

    def __init__(self, cfg: InventoryConfig | None = None) -> None:
        cfg = cfg or InventoryConfig()
        self.max_position = int(cfg.max_position_per_market * SHARE)
        self.max_liability_market = Fraction(cfg.max_liability_per_market_usdc)
        self.max_liability_total = Fraction(cfg.max_total_liability_usdc)
        self._markets: dict[str, _Market] = {}
        self._token_market: dict[str, str] = {}
        self._fills: dict[tuple[str, str], Fill] = {}
        self._forgotten: OrderedDict[str, None] = OrderedDict()
        self._pruned_realized = Fraction(0)
        self._total_base: int = 0  # sum of live markets' liability_units (no pending), kept current
        self._dirty: set[str] = set()  # markets whose liability_units must be recomputed
        self.reversals = 0
        self.duplicates = 0
        self.late = 0  # messages for a market already forgotten

    # -- markets and fills ------------------------------------------------------------

    def register_market(self, market: str, up_token: str, down_token: str) -> None:
        if market not in self._markets:
            self._markets[market] = _Market(
                up_token, down_token, positions={up_token: Position(), down_token: Position()}
            )
            self._token_market[up_token] = market
            self._token_market[down_token] = market
            self._forgotten.pop(market, None)

    def markets(self) -> list[str]:
        return list(self._markets)

    def _market(self, market: str) -> _Market:
        m = self._markets.get(market)
        if m is None:
            raise InventoryError(f"unknown market {market!r}: register it before its fills")
        return m

    def forget(self, market: str, force: bool = False) -> bool:
        """Drop a market's state (the window lifecycle prunes it once resolved): it is no longer
        summed into totals; its realized P&L stays in ``realized_total()``. A market that is not
        resolved and still holds shares is kept unless ``force`` (its open position would vanish
        from the limits). Later messages for a forgotten market are counted in ``late``.
        Returns whether the market was dropped."""
        m = self._markets.get(market)
        if m is None:
            return False
        if not force and m.resolved is None and any(p.shares for p in m.positions.values()):
            return False
        self._pruned_realized += self.realized(market)
        self._refresh_total()
        self._total_base -= m.liability_units or 0
        del self._markets[market]
        for token in (m.up, m.down):
            self._token_market.pop(token, None)
        for key in m.keys:
            self._fills.pop(key, None)
        self._forgotten[market] = None
        while len(self._forgotten) > FORGOTTEN_KEPT:
            self._forgotten.popitem(last=False)
        return True

    def apply_fill(self, fill: Fill) -> str:
        """Account for one fill message. Returns what happened: 'new', 'confirmed',
        'reversed', 'status' (a non-final status change), 'duplicate', or 'late' (its market
        was forgotten). Raises InventoryError only for a message it cannot place (unknown
        market, status, side or token), before changing anything."""
        if fill.status not in STATUSES:
            raise InventoryError(f"fill {fill.key}: unknown status {fill.status!r}")
        if fill.side not in (BUY, SELL):
            raise InventoryError(f"fill {fill.key}: side must be BUY or SELL, got {fill.side!r}")
        if fill.market in self._forgotten:
            self.late += 1
            return "late"
        m = self._market(fill.market)
        if fill.token not in (m.up, m.down):
            raise InventoryError(f"fill {fill.key}: token is not one of market {fill.market!r}")
        known = self._fills.get(fill.key)
        if known is None:
            self._fills[fill.key] = fill
            m.keys.append(fill.key)
            if fill.status == FAILED:  # first seen already failed: never applied
                return "reversed"
            m.fills.append(fill)
            self._settlement(m, fill, +1)
            self._apply(m, fill)
            self._changed(fill.market)
            return "new"
        if known.status == fill.status or known.status in (CONFIRMED, FAILED):
            self.duplicates += 1
            return "duplicate"
        self._fills[fill.key] = fill
        self._settlement(m, known, -1)
        if fill.status == FAILED:
            m.fills = [f for f in m.fills if f.key != fill.key]
            self._replay(m)
            self._changed(fill.market)
            self.reversals += 1
            return "reversed"
        self._settlement(m, fill, +1)
        m.fills = [fill if f.key == fill.key else f for f in m.fills]
        return "confirmed" if fill.status == CONFIRMED else "status"

    def _settlement(self, m: _Market, fill: Fill, sign: int) -> None:
        """Add (+1) or take out (-1) a fill's part in the settled figures, for its status."""
        if fill.side == SELL:
            if fill.status != FAILED:
                m.sold[fill.token] = m.sold.get(fill.token, 0) + sign * fill.size
        elif fill.status in SETTLED:
            m.settled_bought[fill.token] = m.settled_bought.get(fill.token, 0) + sign * fill.size

    def _apply(self, m: _Market, fill: Fill) -> None:
        """Average-cost accounting that also holds for a short position: the part of a fill
        that reduces the position realizes against the average, the rest opens at the price."""
        pos = m.positions[fill.token]
        signed = fill.size if fill.side == BUY else -fill.size
        closing = 0 if (pos.shares >= 0) == (signed > 0) else min(abs(signed), abs(pos.shares))
        if closing:
            closed_cost = pos.cost * closing / abs(pos.shares)  # signed like the position
            # closing a long (SELL): proceeds - cost; closing a short (BUY): -paid - (negative) cost
            proceeds = _usdc(fill.price, closing) if signed < 0 else -_usdc(fill.price, closing)
            pos.realized += proceeds - closed_cost
            pos.cost -= closed_cost
            pos.shares += closing if signed > 0 else -closing
        rest = abs(signed) - closing
        if rest:
            if signed < 0:
                m.oversold += rest
                _log.warning(
                    "fill %s sells %d micro-shares of %s not held: position goes short", fill.key, rest, fill.token
                )
            pos.shares += rest if signed > 0 else -rest
            pos.cost += _usdc(fill.price, rest if signed > 0 else -rest)

    def _replay(self, m: _Market) -> None:
        m.positions = {m.up: Position(), m.down: Position()}
        m.oversold = 0
        for f in m.fills:
            self._apply(m, f)
        if m.resolved is not None:
            self._settle(m, m.resolved)

    def resolve(self, market: str, winning_token: str) -> Fraction:
        """Resolution: the winner pays 1 per share, the loser 0. Returns the realized P&L."""
        m = self._market(market)
        if winning_token not in (m.up, m.down):
            raise InventoryError(f"resolve {market!r}: {winning_token!r} is not one of its tokens")
        before = self.realized(market)
        m.resolved = winning_token
        self._settle(m, winning_token)
        self._changed(market)
        return self.realized(market) - before

    def _settle(self, m: _Market, winner: str) -> None:
        for token, pos in m.positions.items():
            payout = Fraction(pos.shares, SHARE) if token == winner else Fraction(0)
            pos.realized += payout - pos.cost
            pos.cost = Fraction(0)
            pos.shares = 0

    def is_final(self, key: tuple[str, str]) -> bool:
        f = self._fills.get(key)
        return f is not None and f.status in (CONFIRMED, FAILED)

    # -- positions and P&L ------------------------------------------------------------

    def position(self, token: str) -> Position:
        market = self._token_market.get(token)
        if market is None:
            raise InventoryError(f"unknown token {token!r}")
        return self._markets[market].positions[token]

    def net_up(self, market: str) -> int:
        """Up-terms net position (micro-shares): Up held minus Down held."""
        m = self._market(market)
        return m.positions[m.up].shares - m.positions[m.down].shares

    def fill_keys(self, market: str) -> list[tuple[str, str]]:
        """Every fill key the market has seen (for checks that none is counted twice)."""
        m = self._markets.get(market)
        return list(m.keys) if m is not None else []

    def held(self, market: str) -> tuple[int, int]:
        """(Up, Down) micro-shares held, MATCHED fills included (negative when short)."""
        m = self._market(market)
        return m.positions[m.up].shares, m.positions[m.down].shares

    def sellable(self, market: str) -> tuple[int, int]:
        """(Up, Down) micro-shares the venue has delivered and we have not sold yet: settled
        (MINED/CONFIRMED) buys minus every matched sell, floored at 0; (0, 0) once resolved.
        Shares committed to our own resting SELL orders are not subtracted (the caller knows them)."""
        m = self._market(market)
        if m.resolved is not None:
            return 0, 0
        return tuple(  # type: ignore[return-value]
            max(0, m.settled_bought.get(t, 0) - m.sold.get(t, 0)) for t in (m.up, m.down)
        )

    def oversold(self, market: str) -> int:
        """Micro-shares this market's fills sell beyond what they buy (a reversed buy under a
        later sale): 0 when the books are consistent."""
        return self._market(market).oversold

    def _changed(self, market: str) -> None:
        m = self._markets[market]
        m.cost_units = None
        m.losses.clear()
        self._dirty.add(market)

    def _refresh_total(self) -> None:
        """Bring the summed liability of live markets up to date: only changed markets are
        recomputed, so the cost follows the changes, not the number of markets."""
        for market in self._dirty:
            m = self._markets.get(market)
            if m is None:
                continue
            if m.liability_units is not None:
                self._total_base -= m.liability_units
            m.liability_units = self._liability_of(m, ())
            self._total_base += m.liability_units
        self._dirty.clear()

    def _cost_units(self, m: _Market) -> int:
        """The cost of what a market's positions hold, in units of 1e-10 USDC (price unit x
        micro-share), rounded up: the limits never see less risk than there is. Cached until the
        market's positions change."""
        if m.cost_units is None:
            cost = sum((p.cost for p in m.positions.values()), Fraction(0))
            m.cost_units = -(-cost.numerator * UNITS_PER_USDC // cost.denominator)
        return m.cost_units

    def _outcome_losses(self, m: _Market, pending: MarketPending) -> tuple[int, int]:
        """(loss if Up wins, loss if Down wins) in 1e-10 USDC, each with every pending order
        that raises it filled and none that would lower it: the worst case over which of our
        orders fill, per outcome. Negative: that outcome pays more than the cost."""
        key = tuple(pending)
        known = m.losses.get(key)
        if known is None:
            if len(m.losses) >= 64:
                m.losses.clear()  # bounded: the pending lists of a few passes
            known = m.losses[key] = self._compute_losses(m, key)
        return known

    def _compute_losses(self, m: _Market, pending: MarketPending) -> tuple[int, int]:
        up_pos, down_pos = m.positions[m.up], m.positions[m.down]
        cost = self._cost_units(m)
        loss_up = cost - up_pos.shares * core.PRICE_SCALE
        loss_down = cost - down_pos.shares * core.PRICE_SCALE
        sold = {m.up: 0, m.down: 0}  # shares the pending SELLs already claimed, per token
        for token, side, price, size in pending:
            if token not in sold:
                raise InventoryError(f"pending order on token {token!r} is not in this market")
            if side == BUY:
                # Pays 1 per share if its token wins: it only raises the other outcome's loss.
                if token == m.up:
                    loss_down += price * size  # price unit x micro-share = 1e-10 USDC
                else:
                    loss_up += price * size
                continue
            pos = m.positions[token]
            covered = max(0, min(size, pos.shares - sold[token]))
            sold[token] += covered
            if covered:
                # The fill takes avg x size off the cost basis and size off the shares: the loss
                # if its token wins rises by (1 - avg) per share (the sale price when lower, for
                # a position the replay finds short). avg floored: never less risk than there is.
                avg = pos.cost.numerator * UNITS_PER_USDC // (pos.cost.denominator * pos.shares)
                per_share = core.PRICE_SCALE - min(price, avg)
                if token == m.up:
                    loss_up += per_share * covered
                else:
                    loss_down += per_share * covered
        return loss_up, loss_down

    def _liability_of(self, m: _Market, pending: MarketPending) -> int:
        return max(0, *self._outcome_losses(m, pending))

    def _liability_units(self, market: str, pending: MarketPending = ()) -> int:
        m = self._market(market)
        if not pending:
            self._refresh_total()
            return m.liability_units if m.liability_units is not None else self._liability_of(m, ())
        return self._liability_of(m, pending)

    def liability(self, market: str, pending: MarketPending = ()) -> Fraction:
        """Worst-case loss (USDC) over the outcomes and over which pending orders (token, side,
        price, size) fill: each outcome's loss counts the pending orders that raise it."""
        return Fraction(self._liability_units(market, pending), UNITS_PER_USDC)

    def total_liability(self, pending: Pending | None = None) -> Fraction:
        return Fraction(self._total_units(pending or {}), UNITS_PER_USDC)

    def _total_units(self, pending: Pending) -> int:
        """Summed liability of the live markets, pending orders included: the settled part is
        kept current incrementally, only markets with pending orders are recomputed."""
        self._refresh_total()
        total = self._total_base
        for market, orders in pending.items():
            m = self._markets.get(market)
            if m is None or not orders:
                continue
            total += self._liability_of(m, orders) - (m.liability_units or 0)
        return total

    def realized(self, market: str) -> Fraction:
        m = self._market(market)
        return sum((p.realized for p in m.positions.values()), Fraction(0))

    def realized_total(self) -> Fraction:
        """Realized P&L of every market ever held, the forgotten ones included."""
        return self._pruned_realized + sum((self.realized(mk) for mk in self._markets), Fraction(0))

    def unrealized(self, market: str, marks_x2: dict[str, int]) -> Fraction:
        """Held shares marked at ``marks_x2[token]`` (twice the mid in price units, as the book
        gives it: exact). A token without a two-sided mark (NO_PRICE or absent) is carried at
        cost: a one-sided or empty book produces no fake P&L."""
        m = self._market(market)
        total = Fraction(0)
        for token, pos in m.positions.items():
            mark = marks_x2.get(token)
            if pos.shares and mark is not None and mark != core.NO_PRICE:
                total += _usdc(mark, pos.shares) / 2 - pos.cost
        return total

    # -- limits -----------------------------------------------------------------------

    def rooms(
        self,
        market: str,
        pending: Pending | None = None,
        multiplier_pct: int = 100,
    ) -> tuple[int, int, int, int]:
        """(bid_room, ask_room, bid_room_usdc, ask_room_usdc) for the quote engine, Up-terms.

        Pending orders on a side count as filled for that side; the other side's pending orders
        are not credited (they may never fill). Position room is what keeps |net| within the
        position limit. Liability room is per outcome: a bid (long Up-terms) raises the loss if
        Down wins, an ask the loss if Up wins, so each side's room is what keeps its outcome's
        worst-case loss within the market and total limits, whatever else of ours fills. The
        side that reduces exposure gets its pair-off credit from the same figure: buying the
        complement of what is held adds nothing to the other outcome's loss.
        """
        if not 0 <= multiplier_pct <= 100:
            raise InventoryError(f"multiplier_pct must be in [0, 100], got {multiplier_pct}")
        m = self._market(market)
        pending = pending or {}
        mine = pending.get(market, [])
        up, down = m.positions[m.up].shares, m.positions[m.down].shares
        bid_pending = ask_pending = 0
        for token, side, _price, size in mine:
            if (token == m.up) == (side == BUY):
                bid_pending += size  # BUY Up or SELL Down: long Up-terms
            else:
                ask_pending += size
        net = up - down
        max_pos = self.max_position * multiplier_pct // 100
        bid_room = max(0, max_pos - net - bid_pending)
        ask_room = max(0, max_pos + net - ask_pending)
        # Integer arithmetic in 1e-10 USDC units; floors, so never more room than there is.
        limit_m = self._limit_market_units * multiplier_pct // 100
        limit_t = self._limit_total_units * multiplier_pct // 100
        loss_up, loss_down = self._outcome_losses(m, mine)
        others = self._total_units(pending) - max(0, loss_up, loss_down)  # the other markets' worst cases
        cap = min(limit_m, limit_t - others)
        per_micro = UNITS_PER_USDC // SHARE  # 1e-10 USDC units per micro-USDC
        bid_usdc = max(0, (cap - loss_down) // per_micro)  # a bid raises the loss if Down wins
        ask_usdc = max(0, (cap - loss_up) // per_micro)  # an ask the loss if Up wins
        return (
            min(bid_room, core.MAX_AMOUNT),
            min(ask_room, core.MAX_AMOUNT),
            min(bid_usdc, core.MAX_USDC),
            min(ask_usdc, core.MAX_USDC),
        )


def to_decimal(value: Fraction, places: int = 6) -> Decimal:
    """A Fraction of USDC as a Decimal rounded half-even to ``places`` (for reports)."""
    q = Decimal(1).scaleb(-places)
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(q)
