"""Ensemble: several detectors, each calibrated against its own recent scores, combined.
Over 400 lines because the members' settings (checked against the registry), their
calibration and the per-series state it snapshots are one detector, and a detector keeps its
settings beside it; the calibration could go to a module of its own.

A member's raw score says how far the point is from that member's band. Some members are
noisy on some series (bursty counts make a z-score fire every hour), so each member's score
is calibrated against the exponentially weighted mean and standard deviation of its own past
scores on that series (Numenta's "anomaly likelihood" idea): it counts only when it is both
beyond the member's band and `threshold` standard deviations above what that member usually
says about that series. A member that is always noisy therefore cannot fire on its own. The
calibrated scores are combined (`max`, `mean`, or `vote`: the `votes`-th largest).

The score is always the verdict on the newest point: nothing earlier on the series lowers it.
Turning a run of anomalous points into one notification is the incidents' job
(`exporter.scoring.incidents`), not the score's.

The calibration is per-series state (keyed by the series' labels), snapshotted by
`dump_state`. A series seen for the first time is bootstrapped by replaying the members over
the last `bootstrap` points of its window, when all members are stateless stream scorers;
otherwise it warms up over `warmup` polls with NaN scores.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    model_validator,
)

from exporter.config.base import located
from exporter.config.durations import Span
from exporter.detectors.base import (
    DETECTORS,
    Detector,
    DetectorParams,
    Estimate,
    FloatArray,
    Forecaster,
    IntArray,
    SeriesKey,
    Stateful,
    StreamScorer,
    Window,
    build,
    register,
    row_blocks,
    score_all,
)

DEFAULT_MEMORY = 7 * 86400.0
"""Seconds the calibration remembers: a week (2,016 points at a 5-minute step)."""

SD_FLOOR = 1e-3
"""Smallest standard deviation of a member's scores, so a member that always said 0 stays finite."""

SCORING_THREADS = 2
"""Threads that score blocks of series at once in `score` (issue 14's target is a poll of
10,000 series on 2 cores); a query of one block stays on the caller's thread."""

BOOTSTRAP_POINTS = 1_000_000
"""Window points the members score per `score` call to bootstrap new series; the rest wait
a poll."""

BOOTSTRAP_ROWS = 128
"""Series replayed together within that budget (the memory of a bootstrap call)."""

FORGET_SECONDS = 86400.0
"""A series absent for this long loses its calibration (it is bootstrapped again on return)."""

DEFAULT_MEMBERS: tuple[dict[str, Any], ...] = (
    {"detector": "quantile", "threshold": 4, "window": 2000, "refresh": 16},
    {"detector": "zscore", "robust": True, "window": 2000, "refresh": 16, "differences": 1},
    {"detector": "rolling", "stat": "mean", "span": "2h", "side": "up", "threshold": 5},
)
"""The level (median, each side's scale from its 1%/99% tail, so a skewed or bursty series is
judged by its own tails) and the step-to-step change (median, MAD), both over the last 2,000
points; and the mean of the last 2 hours judged the same way against its own past, upward
only: spikes of the usual height coming more often, or bursts a little higher for an hour or
two, which no single point shows (a falling mean is a quiet spell, routine on bursty counts);
its band is wider (5), as the overlapping means of 24 points give fewer independent values
in the tail that sets its scale. docs/benchmarks.md (NAB) compares this set with a robust
z-score of the level alone."""


class Member(BaseModel):
    """One member: a detector name and its validated settings (`{detector: zscore, ...}`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    detector: str
    params: SerializeAsAny[DetectorParams]

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"detector": data}
        if not isinstance(data, Mapping) or "params" in data:
            return data
        name = str(data.get("detector", ""))
        if name == "ensemble":
            raise ValueError("an ensemble cannot be a member of an ensemble")
        spec = DETECTORS.get(name)
        if spec is None:
            raise ValueError(f'unknown detector "{name}" (known: {", ".join(sorted(DETECTORS))})')
        settings = {k: v for k, v in data.items() if k != "detector"}
        try:
            params = spec.params.model_validate(settings)
        except ValidationError as exc:
            raise ValueError("; ".join(located(exc.errors(), prefix=name))) from None
        return {"detector": name, "params": params}


class EnsembleParams(DetectorParams):
    """Settings of the `ensemble` detector, the shipped default."""

    members: tuple[Member, ...] = Field(
        default_factory=lambda: tuple(Member.model_validate(m) for m in DEFAULT_MEMBERS),
        min_length=1,
    )
    combine: Literal["max", "mean", "vote"] = "max"
    """How calibrated member scores become one: the largest, their mean, or a vote."""
    votes: int = Field(2, ge=1)
    """For `vote`: how many members must be beyond their calibrated level."""
    threshold: float = Field(5.5, gt=0)
    """Standard deviations above a member's usual score at which it counts (score 1)."""
    memory: Span = Field(DEFAULT_MEMORY, gt=0)
    """How long the calibration remembers (an exponential weighting of step / memory per
    point, at least 10 points): in time, so an excursion of an hour weighs the same at a 30 s
    step as at a 5 m one."""
    warmup: int = Field(100, ge=2)
    """Member scores a series needs before the ensemble scores it (NaN until then)."""
    bootstrap: int = Field(400, ge=0)
    """Points of a new series' window replayed to start its calibration (0: warm up live)."""

    @model_validator(mode="before")
    @classmethod
    def _no_hold(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "hold" in data:
            raise ValueError(
                "hold was removed: the score is never held down any more; one notification "
                "per incident is the query's `recovery` setting"
            )
        return data

    @model_validator(mode="after")
    def _enough_members(self) -> EnsembleParams:
        if self.combine == "vote" and self.votes > len(self.members):
            raise ValueError(f"votes ({self.votes}) exceeds the {len(self.members)} members")
        return self


class EnsembleDetector:
    """Combines calibrated member scores; the calibration is state per series."""

    state_version = 2

    def __init__(
        self, params: EnsembleParams | None = None, members: Sequence[Detector] | None = None
    ) -> None:
        self.params = params or EnsembleParams()
        self.members: list[Detector] = (
            list(members)
            if members is not None
            else [build(m.detector, m.params) for m in self.params.members]
        )
        self._memory = 2000
        self._decay = 1.0 - 1.0 / self._memory
        k = len(self.members)
        self._rows: dict[SeriesKey, int] = {}
        self._count = np.zeros((0, k))
        self._sums = np.zeros((0, 2, k))  # EW sums of scores and squared scores
        self._seen = np.zeros(0)
        self._pending = np.zeros(0, dtype=bool)  # new series whose bootstrap is still due

    def children(self) -> list[Detector]:
        """The member detectors."""
        return list(self.members)

    @property
    def replayable(self) -> bool:
        """Whether every member can score a whole window afresh (so new series bootstrap)."""
        return all(
            isinstance(m, StreamScorer) and not isinstance(m, Stateful) for m in self.members
        )

    def score(self, window: Window) -> Estimate:
        """Score the newest point of every series; updates each series' calibration.

        Series still waiting for their bootstrap (beyond this call's budget) score NaN.
        """
        self._set_step(window.step)
        window = _sharing(window)
        rows = self._lookup(window)
        ests = self._newest(window)
        ready = np.flatnonzero(~self._pending[rows])
        picked = [Estimate(*(f[ready] for f in _fields(e))) for e in ests]
        est = self._run(rows[ready], picked, np.asarray(window.timestamps, dtype=np.float64)[-1:])
        out = [np.full(len(rows), np.nan) for _ in range(4)]
        for target, field in zip(out, _fields(est), strict=True):
            target[ready] = field[:, 0]
        return Estimate(*out)

    def _newest(self, window: Window) -> list[Estimate]:
        """Each member's estimate of the newest points, `(series, 1)`.

        Members that say they are `thread_safe` (stateless, no warning filters) score blocks
        of series on SCORING_THREADS threads (numpy releases the GIL in its sorts and
        arithmetic); each block is one thread's, all members in turn,
        so the statistics a block's members share are computed before they are read.
        """
        blocks = [block for _, block in row_blocks(window)]
        threads = all(getattr(m, "thread_safe", False) for m in self.members)
        if len(blocks) < 2 or SCORING_THREADS < 2 or not threads:
            return [_column(m.score(window)) for m in self.members]

        def members(block: Window) -> list[Estimate]:
            return [m.score(block) for m in self.members]

        with ThreadPoolExecutor(SCORING_THREADS, thread_name_prefix="augur-score") as pool:
            done = list(pool.map(members, blocks))
        return [
            _column(Estimate(*(np.concatenate([_fields(d[i])[f] for d in done]) for f in range(4))))
            for i in range(len(self.members))
        ]

    def score_all(self, window: Window) -> Estimate:
        """Every column scored causally, continuing each series' state (fresh for new ones)."""
        self._set_step(window.step)
        window = _sharing(window)
        rows = self._lookup(window, bootstrap=False)
        self._pending[rows] = False
        ests = [score_all(m, window) for m in self.members]
        return self._run(rows, ests, np.asarray(window.timestamps, dtype=np.float64))

    def _set_step(self, step: float) -> None:
        """The calibration's memory in points at this step (a query keeps one step)."""
        self._memory = max(10, round(self.params.memory / step)) if step > 0 else 10
        self._decay = 1.0 - 1.0 / self._memory

    def _run(self, rows: IntArray, ests: list[Estimate], ts: FloatArray) -> Estimate:
        """Calibrate and combine `(series, time)` member estimates; advance the state."""
        raw = np.stack([e.score for e in ests], axis=2)
        cal, level, self._count[rows], self._sums[rows] = self._calibrate(
            raw, self._count[rows], self._sums[rows]
        )
        combined = self._combine(cal)
        if len(ts):
            self._seen[rows] = ts[-1]
        return self._band(combined, level, ests)

    def dump_state(self) -> dict[str, Any]:
        """Calibration per series (keyed by the JSON of its labels), and the members'."""
        series = {
            json.dumps(key): {
                "count": self._count[r].tolist(),
                "sums": self._sums[r].tolist(),
                "seen": _finite_or_none(self._seen[r]),
            }
            for key, r in self._rows.items()
        }
        members = [m.dump_state() if isinstance(m, Stateful) else None for m in self.members]
        versions = [m.state_version if isinstance(m, Stateful) else None for m in self.members]
        return {"series": series, "members": members, "member_versions": versions}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore `dump_state`'s snapshot; members whose version changed start afresh."""
        k = len(self.members)
        series = state.get("series", {})
        self._rows = {}
        self._count, self._sums = np.zeros((len(series), k)), np.zeros((len(series), 2, k))
        self._seen = np.full(len(series), -np.inf)
        self._pending = np.zeros(len(series), dtype=bool)
        for r, (key, item) in enumerate(series.items()):
            self._rows[tuple(tuple(pair) for pair in json.loads(key))] = r
            self._count[r], self._sums[r] = item["count"], item["sums"]
            self._seen[r] = -np.inf if item["seen"] is None else item["seen"]
        saved = zip(state.get("members", []), state.get("member_versions", []), strict=False)
        for member, (snapshot, version) in zip(self.members, saved, strict=False):
            if isinstance(member, Stateful) and snapshot is not None:
                if version == member.state_version:
                    member.load_state(snapshot)

    def _lookup(self, window: Window, bootstrap: bool = True) -> IntArray:
        """State rows of the window's series; new series get fresh rows (bootstrapped)."""
        newest = float(window.timestamps[-1]) if len(window.timestamps) else -np.inf
        self._forget(newest)
        new = [i for i, key in enumerate(window.keys) if key not in self._rows]
        if new:
            k, start = len(self.members), len(self._seen)
            for j, i in enumerate(new):
                self._rows[window.keys[i]] = start + j
            self._count = np.concatenate([self._count, np.zeros((len(new), k))])
            self._sums = np.concatenate([self._sums, np.zeros((len(new), 2, k))])
            self._seen = np.concatenate([self._seen, np.full(len(new), newest)])
            replay = bootstrap and self.replayable and self.params.bootstrap > 0
            self._pending = np.concatenate([self._pending, np.full(len(new), replay)])
        rows = np.array([self._rows[key] for key in window.keys], dtype=np.intp)
        tail = min(window.values.shape[1] - 1, self.params.bootstrap)
        waiting = np.flatnonzero(self._pending[rows])
        if bootstrap and waiting.size and tail > 0:
            # As if each series had been scored on the last `tail` points before the newest:
            # the members see the whole window before the newest point (a member may need
            # more history than `tail`), the calibration learns from its last `tail` columns.
            # A bounded number per call, so a first poll of many series stays short.
            width = window.values.shape[1] - 1
            budget = waiting[: max(1, BOOTSTRAP_POINTS // width)]
            self._pending[rows[budget]] = False
            stamps = np.asarray(window.timestamps)[:-1]
            # A few series at a time: the members' whole-window scores of one series are
            # ~100 KB per field, so the budget's share of them at once would be hundreds of MB.
            for lo in range(0, len(budget), BOOTSTRAP_ROWS):
                take = budget[lo : lo + BOOTSTRAP_ROWS]
                history = Window(
                    np.asarray(window.values)[take, :-1],
                    stamps,
                    [window.keys[i] for i in take],
                    window.step,
                    {},
                )
                ests = [score_all(m, history) for m in self.members]
                recent = [Estimate(*(f[:, -tail:] for f in _fields(e))) for e in ests]
                self._run(rows[take], recent, np.asarray(stamps, dtype=np.float64)[-tail:])
        elif waiting.size and tail <= 0:
            self._pending[rows[waiting]] = False  # nothing to replay: warm up poll by poll
        return rows

    def _forget(self, newest: float) -> None:
        """Drop the state of series not seen for FORGET_SECONDS."""
        stale = self._seen < newest - FORGET_SECONDS
        if not stale.any():
            return
        keep = np.flatnonzero(~stale)
        order = {int(r): i for i, r in enumerate(keep)}
        self._rows = {key: order[r] for key, r in self._rows.items() if r in order}
        self._count, self._sums = self._count[keep], self._sums[keep]
        self._seen = self._seen[keep]
        self._pending = self._pending[keep]

    def _calibrate(
        self, raw: FloatArray, count: FloatArray, sums: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Calibrated scores `(series, time, members)`, the raw score each needed to reach 1,
        and the state after the last column.

        Each column is judged against the EW mean and standard deviation of the member's
        scores before it; a missing score leaves the state unchanged. Sums are kept
        unnormalised (S <- a S + x) and bias-corrected by 1 - a^n when read, so the first
        `memory` points weigh alike, as an expanding mean would.
        """
        a, p, m = self._decay, self.params, self._memory
        cols = raw.shape[1]
        finite = np.isfinite(raw)
        x = np.where(finite, raw, 0.0)
        out = np.full(raw.shape, np.nan)
        level = np.full(raw.shape, np.nan)
        # Blocks of `memory` columns keep a^-n within [1, e] in the closed form below.
        for lo in range(0, cols, m):
            ok, xb = finite[:, lo : lo + m], x[:, lo : lo + m]
            n_incl = np.cumsum(ok, axis=1)
            n_before = n_incl - ok
            weights = np.where(ok, a ** (-n_incl.astype(np.float64)), 0.0)
            s1 = np.cumsum(xb * weights, axis=1)
            s2 = np.cumsum(xb * xb * weights, axis=1)
            scale = a ** n_before.astype(np.float64)
            before1 = scale * (sums[:, None, 0] + s1 - xb * weights)
            before2 = scale * (sums[:, None, 1] + s2 - xb * xb * weights)
            total = count[:, None] + n_before
            norm = 1.0 - a**total
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = before1 / norm * (1.0 - a)
                var = np.maximum(before2 / norm * (1.0 - a) - mean * mean, 0.0)
                sd = np.maximum(np.sqrt(var), SD_FLOOR)
                z = (raw[:, lo : lo + m] - mean) / (p.threshold * sd)
            # Calibration only ever makes a member stricter: it also has to be past its band.
            z = np.minimum(z, raw[:, lo : lo + m])
            ready = total >= p.warmup
            out[:, lo : lo + m] = np.where(ready, z, np.nan)
            level[:, lo : lo + m] = np.where(
                ready, np.maximum(mean + p.threshold * sd, 1.0), np.nan
            )
            last = a ** (n_incl[:, -1].astype(np.float64))
            sums = np.stack([last * (sums[:, 0] + s1[:, -1]), last * (sums[:, 1] + s2[:, -1])], 1)
            count = count + n_incl[:, -1]
        return out, level, count, sums

    def _combine(self, cal: FloatArray) -> FloatArray:
        """One score per series and column from the members' calibrated scores (last axis)."""
        missing = np.isnan(cal).all(axis=2)
        filled = np.where(np.isnan(cal), -np.inf, cal)
        if self.params.combine == "max":
            out = filled.max(axis=2)
        elif self.params.combine == "mean":
            with np.errstate(invalid="ignore"):
                out = np.where(np.isnan(cal), 0.0, cal).sum(axis=2) / (~np.isnan(cal)).sum(2)
        else:
            k = self.params.votes
            out = np.sort(filled, axis=2)[..., -k] if k <= cal.shape[2] else filled.max(2)
            out = np.where(np.isinf(out), np.nan, out)
        out = np.where(missing, np.nan, out)
        return np.maximum(out, 0.0)

    def _band(self, combined: FloatArray, level: FloatArray, ests: list[Estimate]) -> Estimate:
        """The combined score with the members' mean expectation (kept inside) and a band.

        Member i reaches 1 at `level_i` times its own half-width, which makes its calibrated
        band; the ensemble's band is their intersection for `max` (where no member fires) and
        their median otherwise. Members that disagree so much that the intersection is empty
        leave a band of zero width at the expected value.
        """
        expected = np.stack([e.expected for e in ests], axis=2)
        half = np.stack([(e.upper - e.lower) / 2 for e in ests], axis=2) * level
        with np.errstate(invalid="ignore"):
            lows, highs = expected - half, expected + half
            center = _nan_reduce(expected, np.mean)
            if self.params.combine == "max":
                lower, upper = _nan_reduce(lows, np.max), _nan_reduce(highs, np.min)
            else:
                lower, upper = _nan_reduce(lows, np.median), _nan_reduce(highs, np.median)
            empty = lower > upper
        lower, upper = np.where(empty, center, lower), np.where(empty, center, upper)
        # The members' mean can lie outside the band where they all agree; the expected value
        # is then its nearest edge, so "above its expected X (band lo–hi)" never has X outside.
        # (fmin/fmax: a band still calibrating, NaN, leaves the mean as it is.)
        center = np.fmin(np.fmax(center, lower), upper)
        return Estimate(score=combined, expected=center, lower=lower, upper=upper)


def _nan_reduce(values: FloatArray, reduce: Any) -> FloatArray:
    """`reduce` over the last axis ignoring NaN; NaN where all are NaN (and no warning)."""
    missing = np.isnan(values)
    if not missing.any():
        return np.asarray(reduce(values, axis=-1), dtype=np.float64)
    out = np.full(values.shape[:-1], np.nan)
    for k in range(1, values.shape[-1] + 1):
        # Group the positions by how many members are present, so each reduce is dense.
        rows = (~missing).sum(axis=-1) == k
        if rows.any():
            dense = np.sort(np.where(missing, np.inf, values)[rows], axis=-1)[..., :k]
            out[rows] = reduce(dense, axis=-1)
    return out


def _fields(est: Estimate) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    return est.score, est.expected, est.lower, est.upper


def _column(est: Estimate) -> Estimate:
    """A newest-point estimate as `(series, 1)` arrays."""
    return Estimate(
        *(np.asarray(a)[:, None] for a in (est.score, est.expected, est.lower, est.upper))
    )


def _sharing(window: Window) -> Window:
    """The window with scratch space for this call, where members computing the same
    statistic (the quantile level and the rolling member's level check) find each other's."""
    if window.shared is not None:
        return window
    return Window(window.values, window.timestamps, window.keys, window.step, {})


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


class ForecastingEnsemble(EnsembleDetector):
    """An ensemble with a forecasting member (so only such ensembles are `Forecaster`s)."""

    def forecast(self, window: Window, steps: Sequence[int]) -> FloatArray:
        """The first forecasting member's forecast."""
        member = next(m for m in self.members if isinstance(m, Forecaster))
        return member.forecast(window, steps)


def make_ensemble(params: EnsembleParams) -> EnsembleDetector:
    """The ensemble for `params`, a `ForecastingEnsemble` when a member can forecast."""
    members = [build(m.detector, m.params) for m in params.members]
    if any(isinstance(m, Forecaster) for m in members):
        return ForecastingEnsemble(params, members)
    return EnsembleDetector(params, members)


register("ensemble", EnsembleParams, make_ensemble)
