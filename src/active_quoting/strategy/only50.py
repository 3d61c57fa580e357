"""The "Only 50" baseline the design replaces, kept for A/B comparisons on the same seed: fixed
BUY orders at 0.50 on both the Up and the Down token, passive until filled, with a simple
imbalance check (a token is not bought further once it would be ``max_position`` ahead of the
other). It goes through the same order manager, store and report as the active strategy."""

from __future__ import annotations

from active_quoting import core
from active_quoting.model import ASK, BID, OrderIntent
from active_quoting.strategy.config import Config
from active_quoting.strategy.inventory import InventoryManager
from active_quoting.strategy.quoting import MarketDecision, Resting, SideDecision, engine_from_config, intent
from active_quoting.strategy.risk import RiskManager

PRICE = 5000  # 0.50


class Only50:
    def __init__(self, cfg: Config, inventory: InventoryManager, risk: RiskManager) -> None:
        self.engine = engine_from_config(cfg)  # for ORDER_SIZE at 0.50 on the venue's lot
        self.inventory = inventory
        self.risk = risk

    def decide(
        self, market: str, up_token: str, down_token: str, resting_bid: Resting, resting_ask: Resting, min_size: int
    ) -> tuple[MarketDecision, list[OrderIntent]]:
        """The decision and its venue orders: a BUY Up is the Up-terms bid, a BUY Down at 0.50
        the Up-terms ask."""
        size = self.engine.size_for(PRICE, PRICE, min_size, core.MAX_AMOUNT, core.MAX_USDC)
        up, down = self.inventory.held(market)
        mult = self.risk.multiplier_pct(market)
        limit = self.inventory.max_position * mult // 100
        legs: list[OrderIntent] = []
        sides: dict[str, SideDecision] = {}
        for name, held, other, resting in ((BID, up, down, resting_bid), (ASK, down, up, resting_ask)):
            want = mult > 0 and held - other + size <= limit
            if resting.price == core.NO_PRICE and want:
                sides[name] = SideDecision(PRICE, size, core.PLACE)
                legs.append(intent(market, up_token, down_token, name, PRICE, size, 0))
            elif resting.price != core.NO_PRICE and not want:
                sides[name] = SideDecision(core.NO_PRICE, 0, core.CANCEL)
            else:
                sides[name] = SideDecision(resting.price, resting.size, core.KEEP if resting.size else core.NONE)
        return MarketDecision(market, sides[BID], sides[ASK], False, mult), legs
