"""A synthetic labelled corpus in NAB's layout, generated from a seed, for scoring augur on
data it was not tuned on.

augur's detector settings were chosen while looking at NAB's scores, so NAB alone no longer
says how well they generalise. This writes a corpus of ops-like metrics with known anomalies
in NAB's layout (DIR/data/<category>/<name>.csv and DIR/labels/combined_windows.json), so
every NAB tool of the project scores it as it scores NAB:

    .venv/bin/python benchmarks/synthetic_corpus.py --out /tmp/synthetic
    .venv/bin/augur backtest --nab /tmp/synthetic
    .venv/bin/python benchmarks/nab_cv.py --nab /tmp/synthetic \\
        --half-a spikes,dips,level_shifts,clean_seasonal,counts

Options: --seed (default 20261204), --days (14) and --step (5m): 4,032 rows per file by
default, about NAB's typical file. Everything is drawn from `numpy.random.default_rng(seed)`,
so a seed names a corpus; report the seed with the figures, and score a second seed before
believing a difference (the shipped default's standard NAB score moves by several points from
seed to seed). The figures are not comparable with NAB's own: these anomalies are cleaner than
NAB's hand labels. Use the corpus to compare configurations, and to catch a change that gains
on NAB but loses here.

Base signals are ops metrics (CPU %, latency, request rate, memory, disk writes, connections
and per-step counts): a level, a daily pattern of varying strength and shape (business hours,
a nightly batch window, quieter weekends), slow random drift, and AR(1) noise of varying level
and autocorrelation, Gaussian or mildly heavy-tailed (t, 10 df); rows are regular, with no
gaps. There are nine categories of six files each:

    spikes            1-4 rows far above (rarely below) normal, 6-25 noise sd
    dips              10 min - 2 h well below normal, 6-20 sd, a quarter of them outages to 0
    level_shifts      a lasting step of 5-15 sd, up or down
    variance_changes  2-16 h of 3-8x the noise (flapping), or one in five a stuck value
    trend_changes     a ramp of 8-25 sd over hours that then stays (a leak, a filling disk)
    seasonal_breaks   the daily pattern moves by 3-9 h, collapses for hours, or grows a new
                      daily peak where it was quiet
    clean_seasonal    no anomalies: daily patterns, weekends, drift
    clean_noise       no anomalies: no daily pattern, drift and noise only
    counts            Poisson counts with bursts of 5-15 sd as anomalies, plus two benign
                      bursty series without anomalies (a periodic batch, random retry storms)

Anomalous files have one to three anomalies (seasonal breaks one or two), magnitudes drawn
log-uniformly so some are subtle and some obvious, none within the first 15 % of rows (NAB's
probation). Labels follow NAB's labeller (nab/labeler.py, applyWindows): each anomaly's window
is int(10 % of the file's rows / number of anomalies) rows long, centred on the anomaly's
start, which is the first row where the signal departs from normal by 3 noise sd (its first row
for everything but ramps and seasonal breaks). Windows start after probation, end inside the
file and are apart by at least half a window; transient anomalies end inside their window.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from exporter.config.durations import parse_duration
from exporter.detectors.base import BoolArray, FloatArray

Rng = np.random.Generator
Profile = Callable[[FloatArray], FloatArray]
"""A daily pattern: hour of day (0..24, any real) -> 0 at its trough .. 1 at its peak."""

DEFAULT_SEED: Final = 20261204
EPOCH: Final = np.datetime64("2026-11-02T00:00:00", "s")
"""A Monday; each file starts at a random step within the four weeks after it."""
PROBATION: Final = 0.15
"""NAB's probation: the first 15 % of a file's rows are never scored, so hold no anomaly."""
WINDOW_SHARE: Final = 0.10
"""NAB's window size: all of a file's windows together cover 10 % of its rows."""
VISIBLE_SD: Final = 3.0
"""An anomaly starts where the signal first departs from normal by this many noise sd."""
DAY: Final = 86400.0
HALF_DAY: Final = 43200.0


@dataclass(frozen=True)
class Gauge:
    """A kind of gauge metric, with the ranges its per-file parameters are drawn from."""

    name: str
    level: tuple[float, float]
    """Normal level at the daily trough, in the metric's unit."""
    sd: tuple[float, float]
    """Noise sd: in the metric's unit, as a share of the level when `relative`, in log units
    when `log`."""
    season: tuple[float, float]
    """Daily amplitude (trough to peak), in noise sd."""
    phi: tuple[float, float]
    """AR(1) coefficient of the noise: real metrics wander, they are not white."""
    decimals: int
    df: float = math.inf
    """Degrees of freedom of the t-distributed noise (inf: Gaussian)."""
    relative: bool = False
    """`sd` is a share of the level (the metric's noise grows with it)."""
    log: bool = False
    """Multiplicative metric (latency): generated in log units, written as exp()."""
    ceil: float = math.inf
    max_amplitude: float = math.inf
    """Cap on the daily amplitude in generation units, whatever the category asks."""
    weekend: tuple[float, float] = (1.0, 1.0)
    """Factor on the daily amplitude on Saturdays and Sundays."""
    drift: float = 0.3
    """Sd of the benign random-walk drift per 12 h, in noise sd."""
    batch: bool = False
    """The daily pattern is a nightly batch window rather than business hours."""


@dataclass(frozen=True)
class Counter:
    """A kind of per-step count (Poisson), with the ranges its parameters are drawn from."""

    name: str
    rate: tuple[float, float]
    """Mean count per step at the daily trough."""
    ratio: tuple[float, float]
    """Peak-to-trough ratio of the daily pattern."""
    shape: tuple[float, float]
    """Gamma shape of the per-step rate: overdispersion, real counts are rarely Poisson."""
    weekend: tuple[float, float] = (1.0, 1.0)
    bursts: str = ""
    """Benign bursts that are part of normal: "periodic" (a batch job), "random" (retries)."""


Kind = Gauge | Counter

CPU: Final = Gauge(
    "cpu_percent", (15, 40), (0.8, 2.5), (0, 12), (0.2, 0.8), 2, ceil=100.0,
    max_amplitude=35.0, weekend=(0.75, 1.0),
)  # fmt: skip
LATENCY: Final = Gauge(
    "latency_ms", (20, 400), (0.03, 0.08), (0, 6), (0.0, 0.6), 1, df=10.0, log=True,
    max_amplitude=0.7,
)  # fmt: skip
REQUESTS: Final = Gauge(
    "request_rate", (50, 2000), (0.01, 0.04), (5, 30), (0.0, 0.5), 2, relative=True,
    weekend=(0.6, 0.9),
)  # fmt: skip
MEMORY: Final = Gauge(
    "memory_mb", (500, 8000), (0.002, 0.01), (0, 4), (0.7, 0.95), 1, relative=True, drift=0.6
)
DISK: Final = Gauge(
    "disk_write_mbps", (8, 80), (0.05, 0.12), (0, 10), (0.0, 0.4), 3, df=10.0, relative=True,
    batch=True,
)  # fmt: skip
CONNECTIONS: Final = Gauge("db_connections", (30, 200), (1.5, 5.0), (0, 10), (0.3, 0.8), 0)
GAUGES: Final = (CPU, LATENCY, REQUESTS, MEMORY, DISK, CONNECTIONS)

COUNTERS: Final = (
    Counter("requests_count", (20, 200), (2, 5), (200, 2000), weekend=(0.6, 0.9)),
    Counter("http_5xx_count", (0.3, 3), (1, 2.5), (5, 30)),
    Counter("orders_count", (2, 20), (2, 6), (20, 100), weekend=(0.7, 1.0)),
    Counter("queue_jobs_count", (5, 50), (1, 3), (20, 200)),
    Counter("batch_events_count", (1, 8), (1, 2), (20, 100), bursts="periodic"),
    Counter("retries_count", (0.5, 5), (1, 2), (10, 50), bursts="random"),
)


@dataclass
class Draft:
    """One file under construction, in generation units (log units for log gauges)."""

    kind: Kind
    hours: FloatArray
    """UTC hour of day of each row."""
    weekly: FloatArray
    """Factor on the daily amplitude of each row (below 1 on weekends)."""
    amplitude: float
    profile: Profile
    normal: FloatArray
    """What the metric would be without anomalies, before noise (the rate for counts)."""
    sd: FloatArray
    """Noise sd of each row: anomaly sizes are multiples of it (for counts, the Poisson and
    gamma spread at the normal rate)."""
    floor: float
    """Lowest value in generation units (-inf for log gauges)."""
    ceil: float
    step: float
    """Seconds between rows."""
    shape: float = math.inf
    """Counts only: gamma shape of the per-step rate (inf: plain Poisson)."""
    expected: FloatArray = field(init=False)
    """`normal` with the anomalies' changes."""
    extra: FloatArray = field(init=False)
    """Sd of white noise added by variance anomalies, in noise sd."""
    stuck: BoolArray = field(init=False)
    """Rows that repeat the previous value (a frozen exporter)."""

    def __post_init__(self) -> None:
        """Start with no anomaly."""
        self.expected = self.normal.copy()
        self.extra = np.zeros_like(self.normal)
        self.stuck = np.zeros(self.normal.shape, dtype=np.bool_)

    def seasonal(self, profile: Profile) -> FloatArray:
        """The daily term of every row under `profile` (the file's own or a broken one)."""
        return self.amplitude * self.weekly * profile(self.hours)

    def room(self, start: int, sign: float) -> float:
        """How many noise sd the signal can move from `start` on towards `sign` and stay
        inside its bounds (so lasting changes do not pin it to 0 or 100 %)."""
        bound = self.ceil if sign > 0 else self.floor
        if math.isinf(bound):
            return math.inf
        rest = self.expected[start:]
        gap = bound - rest.max() if sign > 0 else rest.min() - bound
        return float(max(gap, 0.0) / self.sd[start])

    def rows(self, seconds: float, cap: int) -> int:
        """A duration in rows of this file: at least one, at most `cap`."""
        return rows_for(seconds, self.step, cap)


Anomaly = Callable[[Rng, Draft, int, int], int]
"""Apply one anomaly changing at a row, within a half window; returns its start row."""


@dataclass(frozen=True)
class Category:
    """A folder of the corpus: its files' kinds and the anomaly they carry (None: clean)."""

    name: str
    kinds: tuple[Kind, ...]
    anomaly: Anomaly | None
    counts: tuple[int, ...] = (1, 2, 3)
    """How many anomalies an anomalous file may have, drawn uniformly."""
    lead: Callable[[int, int], int] = lambda half, day: 0
    """Most rows between an anomaly's change and its visible start, from (half window, day)."""
    season: tuple[float, float] | None = None
    """Daily amplitude in noise sd, overriding the kinds' own ranges."""


def loguniform(rng: Rng, low: float, high: float) -> float:
    """A magnitude between `low` and `high`, as often subtle as obvious."""
    return float(np.exp(rng.uniform(math.log(low), math.log(high))))


def rows_for(seconds: float, step: float, cap: int) -> int:
    """A duration in rows: at least one, at most `cap`."""
    return max(1, min(cap, round(seconds / step)))


def draw_profile(rng: Rng, batch: bool) -> Profile:
    """A daily pattern: business hours from a few harmonics, or a nightly batch window."""
    peak = rng.uniform(9.0, 17.0)
    first = rng.uniform(0.2, 0.6) if batch else 1.0
    terms = [(first, peak)] + [(rng.uniform(0.0, 0.5 / j), rng.uniform(0.0, 24.0)) for j in (2, 3)]
    start, length = rng.uniform(0.0, 5.0), rng.uniform(1.0, 3.0)

    def raw(hours: FloatArray) -> FloatArray:
        """The pattern before scaling."""
        out = np.zeros_like(hours)
        for j, (weight, phase) in enumerate(terms, start=1):
            out += weight * np.cos(2 * np.pi * j * (hours - phase) / 24.0)
        if batch:
            out += box(hours, start, length)
        return out

    grid = raw(np.arange(0.0, 24.0, 1 / 60))
    low, span = float(grid.min()), float(np.ptp(grid))
    return lambda hours: (raw(hours) - low) / span


def box(hours: FloatArray, start: float, length: float) -> FloatArray:
    """1 from `start` for `length` hours each day, 0 otherwise, with 10-minute soft edges."""
    into = np.mod(hours - start, 24.0)
    edge = 1 / 6
    rise = 1 / (1 + np.exp(-into / (0.25 * edge)))
    fall = 1 / (1 + np.exp(-(length - into) / (0.25 * edge)))
    # Just before `start`, `into` wraps to ~24: the rise is 1 there, the fall kills it.
    return np.asarray(rise * fall, dtype=np.float64)


def ar_noise(rng: Rng, n: int, phi: float, df: float) -> FloatArray:
    """AR(1) noise of unit marginal sd, with Gaussian or t innovations."""
    if math.isinf(df):
        shocks = rng.standard_normal(n)
    else:
        shocks = rng.standard_t(df, n) * math.sqrt((df - 2) / df)
    out = np.empty(n)
    out[0] = shocks[0]
    gain = math.sqrt(1 - phi * phi)
    for i in range(1, n):
        out[i] = phi * out[i - 1] + gain * shocks[i]
    return out


def random_drift(rng: Rng, seconds: FloatArray, per_half_day: float) -> FloatArray:
    """A slow random walk through a knot every 12 h, interpolated: benign wander."""
    knots = int(seconds[-1] // HALF_DAY) + 2
    walk = np.concatenate([[0.0], np.cumsum(rng.normal(0.0, per_half_day, knots - 1))])
    return np.asarray(np.interp(seconds / HALF_DAY, np.arange(knots), walk), dtype=np.float64)


def draft_gauge(
    rng: Rng, kind: Gauge, seconds: FloatArray, hours: FloatArray, weekend: BoolArray,
    step: float, season: tuple[float, float] | None,
) -> Draft:  # fmt: skip
    """A gauge's normal signal: level, daily pattern, weekends and drift."""
    level = rng.uniform(*kind.level)
    sd = rng.uniform(*kind.sd) * (level if kind.relative else 1.0)
    if kind.log:
        level = math.log(level)
    lo, hi = season or kind.season
    amplitude = min(rng.uniform(lo, hi) * sd, kind.max_amplitude)
    profile = draw_profile(rng, kind.batch)
    weekly = np.where(weekend, rng.uniform(*kind.weekend), 1.0)
    drift = random_drift(rng, seconds, kind.drift) * sd
    n = len(seconds)
    normal = level + drift + amplitude * weekly * profile(hours)
    return Draft(
        kind, hours, weekly, amplitude, profile, normal, np.full(n, sd),
        -math.inf if kind.log else 0.0, math.log(kind.ceil) if kind.log else kind.ceil, step,
    )  # fmt: skip


def draft_counter(
    rng: Rng, kind: Counter, seconds: FloatArray, hours: FloatArray, weekend: BoolArray,
    step: float,
) -> Draft:  # fmt: skip
    """A count's normal rate: level, daily pattern, weekends, drift and benign bursts."""
    rate = rng.uniform(*kind.rate)
    amplitude = rate * (rng.uniform(*kind.ratio) - 1)
    profile = draw_profile(rng, False)
    weekly = np.where(weekend, rng.uniform(*kind.weekend), 1.0)
    # Drift is multiplicative for counts: a busier week scales the whole day.
    drift = np.exp(0.05 * random_drift(rng, seconds, 1.0))
    normal = (rate + amplitude * weekly * profile(hours)) * drift
    if kind.bursts == "periodic":
        # A batch job every 1-6 h at a fixed minute: regular, so a model of normal can learn it.
        period = float(rng.choice([3600.0, 7200.0, 14400.0, 21600.0]))
        length = rows_for(rng.uniform(300, 600), step, 2) * step
        phase = rng.uniform(0, period)
        normal *= np.where(np.mod(seconds - phase, period) < length, rng.uniform(4, 10), 1.0)
    elif kind.bursts == "random":
        # Retry storms: a few rows of 3-6x every 2-6 h on average, from the very first day.
        starts = np.flatnonzero(rng.random(len(seconds)) < step / (3600 * rng.uniform(2, 6)))
        for s in starts:
            normal[s : s + int(rng.integers(1, 4))] *= rng.uniform(3, 6)
    shape = rng.uniform(*kind.shape)
    # Poisson variance plus the gamma mixing's: anomaly sizes must beat both.
    sd = np.sqrt(np.maximum(normal + normal * normal / shape, 1.0))
    return Draft(
        kind, hours, weekly, amplitude, profile, normal, sd, 0.0, math.inf, step, shape
    )  # fmt: skip


def onset(d: Draft, before: FloatArray, change: int, lead: int) -> int:
    """The first row from `change` (and at most `lead` later) where the signal departs from
    what it was before the anomaly by VISIBLE_SD noise sd; `change` when none does."""
    end = min(change + lead + 1, len(before))
    off = np.abs(d.expected[change:end] - before[change:end]) >= VISIBLE_SD * d.sd[change:end]
    hits = np.flatnonzero(off)
    return change + int(hits[0]) if hits.size else change


def direction(rng: Rng, d: Draft, start: int, size: float, up: float = 0.5) -> float:
    """+1 or -1 (up with probability `up`), turned round when that side has no room."""
    sign = 1.0 if rng.random() < up else -1.0
    if d.room(start, sign) < 1.25 * size and d.room(start, -sign) > d.room(start, sign):
        sign = -sign
    return sign


def spike(rng: Rng, d: Draft, at: int, half: int) -> int:
    """1-4 rows far off normal, nearly always up (latency, CPU, error bursts)."""
    rows = int(rng.integers(1, 5))
    size = loguniform(rng, 6.0, 25.0)
    sign = 1.0 if rng.random() < 0.85 else -1.0
    d.expected[at : at + rows] += sign * size * d.sd[at : at + rows]
    return at


def dip(rng: Rng, d: Draft, at: int, half: int) -> int:
    """10 minutes to 2 hours well below normal; a quarter of them outages that read 0."""
    rows = d.rows(rng.uniform(600, 7200), half)
    end = at + rows
    if math.isinf(d.floor) or rng.random() >= 0.25:  # log gauges (latency) cannot read 0
        d.expected[at:end] -= loguniform(rng, 6.0, 20.0) * d.sd[at:end]
    else:
        # An outage: far enough below zero that noise cannot lift it, then clipped to 0.
        d.expected[at:end] = d.floor - 10 * d.sd[at:end]
    return at


def level_shift(rng: Rng, d: Draft, at: int, half: int) -> int:
    """A lasting step, up or down (a deploy, a lost replica, a config change)."""
    size = loguniform(rng, 5.0, 15.0)
    sign = direction(rng, d, at, size)
    # Never so far that the metric pins at 0 or 100 % for the rest of the file.
    size = max(min(size, 0.8 * d.room(at, sign)), 5.0)
    d.expected[at:] += sign * size * d.sd[at]
    return at


def variance_change(rng: Rng, d: Draft, at: int, half: int) -> int:
    """Hours of much more noise (flapping), or one in five a value that stops changing."""
    # At least half an hour (at 5 min steps): a few noisy rows are a spike, not a change.
    rows = max(d.rows(rng.uniform(2 * 3600, 16 * 3600), half), min(half, 6))
    if rng.random() < 0.2:
        d.stuck[at : at + rows] = True
    else:
        factor = loguniform(rng, 3.0, 8.0)
        d.extra[at : at + rows] = math.sqrt(factor * factor - 1)
    return at


def trend_change(rng: Rng, d: Draft, at: int, half: int) -> int:
    """A ramp over hours that then stays (a memory leak, a filling disk, a growing queue)."""
    rows = int(rng.integers(max(2, int(0.3 * half)), max(3, half) + 1))
    size = loguniform(rng, 8.0, 25.0)
    sign = direction(rng, d, at, size)
    size = max(min(size, 0.8 * d.room(at, sign)), 6.0)
    before = d.expected.copy()
    ramp = np.minimum(np.arange(1, len(d.expected) - at + 1) / rows, 1.0)
    d.expected[at:] += sign * size * d.sd[at] * ramp
    return onset(d, before, at, half // 2)


def seasonal_break(rng: Rng, d: Draft, at: int, half: int) -> int:
    """The daily pattern moves by 3-9 h, collapses for hours, or grows a new daily peak."""
    before = d.expected.copy()
    day = d.rows(DAY, len(before))
    old = d.seasonal(d.profile)
    choice = rng.integers(3)
    if choice == 0:
        # A cron job or a client's timezone moved: the whole day shifts, for good.
        shift = rng.uniform(3.0, 9.0) * (1 if rng.random() < 0.5 else -1)
        new = d.seasonal(lambda hours: d.profile(hours - shift))
        d.expected[at:] += new[at:] - old[at:]
        return onset(d, before, at, day)
    if choice == 1:
        # The day's activity collapses (the batch did not run, users could not log in).
        d.expected[at:] -= rng.uniform(0.7, 1.0) * old[at:]
        start = onset(d, before, at, day)
        # It lasts 0.5-1 half window from where it shows, so it is over inside the window.
        end = start + int(rng.integers(max(1, half // 2), half + 1))
        d.expected[end:] = before[end:]
        return start
    # A new daily peak where the day used to be quiet (a new job, a new client's region).
    grid = np.arange(0.0, 24.0, 0.25)
    trough = float(grid[np.argmin(d.profile(grid))])
    length = rng.uniform(1.0, 3.0)
    begin = trough - length / 2 + rng.uniform(-1.0, 1.0)
    height = rng.uniform(0.6, 1.0) * d.amplitude
    d.expected[at:] += height * d.weekly[at:] * box(d.hours[at:], begin, length)
    return onset(d, before, at, day)


def burst(rng: Rng, d: Draft, at: int, half: int) -> int:
    """5-30 minutes of far more events than the rate allows (an error storm, a retry loop)."""
    rows = d.rows(rng.uniform(300, 1800), half)
    d.expected[at : at + rows] += loguniform(rng, 5.0, 15.0) * d.sd[at]
    return at


CATEGORIES: Final = (
    Category("spikes", GAUGES, spike),
    Category("dips", GAUGES, dip),
    Category("level_shifts", GAUGES, level_shift),
    Category("variance_changes", GAUGES, variance_change),
    Category("trend_changes", GAUGES, trend_change, lead=lambda half, day: half // 2),
    Category(
        "seasonal_breaks", GAUGES, seasonal_break, (1, 2), lambda half, day: day, (10.0, 20.0)
    ),
    Category("clean_seasonal", GAUGES, None, season=(4.0, 20.0)),
    Category("clean_noise", GAUGES, None, season=(0.0, 0.0)),
    Category("counts", COUNTERS, burst),
)


def place(
    rng: Rng, n: int, wanted: int, lead: Callable[[int, int], int], day: int
) -> tuple[list[int], int]:
    """Rows where up to `wanted` anomalies change, and the half window, so that every window
    (centred up to `lead` rows later) starts after probation, ends in the file and is half a
    window clear of the next. Fewer anomalies when the file is too short for them."""
    probation = math.floor(PROBATION * n)
    for k in range(wanted, 0, -1):
        half = int(WINDOW_SHARE * n / k) // 2
        late = lead(half, day)
        low, high = probation + half, n - 1 - half - late
        pitch = late + 3 * half + 1
        free = high - low - (k - 1) * pitch
        if half >= 1 and free >= 0:
            offsets = np.sort(rng.integers(0, free + 1, size=k))
            return [low + int(o) + i * pitch for i, o in enumerate(offsets)], half
    raise ValueError(f"{n} rows per file are too few to place an anomaly; give more --days")


@dataclass(frozen=True)
class File:
    """One generated file: its values as written and its anomalies' start rows."""

    name: str
    values: list[str]
    starts: list[int]
    half: int


def generate(
    rng: Rng, category: Category, kind: Kind, seconds: FloatArray, step: float, clock: FloatArray
) -> File:
    """One file of `category`: the normal signal, its anomalies, noise, formatted values."""
    n = len(seconds)
    hours = np.mod(clock, DAY) / 3600
    # 1970-01-01 was a Thursday: day 3 of a Monday-based week.
    weekend = np.mod(np.floor(clock / DAY) + 3, 7) >= 5
    if isinstance(kind, Counter):
        d = draft_counter(rng, kind, seconds, hours, weekend, step)
    else:
        d = draft_gauge(rng, kind, seconds, hours, weekend, step, category.season)
    starts: list[int] = []
    half = 0
    # Benign bursty counters are the counts category's clean files.
    if category.anomaly is not None and not (isinstance(kind, Counter) and kind.bursts):
        wanted = int(rng.choice(category.counts))
        changes, half = place(rng, n, wanted, category.lead, rows_for(DAY, step, n))
        starts = [category.anomaly(rng, d, at, half) for at in changes]
    if isinstance(kind, Counter):
        gamma = rng.gamma(d.shape, 1 / d.shape, n)
        counts = rng.poisson(np.maximum(d.expected, 0.0) * gamma)
        return File(f"{category.name}/{kind.name}.csv", [str(c) for c in counts], starts, half)
    noise = ar_noise(rng, n, rng.uniform(*kind.phi), kind.df)
    noise += d.extra * rng.standard_normal(n)
    latent = d.expected + d.sd * noise
    values = np.exp(latent) if kind.log else latent
    for i in np.flatnonzero(d.stuck):
        values[i] = values[i - 1]
    values = np.clip(values, 0.0, kind.ceil) + 0.0  # + 0.0: no "-0.00" in the file
    text = [f"{v:.{kind.decimals}f}" for v in values]
    return File(f"{category.name}/{kind.name}.csv", text, starts, half)


def stamp(times: npt.NDArray[np.datetime64]) -> list[str]:
    """NAB's timestamps: `YYYY-MM-DD HH:MM:SS`, UTC, naive."""
    return [s.replace("T", " ") for s in np.datetime_as_string(times, unit="s")]


def build(seed: int, days: int, step: float) -> dict[str, tuple[list[str], File]]:
    """The whole corpus: relative path -> (timestamps, file)."""
    n = int(days * DAY // step)
    seconds = np.arange(n, dtype=np.float64) * step
    jobs = [(c, k) for c in CATEGORIES for k in c.kinds]
    # One child generator per file: a file's data does not depend on how much the files
    # before it drew, so adding a kind or a category leaves the others as they were.
    children = np.random.default_rng(seed).spawn(len(jobs))
    out: dict[str, tuple[list[str], File]] = {}
    for rng, (category, kind) in zip(children, jobs, strict=True):
        offset = int(rng.integers(0, int(28 * DAY // step))) * int(step)
        first = EPOCH + np.timedelta64(offset, "s")
        times = first + seconds.astype("timedelta64[s]")
        clock = (times - np.datetime64("1970-01-01T00:00:00", "s")).astype(np.float64)
        file = generate(rng, category, kind, seconds, step, clock)
        out[file.name] = (stamp(times), file)
    return out


def windows(stamps: list[str], file: File) -> list[list[str]]:
    """NAB's windows of one file: `half` rows either side of each anomaly's start."""
    return [
        [f"{stamps[s - file.half]}.000000", f"{stamps[s + file.half]}.000000"] for s in file.starts
    ]


def write(out: Path, corpus: dict[str, tuple[list[str], File]]) -> int:
    """Write DIR/data and DIR/labels; returns the number of windows."""
    data = out / "data"
    stale = sorted(
        p.relative_to(data).as_posix() for p in data.rglob("*.csv") if p.is_file()
    ) if data.is_dir() else []  # fmt: skip
    foreign = [p for p in stale if p not in corpus]
    if foreign:
        # Another corpus' files would be scored with this one's labels: refuse to mix them.
        raise ValueError(f"{data} holds {len(foreign)} other .csv file(s), e.g. {foreign[0]}")
    labels: dict[str, list[list[str]]] = {}
    for name, (stamps, file) in corpus.items():
        path = data / name
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = "".join(f"{t},{v}\n" for t, v in zip(stamps, file.values, strict=True))
        path.write_text("timestamp,value\n" + rows, encoding="utf-8")
        labels[name] = windows(stamps, file)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    text = json.dumps(labels, indent=4, sort_keys=True) + "\n"
    (out / "labels" / "combined_windows.json").write_text(text, encoding="utf-8")
    return sum(len(w) for w in labels.values())


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the corpus into --out; prints one line saying what was written."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="DIR for data/ and labels/")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--days", type=int, default=14, help="length of every file")
    parser.add_argument("--step", default="5m", help="row spacing, e.g. 5m, 1m, 300")
    args = parser.parse_args(argv)
    try:
        step = parse_duration(args.step)
        if step < 1 or step != int(step) or step > DAY:
            raise ValueError(f"--step must be whole seconds from 1s to 1d, got {args.step!r}")
        if args.days < 1:
            raise ValueError(f"--days must be at least 1, got {args.days}")
        corpus = build(args.seed, args.days, step)
        total = write(args.out, corpus)
    except (ValueError, OSError) as exc:  # bad options, too few rows, an unwritable --out
        print(f"synthetic_corpus: {exc}", file=sys.stderr)
        return 2
    rows = sum(len(f.values) for _, f in corpus.values())
    labelled = sum(1 for _, f in corpus.values() if f.starts)
    print(
        f"synthetic_corpus: seed {args.seed}: {len(corpus)} files in {len(CATEGORIES)} "
        f"categories, {rows:,} rows ({rows // len(corpus):,} per file, step {step:g} s), "
        f"{total} anomaly windows in {labelled} files -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
