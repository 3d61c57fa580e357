"""Balances and allowances at the venue, kept current, and what they leave free for quoting.

Read from ``GET /balance-allowance`` (collateral, and each registered market's two tokens) by
:meth:`Balances.refresh`, which the bot runs every few seconds off the hot path; between reads
our own fills move them the way the venue does (engine.py of the embedded exchange, the chain):

* MATCHED (first sight): what we pay leaves at once: a BUY's collateral (price x size), a
  SELL's tokens.
* MINED / CONFIRMED (first settled status): what we receive arrives: a BUY's tokens, a SELL's
  collateral.
* FAILED: whatever the fill took or delivered is given back; nothing more arrives.
* RETRYING and repeated statuses change nothing.

A read that was in flight while fills were applied may or may not include them: the payments
applied meanwhile are subtracted from its answer again and the receipts are left to the next
read, so a balance is under-stated until then, never over-stated. Taker fees are not modelled
(the bot quotes post-only); a read corrects them.

Free amounts subtract what our resting orders reserve at the venue (``Pending``, as the order
manager lists them): ``free_collateral`` = collateral - the remaining notional of our resting
BUYs (price x remaining, rounded up), capped by the allowance to the market's exchange when one
is given; ``free_tokens`` = the token's settled balance - our resting SELLs' remaining size
(0 when the exchange is not approved as CTF operator). ``quote_caps`` turns them into what one
market's quotes may use; a :class:`CapsBudget` shares them across the markets of one quote pass.

Reconciliation: :meth:`differences` compares, per token, what the inventory says the venue
holds for us (settled buys minus matched sells) with the venue's balance, beyond a tolerance.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from active_quoting.clock import SYSTEM, Clock
from active_quoting.discovery import WindowInfo
from active_quoting.model import (
    BUY,
    CONFIRMED,
    FAILED,
    MINED,
    PRICE_ONE,
    SELL,
    Fill,
    OrderIntent,
    Pending,
    PendingOrder,
)
from active_quoting.venue.errors import VenueError
from active_quoting.venue.rest import BalanceAllowance
from active_quoting.venue.signing import CONTRACTS

_log = logging.getLogger(__name__)

COLLATERAL = "collateral"  # the asset key of the collateral balance (tokens are keyed by id)
SETTLED = (MINED, CONFIRMED)
DEFAULT_TOLERANCE = 10_000  # micro-shares (0.01 share, the venue's size step)
READ_CONCURRENCY = 4  # balance reads in flight at once (the venue allows 200 per 10 s)
# Assets one refresh reads at most (the bot refreshes every 10 s): well inside the venue's 200 per
# 10 s, with room for a shared account's other tools. 16 markets' current and next windows are 65.
READS_PER_REFRESH = 100


class BalanceSource(Protocol):
    """What reads the venue's balances: :class:`~active_quoting.venue.rest.RestClient`."""

    async def balance_allowance(self, token_id: str = "", signature_type: int | None = None) -> BalanceAllowance: ...


class InventoryView(Protocol):
    """What :meth:`Balances.differences` reads of the inventory (``InventoryManager``)."""

    def sellable(self, market: str) -> tuple[int, int]: ...


def notional(price: int, size: int) -> int:
    """micro-USDC committed by ``size`` micro-shares at ``price`` units, rounded up (a
    reservation is never under-counted; exact on the venue's 0.01-share lot)."""
    return -(-price * size // PRICE_ONE)


@dataclass
class Asset:
    """One balance as last read and moved by our fills since."""

    balance: int = 0  # micro-USDC or micro-shares
    allowances: dict[str, int] = field(default_factory=dict)  # spender (lower case) -> amount
    read_at: float = 0.0  # wall seconds of the last successful read; 0: never read
    reading: bool = False
    debits_in_flight: int = 0  # payments applied while a read was in flight


@dataclass(frozen=True)
class QuoteCaps:
    """What one market's quotes may commit now: ``buy_usdc`` micro-USDC of new BUY notional
    (shared by both sides and, through :class:`CapsBudget`, by every market of a pass) and the
    micro-shares of Up and Down that new SELLs may offer. In Up terms the bid is a BUY of Up or
    a SELL of Down (``sell_down``), the ask a SELL of Up (``sell_up``) or a BUY of Down."""

    buy_usdc: int
    sell_up: int
    sell_down: int


@dataclass(frozen=True)
class Difference:
    """A token whose venue balance differs from what our fills say we hold there."""

    market: str
    token: str
    ours: int  # micro-shares the inventory says the venue holds for us (settled)
    venue: int  # micro-shares the venue reports (with our fills since the last read)

    @property
    def diff(self) -> int:
        return self.venue - self.ours


@dataclass
class _Market:
    up: str
    down: str
    spender: str  # the exchange whose allowance the market's orders need ("" = not checked)


@dataclass
class _FillState:
    side: str
    token: str
    paid: int  # what left at the match (micro-USDC for a BUY, micro-shares for a SELL)
    received: int = 0  # what arrived once settled (micro-shares for a BUY, micro-USDC for a SELL)
    failed: bool = False


class Balances:
    def __init__(
        self,
        source: BalanceSource,
        clock: Clock = SYSTEM,
        *,
        tolerance: int = DEFAULT_TOLERANCE,
        signature_type: int | None = None,
        publish: Callable[..., None] | None = None,
        max_reads: int = READS_PER_REFRESH,
    ) -> None:
        """``publish``: called after each read as ``publish(asset, balance, allowances,
        market=slug)`` (``Metrics.set_balance``)."""
        self.source = source
        self.clock = clock
        self.tolerance = tolerance
        self.signature_type = signature_type
        self.publish = publish
        if max_reads < 2:
            raise ValueError(f"max_reads must be at least 2 (the collateral and a token), got {max_reads}")
        self.max_reads = max_reads
        self.assets: dict[str, Asset] = {COLLATERAL: Asset()}
        self._markets: dict[str, _Market] = {}
        self._token_market: dict[str, str] = {}
        self._labels: dict[str, str] = {}  # market -> slug for the metrics
        self._fills: dict[tuple[str, str], _FillState] = {}
        self._market_fills: dict[str, list[tuple[str, str]]] = {}
        self.reads = 0
        self.read_errors = 0
        self.reads_deferred = 0  # token reads a refresh left to the next ones (max_reads)
        self.fills_applied = 0

    # -- markets ------------------------------------------------------------------------

    def register_market(self, market: str, up: str, down: str, spender: str = "", label: str = "") -> None:
        """Track a market's two tokens (read at the next refresh). ``spender``: the exchange the
        market's orders settle on (signing's ``Contracts.exchange_v2`` / ``exchange_v3``), whose
        allowance caps BUYs and whose CTF approval SELLs need; ``label`` names it in metrics."""
        if market in self._markets:
            return
        self._markets[market] = _Market(up, down, spender.lower())
        self._labels[market] = label or market
        for token in (up, down):
            self._token_market[token] = market
            self.assets.setdefault(token, Asset())

    def register_window(self, info: WindowInfo, chain_id: int) -> None:
        """Track a window's market (once), its orders' exchange as the spender."""
        if info.condition_id not in self._markets:
            spender = spender_for(info.version, info.neg_risk, chain_id)
            self.register_market(info.condition_id, info.up, info.down, spender, info.slug)

    def forget(self, market: str) -> None:
        """Drop a market once resolved and redeemed (its tokens are collateral again)."""
        m = self._markets.pop(market, None)
        if m is None:
            return
        self._labels.pop(market, None)
        for token in (m.up, m.down):
            self._token_market.pop(token, None)
            self.assets.pop(token, None)
        for key in self._market_fills.pop(market, []):
            self._fills.pop(key, None)

    def markets(self) -> list[str]:
        return list(self._markets)

    def tokens(self, market: str) -> tuple[str, str]:
        """(Up, Down) token ids of a registered market."""
        m = self._markets[market]
        return m.up, m.down

    # -- reads --------------------------------------------------------------------------

    async def refresh(self, tokens: Iterable[str] | None = None) -> int:
        """Read the collateral and the registered tokens (or only ``tokens``) from the venue,
        at most :data:`READ_CONCURRENCY` at once. A failed read keeps the previous value and is
        counted (``read_errors``), never raised. Returns how many reads succeeded.

        With more tokens registered than one refresh may read (``max_reads``, the collateral
        included), those that matter go first - never read (a window's allowances are unknown
        until then), holding shares, or in a market with fills of ours - then the least
        recently read: every token is read within a few refreshes, and many markets do not make
        the bot break the venue's limit."""
        chosen = list(tokens) if tokens is not None else self._due(self.max_reads - 1)
        wanted: Sequence[str] = [COLLATERAL, *chosen]
        gate = asyncio.Semaphore(READ_CONCURRENCY)

        async def one(asset: str) -> bool:
            async with gate:
                return await self._read(asset)

        done = await asyncio.gather(*(one(a) for a in wanted))
        return sum(done)

    def _due(self, n: int) -> list[str]:
        """The ``n`` registered tokens a refresh reads (all of them when they fit)."""
        tokens = list(self._token_market)
        if len(tokens) <= n:
            return tokens
        assets, traded, market_of = self.assets, self._market_fills, self._token_market

        def urgency(token: str) -> tuple[int, float]:
            # never read, holding shares, or in a market we traded (where our fills and the
            # venue can disagree): read first; then the least recently read
            a = assets[token]
            return (0 if not a.read_at or a.balance or market_of[token] in traded else 1), a.read_at

        self.reads_deferred += len(tokens) - n
        return sorted(tokens, key=urgency)[:n]

    async def _read(self, asset: str) -> bool:
        entry = self.assets.get(asset)
        if entry is None:  # a token forgotten meanwhile or never registered
            return False
        entry.reading, entry.debits_in_flight = True, 0
        try:
            got = await self.source.balance_allowance("" if asset == COLLATERAL else asset, self.signature_type)
        except VenueError as err:
            self.read_errors += 1
            _log.warning("balance read of %s failed: %s", asset, err)
            return False
        finally:
            entry.reading = False
        entry.balance = got.balance - entry.debits_in_flight
        entry.allowances = {s.lower(): a for s, a in got.allowances.items()}
        entry.read_at = self.clock.time()
        self.reads += 1
        if self.publish is not None:
            market = self._token_market.get(asset, "")
            self.publish(asset, got.balance, got.allowances, market=self._labels.get(market, ""))
        return True

    def balance(self, asset: str = COLLATERAL) -> int:
        """The balance as last read plus our fills since (micro-USDC or micro-shares)."""
        entry = self.assets.get(asset)
        return entry.balance if entry is not None else 0

    def allowances(self, asset: str = COLLATERAL) -> Mapping[str, int]:
        entry = self.assets.get(asset)
        return dict(entry.allowances) if entry is not None else {}

    def age(self, asset: str = COLLATERAL) -> float | None:
        """Seconds since the asset was last read, None if never."""
        entry = self.assets.get(asset)
        if entry is None or not entry.read_at:
            return None
        return self.clock.time() - entry.read_at

    # -- fills --------------------------------------------------------------------------

    def apply_fill(self, fill: Fill) -> bool:
        """Move the balances for one fill message (any status, repeats included). Returns
        whether anything changed."""
        if fill.side not in (BUY, SELL):
            return False
        state = self._fills.get(fill.key)
        changed = False
        if state is None:
            if fill.status == FAILED:
                return False
            paid = notional(fill.price, fill.size) if fill.side == BUY else fill.size
            state = self._fills[fill.key] = _FillState(fill.side, fill.token, paid)
            self._market_fills.setdefault(fill.market, []).append(fill.key)
            self._move(COLLATERAL if fill.side == BUY else fill.token, -paid)
            changed = True
        if state.failed:
            return changed
        if fill.status == FAILED:
            self._move(COLLATERAL if state.side == BUY else state.token, state.paid)
            if state.received:
                self._move(state.token if state.side == BUY else COLLATERAL, -state.received)
            state.failed, state.received = True, 0
            changed = True
        elif fill.status in SETTLED and not state.received:
            # A SELL receives floor(price x size), as the exchange pays it.
            state.received = fill.size if state.side == BUY else fill.price * fill.size // PRICE_ONE
            self._move(state.token if state.side == BUY else COLLATERAL, state.received)
            changed = True
        if changed:
            self.fills_applied += 1
        return changed

    def _move(self, asset: str, delta: int) -> None:
        entry = self.assets.get(asset)
        if entry is None:
            return  # a token we do not track: the next read of a registered market covers it
        entry.balance += delta
        if delta < 0 and entry.reading:
            entry.debits_in_flight += -delta

    # -- what is free -------------------------------------------------------------------

    def free_collateral(self, pending: Pending, spender: str = "") -> int:
        """Collateral not reserved by our resting BUYs (every market's), capped by the
        allowance to ``spender`` when given (the venue refuses BUYs beyond it)."""
        reserved = sum(notional(o[2], o[3]) for orders in pending.values() for o in orders if o[1] == BUY)
        entry = self.assets[COLLATERAL]
        available = entry.balance
        if spender and entry.read_at:
            available = min(available, entry.allowances.get(spender.lower(), 0))
        return max(0, available - reserved)

    def free_tokens(self, token: str, pending: Pending, spender: str = "") -> int:
        """Settled micro-shares of ``token`` not offered by our resting SELLs; 0 when the
        exchange (``spender``) is not approved as CTF operator or the token was never read."""
        entry = self.assets.get(token)
        if entry is None or not entry.read_at:
            return 0
        if spender and not entry.allowances.get(spender.lower(), 0):
            return 0
        market = self._token_market.get(token)
        mine: Iterable[PendingOrder] = pending.get(market, []) if market is not None else ()
        offered = sum(o[3] for o in mine if o[0] == token and o[1] == SELL)
        return max(0, entry.balance - offered)

    def quote_caps(self, market: str, pending: Pending, collateral: dict[str, int] | None = None) -> QuoteCaps:
        """What one market's new orders may commit, after what our resting orders reserve.
        ``collateral``: the free collateral per spender already summed for the same ``pending``
        (a quote pass's, see :class:`CapsBudget`): read there, added when missing."""
        m = self._markets[market]
        if collateral is None:
            free = self.free_collateral(pending, m.spender)
        else:
            free = collateral.get(m.spender, -1)
            if free < 0:
                free = collateral[m.spender] = self.free_collateral(pending, m.spender)
        return QuoteCaps(free, self.free_tokens(m.up, pending, m.spender), self.free_tokens(m.down, pending, m.spender))

    def budget(self, pending: Pending) -> CapsBudget:
        """The caps of one quote pass: markets decided later in the pass see what earlier ones
        staged (``CapsBudget.spend``), so the free collateral is not promised twice."""
        return CapsBudget(self, pending)

    # -- reconciliation -----------------------------------------------------------------

    def differences(self, inventory: InventoryView) -> list[Difference]:
        """Per read token, what our fills say the venue holds for us (the inventory's settled
        shares net of matched sells) against the venue's balance, where they differ by more than
        ``tolerance`` micro-shares. Tokens never read are skipped. A difference can be
        transient (a read racing a settlement); one that persists across reads is real."""
        out = []
        for market, m in self._markets.items():
            ours = inventory.sellable(market)
            for token, held in zip((m.up, m.down), ours, strict=True):
                entry = self.assets[token]
                if entry.read_at and abs(entry.balance - held) > self.tolerance:
                    out.append(Difference(market, token, held, entry.balance))
        return out


class CapsBudget:
    """Free collateral and tokens for one quote pass, drawn down as markets stage orders."""

    def __init__(self, balances: Balances, pending: Pending) -> None:
        self.balances = balances
        self.pending = pending
        self.spent_usdc = 0
        self.spent_tokens: dict[str, int] = {}
        self._collateral: dict[str, int] = {}  # spender -> free collateral under ``pending``: summed once

    def caps(self, market: str) -> QuoteCaps:
        c = self.balances.quote_caps(market, self.pending, self._collateral)
        up, down = self.balances.tokens(market)
        return QuoteCaps(
            max(0, c.buy_usdc - self.spent_usdc),
            max(0, c.sell_up - self.spent_tokens.get(up, 0)),
            max(0, c.sell_down - self.spent_tokens.get(down, 0)),
        )

    def spend(self, intents: Iterable[OrderIntent]) -> None:
        """Count the orders a market staged."""
        for i in intents:
            if i.side == BUY:
                self.spent_usdc += notional(i.price, i.size)
            else:
                self.spent_tokens[i.token] = self.spent_tokens.get(i.token, 0) + i.size


def spender_for(version: str, neg_risk: bool, chain_id: int) -> str:
    """The exchange a market's orders settle on (whose allowance its BUYs need): ExchangeV3 for
    Protocol-V2 markets, else the (neg-risk) exchange of CLOB V2."""
    c = CONTRACTS[chain_id]
    if version == "v2":
        return c.exchange_v3
    return c.neg_risk_exchange_v2 if neg_risk else c.exchange_v2
