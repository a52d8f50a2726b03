"""Warm-up: which series of a query are not scored yet only because their detectors are still
collecting points, and how long until the last of them gets its first score.

A detector scores a series once it has enough history: `min_points` non-missing past points
on the query's grid for the level detectors (a `span` more for `rolling`, a period more for a
fixed seasonality), and for the ensemble, after a member scores, `warmup` calibration scores
of that member. The ensemble learns one calibration score per poll (a new series replays its
window's history at once), so that part of the wait is counted in poll intervals, the rest
in steps. With the defaults a series without history (a new node_exporter) waits 10 steps of
5 minutes, then 100 polls of a minute: about 2 h 30 min.

After each successful poll the runner `observe`s the verdicts (on the scoring thread, where
the detectors' state may be read) and the poller `publish`es the figures: the gauges
`augur_series_warming_up` and `augur_series_warmup_remaining_seconds`, a log line when the
query's first poll finds series warming up and one when the last of them is scored, and the
landing page's status table. A series is warming up when its newest point is there and no
detector scored it; one that cannot be scored for another reason (a missing newest point)
is not.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from exporter.config.durations import format_duration
from exporter.config.queries import QueryConfig
from exporter.detectors import Detector, Estimate, FloatArray, Window
from exporter.detectors.ensemble import EnsembleDetector
from exporter.detectors.rolling import RollingParams
from exporter.detectors.seasonal import Seasonal
from exporter.detectors.zscore import ZScoreParams
from exporter.self_metrics import SelfMetrics

log = logging.getLogger("augur.poller")


@dataclass(frozen=True)
class Wait:
    """What a detector still needs per warming series: `points[o, i]` grid steps and then
    `polls[o, i]` polls for each of its options `o`; it scores once `needed` options are
    done (one for most; an ensemble that votes needs `votes` calibrated members)."""

    points: FloatArray
    polls: FloatArray
    needed: int = 1

    def seconds(self, step: float, interval: float) -> FloatArray:
        """Seconds until each series is scored (inf when the detector cannot tell)."""
        each: FloatArray = self.points * step + self.polls * interval
        order = np.sort(each, axis=0)
        return np.asarray(order[min(self.needed, len(order)) - 1], dtype=np.float64)


def points_needed(detector: Detector, step: float) -> int | None:
    """Non-missing past points a new series needs before `detector` can score it; None when
    the detector does not say (a plug-in without `min_points`)."""
    if isinstance(detector, Seasonal):
        if detector.auto:  # a young series is scored raw; a pattern is looked for later
            return points_needed(detector.variants[0], step)
        inner = points_needed(detector.variants[1], step)
        # The profile of a fixed period needs one period before the first residual.
        return None if inner is None else inner + round(detector.periods[0] / step)
    if isinstance(detector, EnsembleDetector):
        needs = [points_needed(m, step) for m in detector.members]
        known = [n for n in needs if n is not None]
        return min(known) + detector.params.warmup if known else None
    params = getattr(detector, "params", None)
    min_points = getattr(params, "min_points", None)
    if not isinstance(min_points, int):
        return None
    if isinstance(params, ZScoreParams):
        return min_points + params.differences
    if isinstance(params, RollingParams):
        return min_points + math.ceil(params.span / step)
    return min_points


def wait(detector: Detector, window: Window, rows: np.ndarray, have: FloatArray) -> Wait:
    """What `detector` still needs for the series `rows` of `window`, which have `have`
    non-missing past points each. Reads the detector's state: call it where it scores."""
    if isinstance(detector, Seasonal):
        if detector.auto:
            return wait(detector.variants[0], window, rows, have)
    elif isinstance(detector, EnsembleDetector):
        return _ensemble_wait(detector, window, rows, have)
    need = points_needed(detector, window.step)
    points = np.full(len(rows), np.inf) if need is None else np.maximum(need - have, 0.0)
    return Wait(points[None, :], np.zeros((1, len(rows))))


def _ensemble_wait(
    detector: EnsembleDetector, window: Window, rows: np.ndarray, have: FloatArray
) -> Wait:
    """Per member: the points until it scores, then the polls until its calibration has
    `warmup` scores (the ensemble's own per-series counts; a series still waiting for its
    bootstrap is counted as the replay will count it)."""
    p, step = detector.params, window.step
    # The calibration state, read where the ensemble keeps it (rows by series key): the
    # warm-up is a view of that state, not a second model of it.
    index, counts, pending = detector._rows, detector._count, detector._pending
    state = np.array([index.get(window.keys[i], -1) for i in rows], dtype=np.intp)
    known = state >= 0
    points, polls = [], []
    for k, member in enumerate(detector.members):
        need = points_needed(member, step)
        if need is None:
            points.append(np.full(len(rows), np.inf))
            polls.append(np.zeros(len(rows)))
            continue
        count = np.zeros(len(rows))
        count[known] = counts[state[known], k]
        waiting = np.zeros(len(rows), dtype=bool)
        waiting[known] = pending[state[known]]
        replay = np.clip(have - need, 0, min(p.bootstrap, window.values.shape[1] - 1))
        count = np.where(waiting | ~known, replay, count)
        points.append(np.maximum(need - have, 0.0))
        polls.append(np.maximum(p.warmup - count, 0.0))
    needed = p.votes if p.combine == "vote" else 1
    return Wait(np.array(points), np.array(polls), min(needed, len(detector.members)))


@dataclass
class Observation:
    """One poll's verdicts, as the scoring thread saw them."""

    seen: int
    warming: int
    waits: list[Wait] = field(default_factory=list)


def observe(
    detectors: Mapping[str, Detector], window: Window, estimates: Mapping[str, Estimate]
) -> Observation:
    """The series seen, those warming up and what each detector still needs for them."""
    seen = len(window.keys)
    if not seen:
        return Observation(0, 0)
    scored = np.zeros(seen, dtype=bool)
    for est in estimates.values():
        scored |= ~np.isnan(est.score)
    newest = np.asarray(window.values[:, -1], dtype=np.float64)
    rows = np.flatnonzero(~scored & np.isfinite(newest))
    if not rows.size:
        return Observation(seen, 0)
    past = np.asarray(window.values[rows, :-1], dtype=np.float64)
    have = np.isfinite(past).sum(axis=1).astype(np.float64)
    waits = [wait(d, window, rows, have) for d in detectors.values()]
    return Observation(seen, len(rows), waits)


@dataclass
class QueryStatus:
    """One query's warm-up as the landing page and the gauges show it."""

    query: QueryConfig
    seen: int | None = None
    """Series of the last successful poll; None before the first."""
    scored: int = 0
    warming: int = 0
    remaining: float = 0.0
    """Seconds until the last warming series gets its first score (NaN: cannot tell)."""
    last_poll: float | None = None
    announced: bool = False
    """Whether the start's warm-up was logged and not yet said to be over."""
    pending: Observation | None = None
    """The scoring thread's observation of the poll in flight."""

    def publish(self, metrics: SelfMetrics, scored: int, now: float, interval: float) -> None:
        """Record a successful poll: the gauges, the status, a log line on a change."""
        first = self.seen is None
        seen = self.pending or Observation(0, 0)
        self.pending = None
        self.seen, self.scored, self.warming, self.last_poll = seen.seen, scored, seen.warming, now
        self.remaining = 0.0
        if seen.warming:
            each = np.min([w.seconds(self.query.step, interval) for w in seen.waits], axis=0)
            self.remaining = float(each.max()) if np.isfinite(each).all() else math.nan
        name = self.query.name
        metrics.series_scored.labels(name).set(scored)
        metrics.last_poll.labels(name).set(now)
        metrics.series_warming_up.labels(name).set(self.warming)
        metrics.series_warmup_remaining.labels(name).set(self.remaining)
        if first and self.warming:
            self.announced = True
            log.info(
                "warming_up",
                extra={
                    "query": name,
                    "series": self.warming,
                    "scored": scored,
                    "first_score_in": self.first_score_in(),
                    "hint": "detectors score a series once they have its warm-up points; "
                    "see augur_series_warming_up",
                },
            )
        elif self.announced and not self.warming:
            self.announced = False
            log.info("warmed_up", extra={"query": name, "scored": scored})

    def first_score_in(self) -> str:
        """The remaining warm-up as a duration (whole minutes past an hour), or `unknown`."""
        if math.isnan(self.remaining):
            return "unknown"
        seconds = math.ceil(self.remaining)
        if seconds >= 3600:
            seconds = math.ceil(seconds / 60) * 60
        return format_duration(seconds)
