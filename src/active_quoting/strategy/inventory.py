"""Inventory: positions from fills, average entry, worst-case liability and hard limits.

Positions are per token in micro-shares and per market (Up and Down token of one binary
market). Money is exact (``Fraction`` of USDC). A fill is keyed by (trade id, order id): the
first sight applies it (MATCHED is provisional), CONFIRMED makes it final, FAILED reverses
it (the market is replayed without it), RETRYING keeps it provisional; repeats of a status
are ignored, so nothing is counted twice.

Worst-case liability of a binary market: what is lost if the worse outcome wins, i.e. the
cost of everything held minus the shares that pay out in every case (an Up/Down pair is
worth 1 at resolution): ``max(0, cost_up + cost_down - min(up, down))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from active_quoting import core
from active_quoting.model import BUY, CONFIRMED, FAILED, MATCHED, MINED, RETRYING, SELL, STATUSES, Fill
from active_quoting.strategy.config import InventoryConfig

__all__ = ["BUY", "SELL", "MATCHED", "MINED", "CONFIRMED", "RETRYING", "FAILED", "STATUSES", "Fill", "InventoryManager"]

SHARE = 1_000_000  # micro-shares per share
USDC_PER_UNIT_SHARE = Fraction(1, core.PRICE_SCALE * SHARE)  # price unit x micro-share -> USDC
UNITS_PER_USDC = core.PRICE_SCALE * SHARE  # 1e10: price unit x micro-share units in one USDC


class InventoryError(ValueError):
    """A fill or query the inventory cannot account for (unknown market, bad side)."""


@dataclass
class Position:
    shares: int = 0
    cost: Fraction = Fraction(0)  # USDC paid for the shares held
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


def _usdc(price_units: int, micro: int) -> Fraction:
    return price_units * micro * USDC_PER_UNIT_SHARE


class InventoryManager:
    def __init__(self, cfg: InventoryConfig | None = None) -> None:
        cfg = cfg or InventoryConfig()
        self.max_position = int(cfg.max_position_per_market * SHARE)
        self.max_liability_market = Fraction(cfg.max_liability_per_market_usdc)
        self.max_liability_total = Fraction(cfg.max_total_liability_usdc)
        self._cost_cache: dict[int, int] = {}
        self._markets: dict[str, _Market] = {}
        self._token_market: dict[str, str] = {}
        self._fills: dict[tuple[str, str], Fill] = {}
        self.reversals = 0
        self.duplicates = 0

    # -- markets and fills ------------------------------------------------------------

    def register_market(self, market: str, up_token: str, down_token: str) -> None:
        if market not in self._markets:
            self._markets[market] = _Market(
                up_token, down_token, positions={up_token: Position(), down_token: Position()}
            )
            self._token_market[up_token] = market
            self._token_market[down_token] = market

    def markets(self) -> list[str]:
        return list(self._markets)

    def _market(self, market: str) -> _Market:
        m = self._markets.get(market)
        if m is None:
            raise InventoryError(f"unknown market {market!r}: register it before its fills")
        return m

    def apply_fill(self, fill: Fill) -> str:
        """Account for one fill message. Returns what happened: 'new', 'confirmed',
        'reversed', 'status' (a non-final status change) or 'duplicate'."""
        if fill.status not in STATUSES:
            raise InventoryError(f"fill {fill.key}: unknown status {fill.status!r}")
        if fill.side not in (BUY, SELL):
            raise InventoryError(f"fill {fill.key}: side must be BUY or SELL, got {fill.side!r}")
        m = self._market(fill.market)
        if fill.token not in (m.up, m.down):
            raise InventoryError(f"fill {fill.key}: token is not one of market {fill.market!r}")
        known = self._fills.get(fill.key)
        if known is None:
            self._fills[fill.key] = fill
            if fill.status == FAILED:  # first seen already failed: never applied
                return "reversed"
            m.fills.append(fill)
            self._apply(m, fill)
            return "new"
        if known.status == fill.status or known.status in (CONFIRMED, FAILED):
            self.duplicates += 1
            return "duplicate"
        self._fills[fill.key] = fill
        if fill.status == FAILED:
            m.fills = [f for f in m.fills if f.key != fill.key]
            self._replay(m)
            self.reversals += 1
            return "reversed"
        m.fills = [fill if f.key == fill.key else f for f in m.fills]
        return "confirmed" if fill.status == CONFIRMED else "status"

    def _apply(self, m: _Market, fill: Fill) -> None:
        self._cost_cache.pop(id(m), None)
        pos = m.positions[fill.token]
        if fill.side == BUY:
            pos.shares += fill.size
            pos.cost += _usdc(fill.price, fill.size)
            return
        if fill.size > pos.shares:
            raise InventoryError(f"fill {fill.key}: sells {fill.size} micro-shares but holds {pos.shares}")
        avg_cost = pos.cost * fill.size / pos.shares
        pos.realized += _usdc(fill.price, fill.size) - avg_cost
        pos.cost -= avg_cost
        pos.shares -= fill.size

    def _replay(self, m: _Market) -> None:
        self._cost_cache.pop(id(m), None)
        m.positions = {m.up: Position(), m.down: Position()}
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
        return self.realized(market) - before

    def _settle(self, m: _Market, winner: str) -> None:
        self._cost_cache.pop(id(m), None)
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

    def held(self, market: str) -> tuple[int, int]:
        m = self._market(market)
        return m.positions[m.up].shares, m.positions[m.down].shares

    def _cost_units(self, m: _Market) -> int:
        """The cost of what a market's positions hold, in units of 1e-10 USDC (price unit x
        micro-share), rounded up: the limits never see less risk than there is. Cached until the
        market's positions change."""
        key = id(m)
        cached = self._cost_cache.get(key)
        if cached is None:
            cost = sum((p.cost for p in m.positions.values()), Fraction(0))
            cached = self._cost_cache[key] = -(-cost.numerator * UNITS_PER_USDC // cost.denominator)
        return cached

    def _liability_units(self, market: str, pending: list[tuple[str, str, int, int]] | tuple[()] = ()) -> int:
        m = self._market(market)
        up, down = m.positions[m.up].shares, m.positions[m.down].shares
        cost = self._cost_units(m)
        for token, side, price, size in pending:
            if side != BUY:
                continue
            if token == m.up:
                up += size
            elif token == m.down:
                down += size
            else:
                raise InventoryError(f"pending order on token {token!r} is not in market {market!r}")
            cost += price * size  # price unit x micro-share = 1e-10 USDC
        return max(0, cost - min(up, down) * core.PRICE_SCALE)

    def liability(self, market: str, pending: list[tuple[str, str, int, int]] | tuple[()] = ()) -> Fraction:
        """Worst-case loss (USDC), as if every pending BUY (token, side, price, size) filled."""
        return Fraction(self._liability_units(market, pending), UNITS_PER_USDC)

    def total_liability(self, pending: dict[str, list[tuple[str, str, int, int]]] | None = None) -> Fraction:
        return Fraction(self._total_units(pending or {}), UNITS_PER_USDC)

    def _total_units(self, pending: dict[str, list[tuple[str, str, int, int]]]) -> int:
        return sum(self._liability_units(mk, pending.get(mk, ())) for mk in self._markets)

    def realized(self, market: str) -> Fraction:
        m = self._market(market)
        return sum((p.realized for p in m.positions.values()), Fraction(0))

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
        pending: dict[str, list[tuple[str, str, int, int]]] | None = None,
        multiplier_pct: int = 100,
    ) -> tuple[int, int, int, int]:
        """(bid_room, ask_room, bid_room_usdc, ask_room_usdc) for the quote engine, Up-terms.

        Pending orders count as filled. Position room is what keeps |net| within the
        position limit; liability room is what keeps the market and the total within their
        limits. The side that reduces exposure is credited 1 USDC per share it can pair off:
        buying the complement of what is held lowers the worst case until the pair is flat.
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
        limit_m = int(self.max_liability_market * UNITS_PER_USDC) * multiplier_pct // 100
        limit_t = int(self.max_liability_total * UNITS_PER_USDC) * multiplier_pct // 100
        room = min(limit_m - self._liability_units(market, mine), limit_t - self._total_units(pending))
        room_micro = max(0, room // (UNITS_PER_USDC // SHARE))
        bid_usdc = room_micro + max(0, -net - bid_pending)
        ask_usdc = room_micro + max(0, net - ask_pending)
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
