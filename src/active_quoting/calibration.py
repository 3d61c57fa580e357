"""Calibration of the window fair-value model on a real day (issue 13, item 5).

The recorded Chainlink BTC/USD feed that settled the day's 5-minute up/down markets drives the
core's fair value (:func:`active_quoting.core.fair_up`, with its online
:class:`~active_quoting.core.VolEstimator` fed the feed up to each moment, under the day's point
settlement rule: ``twap_ms=0``) at several times before each market's end. Its probability of Up
is scored against the recorded outcome, next to two baselines: the naive 0.5 and "the current
price is at or above the strike" (1 or 0). The model and the baselines see at each moment only
the ticks received by then (``recv_ms``), as the live bot does: a Chainlink tick arrives about
1.3 s after its own timestamp, so scoring on the feed's timestamps would hand them the future
(a quarter of the time left at 5 s before the end). Per horizon: Brier scores, the model's log-loss and a
reliability table. The feed's own rule must reproduce every recomputable outcome first (a feed
that does not is not the feed that settled these markets; the command fails loudly).

Probabilities stay 1e-4 integers until a score is formed; a Brier score is summed exactly in
integers and divided once.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import html
import math
import sys
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any

import orjson

from active_quoting.clock import SYSTEM, Clock
from active_quoting.exchange.spot import SCALE_18, SpotPath
from active_quoting.strategy.config import FairValueConfig
from active_quoting.strategy.fair_value import vol_ppm

PROB_SCALE = 10_000  # probabilities from the core: 1e-4 units
HORIZONS_S = (240, 180, 120, 60, 30, 10, 5)
BUCKETS = 10  # reliability buckets of 0.1
# The model as the bot runs it by default (strategy.config.FairValueConfig): what is scored.
_FV = FairValueConfig()
DEFAULT_HALF_LIFE_S = _FV.vol_half_life_seconds
DEFAULT_FLOOR_PPM = vol_ppm(_FV.vol_floor)
DEFAULT_INITIAL_PPM = vol_ppm(_FV.vol_initial)  # before the estimator has seen anything
BAND_HORIZON_MS = _FV.horizon_ms  # the half-band: fair's move under a one-sigma spot move over this
PROGRESS_AFTER_S = 2.0  # stay quiet on runs shorter than this
DAY = "real-btc-2026-06-08"
DEFAULT_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / DAY
DEFAULT_PRICES = DEFAULT_DIR / "BTCUSD-prices-2026-06-08.csv.gz"
DEFAULT_MARKETS = DEFAULT_DIR / "BTC-5m-markets-2026-06-08.jsonl.gz"


class CalibrationError(Exception):
    """An input file is missing or malformed (the command exits 2, naming the file)."""


class OutcomeMismatch(Exception):
    """The feed's settlement rule disagrees with a recorded outcome or strike (exit 1)."""


@dataclass(frozen=True)
class Market:
    slug: str
    start_s: int
    end_s: int
    strike: int | None  # price to beat, 1e18-scaled, None when the venue recorded none
    up_won: bool


@dataclass(frozen=True)
class Point:
    """One market scored at one horizon before its end."""

    slug: str
    horizon_s: int
    t_s: int
    spot: int  # 1e-8 USD (core.SPOT_SCALE)
    strike: int  # 1e-8 USD
    sigma_ppm: int
    prob: int  # the model's P(Up), 1e-4
    half_band: int  # its uncertainty half-band, 1e-4
    at_or_above: int  # 1 if the current (exact) price >= the (exact) strike
    up_won: int


@dataclass(frozen=True)
class Bucket:
    lo: int  # 1e-4, inclusive
    hi: int  # 1e-4, exclusive (the last bucket includes 1.0)
    count: int
    mean_predicted: float | None
    realised: float | None


@dataclass
class HorizonStats:
    horizon_s: int
    n: int
    brier_model: float | None
    brier_naive: float | None
    brier_at_or_above: float | None
    logloss_model: float | None  # probabilities clipped to [1e-4, 1 - 1e-4]
    logloss_naive: float | None
    mean_half_band: float | None
    # the model's Brier minus a baseline's: mean over markets and the half-width of its 95%
    # interval (paired by market, normal approximation, markets taken as independent)
    model_minus_naive: tuple[float, float] | None
    model_minus_at_or_above: tuple[float, float] | None
    # confidence: the mean probability the model gives the side it favours (Up when p >= 0.5)
    # and how often that side won; predicted above realised = over-confident
    favourite_predicted: float | None
    favourite_realised: float | None
    skipped: int  # markets with a strike whose moment lies outside the feed
    reliability: list[Bucket] = field(default_factory=list)


@dataclass
class OutcomeCheck:
    markets: int
    with_strike: int
    recomputable: int  # strike recorded, a tick at or before the end inside the feed
    reproduced: int
    mismatches: list[str]


@dataclass
class Calibration:
    prices: str
    markets: str
    ticks: int
    half_life_s: int
    floor_ppm: int
    initial_ppm: int
    outcomes: OutcomeCheck
    horizons: list[HorizonStats]
    points: list[Point]


# --- inputs -----------------------------------------------------------------------------------


def load_feed(path: Path) -> SpotPath:
    """The recorded feed through :meth:`SpotPath.from_chainlink_csv` (corrections handled there)."""
    if not path.is_file():
        raise CalibrationError(f"no such prices file: {path}")
    try:
        return SpotPath.from_chainlink_csv(path)
    except KeyError as exc:
        raise CalibrationError(f"{path}: missing column {exc} (need feed_ts_ms, full_accuracy_value, recv_ms)") from exc
    except (ValueError, TypeError, OSError, EOFError, csv.Error, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{path}: not a readable Chainlink prices CSV: {exc}") from exc


def load_arrivals(path: Path) -> list[tuple[int, int, int]]:
    """Every row of the recorded feed as (receive ms, feed ms, price 1e18), in the order they
    arrived (a row without ``recv_ms`` is taken as received at its own timestamp)."""
    rows: list[tuple[int, int, int]] = []
    try:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", newline="") as f:  # type: ignore[operator]
            for row in csv.DictReader(f):
                t = int(row["feed_ts_ms"])
                recv = int(row["recv_ms"]) if row["recv_ms"] else t
                rows.append((recv, t, int(row["full_accuracy_value"])))
    except KeyError as exc:
        raise CalibrationError(f"{path}: missing column {exc} (need feed_ts_ms, full_accuracy_value, recv_ms)") from exc
    except (ValueError, TypeError, OSError, EOFError, csv.Error, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{path}: not a readable Chainlink prices CSV: {exc}") from exc
    rows.sort()
    return rows


def load_markets(path: Path) -> list[Market]:
    """One market per JSON line: ``slug``, ``start_sec``, ``end_sec``, ``strike_value`` (1e18
    integer string or null), ``outcome_prices`` (["1","0"] = Up won)."""
    if not path.is_file():
        raise CalibrationError(f"no such markets file: {path}")
    markets: list[Market] = []
    try:
        with path.open("rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
        opened = gzip.open(path, "rb") if gz else path.open("rb")
        with opened as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    markets.append(_market(line, f"{path}:{line_no}"))
    except (OSError, EOFError) as exc:
        raise CalibrationError(f"{path}: not readable: {exc}") from exc
    if not markets:
        raise CalibrationError(f"{path}: no markets")
    return markets


def _market(line: bytes, where: str) -> Market:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise CalibrationError(f"{where}: not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise CalibrationError(f"{where}: a market must be a JSON object")
    try:
        slug, start, end, strike, outcome = (
            obj["slug"], obj["start_sec"], obj["end_sec"], obj["strike_value"], obj["outcome_prices"],
        )  # fmt: skip
    except KeyError as exc:
        raise CalibrationError(f"{where}: missing field {exc}") from exc
    if not isinstance(slug, str) or type(start) is not int or type(end) is not int or end <= start:
        raise CalibrationError(f"{where}: slug must be a string and start_sec < end_sec integers")
    if outcome == ["1", "0"]:
        up_won = True
    elif outcome == ["0", "1"]:
        up_won = False
    else:
        raise CalibrationError(f'{where}: outcome_prices must be ["1","0"] or ["0","1"], got {outcome!r}')
    if strike is not None:
        if not isinstance(strike, (str, int)) or not str(strike).isdigit():
            raise CalibrationError(f"{where}: strike_value must be a 1e18-scaled integer or null, got {strike!r}")
        strike = int(strike)
    return Market(slug, start, end, strike, up_won)


# --- the checks and the scores ----------------------------------------------------------------


def check_outcomes(feed: SpotPath, markets: list[Market]) -> OutcomeCheck:
    """The day's rule on the feed: Up wins iff the latest tick at or before the end is at or
    above the recorded strike. Every market with a strike whose end lies in the feed is
    recomputable and must come out as the venue recorded it; where the start lies in the feed
    too, the strike must be the feed's tick at the start."""
    with_strike = [m for m in markets if m.strike is not None]
    first_ms, last_ms = feed.times[0], feed.times[-1]
    recomputable = [m for m in with_strike if first_ms <= m.end_s * 1000 <= last_ms]
    mismatches = []
    for m in recomputable:
        assert m.strike is not None
        final = feed.exact_at(m.end_s)
        if first_ms <= m.start_s * 1000 and feed.exact_at(m.start_s) != m.strike:
            mismatches.append(f"{m.slug}: strike {m.strike} recorded, the feed has {feed.exact_at(m.start_s)}")
        elif final is None or (final >= m.strike) != m.up_won:
            mismatches.append(
                f"{m.slug}: recorded {'Up' if m.up_won else 'Down'}, the feed's rule gives "
                f"{'Up' if final is not None and final >= m.strike else 'Down'} ({final} at the end, strike {m.strike})"
            )
    reproduced = len(recomputable) - len(mismatches)
    return OutcomeCheck(len(markets), len(with_strike), len(recomputable), reproduced, mismatches)


def score(
    feed: SpotPath,
    markets: list[Market],
    horizons: tuple[int, ...] = HORIZONS_S,
    half_life_s: int = DEFAULT_HALF_LIFE_S,
    floor_ppm: int = DEFAULT_FLOOR_PPM,
    initial_ppm: int = DEFAULT_INITIAL_PPM,
    arrivals: list[tuple[int, int, int]] | None = None,
) -> tuple[list[Point], dict[int, int]]:
    """The model at ``end - h`` for every market with a strike and every horizon ``h`` whose
    moment lies inside the feed, fed what had arrived by that moment: ``arrivals`` (receive ms,
    feed ms, price 1e18) in arrival order, taken as the live bot takes ticks (a tick not newer
    than the newest kept is dropped, one of the same timestamp corrects the price, the
    volatility sees each timestamp once). Without ``arrivals`` every tick counts as received at
    its own timestamp. Returns the points and, per horizon, how many markets were skipped for
    lying outside the feed or before its first arrival."""
    from active_quoting import core

    if arrivals is None:
        arrivals = [(t, t, p) for t, p in zip(feed.times, feed.prices, strict=True)]

    to_spot = SCALE_18 // core.SPOT_SCALE  # 1e18 -> 1e-8: exact integer division
    first_ms, last_ms = feed.times[0], feed.times[-1]
    moments: list[tuple[int, int, Market]] = []
    skipped = dict.fromkeys(horizons, 0)
    for m in markets:
        if m.strike is None:
            continue
        for h in horizons:
            t = m.end_s - h
            if first_ms <= t * 1000 <= last_ms:
                moments.append((t, h, m))
            else:
                skipped[h] += 1
    moments.sort(key=lambda x: (x[0], x[1], x[2].slug))
    vol = core.VolEstimator(half_life_s * 1000, floor_ppm, initial_ppm)
    points: list[Point] = []
    i, n = 0, len(arrivals)
    last_ts, exact = -1, 0
    for t, h, m in moments:
        while i < n and arrivals[i][0] <= t * 1000:
            _, ts, price = arrivals[i]
            i += 1
            if ts > last_ts:
                vol.update(price // to_spot, ts)
                last_ts, exact = ts, price
            elif ts == last_ts:
                exact = price  # a correction of the newest second
        if last_ts < 0:
            skipped[h] += 1  # nothing received yet
            continue
        assert m.strike is not None
        spot, strike, sigma = exact // to_spot, m.strike // to_spot, int(vol.sigma_ppm)
        prob, band = core.fair_up(spot, strike, sigma, h * 1000, 0, 0, 0, BAND_HORIZON_MS)
        if not 0 <= prob <= PROB_SCALE:
            raise ValueError(f"fair_up returned {prob} for {m.slug} at {h} s (outside 0..{PROB_SCALE})")
        points.append(Point(m.slug, h, t, spot, strike, sigma, prob, band, int(exact >= m.strike), int(m.up_won)))
    return points, skipped


def _brier(probs: list[int], outcomes: list[int]) -> float:
    # exact: squared errors summed in (1e-4)^2 integers, divided once
    total = sum((p - PROB_SCALE * o) ** 2 for p, o in zip(probs, outcomes, strict=True))
    return float(Fraction(total, len(probs) * PROB_SCALE**2))


def _paired_diff(probs: list[int], base: list[int], outcomes: list[int]) -> tuple[float, float]:
    d = [
        Fraction((p - PROB_SCALE * o) ** 2 - (q - PROB_SCALE * o) ** 2, PROB_SCALE**2)
        for p, q, o in zip(probs, base, outcomes, strict=True)
    ]
    n = len(d)
    mean = sum(d, Fraction(0)) / n
    var = sum(((x - mean) ** 2 for x in d), Fraction(0)) / (n - 1) if n > 1 else Fraction(0)
    return float(mean), 1.96 * math.sqrt(var / n)


def _logloss(probs: list[int], outcomes: list[int]) -> float:
    loss = 0.0
    for p, o in zip(probs, outcomes, strict=True):
        q = min(max(p, 1), PROB_SCALE - 1) / PROB_SCALE
        loss -= math.log(q) if o else math.log(1.0 - q)
    return loss / len(probs)


def reliability(probs: list[int], outcomes: list[int]) -> list[Bucket]:
    """Buckets of 0.1 by predicted probability (1.0 falls in the last): count, mean predicted,
    realised frequency of Up."""
    width = PROB_SCALE // BUCKETS
    members: list[list[tuple[int, int]]] = [[] for _ in range(BUCKETS)]
    for p, o in zip(probs, outcomes, strict=True):
        members[min(p // width, BUCKETS - 1)].append((p, o))
    out = []
    for b, ms in enumerate(members):
        count = len(ms)
        mean = float(Fraction(sum(p for p, _ in ms), count * PROB_SCALE)) if count else None
        real = float(Fraction(sum(o for _, o in ms), count)) if count else None
        out.append(Bucket(b * width, (b + 1) * width, count, mean, real))
    return out


def summarise(points: list[Point], horizons: tuple[int, ...], skipped: dict[int, int]) -> list[HorizonStats]:
    stats = []
    for h in horizons:
        pts = [p for p in points if p.horizon_s == h]
        if not pts:
            stats.append(
                HorizonStats(h, 0, None, None, None, None, None, None, None, None, None, None, skipped.get(h, 0))
            )
            continue
        probs, outs = [p.prob for p in pts], [p.up_won for p in pts]
        half = [PROB_SCALE // 2] * len(pts)
        at_or_above = [PROB_SCALE * p.at_or_above for p in pts]
        n, pairs = len(pts), list(zip(probs, outs, strict=True))
        stats.append(
            HorizonStats(
                horizon_s=h,
                n=len(pts),
                brier_model=_brier(probs, outs),
                brier_naive=_brier(half, outs),
                brier_at_or_above=_brier(at_or_above, outs),
                logloss_model=_logloss(probs, outs),
                logloss_naive=_logloss(half, outs),
                mean_half_band=float(Fraction(sum(p.half_band for p in pts), len(pts) * PROB_SCALE)),
                model_minus_naive=_paired_diff(probs, half, outs),
                model_minus_at_or_above=_paired_diff(probs, at_or_above, outs),
                favourite_predicted=float(Fraction(sum(max(p, PROB_SCALE - p) for p in probs), n * PROB_SCALE)),
                favourite_realised=float(Fraction(sum(int((p >= PROB_SCALE // 2) == bool(o)) for p, o in pairs), n)),
                skipped=skipped.get(h, 0),
                reliability=reliability(probs, outs),
            )
        )
    return stats


class _Progress:
    """Stage lines on stderr, only once the run has taken longer than a few seconds."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._t0 = clock.monotonic()

    def __call__(self, what: str) -> None:
        elapsed = self._clock.monotonic() - self._t0
        if elapsed >= PROGRESS_AFTER_S:
            print(f"calibrate: {what} ({elapsed:.1f} s)", file=sys.stderr, flush=True)


def calibrate(
    prices: Path,
    markets_path: Path,
    horizons: tuple[int, ...] = HORIZONS_S,
    half_life_s: int = DEFAULT_HALF_LIFE_S,
    floor_ppm: int = DEFAULT_FLOOR_PPM,
    initial_ppm: int = DEFAULT_INITIAL_PPM,
    clock: Clock = SYSTEM,
) -> Calibration:
    """Load, check the outcomes (:class:`OutcomeMismatch` if any differs), score."""
    progress = _Progress(clock)
    feed = load_feed(prices)
    progress(f"feed loaded: {len(feed.times)} ticks")
    markets = load_markets(markets_path)
    outcomes = check_outcomes(feed, markets)
    if outcomes.mismatches:
        raise OutcomeMismatch(
            f"the feed's settlement rule disagrees with {len(outcomes.mismatches)} of {outcomes.recomputable} "
            "recomputable markets:\n  " + "\n  ".join(outcomes.mismatches)
        )
    points, skipped = score(feed, markets, horizons, half_life_s, floor_ppm, initial_ppm, load_arrivals(prices))
    progress(f"scored {len(points)} market-moments")
    return Calibration(
        str(prices), str(markets_path), len(feed.times), half_life_s, floor_ppm, initial_ppm,
        outcomes, summarise(points, horizons, skipped), points,
    )  # fmt: skip


# --- output -----------------------------------------------------------------------------------


def _f(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _pm(v: tuple[float, float] | None) -> str:
    return "-" if v is None else f"{v[0]:+.4f} +-{v[1]:.4f}"


def render_text(cal: Calibration) -> str:
    o = cal.outcomes
    lines = [
        f"fair value on the real day: {o.markets} markets, {o.with_strike} with a strike; "
        f"outcomes reproduced by the feed's rule: {o.reproduced} of {o.recomputable} recomputable",
        f"volatility: EWMA half-life {cal.half_life_s} s, floor {cal.floor_ppm / 1e6:.2f}, "
        f"initial {cal.initial_ppm / 1e6:.2f} (annualised); settlement: the point rule (twap 0); "
        "ticks as received (recv_ms)",
        "",
        f"{'before end':>10} {'n':>5} {'Brier model':>12} {'Brier 0.5':>10} {'Brier S>=K':>11} "
        f"{'logloss model':>14} {'logloss 0.5':>12} {'half-band':>10} {'model - 0.5':>17} {'model - S>=K':>17}",
    ]
    for s in cal.horizons:
        lines.append(
            f"{s.horizon_s:>9}s {s.n:>5} {_f(s.brier_model):>12} {_f(s.brier_naive):>10} {_f(s.brier_at_or_above):>11} "
            f"{_f(s.logloss_model):>14} {_f(s.logloss_naive):>12} {_f(s.mean_half_band):>10} "
            f"{_pm(s.model_minus_naive):>17} {_pm(s.model_minus_at_or_above):>17}"
        )
    lines.append(
        "(Brier differences: mean over markets +- 95% half-width, paired by market; negative = the model is better)"
    )
    lines.append(
        "the model's favourite (the side it gives >= 0.5), predicted / realised: "
        + "  ".join(
            f"{s.horizon_s}s {_f(s.favourite_predicted, 3)}/{_f(s.favourite_realised, 3)}" for s in cal.horizons
        )
    )
    lines += ["", "reliability: per predicted-probability bucket, count  mean predicted / realised frequency of Up"]
    lines.append(f"{'bucket':>9} " + " ".join(f"{f'{s.horizon_s}s':>16}" for s in cal.horizons))
    for b in range(BUCKETS):
        cells = []
        for s in cal.horizons:
            k = s.reliability[b] if s.reliability else None
            cells.append(f"{k.count:>4} {_f(k.mean_predicted, 2)}/{_f(k.realised, 2)}" if k and k.count else "-")
        lines.append(f"{b / 10:.1f}-{(b + 1) / 10:.1f}  " + " ".join(f"{c:>16}" for c in cells))
    return "\n".join(lines)


def to_jsonable(cal: Calibration) -> dict[str, Any]:
    return asdict(cal)


_COLOURS = {"model": "#1f6fb4", "at_or_above": "#e07b00", "naive": "#888888"}


def render_svg(cal: Calibration) -> str:
    """Reliability per horizon (predicted vs realised, the diagonal; dot area by count) in small
    multiples, and the three Brier scores by horizon in the last panel. Deterministic output."""
    cols, size, pad, top = 4, 200, 34, 26
    cell_w, cell_h = size + pad + 14, size + pad + top
    panels = len(cal.horizons) + 1
    rows = (panels + cols - 1) // cols
    width, height = cols * cell_w + 10, rows * cell_h + 40
    scored_n = max((s.n for s in cal.horizons), default=0)
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
        "font-family='sans-serif' font-size='11'>",
        f"<rect width='{width}' height='{height}' fill='white'/>",
        f"<text x='10' y='18' font-size='14'>Fair value of Up on the real BTC day: reliability "
        f"(predicted vs realised, {scored_n} markets) and Brier score by time before the end</text>",
    ]
    biggest = max((k.count for s in cal.horizons for k in s.reliability), default=1) or 1

    def frame(x0: float, y0: float, title: str) -> None:
        out.append(f"<text x='{x0:.1f}' y='{y0 - 8:.1f}' font-size='12'>{html.escape(title)}</text>")
        out.append(f"<rect x='{x0:.1f}' y='{y0:.1f}' width='{size}' height='{size}' fill='none' stroke='#444'/>")

    for idx, s in enumerate(cal.horizons):
        x0 = 10 + (idx % cols) * cell_w + pad
        y0 = 40 + (idx // cols) * cell_h + top

        def xy(px: float, py: float, x0: float = x0, y0: float = y0) -> tuple[float, float]:
            return x0 + px * size, y0 + size - py * size

        frame(x0, y0, f"{s.horizon_s} s left: Brier {_f(s.brier_model, 3)}")
        out.append(
            f"<line x1='{x0:.1f}' y1='{y0 + size:.1f}' x2='{x0 + size:.1f}' y2='{y0:.1f}' "
            "stroke='#aaa' stroke-dasharray='4 3'/>"
        )
        for v in (0.0, 0.5, 1.0):
            gx, gy = xy(v, v)
            out.append(f"<text x='{gx:.1f}' y='{y0 + size + 13:.1f}' text-anchor='middle'>{v:g}</text>")
            out.append(f"<text x='{x0 - 4:.1f}' y='{gy + 4:.1f}' text-anchor='end'>{v:g}</text>")
        out.append(
            f"<text x='{x0 + size / 2:.1f}' y='{y0 + size + 26:.1f}' text-anchor='middle' fill='#555'>predicted</text>"
        )
        out.append(
            f"<text transform='translate({x0 - 22:.1f},{y0 + size / 2:.1f}) rotate(-90)' text-anchor='middle' "
            "fill='#555'>realised</text>"
        )
        pts = [k for k in s.reliability if k.count and k.mean_predicted is not None and k.realised is not None]
        coords = [xy(k.mean_predicted, k.realised) for k in pts]  # type: ignore[arg-type]
        for k, (cx, cy) in zip(pts, coords, strict=True):
            r = 2.5 + 7.0 * math.sqrt(k.count / biggest)
            out.append(
                f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='{r:.1f}' fill='{_COLOURS['model']}' fill-opacity='0.55'>"
                f"<title>{k.count} predictions, mean {k.mean_predicted:.3f}, realised {k.realised:.3f}</title></circle>"
            )
    # the last panel: Brier by horizon for the model and both baselines
    idx = len(cal.horizons)
    x0 = 10 + (idx % cols) * cell_w + pad
    y0 = 40 + (idx // cols) * cell_h + top
    frame(x0, y0, "Brier score (lower is better)")
    scored = [s for s in cal.horizons if s.n]
    top_v = max([0.4] + [v for s in scored for v in (s.brier_model, s.brier_at_or_above) if v is not None])
    step = size / max(len(scored) - 1, 1)
    for v in (0.0, top_v / 2, top_v):
        gy = y0 + size - v / top_v * size
        out.append(f"<text x='{x0 - 4:.1f}' y='{gy + 4:.1f}' text-anchor='end'>{v:.2f}</text>")
    for j, s in enumerate(scored):
        out.append(f"<text x='{x0 + j * step:.1f}' y='{y0 + size + 13:.1f}' text-anchor='middle'>{s.horizon_s}</text>")
    out.append(
        f"<text x='{x0 + size / 2:.1f}' y='{y0 + size + 26:.1f}' text-anchor='middle' fill='#555'>"
        "seconds before the end</text>"
    )
    for key, attr, label in (
        ("model", "brier_model", "model"),
        ("at_or_above", "brier_at_or_above", "price >= strike"),
        ("naive", "brier_naive", "0.5"),
    ):
        vals = [(x0 + j * step, y0 + size - getattr(s, attr) / top_v * size) for j, s in enumerate(scored)]
        if vals:
            path = " ".join(f"{vx:.1f},{vy:.1f}" for vx, vy in vals)
            out.append(f"<polyline points='{path}' fill='none' stroke='{_COLOURS[key]}' stroke-width='2'/>")
        ly = y0 + 16 + 14 * list(_COLOURS).index(key)  # top right: above every line after the first horizon
        lx = x0 + size - 105
        out.append(
            f"<line x1='{lx}' y1='{ly - 4:.1f}' x2='{lx + 18}' y2='{ly - 4:.1f}' stroke='{_COLOURS[key]}' "
            "stroke-width='2'/>"
        )
        out.append(f"<text x='{lx + 22}' y='{ly:.1f}'>{html.escape(label)}</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render_html(cal: Calibration, svg: str) -> str:
    o = cal.outcomes
    head = "".join(
        f"<th>{c}</th>"
        for c in ("before end (s)", "n", "Brier model", "Brier 0.5", "Brier price&ge;strike", "log-loss model",
                  "log-loss 0.5", "mean half-band", "Brier model - 0.5", "Brier model - price&ge;strike",
                  "favourite: predicted / realised")
    )  # fmt: skip
    rows = "".join(
        f"<tr><td>{s.horizon_s}</td><td>{s.n}</td><td>{_f(s.brier_model)}</td><td>{_f(s.brier_naive)}</td>"
        f"<td>{_f(s.brier_at_or_above)}</td><td>{_f(s.logloss_model)}</td><td>{_f(s.logloss_naive)}</td>"
        f"<td>{_f(s.mean_half_band)}</td><td>{_pm(s.model_minus_naive)}</td><td>{_pm(s.model_minus_at_or_above)}</td>"
        f"<td>{_f(s.favourite_predicted, 3)} / {_f(s.favourite_realised, 3)}</td></tr>"
        for s in cal.horizons
    )
    rel_head = "".join(f"<th>{s.horizon_s} s</th>" for s in cal.horizons)
    rel_rows = ""
    for b in range(BUCKETS):
        cells = ""
        for s in cal.horizons:
            k = s.reliability[b] if s.reliability else None
            text = f"{k.count}: {_f(k.mean_predicted, 3)} / {_f(k.realised, 3)}" if k and k.count else "-"
            cells += f"<td>{text}</td>"
        rel_rows += f"<tr><th>{b / 10:.1f}-{(b + 1) / 10:.1f}</th>{cells}</tr>"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Fair-value calibration</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head><body>"
        "<h1>Fair value of Up on the real day</h1>"
        f"<p>{html.escape(cal.prices)}<br>{html.escape(cal.markets)}</p>"
        f"<p>{o.markets} markets, {o.with_strike} with a strike; the feed's rule reproduces {o.reproduced} of "
        f"{o.recomputable} recomputable outcomes. Volatility: EWMA half-life {cal.half_life_s} s, floor "
        f"{cal.floor_ppm / 1e6:.2f}, initial {cal.initial_ppm / 1e6:.2f} (annualised). Point settlement rule.</p>"
        f"<table><tr>{head}</tr>{rows}</table>"
        "<h2>Reliability</h2><p>count: mean predicted / realised frequency of Up, by predicted bucket</p>"
        f"<table><tr><th>bucket</th>{rel_head}</tr>{rel_rows}</table>"
        f"<h2>Chart</h2>{svg}</body></html>\n"
    )


# --- the command ------------------------------------------------------------------------------


def _parse_ppm(text: str) -> int:
    """An annualised volatility as a decimal ("0.10") to exact ppm."""
    try:
        ppm = Decimal(text) * 1_000_000
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal: {text!r}") from exc
    if ppm != ppm.to_integral_value() or ppm <= 0:
        raise ValueError(f"must be positive with at most 6 decimals: {text!r}")
    return int(ppm)


def command(args: argparse.Namespace, clock: Clock = SYSTEM) -> int:
    if args.vol_half_life_s <= 0:
        print("active-quoting calibrate: --vol-half-life-s must be positive", file=sys.stderr)
        return 2
    try:
        floor_ppm = _parse_ppm(args.vol_floor)
    except ValueError as exc:
        print(f"active-quoting calibrate: --vol-floor {exc}", file=sys.stderr)
        return 2
    try:
        cal = calibrate(
            Path(args.prices), Path(args.markets), HORIZONS_S, args.vol_half_life_s, floor_ppm,
            max(DEFAULT_INITIAL_PPM, floor_ppm), clock,
        )  # fmt: skip
    except CalibrationError as exc:
        print(f"active-quoting calibrate: {exc}", file=sys.stderr)
        return 2
    except OutcomeMismatch as exc:
        print(f"active-quoting calibrate: OUTCOME CHECK FAILED: {exc}", file=sys.stderr)
        return 1
    svg = render_svg(cal)
    if args.html:
        Path(args.html).write_text(render_html(cal, svg), encoding="utf-8")
        print(f"HTML report written to {args.html}", file=sys.stderr)
    if args.svg:
        Path(args.svg).write_text(svg, encoding="utf-8")
        print(f"chart written to {args.svg}", file=sys.stderr)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(to_jsonable(cal), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(render_text(cal))
    return 0


def add_subcommand(sub: Any) -> None:
    """The ``calibrate`` subcommand, for :func:`active_quoting.cli.build_parser`."""
    p = sub.add_parser(
        "calibrate",
        help="score the fair-value model on the real day's markets (Brier, log-loss, reliability) against 0.5 "
        "and price >= strike",
    )
    p.add_argument("--prices", default=str(DEFAULT_PRICES), help="the Chainlink feed CSV (gzip ok)")
    p.add_argument("--markets", default=str(DEFAULT_MARKETS), help="the markets JSONL (gzip ok)")
    p.add_argument("--html", help="also write an HTML report with the reliability chart to this file")
    p.add_argument("--svg", help="also write the chart alone (SVG) to this file")
    p.add_argument("--json", action="store_true", help="print JSON (every scored point included) instead of tables")
    p.add_argument(
        "--vol-half-life-s", type=int, default=DEFAULT_HALF_LIFE_S, help="half-life of the EWMA volatility estimate"
    )
    p.add_argument(
        "--vol-floor", default=f"{DEFAULT_FLOOR_PPM / 1e6:.2f}", help="annualised volatility floor, e.g. 0.10"
    )
    p.set_defaults(func=command)
