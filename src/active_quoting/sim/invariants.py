"""Invariants checked continuously while a simulated bot runs, each able to fail, each reported
with the first violation's (simulated) time and context.

- managed: every order the venue holds for us is managed as live by the bot within ``grace_s``;
- positions: the bot's positions equal what the venue owes us (settled tokens, tokens our
  resting SELLs reserve, tokens of trades matched but not yet mined), within ``grace_s``;
- limits: no position beyond the per-market limit, no worst-case liability beyond its limits,
  no BUY order putting up more than ORDER_SIZE (or the market minimum) of collateral;
- halted: while the bot is HALTED, nothing of ours rests once the cancel round trip is over;
- fills: every minute, the fills the bot counts in each market are exactly the legs of ours the
  venue matched there (none lost, none counted that the venue does not have);
- rate: no 429 from the venue unless a rate-limit fault was injected.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from active_quoting.execution.order_manager import LIVE_STATES

NAMES = ("managed", "positions", "limits", "halted", "fills", "rate")


def venue_owes(engine: Any, address: str, owner_key: str, tokens: set[str], since_ms: int = 0) -> dict[str, int]:
    """Per token: settled + reserved by our resting SELLs + matched and not yet delivered
    (only trades since ``since_ms`` can still be undelivered: settlement takes seconds)."""
    acct = engine.accounts.get(address)
    owed = {t: 0 for t in tokens}
    if acct is None:
        return owed
    for t in tokens:
        owed[t] = acct.tokens.get(t, 0) + acct.reserved_tokens.get(t, 0)
    for trade in reversed(engine.by_owner.get(owner_key, ())):
        if trade.t_ms < since_ms:
            break
        for who, asset, delta in trade.undelivered:
            if who == address and asset in owed:
                owed[asset] += delta
    return owed


def venue_fill_keys(engine: Any, owner_key: str, market: str) -> set[tuple[str, str]]:
    """(trade id, order id) of every leg of ours the venue matched in ``market``."""
    return venue_fill_keys_by_market(engine, owner_key, {market})[market]


def venue_fill_keys_by_market(engine: Any, owner_key: str, markets: set[str]) -> dict[str, set[tuple[str, str]]]:
    """:func:`venue_fill_keys` of several markets in one walk over our trades (a walk per
    market cost markets x trades, and the trades grow all day)."""
    keys: dict[str, set[tuple[str, str]]] = {m: set() for m in markets}
    for trade in engine.by_owner.get(owner_key, ()):
        found = keys.get(trade.market)
        if found is None:
            continue
        if trade.taker.owner == owner_key:
            found.add((trade.id, trade.taker.id))
        for mf in trade.makers:
            if mf.order.owner == owner_key:
                found.add((trade.id, mf.order.id))
    return keys


@dataclass
class Violation:
    name: str
    t: float  # simulated wall time
    detail: str


# How long a discrepancy may last before it is a violation: an order the venue holds is known
# once its submit answers (seconds); a fill the user channel missed comes back with the next
# reconciliation (every 10 s); a halt's cancels take one round trip.
GRACE_S = {"managed": 5.0, "positions": 25.0, "halted": 5.0, "fills": 90.0}


@dataclass
class InvariantMonitor:
    grace_s: float = 5.0
    checks: int = 0
    first: dict[str, Violation] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(NAMES, 0))
    _since: dict[tuple[str, str], float] = field(default_factory=dict)  # (invariant, subject) -> first seen

    def _persisting(self, name: str, subject: str, now: float, detail: str, bad: bool) -> None:
        key = (name, subject)
        if not bad:
            self._since.pop(key, None)
            return
        since = self._since.setdefault(key, now)
        if now - since > GRACE_S.get(name, self.grace_s):
            self._violate(name, now, f"{detail} (for {now - since:.1f}s)")
            self._since[key] = now  # counted again only if it persists another grace period

    def record(self, name: str, now: float, detail: str) -> None:
        """A violation found outside the periodic checks (e.g. after the final shutdown)."""
        self._violate(name, now, detail)

    def _violate(self, name: str, now: float, detail: str) -> None:
        self.counts[name] += 1
        self.first.setdefault(name, Violation(name, now, detail))

    def check(self, bot: Any, exchange: Any, now: float, rate_fault_active: bool) -> None:
        """One round of every invariant (the bot must be running: started and not stopped)."""
        self.checks += 1
        engine = exchange.engine
        me = bot.signer.address
        # managed
        live_ids = set()
        for o in engine.live_orders(account=me):
            live_ids.add(o.id)
            t = bot.orders.orders.get(o.id)
            managed = t is not None and t.status in LIVE_STATES
            self._persisting("managed", o.id, now, f"venue holds {o.id[:12]} ({o.side} {o.price}) "
                             f"bot: {'unknown' if t is None else t.status}", not managed)  # fmt: skip
        for key in [k for k in self._since if k[0] == "managed" and k[1] not in live_ids]:
            del self._since[key]
        # positions, limits, fills
        cfg = bot.cfg.inventory
        max_pos = int(cfg.max_position_per_market * 1_000_000)
        live = {cid: w for cid, w in bot.windows.windows.items() if not w.winner}
        tokens = {t for w in live.values() for t in (w.info.up, w.info.down)}
        owed = venue_owes(engine, me, bot.rest.creds.api_key, tokens, int(now - 300) * 1000)  # one walk for all
        every_minute = self.checks % 60 == 0
        venue_fills = venue_fill_keys_by_market(engine, bot.rest.creds.api_key, set(live)) if every_minute else {}
        for cid, w in live.items():
            up, down = bot.inventory.held(cid)
            self._persisting("positions", cid, now, f"{w.info.slug}: bot ({up}, {down}) venue "
                             f"({owed[w.info.up]}, {owed[w.info.down]})",
                             (up, down) != (owed[w.info.up], owed[w.info.down]))  # fmt: skip
            net = abs(bot.inventory.net_up(cid))
            # one order's size may land beyond the limit (the engine sizes against rooms at the decision)
            if net > max_pos + 2 * _order_shares(bot):
                self._violate("limits", now, f"{w.info.slug}: |net| {net / 1e6:.2f} > {max_pos / 1e6:.0f} shares")
            liability = bot.inventory.liability(cid)
            if liability > cfg.max_liability_per_market_usdc + bot.cfg.orders.order_size_usdc:
                self._violate("limits", now, f"{w.info.slug}: liability {float(liability):.2f} USDC")
            if every_minute:  # every simulated minute: our fills against the venue's trades
                ours = venue_fills[cid]
                counted = set(bot.inventory.fill_keys(cid))
                self._persisting("fills", cid, now, f"{w.info.slug}: {len(ours - counted)} of the venue's fills of "
                                 f"ours not counted, {len(counted - ours)} counted the venue does not have",
                                 ours != counted)  # fmt: skip
        for t in bot.orders.live():
            if t.side == "BUY" and t.size * t.price > (bot.cfg.orders.order_size_usdc * 10_000_000_000 + 10**10):
                if t.size > 5_000_000:
                    self._violate("limits", now, f"order {t.order_id[:12]} BUY {t.size / 1e6} @ {t.price}")
        # halted
        halted = bot.risk.state == "HALTED"
        self._persisting("halted", "global", now, f"{len(live_ids)} orders of ours rest while HALTED",
                         halted and bool(live_ids))  # fmt: skip
        # rate
        limited = bot.rest.counts.get("rate_limited", 0)
        client = self._rate_client() if self._rate_client is not None else None
        if client is not bot.rest:  # a restarted bot counts from zero (an address can be reused)
            self._rate_client, self._rate_seen = weakref.ref(bot.rest), 0
        if limited > self._rate_seen and not rate_fault_active:
            self._violate("rate", now, f"{limited - self._rate_seen} requests answered 429")
        self._rate_seen = limited

    _rate_seen: int = 0
    _rate_client: weakref.ref[Any] | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "checks": self.checks,
            "violations": dict(self.counts),
            "first": {k: {"t": v.t, "detail": v.detail} for k, v in self.first.items()},
            "ok": not any(self.counts.values()),
        }


def _order_shares(bot: Any) -> int:
    """The largest order size in micro-shares (ORDER_SIZE at a 0.01 price is the worst case
    the limits must allow for; in practice orders sit near 0.5)."""
    return int(bot.cfg.orders.order_size_usdc * 2 * 1_000_000)
