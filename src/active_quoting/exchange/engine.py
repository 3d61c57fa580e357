"""The embedded exchange's matching engine: one book per binary market, balances, settlement.

Pure and deterministic (no I/O, no clock of its own): the server calls it and publishes what
it returns. Integer units throughout: prices in 1e-4, sizes in micro-shares, money in
micro-USDC.

Both tokens of a market are views of one Up-terms book: a BUY of Up at p and a SELL of Down at
1 - p are bids at p; a SELL of Up at p and a BUY of Down at 1 - p are asks at p. A match between
orders on the same token transfers shares for collateral; two BUYs (Up and Down) mint a pair,
two SELLs merge one, as on the venue. Matching is price-time priority at the maker's price.

Settlement follows the chain: a match takes what each side pays at once (a buyer's collateral,
a seller's tokens, the taker's fee: they were reserved by the orders and are no longer
available) but delivers what each side receives (bought tokens, sale collateral) only when the
trade is mined (``deliver``). Until then a just-bought token cannot be sold: a SELL beyond the
settled, unreserved balance is refused with the venue's "not enough balance / allowance"
message. A trade that fails instead (``fail_trade``) gives back what it took.

Allowances as on chain: a BUY needs the account's collateral allowance to the exchange its
market trades on (CTF Exchange V2, or ExchangeV3 for a Protocol-V2 market) to cover what its
resting BUYs reserve plus the new order; a SELL needs the CTF approval (``setApprovalForAll``)
of that exchange. An account approves everything without limit unless ``set_allowance`` /
``set_approval`` say otherwise; a refusal carries the venue's text ("not enough balance /
allowance: the allowance is not enough -> spender: ..., allowance: ..."). Allowances are
checked at placement, not consumed by settlement (approvals are max-uint in practice).
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction

from active_quoting import core
from active_quoting.venue.signing import CONTRACTS

BUY, SELL = "BUY", "SELL"
BID, ASK = 0, 1
SCALE = core.PRICE_SCALE  # price units per 1.0
LOT = 10_000  # 0.01 share
BALANCE_REFUSAL = "not enough balance / allowance: the balance is not enough"
ALLOWANCE_REFUSAL = "not enough balance / allowance: the allowance is not enough"
NOT_ENOUGH_BALANCE = "INVALID_ORDER_NOT_ENOUGH_BALANCE"
EXCHANGE_V2 = CONTRACTS[137].exchange_v2
EXCHANGE_V3 = CONTRACTS[137].exchange_v3


class EngineError(Exception):
    """An order the engine refuses; ``message`` is the venue's wording."""

    def __init__(self, message: str, code: str = "") -> None:
        self.message = message
        self.code = code
        super().__init__(message)


@dataclass
class Account:
    address: str
    collateral: int = 0  # free micro-USDC
    reserved: int = 0  # micro-USDC held by resting BUY orders
    tokens: dict[str, int] = field(default_factory=dict)  # free micro-shares
    reserved_tokens: dict[str, int] = field(default_factory=dict)
    rebates: dict[str, Fraction] = field(default_factory=dict)  # market -> USDC
    fees_paid: Fraction = Fraction(0)
    # What the account approved where it differs from "everything, unlimited": collateral
    # allowance per spender (lower-case address -> micro-USDC) and CTF approvals per operator.
    allowances: dict[str, int] = field(default_factory=dict)
    approvals: dict[str, bool] = field(default_factory=dict)

    def allowance(self, spender: str) -> int | None:
        """Collateral allowance to ``spender`` in micro-USDC; None: unlimited."""
        return self.allowances.get(spender.lower())

    def approved(self, operator: str) -> bool:
        return self.approvals.get(operator.lower(), True)


@dataclass
class Order:
    id: str
    account: str
    owner: str  # API key
    market: str
    token: str
    side: str
    price: int  # token terms
    size: int
    order_type: str = "GTC"
    post_only: bool = False
    expiration: int = 0
    seq: int = 0
    matched: int = 0
    status: str = "LIVE"  # LIVE, MATCHED, CANCELED (with reason)
    created_at: int = 0  # seconds
    reason: str = ""

    @property
    def remaining(self) -> int:
        return self.size - self.matched


@dataclass(frozen=True)
class MakerFill:
    order: Order
    size: int
    price: int  # maker's token-terms price


@dataclass
class Trade:
    id: str
    market: str
    taker: Order
    makers: list[MakerFill]
    price: int  # taker token terms, at the first maker's price
    size: int
    fee: int  # micro-USDC charged to the taker
    t_ms: int
    status: str = "MATCHED"
    # The balance changes it made (address, asset or "" for collateral, delta), to roll back a
    # failed ("ghost") settlement, and the credits it owes until it is mined.
    journal: list[tuple[str, str, int]] = field(default_factory=list)
    undelivered: list[tuple[str, str, int]] = field(default_factory=list)


@dataclass(frozen=True)
class FeeSchedule:
    rate: Fraction = Fraction(0)  # e.g. 0.07
    exponent: int = 1
    rebate_share: Fraction = Fraction(0)  # e.g. 0.2
    taker_only: bool = True


@dataclass
class Market:
    condition_id: str
    up: str
    down: str
    tick: int = 100
    base_tick: int = 100
    min_size: int = 5_000_000
    fees: FeeSchedule = field(default_factory=FeeSchedule)
    accepting: bool = True
    resolved: str = ""  # winning token once resolved
    bids: dict[int, deque[Order]] = field(default_factory=dict)  # Up-terms price -> FIFO
    asks: dict[int, deque[Order]] = field(default_factory=dict)
    last_trade: int = 0  # Up-terms
    hashes: int = 0
    _hash_prefix: str = field(default="", repr=False, compare=False)
    # The order version the market's orders are signed for: 3 (ExchangeV3) for a Protocol-V2
    # market (Gamma ``version: "v2"``, ``positionIds``); 2 means "the venue's version".
    order_version: int = 2

    def up_terms(self, order: Order) -> tuple[int, int]:
        """(side, price) of an order in the Up-terms book."""
        if order.token == self.up:
            return (BID if order.side == BUY else ASK), order.price
        return (ASK if order.side == BUY else BID), SCALE - order.price

    def best(self, side: int) -> int:
        levels = self.bids if side == BID else self.asks
        if not levels:
            return core.NO_PRICE
        return max(levels) if side == BID else min(levels)

    def level_size(self, side: int, price: int) -> int:
        q = (self.bids if side == BID else self.asks).get(price)
        return sum(o.remaining for o in q) if q else 0

    def token_view(self, token: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The book of one token: (bids ascending, asks descending) as the venue sends them."""
        bids = [(p, self.level_size(BID, p)) for p in self.bids]
        asks = [(p, self.level_size(ASK, p)) for p in self.asks]
        if token == self.up:
            return sorted(bids), sorted(asks, reverse=True)
        return sorted((SCALE - p, q) for p, q in asks), sorted(((SCALE - p, q) for p, q in bids), reverse=True)

    @property
    def spender(self) -> str:
        """The exchange that settles this market's orders: the one its allowances must cover."""
        return EXCHANGE_V3 if self.order_version == 3 else EXCHANGE_V2

    def next_hash(self) -> str:
        """A 40-hex book hash, new for every message: the market's own prefix and a counter
        (the venue's is a digest of the book; nothing reads it but as an opaque tag, and a
        digest per price-change entry cost the simulator ~2% of its time)."""
        self.hashes += 1
        prefix = self._hash_prefix
        if not prefix:
            prefix = self._hash_prefix = hashlib.sha1(self.condition_id.encode()).hexdigest()[:24]
        return f"{prefix}{self.hashes:016x}"


@dataclass
class Change:
    """One Up-terms level whose total size changed (to publish for both tokens)."""

    market: str
    side: int
    price: int
    size: int


@dataclass
class Result:
    """What one engine call did, for the server to publish and answer."""

    order: Order | None = None
    changes: list[Change] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    touched: list[Order] = field(default_factory=list)  # orders whose state changed (for user events)
    canceled: list[Order] = field(default_factory=list)


TRADES_KEPT = 50_000
# How long the venue answers about the past: trades (``/data/trades``) of resolved markets and
# the markets resolved (their books, Gamma entries, rebates) older than this are forgotten by
# ``forget`` (the server keeps a resolved market's record, as the venue answers ``/markets/{id}``
# for closed markets for good). The bot asks
# ``/data/trades`` from its newest fill (minus a minute) after a restart, so hours of history
# cover any restart a supervisor makes; without a horizon a day of rollovers kept every trade
# of ours (and the orders each one holds) and every market ever listed.
HISTORY_MS = 2 * 3600 * 1000


def _notional(size: int, price: int) -> int:
    """micro-USDC of ``size`` micro-shares at ``price`` units (floored; exact on the 0.01 lot)."""
    return size * price // SCALE


class Engine:
    def __init__(self) -> None:
        self.markets: dict[str, Market] = {}
        self.by_token: dict[str, Market] = {}
        self.accounts: dict[str, Account] = {}
        self.orders: dict[str, Order] = {}
        self.live: dict[str, Order] = {}  # resting orders (status LIVE), the only ones scanned
        self._finished: deque[str] = deque()  # finished order ids, oldest first (bounded memory)
        self.finished_kept = 50_000
        # The newest trades, and per API key the trades it took part in (for /data/trades): at
        # most TRADES_KEPT each and none older than history_ms (``forget``). The count alone
        # did not hold memory flat: a key trading less than TRADES_KEPT a day kept all its
        # trades, each holding its taker and maker orders long after ``orders`` let them go.
        self.trades: deque[Trade] = deque(maxlen=TRADES_KEPT)
        self.by_owner: dict[str, deque[Trade]] = {}
        self.history_ms = HISTORY_MS
        self._resolved: deque[tuple[int, str]] = deque()  # (resolved at ms, condition id), oldest first
        self._seq = 0
        self._trade_seq = 0

    # -- setup --------------------------------------------------------------------------

    def add_market(self, market: Market) -> None:
        self.markets[market.condition_id] = market
        self.by_token[market.up] = market
        self.by_token[market.down] = market

    def account(self, address: str) -> Account:
        acct = self.accounts.get(address)
        if acct is None:
            acct = self.accounts[address] = Account(address)
        return acct

    def credit(self, address: str, collateral: int = 0, token: str = "", shares: int = 0) -> None:
        acct = self.account(address)
        acct.collateral += collateral
        if token:
            acct.tokens[token] = acct.tokens.get(token, 0) + shares

    def set_allowance(self, address: str, spender: str, amount: int | None) -> None:
        """The account's collateral allowance to ``spender`` (micro-USDC; None = unlimited)."""
        acct = self.account(address)
        if amount is None:
            acct.allowances.pop(spender.lower(), None)
        else:
            acct.allowances[spender.lower()] = amount

    def set_approval(self, address: str, operator: str, approved: bool) -> None:
        """The account's CTF ``setApprovalForAll`` for ``operator``."""
        self.account(address).approvals[operator.lower()] = approved

    # -- orders -------------------------------------------------------------------------

    def place(self, order: Order, now_ms: int) -> Result:
        """Validate, reserve, match and (for GTC/GTD) rest one order."""
        m = self.by_token.get(order.token)
        if m is None:
            raise EngineError(f"market not found for token id {order.token}", "MARKET_NOT_FOUND")
        if order.id in self.orders:
            raise EngineError("order already exists", "INVALID_ORDER_DUPLICATED")
        if not m.accepting or m.resolved:
            raise EngineError("the market is not accepting orders", "MARKET_NOT_READY")
        if order.price % m.tick or not m.tick <= order.price <= SCALE - m.tick:
            raise EngineError(
                f"order {order.id} is invalid. Price ({core.format_price(order.price)}) breaks minimum tick size "
                f"rule: {core.format_price(m.tick)}",
                "INVALID_ORDER_MIN_TICK_SIZE",
            )
        if order.size < m.min_size and order.order_type in ("GTC", "GTD"):
            raise EngineError(
                f"order {order.id} is invalid. Size ({core.format_size(order.size)}) lower than the minimum: "
                f"{core.format_size(m.min_size)}",
                "INVALID_ORDER_MIN_SIZE",
            )
        if order.post_only and order.order_type not in ("GTC", "GTD"):
            raise EngineError("invalid post-only order type: only GTC and GTD", "INVALID_POST_ONLY_ORDER_TYPE")
        if order.order_type == "GTD" and order.expiration and order.expiration < now_ms // 1000 + 60:
            raise EngineError("invalid expiration: GTD needs at least now + 1 minute", "INVALID_ORDER_EXPIRATION")
        side, price = m.up_terms(order)
        opposite = m.asks if side == BID else m.bids
        crosses = bool(opposite) and (m.best(ASK) <= price if side == BID else m.best(BID) >= price)
        if order.post_only and crosses:
            raise EngineError(f"invalid post-only order: order {order.id} crosses book", "INVALID_POST_ONLY_ORDER")
        acct = self.account(order.account)
        self._check_allowance(acct, m, order)
        self._reserve(acct, order, order.size)
        self._seq += 1
        order.seq = self._seq
        order.created_at = order.created_at or now_ms // 1000
        self.orders[order.id] = order
        result = Result(order=order)
        if order.order_type == "FOK" and self._available(m, side, price, order.account) < order.size:
            self._kill(m, acct, order, "order couldn't be fully filled. FOK orders are fully filled or killed.", result)
            return result
        if crosses:
            self._match(m, order, side, price, now_ms, result)
        if order.remaining > 0:
            if order.order_type in ("FOK", "FAK"):
                self._kill(m, acct, order, "order couldn't be fully filled", result)
            else:
                book = m.bids if side == BID else m.asks
                book.setdefault(price, deque()).append(order)
                self.live[order.id] = order
                result.changes.append(Change(m.condition_id, side, price, m.level_size(side, price)))
                if order not in result.touched:
                    result.touched.append(order)  # a PLACEMENT
        return result

    def _available(self, m: Market, side: int, price: int, account: str) -> int:
        levels = m.asks if side == BID else m.bids
        return sum(
            o.remaining
            for p, q in levels.items()
            if (p <= price if side == BID else p >= price)
            for o in q
            if o.account != account
        )

    def _check_allowance(self, acct: Account, m: Market, order: Order) -> None:
        """A BUY's collateral allowance must cover every resting BUY's reservation plus this
        order; a SELL needs the exchange approved as CTF operator (the venue's wording)."""
        spender = m.spender
        if order.side == BUY:
            allowance = acct.allowance(spender)
            if allowance is not None and acct.reserved + _notional(order.size, order.price) > allowance:
                raise EngineError(
                    f"{ALLOWANCE_REFUSAL} -> spender: {spender}, allowance: {allowance}", NOT_ENOUGH_BALANCE
                )
        elif not acct.approved(spender):
            raise EngineError(f"{ALLOWANCE_REFUSAL} -> spender: {spender}, allowance: 0", NOT_ENOUGH_BALANCE)

    def _reserve(self, acct: Account, order: Order, size: int) -> None:
        if order.side == BUY:
            need = _notional(size, order.price)
            if acct.collateral < need:
                raise EngineError(BALANCE_REFUSAL, NOT_ENOUGH_BALANCE)
            acct.collateral -= need
            acct.reserved += need
        else:
            have = acct.tokens.get(order.token, 0)
            if have < size:
                raise EngineError(BALANCE_REFUSAL, NOT_ENOUGH_BALANCE)
            acct.tokens[order.token] = have - size
            acct.reserved_tokens[order.token] = acct.reserved_tokens.get(order.token, 0) + size

    def _release(self, acct: Account, order: Order, size: int) -> None:
        if order.side == BUY:
            amount = _notional(size, order.price)
            acct.reserved -= amount
            acct.collateral += amount
        else:
            acct.reserved_tokens[order.token] -= size
            acct.tokens[order.token] = acct.tokens.get(order.token, 0) + size

    def _kill(self, m: Market, acct: Account, order: Order, reason: str, result: Result) -> None:
        self._release(acct, order, order.remaining)
        self._finish(order, "CANCELED")
        order.reason = reason
        result.touched.append(order)
        result.canceled.append(order)

    def _match(self, m: Market, taker: Order, side: int, limit: int, now_ms: int, result: Result) -> None:
        levels = m.asks if side == BID else m.bids
        makers: list[MakerFill] = []
        while taker.remaining > 0 and levels:
            best = min(levels) if side == BID else max(levels)
            if (best > limit) if side == BID else (best < limit):
                break
            queue = levels[best]
            while queue and taker.remaining > 0:
                maker = queue[0]
                if maker.account == taker.account:
                    queue.popleft()  # no self-trade: the resting order is cancelled
                    self._kill(m, self.account(maker.account), maker, "self-trade prevention", result)
                    continue
                size = min(maker.remaining, taker.remaining) // LOT * LOT or min(maker.remaining, taker.remaining)
                makers.append(MakerFill(maker, size, maker.price))
                maker.matched += size
                taker.matched += size
                if maker.remaining == 0:
                    self._finish(maker, "MATCHED")
                    queue.popleft()
                result.touched.append(maker)
            if not queue:
                del levels[best]
            result.changes.append(Change(m.condition_id, 1 - side, best, m.level_size(1 - side, best)))
            m.last_trade = best
        if makers:
            if taker.remaining == 0:
                self._finish(taker, "MATCHED")
            result.touched.append(taker)
            result.trades.append(self._settle(m, taker, makers, now_ms))

    def _move(self, address: str, asset: str, delta: int) -> None:
        """One balance change; a token of a resolved market is redeemed (the winner pays 1 per
        share in collateral, the loser nothing) instead of credited."""
        acct = self.account(address)
        m = self.by_token.get(asset) if asset else None
        if asset == "":
            acct.collateral += delta
        elif m is not None and m.resolved:
            if asset == m.resolved:
                acct.collateral += delta  # micro-shares -> micro-USDC at 1 per share
        else:
            acct.tokens[asset] = acct.tokens.get(asset, 0) + delta

    def _settle(self, m: Market, taker: Order, makers: list[MakerFill], now_ms: int) -> Trade:
        self._trade_seq += 1
        journal: list[tuple[str, str, int]] = []
        undelivered: list[tuple[str, str, int]] = []

        def move(address: str, asset: str, delta: int) -> None:
            if delta > 0:  # received: delivered when the trade is mined
                undelivered.append((address, asset, delta))
                return
            self._move(address, asset, delta)
            journal.append((address, asset, delta))

        tk_acct = self.account(taker.account)
        total = 0
        fee_total = Fraction(0)
        for mf in makers:
            mk, x = mf.order, mf.size
            mk_acct = self.account(mk.account)
            # Execution at the maker's price; in the taker's token terms for the taker.
            taker_price = mk.price if mk.token == taker.token else SCALE - mk.price
            # Release what each side reserved for this size at its own limit. Not journaled:
            # the orders are matched whatever happens on chain; a failed settlement undoes
            # only the transfers below.
            for acct, o in ((tk_acct, taker), (mk_acct, mk)):
                self._release(acct, o, x)
            if mk.token == taker.token:  # shares for collateral
                buyer, seller = (taker, mk) if taker.side == BUY else (mk, taker)
                cash = _notional(x, mk.price)
                move(buyer.account, "", -cash)
                move(buyer.account, buyer.token, x)
                move(seller.account, seller.token, -x)
                move(seller.account, "", cash)
            elif taker.side == BUY:  # BUY Up + BUY Down: mint a pair
                move(taker.account, "", -_notional(x, taker_price))
                move(mk.account, "", -(x - _notional(x, taker_price)))
                move(taker.account, taker.token, x)
                move(mk.account, mk.token, x)
            else:  # SELL Up + SELL Down: merge a pair
                move(taker.account, taker.token, -x)
                move(mk.account, mk.token, -x)
                move(taker.account, "", _notional(x, taker_price))
                move(mk.account, "", x - _notional(x, taker_price))
            p = Fraction(taker_price, SCALE)
            fee_equiv = Fraction(x, 1_000_000) * m.fees.rate * (p * (1 - p)) ** m.fees.exponent
            fee_total += fee_equiv
            if m.fees.rebate_share:
                mk_acct.rebates[m.condition_id] = mk_acct.rebates.get(m.condition_id, Fraction(0)) + (
                    m.fees.rebate_share * fee_equiv
                )
            total += x
        fee = int(fee_total * 1_000_000)
        fee = min(fee, tk_acct.collateral)
        if fee:
            move(taker.account, "", -fee)
            tk_acct.fees_paid += Fraction(fee, 1_000_000)
        first = makers[0].order
        price = first.price if first.token == taker.token else SCALE - first.price
        trade = Trade(f"trade-{self._trade_seq:08d}", m.condition_id, taker, makers, price, total, fee, now_ms,
                      journal=journal, undelivered=undelivered)  # fmt: skip
        self.trades.append(trade)
        for owner in {taker.owner} | {mf.order.owner for mf in makers}:
            mine = self.by_owner.get(owner)
            if mine is None:
                mine = self.by_owner[owner] = deque(maxlen=TRADES_KEPT)
            mine.append(trade)
        return trade

    @property
    def trade_count(self) -> int:
        return self._trade_seq

    def deliver(self, trade: Trade) -> None:
        """The trade is mined: what each side receives (tokens, sale collateral) is credited.
        Idempotent; nothing for a failed trade."""
        if trade.status == "FAILED":
            return
        for address, asset, delta in trade.undelivered:
            self._move(address, asset, delta)
            trade.journal.append((address, asset, delta))
        trade.undelivered = []

    def fail_trade(self, trade: Trade) -> None:
        """A settlement that failed on chain: every balance change of the trade is undone and
        nothing it owed is delivered."""
        for address, asset, delta in reversed(trade.journal):
            self._move(address, asset, -delta)
        trade.journal = []
        trade.undelivered = []
        trade.status = "FAILED"

    def cancel(self, order_id: str, account: str | None = None, reason: str = "") -> tuple[Order | None, str, Result]:
        """Cancel one resting order; returns (order, refusal reason or "", result)."""
        result = Result()
        order = self.orders.get(order_id)
        if order is None or (account is not None and order.account != account):
            return None, "order not found", result
        if order.status != "LIVE":
            return order, "already canceled or matched", result
        m = self.by_token[order.token]
        side, price = m.up_terms(order)
        book = m.bids if side == BID else m.asks
        queue = book.get(price)
        if queue is not None and order in queue:
            queue.remove(order)
            if not queue:
                del book[price]
            result.changes.append(Change(m.condition_id, side, price, m.level_size(side, price)))
        self._release(self.account(order.account), order, order.remaining)
        self._finish(order, "CANCELED")
        order.reason = reason
        result.touched.append(order)
        result.canceled.append(order)
        return order, "", result

    def _finish(self, order: Order, status: str) -> None:
        """An order leaves the book for good; the oldest finished ones are forgotten."""
        order.status = status
        self.live.pop(order.id, None)
        self._finished.append(order.id)
        while len(self._finished) > self.finished_kept:
            self.orders.pop(self._finished.popleft(), None)

    def live_orders(self, account: str | None = None, market: str = "", token: str = "") -> list[Order]:
        return [
            o
            for o in self.live.values()
            if o.status == "LIVE"
            and (account is None or o.account == account)
            and (not market or o.market == market)
            and (not token or o.token == token)
        ]

    def expire(self, now_ms: int) -> Result:
        """Cancel GTD orders past their expiration."""
        result = Result()
        for o in [o for o in self.live.values() if o.order_type == "GTD"]:
            if o.status == "LIVE" and o.expiration and o.expiration <= now_ms // 1000:
                _, _, r = self.cancel(o.id, reason="expired")
                result.changes += r.changes
                result.touched += r.touched
                result.canceled += r.canceled
        return result

    def resolve(self, condition_id: str, winner: str, now_ms: int | None = None) -> Result:
        """Close a market: cancel its orders, pay 1 per winning share (tokens are redeemed).
        With ``now_ms`` the market is forgotten ``history_ms`` later (``forget``).

        The levels the cancels empty are in the result like any cancel's: a subscriber's book
        must see them go (without them it kept the closed market's last levels, and a REST
        probe of the silent market found the book moved)."""
        m = self.markets[condition_id]
        result = Result()
        for o in self.live_orders(market=condition_id):
            _, _, r = self.cancel(o.id, reason="market resolved")
            result.changes += r.changes
            result.touched += r.touched
            result.canceled += r.canceled
        m.resolved = winner
        m.accepting = False
        for acct in self.accounts.values():
            for token in (m.up, m.down):
                shares = acct.tokens.pop(token, 0)
                if token == winner:
                    acct.collateral += shares  # 1 USDC per share: micro-shares -> micro-USDC
        if now_ms is not None:
            self._resolved.append((now_ms, condition_id))
        return result

    def forget(self, now_ms: int) -> list[Market]:
        """Drop what is older than ``history_ms``: trades matched before it in markets since
        resolved (from every owner's history: a market still open keeps its trades, and those
        after them, however long it runs) and markets resolved before it (with their per-account
        rebates and empty balance entries) once no trade kept is older than their resolution;
        returns the markets forgotten. A market's trades all precede its resolution, so no
        trade kept names a forgotten market. Finished orders stay bounded by ``finished_kept``;
        one of a forgotten market is "not found"."""
        cutoff = now_ms - self.history_ms
        markets = self.markets
        histories = [self.trades, *self.by_owner.values()]
        for history in histories:
            while history and history[0].t_ms < cutoff:
                m = markets.get(history[0].market)
                if m is not None and not m.resolved:
                    break
                history.popleft()
        for owner in [k for k, v in self.by_owner.items() if not v]:
            del self.by_owner[owner]
        # a market goes only once no trade kept can name it (its trades all precede its resolution)
        oldest = min((h[0].t_ms for h in histories if h), default=now_ms + 1)
        gone: list[Market] = []
        while self._resolved and self._resolved[0][0] < min(cutoff, oldest):
            m = self.markets.pop(self._resolved.popleft()[1], None)
            if m is None:
                continue
            tokens = (m.up, m.down)
            for token in tokens:
                if self.by_token.get(token) is m:
                    del self.by_token[token]
            for acct in self.accounts.values():
                acct.rebates.pop(m.condition_id, None)
                for token in tokens:
                    if not acct.tokens.get(token):
                        acct.tokens.pop(token, None)
                    if not acct.reserved_tokens.get(token):
                        acct.reserved_tokens.pop(token, None)
            gone.append(m)
        return gone
