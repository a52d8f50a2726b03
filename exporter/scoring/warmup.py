"""Warm-up: which series of a query are not scored yet only because their detectors are still
collecting points, and how long until the last of them gets its first score.

A detector scores a series once it has enough history on the query's grid. How much is the
detector's own business (`min_points`, the points a `relearn` sets aside, a `refresh` anchored
on the grid, a rolling `span`), so it is not modelled here: the detector replays a probe
series starting where the warming one starts (`score_all`, which scores each column as the
newest) and says where its first score falls. The ensemble then needs `warmup` calibration
scores of a member, learnt one per poll (a new series replays its window's history at once),
so that part of the wait is counted in poll intervals, read from the ensemble's own counts.
With the defaults (5 m step, 1 m polls) a series with no history waits 3 h: 180 polls.

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
from exporter.detectors import Detector, Estimate, FloatArray, Stateful, StreamScorer, Window
from exporter.detectors.base import BoolArray, IntArray
from exporter.detectors.ensemble import EnsembleDetector
from exporter.detectors.seasonal import Seasonal
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


PROBES = 8
"""Distinct histories probed per detector and poll; series with others take the nearest."""


def first_scores(detector: Detector, timestamps: FloatArray, step: float) -> BoolArray | None:
    """Where a series that starts at `timestamps[0]` and has a point at every step would be
    scored, by the detector itself (its `score_all`, which scores each column as the newest);
    None for a detector that cannot replay (it keeps state) or a plug-in that cannot say.

    The detector's own answer, not a model of it: a `refresh` anchored on the time grid, the
    points a `relearn` sets aside, a `span` are all in it.
    """
    if not isinstance(detector, StreamScorer) or isinstance(detector, Stateful):
        return None
    values = 1.0 + 0.1 * np.sin(np.arange(len(timestamps), dtype=np.float64))
    probe = Window(values[None, :], timestamps, [()], step)
    with np.errstate(all="ignore"):
        score = detector.score_all(probe).score
    return np.asarray(np.isfinite(score[0]))


def _future(window: Window, start: int) -> FloatArray:
    """The grid from column `start` of `window` on, as long as the window is wide."""
    width = len(window.timestamps)
    return np.asarray(window.timestamps[start] + window.step * np.arange(width), dtype=np.float64)


def points_needed(detector: Detector, step: float) -> int | None:
    """Past points a series needs before `detector` scores it, from its settings, for the
    detectors that cannot replay (a fixed seasonality, ARIMA); None when it does not say."""
    if isinstance(detector, Seasonal):
        if detector.auto:  # a young series is scored raw; a pattern is looked for later
            return points_needed(detector.variants[0], step)
        inner = points_needed(detector.variants[1], step)
        # The profile of a fixed period needs one period before the first residual.
        return None if inner is None else inner + round(detector.periods[0] / step)
    min_points = getattr(getattr(detector, "params", None), "min_points", None)
    return min_points if isinstance(min_points, int) else None


def _points(detector: Detector, window: Window, rows: IntArray, have: FloatArray) -> FloatArray:
    """Steps until `detector` scores each series of `rows` (inf: cannot tell)."""
    out = np.full(len(rows), np.inf)
    width = len(window.timestamps)
    haves = np.unique(have)
    for h in haves[:PROBES]:
        mask = first_scores(detector, _future(window, width - 1 - int(h)), window.step)
        if mask is None:
            need = points_needed(detector, window.step)
            if need is not None:
                out[have == h] = max(0.0, need - h)
            continue
        found = np.flatnonzero(mask[int(h) :])
        out[have == h] = found[0] if found.size else np.inf
    if len(haves) > PROBES:  # the rest as the longest history probed, a bound from below
        last = haves[PROBES - 1]
        rest = have > last
        out[rest] = np.maximum(out[have == last][0] - (have[rest] - last), 0.0)
    return out


def _replayed(member: Detector, window: Window, have: FloatArray, tail: int) -> FloatArray:
    """The scores of `member` the ensemble's bootstrap will count for series with `have`
    past points: those of its last `tail` columns; the first PROBES histories are replayed
    by the member, the others counted from the nearest (the same need, another phase)."""
    out = np.zeros(len(have))
    width = len(window.timestamps)
    first = math.inf
    for n, h in enumerate(np.unique(have)):
        if n < PROBES:
            mask = first_scores(member, _future(window, width - 1 - int(h)), window.step)
            if mask is None:
                continue
            found = np.flatnonzero(mask)
            first = found[0] if found.size else math.inf
            out[have == h] = mask[max(0, int(h) - tail) : int(h)].sum()
        elif math.isfinite(first):
            out[have == h] = min(max(h - first, 0), tail)
    return out


def wait(detector: Detector, window: Window, rows: IntArray, have: FloatArray) -> Wait:
    """What `detector` still needs for the series `rows` of `window`, which have `have`
    non-missing past points each. Reads the detector's state: call it where it scores."""
    if isinstance(detector, Seasonal) and detector.auto:
        return wait(detector.variants[0], window, rows, have)
    if isinstance(detector, EnsembleDetector):
        return _ensemble_wait(detector, window, rows, have)
    return Wait(_points(detector, window, rows, have)[None, :], np.zeros((1, len(rows))))


def _ensemble_wait(
    detector: EnsembleDetector, window: Window, rows: IntArray, have: FloatArray
) -> Wait:
    """Per member: the steps until it scores, then the polls until its calibration has
    `warmup` scores (the ensemble's own per-series counts; a series still waiting for its
    bootstrap is counted as the replay will count it)."""
    p, width = detector.params, len(window.timestamps)
    # The calibration state, read where the ensemble keeps it (rows by series key): the
    # warm-up is a view of that state, not a second model of it.
    index, counts, pending = detector._rows, detector._count, detector._pending
    state = np.array([index.get(window.keys[i], -1) for i in rows], dtype=np.intp)
    known = state >= 0
    waiting = np.ones(len(rows), dtype=bool)
    waiting[known] = pending[state[known]]
    tail = min(p.bootstrap, width - 1)
    points, polls = [], []
    for k, member in enumerate(detector.members):
        steps = _points(member, window, rows, have)
        count = np.zeros(len(rows))
        count[known] = counts[state[known], k]
        if waiting.any():
            count[waiting] = _replayed(member, window, have[waiting], tail)
        points.append(steps)
        # A poll's newest column is calibrated after it is judged: a member that scores
        # already needs one poll more than the counts missing; one still waiting for points
        # counts its first score on the poll it gets there.
        polls.append(np.where(count < p.warmup, p.warmup - count + (steps == 0), 0.0))
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
    polls: int = 0
    """Successful polls published."""
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
        self.polls += 1
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
