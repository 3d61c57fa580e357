"""The quote pass hands each strategy the view of its market the decision needs: here, that the
quotes read the book without our own orders (the order manager's own levels reach the view)."""

from __future__ import annotations

from types import SimpleNamespace

from active_quoting import core
from active_quoting.strategy.quote_pass import _CANCEL_SIDE, MarketView, QuotePass
from active_quoting.strategy.quoting import MarketDecision, Resting

CID = "0x" + "cd" * 32


def test_the_view_carries_our_own_levels() -> None:
    info = SimpleNamespace(condition_id=CID, up="UP", down="DOWN", min_size=5_000_000)
    windows = SimpleNamespace(get=lambda cid: SimpleNamespace(info=info), is_quoting=lambda cid: True)
    own = ({4900: 20_000_000}, {5100: 10_000_000})
    staged: list[MarketDecision] = []
    orders = SimpleNamespace(
        pending=lambda: {}, resting=lambda cid, quote: Resting(), own_levels=lambda cid: own,
        stage=lambda decision, intents, now: staged.append(decision) or True, live=lambda cid=None: [],
        may_sell=lambda token: True,
    )  # fmt: skip
    views: list[MarketView] = []

    class Recorder:
        def decide(self, view: MarketView):  # type: ignore[no-untyped-def]
            views.append(view)
            return MarketDecision(CID, _CANCEL_SIDE, _CANCEL_SIDE, False, 100), []

    book = core.Book("UP", 100)
    qp = QuotePass(Recorder(), windows, orders, lambda token: book)  # type: ignore[arg-type]
    assert qp.run([CID], 1000.0) == [CID]
    assert [v.own for v in views] == [own] and views[0].book is book and len(staged) == 1


def test_the_active_strategy_decides_on_the_touch_without_us() -> None:
    from active_quoting.strategy.config import load_config
    from active_quoting.strategy.inventory import InventoryManager
    from active_quoting.strategy.momentum import MomentumDetector
    from active_quoting.strategy.quote_pass import ActiveStrategy
    from active_quoting.strategy.quoting import MarketQuoter
    from active_quoting.strategy.risk import RiskManager

    cfg = load_config(env={})
    inv = InventoryManager(cfg.inventory)
    inv.register_market(CID, "UP", "DOWN")
    strategy = ActiveStrategy(MarketQuoter(cfg, inv, MomentumDetector(cfg.momentum), RiskManager(cfg.risk)))
    info = SimpleNamespace(condition_id=CID, up="UP", down="DOWN", min_size=5_000_000)
    book = core.Book("UP", 100)
    book.apply_snapshot([(5000, 19_000_000), (4500, 50_000_000)], [(5600, 50_000_000)])  # 0.50 is ours alone
    view = MarketView(info, book, Resting(5000, 19_000_000), Resting(), {}, 0, own=({5000: 19_000_000}, {}))  # type: ignore[arg-type]
    decision, _ = strategy.decide(view)
    assert (decision.bid.price, decision.bid.action_name) == (4600, "replace")  # on the others' 0.45, improved


def test_which_strategies_pull_both_quotes_on_a_cooldown_of_the_bots_detector() -> None:
    """The bot sends a pull's cancels before the pass decides (tests/test_hot_path.py) only for
    a strategy whose decision would cancel both sides anyway: one that reads the bot's detector
    and pulls rather than widens or keeps."""
    from active_quoting.strategy.config import load_config
    from active_quoting.strategy.inventory import InventoryManager
    from active_quoting.strategy.momentum import MomentumDetector
    from active_quoting.strategy.quote_pass import make_strategy
    from active_quoting.strategy.risk import RiskManager

    def pulls(name: str, **env: str) -> bool:
        cfg = load_config(env=env)
        momentum = MomentumDetector(cfg.momentum)
        return make_strategy(name, cfg, InventoryManager(cfg.inventory), momentum, RiskManager(cfg.risk)).pulls_on(
            momentum
        )

    assert pulls("active") and pulls("spot")
    assert not pulls("naive")  # its own detector, never fed: momentum never holds it
    assert not pulls("only50")
    assert not pulls("active", AQ_MOMENTUM_ACTION="widen")
    assert not pulls("active", AQ_ORDERS_CANCEL_ON_MOMENTUM="false")
    assert not pulls("active", AQ_MOMENTUM_COOLDOWN_SECONDS="0")  # a trigger then never makes a market hot
