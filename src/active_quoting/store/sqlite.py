"""Persistence in one SQLite file (WAL): orders and their state changes, fills with settlement
status, markouts, risk state and the kill switch, run metadata. Positions and realized P&L are
rebuilt from the fills on start, so a restart after a crash (kill -9) restores them exactly,
and a fill seen again after the restart is recognised by its key and not counted twice.

The schema is versioned with ``PRAGMA user_version``; each migration runs once, in order.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from active_quoting.model import Fill

MIGRATIONS = [
    """
    CREATE TABLE orders (
        order_id TEXT PRIMARY KEY, market TEXT NOT NULL, token TEXT NOT NULL, side TEXT NOT NULL,
        price INTEGER NOT NULL, size INTEGER NOT NULL, status TEXT NOT NULL, matched INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, reason TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE order_events (
        id INTEGER PRIMARY KEY, order_id TEXT NOT NULL, t_ms INTEGER NOT NULL, status TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE TABLE fills (
        trade_id TEXT NOT NULL, order_id TEXT NOT NULL, market TEXT NOT NULL, token TEXT NOT NULL, side TEXT NOT NULL,
        price INTEGER NOT NULL, size INTEGER NOT NULL, status TEXT NOT NULL, t_ms INTEGER NOT NULL,
        maker INTEGER NOT NULL,
        PRIMARY KEY (trade_id, order_id)
    );
    CREATE TABLE markouts (
        trade_id TEXT NOT NULL, order_id TEXT NOT NULL, horizon_s INTEGER NOT NULL, value_x2 INTEGER NOT NULL,
        PRIMARY KEY (trade_id, order_id, horizon_s)
    );
    CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE markets (
        condition_id TEXT PRIMARY KEY, slug TEXT NOT NULL, up TEXT NOT NULL, down TEXT NOT NULL,
        start_s INTEGER NOT NULL, end_s INTEGER NOT NULL, winner TEXT NOT NULL DEFAULT '',
        fee_rate TEXT NOT NULL DEFAULT '0', rebate_share TEXT NOT NULL DEFAULT '0',
        fee_exponent INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE risk_events (
        id INTEGER PRIMARY KEY, t_ms INTEGER NOT NULL, scope TEXT NOT NULL, old TEXT NOT NULL, new TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    """,
]


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise RuntimeError(f"{self.path}: schema version {version} is newer than this program ({len(MIGRATIONS)})")
        for i in range(version, len(MIGRATIONS)):
            self.db.executescript("BEGIN;" + MIGRATIONS[i] + f"PRAGMA user_version={i + 1}; COMMIT;")

    def close(self) -> None:
        self.db.close()

    # -- writes -------------------------------------------------------------------------

    def order_sent(self, order_id: str, market: str, token: str, side: str, price: int, size: int, status: str) -> None:
        now = int(time.time() * 1000)
        self.db.execute(
            "INSERT OR IGNORE INTO orders VALUES (?,?,?,?,?,?,?,0,?,?,'')",
            (order_id, market, token, side, price, size, status, now, now),
        )
        self.db.execute(
            "INSERT INTO order_events (order_id,t_ms,status,detail) VALUES (?,?,?,?)", (order_id, now, status, "sent")
        )

    def order_state(self, order_id: str, status: str, matched: int | None = None, reason: str = "") -> None:
        now = int(time.time() * 1000)
        if matched is None:
            self.db.execute(
                "UPDATE orders SET status=?, updated_ms=?, reason=? WHERE order_id=?", (status, now, reason, order_id)
            )
        else:
            self.db.execute(
                "UPDATE orders SET status=?, matched=?, updated_ms=?, reason=? WHERE order_id=?",
                (status, matched, now, reason, order_id),
            )
        self.db.execute(
            "INSERT INTO order_events (order_id,t_ms,status,detail) VALUES (?,?,?,?)", (order_id, now, status, reason)
        )

    def fill(self, f: Fill) -> bool:
        """Record a fill or its new status; returns False when this exact state was already stored."""
        cur = self.db.execute(
            "INSERT INTO fills VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(trade_id, order_id) "
            "DO UPDATE SET status=excluded.status WHERE fills.status != excluded.status",
            (f.trade_id, f.order_id, f.market, f.token, f.side, f.price, f.size, f.status, f.t_ms, int(f.maker)),
        )
        return cur.rowcount > 0

    def markout(self, trade_id: str, order_id: str, horizon_s: int, value_x2: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO markouts VALUES (?,?,?,?)", (trade_id, order_id, horizon_s, value_x2))

    def market(
        self, condition_id: str, slug: str, up: str, down: str, start_s: int, end_s: int,
        fee_rate: str = "0", rebate_share: str = "0", fee_exponent: int = 1,
    ) -> None:  # fmt: skip
        self.db.execute(
            "INSERT OR IGNORE INTO markets VALUES (?,?,?,?,?,?,'',?,?,?)",
            (condition_id, slug, up, down, start_s, end_s, fee_rate, rebate_share, fee_exponent),
        )

    def resolved(self, condition_id: str, winner: str) -> None:
        self.db.execute("UPDATE markets SET winner=? WHERE condition_id=?", (winner, condition_id))

    def risk_event(self, t_ms: int, scope: str, old: str, new: str, reason: str) -> None:
        self.db.execute(
            "INSERT INTO risk_events (t_ms,scope,old,new,reason) VALUES (?,?,?,?,?)", (t_ms, scope, old, new, reason)
        )

    def put(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO kv VALUES (?,?)", (key, value))

    # -- reads --------------------------------------------------------------------------

    def get(self, key: str, default: str = "") -> str:
        row = self.db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def fills(self) -> list[Fill]:
        rows = self.db.execute(
            "SELECT trade_id, order_id, market, token, side, price, size, status, t_ms, maker "
            "FROM fills ORDER BY t_ms, rowid"
        ).fetchall()
        return [Fill(*r[:9], bool(r[9])) for r in rows]

    def open_orders(self) -> list[dict[str, Any]]:
        cols = ("order_id", "market", "token", "side", "price", "size", "status", "matched")
        rows = self.db.execute(
            f"SELECT {', '.join(cols)} FROM orders WHERE status IN ('LIVE', 'SENT', 'UNKNOWN', 'CANCELING')"
        ).fetchall()
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def markets(self) -> list[dict[str, Any]]:
        cols = (
            "condition_id",
            "slug",
            "up",
            "down",
            "start_s",
            "end_s",
            "winner",
            "fee_rate",
            "rebate_share",
            "fee_exponent",
        )
        return [dict(zip(cols, r, strict=True)) for r in self.db.execute(f"SELECT {', '.join(cols)} FROM markets")]

    def markouts(self) -> list[tuple[str, str, int, int]]:
        return self.db.execute("SELECT trade_id, order_id, horizon_s, value_x2 FROM markouts").fetchall()

    def risk_events(self) -> list[tuple[int, str, str, str, str]]:
        return self.db.execute("SELECT t_ms, scope, old, new, reason FROM risk_events ORDER BY id").fetchall()

    def order_counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM orders GROUP BY status").fetchall())
