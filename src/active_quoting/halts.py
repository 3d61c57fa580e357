"""Halts an operator must clear, kept in the store: the kill switch and the per-market drawdown
halts (:meth:`RiskManager.export_halts`), as one JSON value under the kv key ``halts``.

``active-quoting halts --db FILE`` lists them; ``--clear all|kill|MARKET`` clears them. A stopped
bot's store is edited directly (under the store's lock, so a bot cannot start half-way). A
running bot holds that lock, so the command appends a clear request instead and waits for the
bot to acknowledge it: the bot calls :func:`apply_requests` about once a second and
:func:`save` after any risk change. Requests and acknowledgements live under two keys with one
writer each (the command writes ``halts.requests``, the bot ``halts.applied``), so neither can
overwrite the other's update.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from active_quoting.clock import SYSTEM, Clock

KEY = "halts"
REQUESTS_KEY = "halts.requests"
APPLIED_KEY = "halts.applied"
LEGACY_KILL_KEY = "kill_switch"  # "1"/"0", written by earlier versions
OPERATOR = "operator (active-quoting halts)"


class KV(Protocol):
    def put(self, key: str, value: str) -> None: ...
    def get(self, key: str, default: str = "") -> str: ...


class Risk(Protocol):
    killed: bool

    def export_halts(self) -> dict[str, Any]: ...
    def restore_halts(self, d: dict[str, Any], now_ms: int) -> None: ...
    def clear_kill_switch(self, now_ms: int, operator: str) -> None: ...
    def clear_market(self, now_ms: int, market: str, operator: str) -> None: ...


class HaltsError(Exception):
    """A clear that cannot be done (unknown target), said to the operator as is."""


# -- the bot's side ----------------------------------------------------------------------


def load(store: KV) -> dict[str, Any]:
    """The stored halts; a store of an earlier version with only ``kill_switch=1`` yields a
    kill switch with an unknown reason."""
    raw = store.get(KEY)
    if raw:
        d = json.loads(raw)
        return {"version": d.get("version", 1), "kill": d.get("kill"), "markets": dict(d.get("markets") or {})}
    if store.get(LEGACY_KILL_KEY) == "1":
        kill = {"reason": "set by an earlier version (reason not kept)", "t_ms": 0}
        return {"version": 1, "kill": kill, "markets": {}}
    return {"version": 1, "kill": None, "markets": {}}


def _write(store: KV, halts: dict[str, Any]) -> None:
    store.put(KEY, json.dumps(halts, sort_keys=True))
    store.put(LEGACY_KILL_KEY, "1" if halts.get("kill") else "0")


def save(store: KV, risk: Risk) -> None:
    """Store the risk manager's halts (call after every risk change, e.g. with its events)."""
    _write(store, risk.export_halts())


def restore(store: KV, risk: Risk, now_ms: int) -> None:
    """At startup: re-impose the stored halts; requests made while no bot ran are moot (the
    command edits a stopped store directly), so they are marked applied."""
    risk.restore_halts(load(store), now_ms)
    pending = _requests(store)
    if pending:
        store.put(APPLIED_KEY, str(pending[-1]["id"]))


def _committed(store: KV, key: str, default: str = "") -> str:
    """What another process committed, read without waiting for this store's queued writes
    (the bot reads operator requests on its event loop)."""
    get = getattr(store, "get_committed", store.get)
    return str(get(key, default))


def _requests(store: KV) -> list[dict[str, Any]]:
    raw = _committed(store, REQUESTS_KEY)
    return list(json.loads(raw)) if raw else []


def _applied(store: KV) -> int:
    return int(_committed(store, APPLIED_KEY, "0") or 0)


def _clear(risk: Risk, halts: dict[str, Any], target: str, now_ms: int) -> list[str]:
    done = []
    if target in ("all", "kill") and halts["kill"]:
        risk.clear_kill_switch(now_ms, OPERATOR)
        done.append("kill switch cleared")
    markets = list(halts["markets"]) if target == "all" else [target] if target in halts["markets"] else []
    for market in markets:
        risk.clear_market(now_ms, market, OPERATOR)
        done.append(f"market {market} cleared")
    if not done:
        done.append(f"nothing to clear for {target!r}")
    return done


def apply_requests(store: KV, risk: Risk, now_ms: int) -> list[str]:
    """Apply the clear requests the command queued since the last call (the bot calls this
    about once a second); returns what was done, one line each, for the log. The risk manager
    records each clear as an event; the new halts are saved at once."""
    applied = _applied(store)
    pending = [r for r in _requests(store) if int(r["id"]) > applied]
    if not pending:
        return []
    out = []
    for request in pending:
        halts = risk.export_halts()
        out += [f"request {request['id']}: {line}" for line in _clear(risk, halts, str(request["target"]), now_ms)]
    save(store, risk)
    store.put(APPLIED_KEY, str(pending[-1]["id"]))
    return out


# -- the command's side ------------------------------------------------------------------


@contextmanager
def _bot_lock(db: str) -> Iterator[bool]:
    """Yields True with the store's lock held when no bot runs (so none starts meanwhile),
    False when a running bot holds it."""
    path = Path(db + ".lock")
    with path.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _when(t_ms: int) -> str:
    if not t_ms:
        return "unknown time"
    return datetime.fromtimestamp(t_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(halts: dict[str, Any]) -> str:
    kill = halts.get("kill")
    lines = [f"kill switch: SET since {_when(int(kill['t_ms']))}: {kill['reason']}" if kill else "kill switch: clear"]
    markets = halts.get("markets") or {}
    lines.append(f"market halts: {len(markets)}")
    for market, h in sorted(markets.items()):
        lines.append(f"  {market}  since {_when(int(h['t_ms']))}: {h['reason']}")
    return "\n".join(lines)


def clear_stopped(store: KV, target: str) -> list[str]:
    """Clear halts in the store of a stopped bot."""
    halts = load(store)
    done = []
    if target in ("all", "kill") and halts["kill"]:
        halts["kill"] = None
        done.append("kill switch cleared")
    markets = list(halts["markets"]) if target == "all" else [target] if target in halts["markets"] else []
    for market in markets:
        del halts["markets"][market]
        done.append(f"market {market} cleared")
    if done:
        _write(store, halts)
    return done


def request_clear(store: KV, target: str) -> int:
    """Queue a clear for a running bot; returns the request's id."""
    applied = _applied(store)
    requests = [r for r in _requests(store) if int(r["id"]) > applied]  # the applied ones are done
    rid = max([applied] + [int(r["id"]) for r in requests]) + 1
    requests.append({"id": rid, "target": target})
    store.put(REQUESTS_KEY, json.dumps(requests))
    return rid


def _check_target(halts: dict[str, Any], target: str) -> None:
    if target == "kill" and not halts["kill"]:
        raise HaltsError("the kill switch is not set")
    if target not in ("all", "kill") and target not in halts["markets"]:
        raise HaltsError(f"no halt for market {target!r} (see the list without --clear)")
    if target == "all" and not halts["kill"] and not halts["markets"]:
        raise HaltsError("nothing is halted")


def command(args: argparse.Namespace, clock: Clock = SYSTEM) -> int:
    from active_quoting.store.sqlite import Store

    if not Path(args.db).exists():
        print(f"halts: no store at {args.db}")
        return 2
    store = Store(args.db)
    try:
        with _bot_lock(args.db) as stopped:
            halts = load(store)
            if args.clear is None:
                print(render(halts))
                print("bot: " + ("not running" if stopped else "running"))
                return 0
            try:
                _check_target(halts, args.clear)
            except HaltsError as exc:
                print(f"halts: {exc}")
                return 1
            if stopped:
                for line in clear_stopped(store, args.clear):
                    print(line)
                return 0
            rid = request_clear(store, args.clear)
        deadline = clock.monotonic() + args.wait
        while _applied(store) < rid:
            if clock.monotonic() >= deadline:
                print(f"clear request {rid} queued; the running bot has not applied it yet (it checks every second)")
                return 3
            time.sleep(0.05)
        print(f"clear request {rid} applied by the running bot")
        print(render(load(store)))
        return 0
    finally:
        store.close()


def add_subcommand(sub: Any) -> None:
    """The ``halts`` subcommand, for :func:`active_quoting.cli.build_parser`."""
    p = sub.add_parser("halts", help="list the kill switch and market halts of a store; --clear them")
    p.add_argument("--db", required=True, help="the bot's store")
    p.add_argument("--clear", metavar="all|kill|MARKET", help="clear every halt, the kill switch, or one market")
    p.add_argument("--wait", type=float, default=5.0, help="seconds to wait for a running bot to apply a clear")
    p.set_defaults(func=command)
