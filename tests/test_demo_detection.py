"""The demo's augur queries flag every injected anomaly and nothing else: offline, no process.

The workload's series are generated as `augur demo` backfills and serves them (six hours of
history at the scrape interval, then the live series) and scored with the demo's own augur
configuration, which runs augur's shipped default detector:

- over one rotation of injections and hours of normal time after it, with
  `exporter.backtest.command.score_series` (the daemon's detector and filters, causally, on
  the whole series at once);
- over the demo's first rotation (and the first injection of the next) poll by poll, as the
  daemon's poller scores each poll's look-back window (`QueryRunner`): with the calibration
  bootstrapped from the backfill at the first poll, and the incidents the AugurAnomaly alert
  fires on.

An injection is flagged when the disturbed series scores >= 1 at its first poll. Outside the
injections no series may score >= 1, except in the minute after an injection ends on the
series it disturbed: a series coming back down is a step as large as the one that went up.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from exporter.backtest.command import Setup, score_series
from exporter.backtest.inputs import InputSeries
from exporter.config.queries import QueryConfig
from exporter.config.root import Config
from exporter.demo.config import (
    FIRST_ANOMALY_AFTER,
    HISTORY_SECONDS,
    SCRAPE_INTERVAL,
    augur_config,
)
from exporter.demo.workload import ROTATION, Injection, Workload, selector
from exporter.detectors.base import FloatArray, Window
from exporter.scoring.incidents import detections
from exporter.scoring.runner import QueryRunner

STEP = SCRAPE_INTERVAL
START = 1704067200.0 + 9 * 3600 + 7
"""When the simulated demo starts: 09:00:07 UTC on 2024-01-01, where the daily pattern rises
fastest; the normal time after the rotation runs through its 15:00 peak."""
NORMAL_SECONDS = 7 * 3600.0
"""Normal time simulated after the rotation."""
TAIL = 60.0
"""Seconds after an injection ends in which its series may still score >= 1."""


@dataclass(frozen=True)
class Demo:
    """A simulated demo: every series on the scrape grid, its first poll, its injections."""

    times: FloatArray
    """From the first backfilled sample to the end, every STEP."""
    values: dict[str, FloatArray]
    """Per series (its selector), the values at `times`."""
    metric: dict[str, str]
    """Per series, its metric name (a query's expression)."""
    first_poll: int
    """Index in `times` of the first live poll."""
    injections: tuple[tuple[float, Injection], ...]
    """When each injection of the simulated stretch starts, and which it is."""

    def active(self, key: str) -> npt.NDArray[np.bool_]:
        """Where `key` is disturbed, or in the TAIL after it was."""
        out = np.zeros(len(self.times), dtype=bool)
        for at, entry in self.injections:
            if entry.selector == key:
                out |= (self.times >= at) & (self.times < at + entry.duration + TAIL)
        return out


def simulate(start: float, count: int, normal: float) -> Demo:
    """The series of a demo started at `start`, as demo/stack.py backfills and serves them: its
    workload makes its first `count` injections, then nothing for `normal` seconds more."""
    workload = Workload(epoch=Workload().bucket(start + FIRST_ANOMALY_AFTER))
    calm = Workload(epoch=workload.epoch, rotation=())
    stop = workload.epoch + count * workload.period
    end = workload.bucket(start) - STEP  # the last backfilled sample, as in demo/stack.py
    first = end - HISTORY_SECONDS
    times = first + STEP * np.arange(round((stop + normal - first) / STEP) + 1, dtype=np.float64)
    values: dict[str, list[float]] = {}
    metric: dict[str, str] = {}
    for t in times.tolist():
        for s in (workload if t < stop else calm).samples_at(t):
            if s.name in {p.metric for e in ROTATION for p in e.parts()}:
                key = selector(s.name, tuple(s.labels.items()))
                values.setdefault(key, []).append(s.value)
                metric[key] = s.name
    # A chain's parts are injections of their own, each from its delay on.
    injections = tuple(
        (workload.epoch + k * workload.period + part.delay, part)
        for k in range(count)
        for part in ROTATION[k % len(ROTATION)].parts()
    )
    return Demo(
        times,
        {k: np.array(v) for k, v in values.items()},
        metric,
        int(np.searchsorted(times, end + STEP)),
        injections,
    )


def demo_queries() -> list[QueryConfig]:
    """The queries of the augur.yml `augur demo` writes."""
    doc = augur_config("http://127.0.0.1:9", "127.0.0.1:9", Path("augur.db"), "http://127.0.0.1:7")
    return Config.model_validate(doc).queries


def query_of(demo: Demo, key: str) -> QueryConfig:
    return next(q for q in demo_queries() if q.expr == demo.metric[key])


def check(demo: Demo, scores: dict[str, FloatArray]) -> list[str]:
    """What is wrong with `scores` from the first poll on: each problem in words."""
    live = np.arange(len(demo.times)) >= demo.first_poll
    problems = []
    for at, entry in demo.injections:
        i = int(np.searchsorted(demo.times, at))
        if not scores[entry.selector][i] >= 1:
            got = np.round(scores[entry.selector][i : i + 4], 2).tolist()
            problems.append(f"{entry.kind} on {entry.selector} at {at:.0f}: not >= 1 ({got})")
    for key, score in scores.items():
        if np.isnan(score[live]).any():
            problems.append(f"{key}: no score at some polls")
        for j in np.flatnonzero(live & ~demo.active(key) & (score >= 1)):
            minutes = (demo.times[j] - demo.times[demo.first_poll]) / 60
            problems.append(f"{key} {minutes:.1f} min after start: {score[j]:.2f}, not injected")
    return problems


def test_the_demo_runs_the_shipped_default_detector() -> None:
    default = QueryConfig(name="default", expr="up")
    for q in demo_queries():
        assert q.detectors == default.detectors, q.name
        assert (q.min_deviation, q.min_relative_deviation) == (0, 0), q.name
        assert q.step == STEP


def test_every_injection_and_nothing_else_is_flagged_over_hours_of_normal_time() -> None:
    demo = simulate(START, count=len(ROTATION), normal=NORMAL_SECONDS)
    stamps = tuple(f"{t:.0f}" for t in demo.times)
    scores: dict[str, FloatArray] = {}
    for key, values in demo.values.items():
        q = query_of(demo, key)
        scores[key] = score_series(
            Setup(q.name, q, "ensemble"), InputSeries(key, stamps, demo.times, values)
        ).score[0]
    assert check(demo, scores) == []
    # Each injection is one incident, which opens at its first poll: one notification.
    live = slice(demo.first_poll, None)
    for key, score in scores.items():
        q = query_of(demo, key)
        fired, _ = detections(demo.times[live], score[live], q.recovery, q.escalation)
        opened = demo.times[live][fired == 1].tolist()
        assert opened == [at for at, e in demo.injections if e.selector == key], key


def polls(demo: Demo, q: QueryConfig) -> Iterator[tuple[int, Window]]:
    """Each poll's window of `q`'s series, as the poller aligns a range query: the grid from
    `lookback` before the poll to the poll, NaN where Prometheus has no sample."""
    keys = sorted(k for k in demo.values if demo.metric[k] == q.expr)
    width = round(q.lookback / STEP)
    padded = np.full((len(keys), width + len(demo.times)), np.nan)
    padded[:, width:] = [demo.values[k] for k in keys]
    times = demo.times[0] + STEP * np.arange(-width, len(demo.times))
    labels = [(("series", k),) for k in keys]
    for i in range(demo.first_poll, len(demo.times)):
        # Column i + width of `padded` is time i; the window ends there, width steps long.
        yield i, Window(padded[:, i : i + width + 1], times[i : i + width + 1], labels, STEP)


def test_the_daemon_flags_each_injection_of_the_first_rotation_as_one_incident() -> None:
    # The first rotation and the first injection of the next, which disturbs a series again
    # 24 minutes after its first disturbance: a new incident, so a new alert.
    demo = simulate(START, count=len(ROTATION) + 1, normal=0.0)
    scores = {key: np.full(len(demo.times), np.nan) for key in demo.values}
    incidents: set[tuple[str, float]] = set()
    for q in demo_queries():
        runner = QueryRunner.build(q)
        for i, window in polls(demo, q):
            estimates = runner.score(window)
            stages = runner.track(window, estimates)["ensemble"]
            for row, ((_, key),) in enumerate(window.keys):
                scores[key][i] = estimates["ensemble"].score[row]
                if stages.stage[row] >= 1:
                    incidents.add((key, float(stages.started[row])))
    assert check(demo, scores) == []
    # With the demo's `recovery`, each injection opens its own incident and nothing else does.
    assert incidents == {(e.selector, at) for at, e in demo.injections}
