"""The embedded exchange's messages in the venue's shapes (POLYMARKET.md §2-§4; the captures):
pure functions of the engine's markets, orders and trades."""

from __future__ import annotations

import hashlib
from fractions import Fraction
from typing import Any

from active_quoting import core
from active_quoting.exchange.engine import ASK, BID, SCALE, Market, Order, Trade


def book_msg(m: Market, token: str, now_ms: int) -> dict[str, Any]:
    """A ``book`` snapshot of one token as the market channel sends it."""
    bids, asks = m.token_view(token)
    last = m.last_trade if token == m.up else (SCALE - m.last_trade if m.last_trade else 0)
    return {
        "market": m.condition_id,
        "asset_id": token,
        "timestamp": str(now_ms),
        "hash": m.next_hash(),
        "bids": [{"price": core.format_price(p), "size": core.format_size(q)} for p, q in bids],
        "asks": [{"price": core.format_price(p), "size": core.format_size(q)} for p, q in asks],
        "tick_size": core.format_price(m.tick),
        "event_type": "book",
        "last_trade_price": core.format_price(last) if last else "",
    }


def top(m: Market, token: str) -> tuple[str, str]:
    """(best_bid, best_ask) of one token with the venue's "0"/"1" empty-side sentinels."""
    bid, ask = m.best(BID), m.best(ASK)
    if token != m.up:
        bid, ask = (
            (SCALE - ask if ask != core.NO_PRICE else core.NO_PRICE),
            (SCALE - bid if bid != core.NO_PRICE else core.NO_PRICE),
        )
    return (
        core.format_price(bid) if bid != core.NO_PRICE else "0",
        core.format_price(ask) if ask != core.NO_PRICE else "1",
    )


def trade_msg(m: Market, trade: Trade, recipient_key: str, now_ms: int) -> dict[str, Any]:
    """A user-channel ``trade`` as ``recipient_key`` sees it (all makers listed, as the venue does)."""
    taker = trade.taker
    makers = [
        {
            "order_id": mf.order.id,
            "owner": mf.order.owner,
            "maker_address": mf.order.account,
            "matched_amount": core.format_size(mf.size),
            "price": core.format_price(mf.price),
            "fee_rate_bps": "0",
            "asset_id": mf.order.token,
            "outcome": "Up" if mf.order.token == m.up else "Down",
            "side": mf.order.side,
        }
        for mf in trade.makers
    ]
    return {
        "asset_id": taker.token,
        "bucket_index": 0,
        "event_type": "trade",
        "fee_rate_bps": "0",
        "id": trade.id,
        "last_update": str(now_ms // 1000),
        "maker_address": taker.account,
        "maker_orders": makers,
        "market": trade.market,
        "match_time": str(trade.t_ms // 1000),
        "outcome": "Up" if taker.token == m.up else "Down",
        "owner": taker.owner,
        "price": core.format_price(trade.price),
        "side": taker.side,
        "size": core.format_size(trade.size),
        "status": trade.status,
        "taker_order_id": taker.id,
        "timestamp": str(now_ms),
        "trade_owner": taker.owner,
        "trader_side": "TAKER" if recipient_key == taker.owner else "MAKER",
        "transaction_hash": "0x" + hashlib.sha256(trade.id.encode()).hexdigest(),
        "type": "TRADE",
    }


def clob_market(m: Market) -> dict[str, Any]:
    out: dict[str, Any] = {
        "t": [{"t": m.up, "o": "Up"}, {"t": m.down, "o": "Down"}],
        "c": m.condition_id,
        "mos": m.min_size // 1_000_000,
        "mts": float(Fraction(m.tick, SCALE)),
        "ao": m.accepting,
        "mbf": 1000,
        "tbf": 1000,
        "v": "v2" if m.order_version == 3 else "v1",  # Protocol-V2 markets (ExchangeV3) say "v2", as on Gamma
    }
    if m.fees.rate:
        out["fd"] = {"r": float(m.fees.rate), "e": m.fees.exponent, "to": m.fees.taker_only}
    return out


def market_record(m: Market) -> dict[str, Any]:
    return {
        "condition_id": m.condition_id,
        "tokens": [
            {"token_id": m.up, "outcome": "Up", "winner": m.resolved == m.up},
            {"token_id": m.down, "outcome": "Down", "winner": m.resolved == m.down},
        ],
        "minimum_tick_size": float(Fraction(m.tick, SCALE)),
        "minimum_order_size": m.min_size // 1_000_000,
        "accepting_orders": m.accepting,
        "closed": bool(m.resolved),
        "neg_risk": False,
    }


def open_order(m: Market, o: Order) -> dict[str, Any]:
    return {
        "id": o.id,
        "status": "LIVE" if o.status == "LIVE" else o.status,
        "owner": o.owner,
        "maker_address": o.account,
        "market": o.market,
        "asset_id": o.token,
        "side": o.side,
        "original_size": core.format_size(o.size),
        "size_matched": core.format_size(o.matched),
        "price": core.format_price(o.price),
        "outcome": "Up" if o.token == m.up else "Down",
        "expiration": str(o.expiration),
        "order_type": o.order_type,
        "associate_trades": [],
        "created_at": o.created_at,
    }


def spread_text(top: tuple[str, str]) -> str:
    """The venue's ``spread`` of a (best_bid, best_ask) pair given as the "0"/"1" sentinels allow."""
    bid, ask = core.parse_price(top[0]), core.parse_price(top[1])
    return core.format_price(ask - bid) if ask > bid else "0"
