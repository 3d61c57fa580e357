"""``active-quoting run`` (and the commands that read its store) run as a user runs them: the
installed console script in a subprocess, against the embedded exchange in this process, in a
separate ``active-quoting exchange`` process, or served here for ``--venue polymarket``."""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson

from active_quoting.exchange.flow import MARKETS, FlowConfig, MarketFlow
from active_quoting.exchange.server import Exchange
from active_quoting.venue.rest import RestClient
from active_quoting.venue.signing import ApiCredentials, OrderSigner

EXE = shutil.which("active-quoting") or str(Path(sys.executable).parent / "active-quoting")
KEY = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"  # throwaway test key
ME = OrderSigner(KEY).address
T = TypeVar("T")
CORE_CHOICE = ("AQ_NO_EXTENSIONS", "AQ_REQUIRE_EXTENSIONS")


def _env(**extra: str) -> dict[str, str]:
    """The user's environment without the machine's AQ_* settings (but with its choice of core),
    with a calm momentum detector (the short demo windows keep a default one in cooldown)."""
    return {**_clean_env(), **extra}


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AQ_") or k in CORE_CHOICE}


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env or _env(), timeout=timeout, check=False)


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([EXE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or _env())


def wait_for(what: str, probe: Callable[[], T], proc: subprocess.Popen[str] | None = None, timeout: float = 25) -> T:
    """Poll ``probe`` until it returns something truthy; fail saying what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the command exited ({proc.returncode}) before {what}:\n{err[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s")


def stored_orders(db: Path) -> dict[str, int]:
    """Order statuses in a running bot's store, read as another process would (read-only)."""
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return dict(conn.execute("SELECT status, count(*) FROM orders GROUP BY status").fetchall())
    except sqlite3.OperationalError:  # not created yet, or busy
        return {}


def stored_value(db: Path, key: str) -> str:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
    return row[0] if row else ""


class ServedExchange:
    """The embedded exchange with a market flow, served from a thread of this process so that
    a test can look at what it holds while a bot subprocess trades it."""

    def __init__(self, assets: tuple[str, ...] = ("btc",), window_s: int = 30) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.assets, self.window_s = assets, window_s

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` evaluated on the exchange's loop (its state is not shared across threads)."""

        async def on_loop() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(on_loop(), self.loop).result(10)

    def live_orders_of(self, address: str) -> list[Any]:
        return self.call(lambda: self.ex.engine.live_orders(account=address))

    def orders_of(self, address: str) -> list[Any]:
        return self.call(lambda: [o for o in self.ex.engine.orders.values() if o.account == address])

    def __enter__(self) -> ServedExchange:
        self.thread.start()

        async def up() -> None:
            self.ex = await Exchange().start()
            calm = MARKETS["calm"]  # momentum at its defaults, the market calm
            self.flow = MarketFlow(self.ex, FlowConfig(assets=self.assets, window_s=self.window_s, seed=4, **calm))
            self.flow.start()

        asyncio.run_coroutine_threadsafe(up(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def down() -> None:
            await self.flow.stop()
            await self.ex.stop()

        asyncio.run_coroutine_threadsafe(down(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextmanager
def stopped_on_exit(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """A failing test does not leave its bot running."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# -- the embedded demo -----------------------------------------------------------------------


def test_embedded_run_then_status_and_report(tmp_path):
    db = tmp_path / "demo.db"
    out = run("run", "--assets", "btc", "--duration", "3", "--window-seconds", "30", "--db", str(db))
    assert out.returncode == 0, out.stderr
    assert "venue: embedded exchange in this process on 127.0.0.1" in out.stderr
    assert "active strategy on btc for 3s" in out.stderr
    assert "TOTAL" in out.stdout and "orders:" in out.stdout  # the report, rebuilt from the store

    status = run("status", "--db", str(db))
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("status as of") and "risk NORMAL" in status.stdout
    assert "btc-updown-30s-" in status.stdout  # one line per market

    text = run("report", "--db", str(db))
    assert text.returncode == 0 and "TOTAL" in text.stdout
    as_json = run("report", "--db", str(db), "--json")
    assert as_json.returncode == 0, as_json.stderr
    report = orjson.loads(as_json.stdout)
    assert report["markets"] and all(slug.startswith("btc-updown-30s-") for slug in report["markets"])
    html = tmp_path / "r.html"
    out = run("report", "--db", str(db), "--html", str(html))
    assert out.returncode == 0 and "TOTAL" in out.stdout and f"written to {html}" in out.stderr
    assert html.read_text().startswith("<!doctype html>") and "<title>active-quoting report</title>" in html.read_text()


def test_embedded_run_with_every_option(tmp_path):
    """--strategy only50, --config, --seed, --status, --metrics-port (scraped while it runs),
    --market calm, structured logs; the order size comes from the config file, not the environment."""
    cfg = tmp_path / "aq.toml"
    cfg.write_text("[orders]\norder_size_usdc = 7\n")
    db = tmp_path / "only50.db"
    env = _clean_env()
    proc = start("--log-json", "run", "--assets", "eth", "--duration", "4", "--window-seconds", "30", "--seed", "5",
                 "--strategy", "only50", "--config", str(cfg), "--db", str(db), "--status", "--metrics-port", "0",
                 "--market", "calm", env=env)  # fmt: skip
    with stopped_on_exit(proc):
        assert proc.stderr is not None
        lines: list[str] = []
        url = wait_for("the metrics URL is logged", lambda: _metrics_url(proc, lines), proc)
        scraped = urllib.request.urlopen(url, timeout=5).read().decode()  # noqa: S310 - 127.0.0.1
        out, err = proc.communicate(timeout=60)
    err = "".join(lines) + err
    assert proc.returncode == 0, err
    assert "aq_" in scraped
    assert "only50 strategy on eth for 4s" in err
    assert "risk NORMAL" in err  # --status printed the live status
    logged = [orjson.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any("metrics at" in e["msg"] for e in logged)  # --log-json: one JSON object per line
    assert "TOTAL" in out and stored_orders(db)
    con = sqlite3.connect(db)
    sizes = {size for (size,) in con.execute("SELECT size FROM orders")}
    con.close()
    assert sizes == {14_000_000}  # 7 USDC at 0.50, from the config file


def _metrics_url(proc: subprocess.Popen[str], lines: list[str]) -> str:
    assert proc.stderr is not None
    line = proc.stderr.readline()
    lines.append(line)
    m = re.search(r"metrics at (http://127\.0\.0\.1:\d+/metrics)", line)
    return m.group(1) if m else ""


def test_separate_exchange_with_scenario_and_record_then_inspect(tmp_path):
    """``exchange --scenario --record`` in its own process, the bot pointed at it with
    --exchange-url/--gamma-url; the scripted malformed frame reaches the bot (its journal holds
    it, and ``inspect`` counts it); the recording is a feed ``inspect`` reads."""
    scenario = tmp_path / "faults.json"
    scenario.write_text('[{"at": 2.5, "fault": "malformed_frame", "payload": "{scripted garbage"}]')
    record = tmp_path / "feed.jsonl"
    ex = start("exchange", "--assets", "sol", "--window-seconds", "30", "--duration", "12", "--market", "calm",
               "--scenario", str(scenario), "--record", str(record))  # fmt: skip
    with stopped_on_exit(ex):
        assert ex.stdout is not None
        urls = orjson.loads(ex.stdout.readline())
        db = tmp_path / "served.db"
        out = run("run", "--assets", "sol", "--duration", "5", "--window-seconds", "30", "--db", str(db),
                  "--exchange-url", urls["clob"], "--gamma-url", urls["gamma"])  # fmt: skip
        ex.send_signal(signal.SIGINT)  # stops at once, as a user's Ctrl-C
        _, ex_err = ex.communicate(timeout=30)
    assert out.returncode == 0, out.stderr
    assert f"venue: embedded exchange at {urls['clob']}" in out.stderr
    assert ex.returncode == 0 and "scenario: malformed_frame" in ex_err and "exchange stopped:" in ex_err

    journal = sorted((tmp_path / "served.db.journal").glob("market-*.jsonl.gz"))
    seen = orjson.loads(run("inspect", str(journal[-1])).stdout)
    assert seen["errors"] >= 1 and any("malformed JSON" in s for s in seen["error_samples"])
    recorded = run("inspect", str(record))
    assert recorded.returncode == 0, recorded.stderr
    summary = orjson.loads(recorded.stdout)
    assert summary["events"]["book"] >= 2 and summary["errors"] == 0 and summary["books"]


# -- the real venue's mode, against a served embedded exchange (same protocol) ---------------


def _api_creds(clob_url: str) -> dict[str, str]:
    """This account's API credentials, obtained as a user would (the L1 flow), for AQ_API_*."""

    async def derive() -> ApiCredentials:
        rest = RestClient(clob_url, OrderSigner(KEY))
        try:
            return await rest.create_or_derive_api_key()
        finally:
            await rest.close()

    creds = asyncio.run(derive())
    return {"AQ_API_KEY": creds.api_key, "AQ_API_SECRET": creds.secret, "AQ_API_PASSPHRASE": creds.passphrase}


def test_polymarket_dry_run_until_stopped_by_sigint(tmp_path):
    """--key-file, API credentials from AQ_API_*, --ws-url, --funder with --signature-type 2:
    orders are signed for the funder and journaled, none reaches the exchange."""
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    funder = "0x" + "ab" * 20
    db = tmp_path / "dry.db"
    with ServedExchange() as served:
        creds = _api_creds(served.ex.clob_url)
        proc = start("run", "--venue", "polymarket", "--key-file", str(key_file), "--assets", "btc",
                     "--window-seconds", "30", "--duration", "0", "--db", str(db), "--exchange-url",
                     served.ex.clob_url, "--gamma-url", served.ex.gamma_url, "--ws-url", served.ex.ws_url,
                     "--funder", funder, "--signature-type", "2", env=_env(**creds))  # fmt: skip
        with stopped_on_exit(proc):
            wait_for("a dry-run order is journaled", lambda: stored_orders(db).get("DRY_RUN"), proc)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        assert served.orders_of(ME) == [] and served.orders_of(funder) == []  # a dry run sends nothing
    assert proc.returncode == 0, err
    assert "venue: polymarket DRY RUN" in err and f"clob {served.ex.clob_url}; address {ME} (funder {funder})" in err
    assert "until stopped" in err and KEY[2:] not in out + err and creds["AQ_API_SECRET"] not in out + err
    assert "TOTAL" in out
    bodies = [orjson.loads(line) for f in sorted((tmp_path / "dry.db.journal").glob("orders-*.jsonl.gz"))
              for line in gzip.open(f).read().splitlines()]  # fmt: skip
    assert bodies and all(b["order"]["maker"].lower() == funder and b["order"]["signatureType"] == 2 for b in bodies)
    assert all(b["owner"] == creds["AQ_API_KEY"] for b in bodies)


def test_polymarket_live_until_stopped_by_sigterm_cancels_and_reports(tmp_path):
    db = tmp_path / "live.db"
    env = _env(AQ_PRIVATE_KEY=KEY)
    with ServedExchange() as served:
        proc = start("run", "--venue", "polymarket", "--live", "--assets", "btc", "--window-seconds", "30",
                     "--db", str(db), "--exchange-url", served.ex.clob_url, "--gamma-url", served.ex.gamma_url,
                     env=env)  # fmt: skip
        with stopped_on_exit(proc):
            wait_for("our orders rest on the exchange", lambda: served.live_orders_of(ME), proc)
            # the store follows once the bot has the venue's answer (and its writer has committed)
            wait_for("the store records them live", lambda: stored_orders(db).get("LIVE"), proc)
            # one bot per store: a second one is refused while this one runs
            second = run("run", "--venue", "polymarket", "--live", "--assets", "btc", "--window-seconds", "30",
                         "--db", str(db), "--exchange-url", served.ex.clob_url, "--gamma-url", served.ex.gamma_url,
                         env=env)  # fmt: skip
            assert second.returncode == 2 and "another bot is running" in second.stderr
            time.sleep(6)  # past its default 5 s status period: status is written as it runs, not only at the end
            assert stored_value(db, "status")
            assert proc.poll() is None  # no --duration on the real venue: it runs until stopped
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        assert served.live_orders_of(ME) == []  # everything it placed was cancelled
    assert proc.returncode == 0, err
    assert f"venue: polymarket LIVE (orders are sent); clob {served.ex.clob_url}; address {ME}" in err
    assert KEY[2:] not in out + err
    left = {s: n for s, n in stored_orders(db).items() if s in ("LIVE", "SENT", "UNKNOWN", "CANCELING")}
    assert left == {} and stored_orders(db).get("CANCELED")
    assert "TOTAL" in out
    status = run("status", "--db", str(db))
    assert status.returncode == 0 and "risk NORMAL" in status.stdout


# -- bad input: exit 2, one line naming the flag, no secret ----------------------------------


def test_bad_flags_are_named(tmp_path):
    cases = [
        (["run", "--duration", "-1"], "--duration must be 0 (until stopped) or a positive"),
        (["run", "--window-seconds", "10"], "--window-seconds must be at least 30"),
        (["run", "--assets", " , "], "--assets: give at least one asset"),
        (["run", "--metrics-port", "70000"], "--metrics-port must be 0..65535"),
        (["run", "--db", str(tmp_path / "no" / "such" / "x.db")], "--db: no such directory"),
        (["run", "--live"], "--live only applies to --venue polymarket"),
        (["run", "--key-file", "k"], "--key-file only applies to --venue polymarket"),
        (["run", "--exchange-url", "http://127.0.0.1:1"], "--exchange-url and --gamma-url go together"),
        (["run", "--exchange-url", "127.0.0.1:1", "--gamma-url", "http://x"], "--exchange-url must start with http"),
        (["run", "--venue", "polymarket", "--key-file", str(tmp_path / "missing")], "cannot read key file"),
        (["status", "--db", str(tmp_path / "none.db")], "no such store"),
        (["report", "--db", str(tmp_path / "none.db")], "no such store"),
        (["exchange", "--window-seconds", "5"], "--window-seconds >= 10"),
    ]
    for args, message in cases:
        out = run(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, (args, out.stderr)
        assert out.stdout == ""


def test_bad_keys_and_credentials_are_clear_and_secret_free(tmp_path):
    bad = "0x" + "zz" * 32
    key_file = tmp_path / "bad-key"
    key_file.write_text(bad)
    out = run("run", "--venue", "polymarket", "--key-file", str(key_file))
    assert out.returncode == 2 and f"--key-file {key_file}: private key: not hex" in out.stderr
    assert bad not in out.stderr + out.stdout and "zzzz" not in out.stderr
    out = run("run", "--venue", "polymarket", env=_env(AQ_PRIVATE_KEY=KEY[:-2]))
    assert out.returncode == 2 and "AQ_PRIVATE_KEY: private key" in out.stderr and KEY[2:-2] not in out.stderr
    out = run("run", "--venue", "polymarket", "--signature-type", "1", env=_env(AQ_PRIVATE_KEY=KEY))
    assert out.returncode == 2 and "--funder" in out.stderr and KEY[2:] not in out.stderr
    out = run("run", "--venue", "polymarket", env=_env(AQ_PRIVATE_KEY=KEY, AQ_API_KEY="k", AQ_API_SECRET="s3cr3t"))
    assert out.returncode == 2 and "AQ_API_PASSPHRASE" in out.stderr and "s3cr3t" not in out.stderr
    out = run("run", "--venue", "polymarket")
    assert out.returncode == 2 and "no private key" in out.stderr


def test_config_errors_name_the_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[quote]\nofset_ticks = 1\n")
    out = run("run", "--config", str(cfg))
    assert out.returncode == 2 and "bad config" in out.stderr and "ofset_ticks" in out.stderr
    out = run("run", env=_env(AQ_REFRESH_MIN_INTERVAL_MS="soon"))
    assert out.returncode == 2 and "bad config" in out.stderr and "min_interval_ms" in out.stderr
    out = run("run", "--config", str(tmp_path / "absent.toml"))
    assert out.returncode == 2 and "bad config" in out.stderr and "absent.toml" in out.stderr


def test_a_second_signal_exits_at_once(tmp_path):
    """The first SIGTERM starts a clean stop; a second one during it exits at once (130), with
    what the store had queued flushed - a service manager's escalation never hangs on the venue."""
    db = tmp_path / "twice.db"
    with ServedExchange() as served:
        proc = start("run", "--venue", "polymarket", "--live", "--assets", "btc", "--window-seconds", "30",
                     "--db", str(db), "--exchange-url", served.ex.clob_url, "--gamma-url", served.ex.gamma_url,
                     env=_env(AQ_PRIVATE_KEY=KEY))  # fmt: skip
        with stopped_on_exit(proc):
            wait_for("our orders rest on the exchange", lambda: served.live_orders_of(ME), proc)
            served.call(lambda: setattr(served.ex.faults, "slow_data_s", 5.0))  # shutdown's confirmation hangs
            proc.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            assert proc.poll() is None  # the clean stop is waiting on the venue
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 130
        assert stored_orders(db)  # the store is readable and holds the run's orders
