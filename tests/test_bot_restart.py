"""kill -9 and restart against a separately served exchange: nothing lost, nothing counted
twice, every order the venue holds for us known, positions equal the venue's; one bot per store."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson

from active_quoting.bot import throwaway_key
from active_quoting.report import build_report
from active_quoting.store.sqlite import Store
from active_quoting.strategy.inventory import InventoryManager
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import OrderSigner

EXE = shutil.which("active-quoting") or str(Path(sys.executable).parent / "active-quoting")
SEED = 9


def _orders(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return con.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


async def _venue_state(clob: str, store: Store):
    rest = RestClient(clob, OrderSigner(throwaway_key(SEED)))
    try:
        await rest.create_or_derive_api_key()
        live = await rest.open_orders()
        balances = {}
        for m in store.markets():
            for token in (m["up"], m["down"]):
                r = await rest._request(
                    "GET", "/balance-allowance", params={"asset_type": "CONDITIONAL", "token_id": token}, auth=True
                )
                balances[token] = int(r["balance"])
        return live, balances
    finally:
        await rest.close()


def test_kill_9_then_restart(tmp_path):
    ex = subprocess.Popen([EXE, "exchange", "--window-seconds", "30", "--assets", "btc", "--seed", "5", "--market", "calm"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        urls = orjson.loads(ex.stdout.readline())
        db = tmp_path / "bot.db"
        run = [EXE, "run", "--exchange-url", urls["clob"], "--gamma-url", urls["gamma"], "--window-seconds", "30",
               "--assets", "btc", "--seed", str(SEED), "--db", str(db)]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("AQ_") or k.endswith("EXTENSIONS")}
        bot = subprocess.Popen(
            [*run, "--duration", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        deadline = time.time() + 30
        while _orders(db) < 2 and time.time() < deadline:
            time.sleep(0.2)
        assert _orders(db) >= 2, "the bot placed no orders"
        second = subprocess.run([*run, "--duration", "5"], capture_output=True, timeout=30, check=False, env=env)
        assert second.returncode == 2 and b"another bot is running" in second.stderr
        time.sleep(1.0)
        killed_ms = int(time.time() * 1000)
        os.kill(bot.pid, signal.SIGKILL)
        bot.wait(10)
        store = Store(db)
        fills_before = {f.key for f in store.fills()}
        # what the killed run measured was persisted as it happened, not at a shutdown it never had
        assert store.run_ms() > 0
        marked = {(t, o) for t, o, h, _ in store.markouts() if h == 0}
        settled = [f for f in store.fills() if f.t_ms < killed_ms - 2_500]
        assert all(f.key in marked for f in settled), "fills of the killed run have no stored markout"
        store.close()
        # Restart: the venue still holds orders of the dead bot; the new one must adopt them.
        again = subprocess.run([*run, "--duration", "8"], capture_output=True, timeout=90, check=False, env=env)
        assert again.returncode == 0, again.stderr[-2000:]
        store = Store(db)
        live, balances = asyncio.run(_venue_state(urls["clob"], store))
        assert live == []  # everything the venue held for us was known and cancelled on shutdown
        assert store.open_orders() == []  # and the store agrees: no order left in an open state
        fills = store.fills()
        assert len({f.key for f in fills}) == len(fills) and fills_before <= {f.key for f in fills}
        inv = InventoryManager()
        for m in store.markets():
            inv.register_market(m["condition_id"], m["up"], m["down"])
        for f in fills:
            inv.apply_fill(f)
        for m in store.markets():
            if m["winner"]:
                inv.resolve(m["condition_id"], m["winner"])
            assert inv.held(m["condition_id"]) == (balances[m["up"]], balances[m["down"]]), m["slug"]
        assert build_report(store)["total"]["fills"] == len([f for f in fills if f.status != "FAILED"])
        store.close()
    finally:
        ex.send_signal(signal.SIGTERM)
        ex.wait(15)
