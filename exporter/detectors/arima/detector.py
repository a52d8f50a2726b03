"""ARIMA: the newest point against each series' one-step-ahead forecast and its variance.

Each series gets its own ARIMA(p, d, q), chosen within p <= 2, d <= 1, q <= 2 unless
configured, fitted by statsmodels on its last `fit_window` points in worker processes and
refitted every `fit_every` points. Between fits nothing is refitted: the fitted models run
as one Kalman filter over all series at once (`kalman.py`), so a cycle's new points cost a
few numpy calls whatever the number of series. The score is the standardised one-step
forecast error |x - x̂| / (threshold x sqrt(F)); the band is x̂ ± threshold x sqrt(F).

A series seen for the first time scores at once with an AR(1) estimated by moments while
its real fit runs; a fit that raises or does not converge falls back to a simpler order
((p, d, q) -> (1, d, 0) -> (0, d, 0), the last in closed form). The `fits`, `fit_failures`
and `fallbacks` attributes count these for export. Each series keeps its last `fit_window`
points (8 bytes each) for refits, so windows may carry only the new points.

The fitting and its worker processes are in `fit.py`, the per-series arrays in `bank.py`;
this module keeps the detector, which schedules fits and filters.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from exporter.detectors.arima import fit as arima_fit
from exporter.detectors.arima import kalman
from exporter.detectors.arima.bank import REPHASE_STEPS, SeriesBank
from exporter.detectors.arima.fit import MAX_P, MAX_Q, FitResult, Order, Trend, fit_model
from exporter.detectors.arima.kalman import ARIMAModel
from exporter.detectors.base import (
    BoolArray,
    DetectorParams,
    Estimate,
    FloatArray,
    IntArray,
    SeriesKey,
    Window,
    band_estimate,
    register,
)

REFILTER = 200
"""Points of history a new model is filtered over before it scores: its warm-up."""

_BATCH = 8
"""Series per pool task: a first fit lands progressively; a shutdown waits for one per worker."""


class ARIMAParams(DetectorParams):
    """Settings of the `arima` detector."""

    order: Order | None = None
    """(p, d, q); None selects it per series (KPSS for d, BIC over p, q <= 2)."""
    trend: Trend = "c"
    """"n" none, "c" a mean (d=0) or drift (d=1), "t" a linear trend (d=0) or drift (d=1);
    a drift is what lets a d=1 forecast extrapolate ("disk full in 4 h")."""
    threshold: float = Field(3.0, gt=0)
    """Half-width of the band in forecast standard deviations (the score is 1 on its edge)."""
    fit_every: int = Field(360, ge=1)
    """New points between refits of a series."""
    fit_window: int = Field(720, ge=20)
    """Points a fit uses (the most recent): also the history kept per series."""
    min_points: int = Field(30, ge=10)
    """Series with fewer non-missing points are not fitted and score NaN."""
    workers: int = Field(2, ge=0, le=8)
    """Processes fitting in the background; 0 fits on the caller's thread (tests, backtests)."""

    @field_validator("order")
    @classmethod
    def _bounded_order(cls, value: Order | None) -> Order | None:
        if value is not None and not (
            0 <= value[0] <= 5 and value[1] in (0, 1) and 0 <= value[2] <= 5
        ):
            raise ValueError("needs 0 <= p <= 5, d of 0 or 1, and 0 <= q <= 5")
        return value

    @field_validator("min_points")
    @classmethod
    def _fits_in_window(cls, value: int, info: ValidationInfo) -> int:
        fit_window = info.data.get("fit_window")
        if fit_window is not None and value > fit_window:
            raise ValueError(f"must be at most fit_window ({fit_window}), or nothing is fitted")
        return value


@dataclass
class _Job:
    future: Future[list[FitResult]]
    keys: list[SeriesKey]
    ends: list[float]
    generation: int


class ARIMADetector:
    """Scores the newest point against each series' ARIMA one-step forecast.

    Not thread-safe: one caller at a time. Fits run in a process pool shared by all ARIMA
    detectors; `shutdown_pools()` stops it.
    """

    state_version = 1

    def __init__(self, params: ARIMAParams | None = None) -> None:
        self.params = params or ARIMAParams()
        order = self.params.order
        self._k = kalman.state_dim(*((order[0], order[2]) if order else (MAX_P, MAX_Q)))
        self.fits = 0
        """Fits completed (each may have tried several orders)."""
        self.fit_failures = 0
        """Fit attempts that raised or did not converge."""
        self.fallbacks = 0
        """Fits that ended on a simpler order than the one selected or configured."""
        self.filtered_points = 0
        """Points run through the Kalman filter (series x steps)."""
        self._generation = 0
        self._jobs: list[_Job] = []
        self._reset()

    def _reset(self) -> None:
        self._index: dict[SeriesKey, int] = {}
        self._keys: list[SeriesKey] = []
        self._models: list[ARIMAModel | None] = []
        self._bank = SeriesBank.empty(0, self.params.fit_window, self._k)

    @property
    def pending(self) -> int:
        """Series whose fit is running in the pool."""
        return int(np.count_nonzero(self._bank.pending))

    def score(self, window: Window) -> Estimate:
        """Score the last column of `window.values`; only columns not seen before are filtered."""
        rows = self._update(window)
        newest, expected, var = self._bank.last[rows].T
        # Only the estimate of the window's last column, or of the last point in step before
        # it (a poll between steps, see `SeriesBank.ingest`), answers for the window.
        end = window.timestamps[-1] if window.timestamps.size else np.nan
        behind = self._bank.steps_behind(rows, end, window.step)
        with np.errstate(invalid="ignore"):
            newest = np.where((behind > -0.5) & (behind < REPHASE_STEPS), newest, np.nan)
            return band_estimate(
                newest, expected, np.sqrt(np.maximum(var, 0)), self.params.threshold
            )

    def forecast(self, window: Window, steps: Sequence[int]) -> FloatArray:
        """Predicted values `steps[k]` grid steps after the newest point: `(series, len(steps))`."""
        return self.forecast_interval(window, steps)[0]

    def forecast_interval(
        self, window: Window, steps: Sequence[int]
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Forecast mean and band (± threshold standard deviations), each `(series, steps)`."""
        rows = self._update(window)
        mean, var = np.full((2, len(rows), len(steps)), np.nan)
        # Steps count from the window's end, the model stands at its last point in step.
        end = window.timestamps[-1] if window.timestamps.size else np.nan
        behind = np.maximum(np.rint(self._bank.steps_behind(rows, end, window.step)), 0)
        ok = np.isfinite(behind) & self._modelled(rows)
        for lag in np.unique(behind[ok]).astype(int).tolist():
            sel = ok & (behind == lag)
            ahead = [s + lag for s in steps]
            mean[sel], var[sel] = kalman.forecast(*self._bank.system(rows[sel]), ahead)
        with np.errstate(invalid="ignore"):
            half = self.params.threshold * np.sqrt(np.maximum(var, 0))
        return mean, mean - half, mean + half

    def score_all(self, window: Window) -> Estimate:
        """Every column scored causally, for backtests; fits run here, synchronously.

        The first fit uses the first `fit_window` points (or 15 %, NAB's probation, when that
        is shorter); every `fit_every` points a refit on the latest `fit_window` points is
        filtered from `REFILTER` points back, as `score` does. Columns before the first fit
        are NaN; columns are steps whatever the timestamps say (irregular NAB files).
        """
        x = np.asarray(window.values, dtype=np.float64)
        m, n = x.shape
        p = self.params
        expected, var = np.full((2, m, n), np.nan)
        models: list[ARIMAModel | None] = [None] * m
        for s in range(max(p.min_points, min(p.fit_window, int(0.15 * n))), n, p.fit_every):
            e, lo, first = min(n, s + p.fit_every), max(0, s - REFILTER), max(0, s - p.fit_window)
            for i in range(m):
                if np.count_nonzero(np.isfinite(x[i, first:s])) >= p.min_points:
                    result = fit_model(x[i, first:s], p.order, p.trend, float(first), models[i])
                    self._count(result)
                    models[i] = result.model or models[i]
            live = np.array([i for i in range(m) if models[i] is not None], dtype=np.intp)
            chosen = [model for model in models if model is not None]
            if chosen:
                ssm = kalman.build(chosen, self._k)
                state = kalman.initial_state(
                    ssm, chosen, lo - np.array([c.ref_time for c in chosen])
                )
                exp, v = kalman.run(ssm, state, x[live, lo:e], compiled=True)
                expected[live, s:e], var[live, s:e] = exp[:, s - lo :], v[:, s - lo :]
                self.filtered_points += live.size * (e - lo)
        with np.errstate(invalid="ignore"):
            return band_estimate(x, expected, np.sqrt(np.maximum(var, 0)), p.threshold)

    def dump_state(self) -> dict[str, Any]:
        """Fitted parameters and fit time per series, keyed by the JSON of its label pairs."""
        series: dict[str, Any] = {}
        for key, row in self._index.items():
            if (model := self._models[row]) is not None:
                end = float(self._bank.fit_end[row])
                series[json.dumps([list(pair) for pair in key])] = {
                    "model": asdict(model),
                    "provisional": bool(self._bank.provisional[row]),
                    "fit_end": end if math.isfinite(end) else None,
                }
        return {"series": series}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore `dump_state`'s snapshot: the next `score` filters these models, unfitted."""
        try:
            entries = [
                (
                    tuple((str(k), str(v)) for k, v in json.loads(key)),
                    ARIMAModel.from_dict(e["model"]),
                    bool(e["provisional"]),
                    -math.inf if e["fit_end"] is None else float(e["fit_end"]),
                )
                for key, e in state["series"].items()
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed arima state: {exc!r}") from exc
        self.close()
        self._reset()
        # A snapshot taken with a larger configured order than today's does not fit: refit.
        entries = [e for e in entries if kalman.state_dim(e[1].order[0], e[1].order[2]) <= self._k]
        self._add([key for key, *_ in entries])
        for row, (_, model, provisional, end) in enumerate(entries):
            self._set_models(np.array([row]), [model], provisional)
            self._bank.fit_end[row] = end

    def close(self) -> None:
        """Forget this detector's queued fits (the shared pool keeps running)."""
        for job in self._jobs:
            job.future.cancel()
        self._jobs = []
        self._generation += 1
        self._bank.pending[:] = False

    def _update(self, window: Window) -> IntArray:
        """Take in the window's new columns; the bank rows of its series, in window order."""
        values = np.asarray(window.values, dtype=np.float64)
        ts = np.asarray(window.timestamps, dtype=np.float64)
        if ts.size:
            self._forget(float(ts[-1]), window.step)
        rows = self._rows(window.keys, float(ts[-1]) if ts.size else math.nan)
        self._harvest()
        if ts.size:
            steps = self._bank.ingest(rows, values, ts, window.step)
            # Many new points: cheaper to start over from the history.
            self._bank.fresh[rows[steps > REFILTER]] = True
            self._stand_in(rows, window.step)
            self._schedule(rows, window.step)
            self._filter(rows, steps, window.step)
        return rows

    def _rows(self, keys: Sequence[SeriesKey], newest: float) -> IntArray:
        self._add(list(dict.fromkeys(k for k in keys if k not in self._index)))
        rows = np.fromiter((self._index[k] for k in keys), dtype=np.intp, count=len(keys))
        self._bank.seen[rows] = newest
        return rows

    def _add(self, keys: list[SeriesKey]) -> None:
        if not keys:
            return
        for key in keys:
            self._index[key] = len(self._keys)
            self._keys.append(key)
            self._models.append(None)
        self._bank.extend(SeriesBank.empty(len(keys), self.params.fit_window, self._k))

    def _modelled(self, rows: IntArray) -> BoolArray:
        return np.array([self._models[r] is not None for r in rows.tolist()], dtype=bool)

    def _forget(self, newest: float, step: float) -> None:
        """Drop series absent for two fit windows, once they are a quarter of all series."""
        seen = self._bank.seen
        seen[np.isnan(seen)] = newest  # restored series get a grace period
        stale = seen < newest - 2 * self.params.fit_window * step
        if np.count_nonzero(stale) <= max(16, seen.size // 4):
            return
        keep = np.flatnonzero(~stale)
        self._bank.keep(keep)
        self._keys = [self._keys[i] for i in keep.tolist()]
        self._models = [self._models[i] for i in keep.tolist()]
        self._index = {key: row for row, key in enumerate(self._keys)}

    def _fittable(self, rows: IntArray) -> BoolArray:
        finite = np.count_nonzero(np.isfinite(self._bank.hist[rows]), axis=1)
        return np.asarray(finite >= self.params.min_points)

    def _stand_in(self, rows: IntArray, step: float) -> None:
        """Moment AR(1)s for new series, so they score now while their fit runs."""
        new = rows[~self._modelled(rows)] if self.params.workers else rows[:0]
        new = new[self._fittable(new)]
        if not new.size:
            return
        x = self._bank.hist[new]
        refs = self._bank.last_ts[new] - (self.params.fit_window - 1) * step
        best = arima_fit.stand_ins(x, self.params.order, self.params.trend, refs)
        got = np.array([i for i, model in enumerate(best) if model], dtype=np.intp)
        self._set_models(new[got], [best[i] for i in got.tolist()], provisional=True)

    def _schedule(self, rows: IntArray, step: float) -> None:
        """Fit the series that are new, provisional, or `fit_every` points past their fit."""
        b, p = self._bank, self.params
        due = ~b.pending[rows] & (
            b.provisional[rows] | (b.last_ts[rows] - b.fit_end[rows] > (p.fit_every - 0.5) * step)
        )
        due[due] = self._fittable(rows[due])  # counted only where needed: it reads the history
        jobs, keys, ends = [], [], []
        for row in rows[due].tolist():
            count, start = int(b.hist_len[row]), None if b.provisional[row] else self._models[row]
            ref = float(b.last_ts[row]) - (count - 1) * step
            # A copy: the pool pickles the job later, after the history may have moved on.
            jobs.append((b.hist[row, -count:].copy(), p.order, p.trend, ref, start))
            keys.append(self._keys[row])
            ends.append(float(b.last_ts[row]))
        if not p.workers:
            for row, job, end in zip(rows[due].tolist(), jobs, ends, strict=True):
                self._apply(row, fit_model(*job), end)
            return
        b.pending[rows[due]] = True
        for lo in range(0, len(jobs), _BATCH):
            batch = slice(lo, lo + _BATCH)
            future = arima_fit.submit(p.workers, jobs[batch])
            if future is None:  # broken or shut down: these try again next cycle
                b.pending[[self._index[k] for k in keys[batch]]] = False
                continue
            self._jobs.append(_Job(future, keys[batch], ends[batch], self._generation))

    def _harvest(self) -> None:
        """Take the results of the fits that finished since the last call."""
        running = []
        for job in self._jobs:
            if not job.future.done():
                running.append(job)
                continue
            done = arima_fit.collect(job.future, len(job.keys))
            for key, end, result in zip(job.keys, job.ends, done, strict=True):
                row = self._index.get(key)
                if row is not None and job.generation == self._generation:
                    self._bank.pending[row] = False
                    self._apply(row, result, end)
        self._jobs = running

    def _count(self, result: FitResult) -> None:
        self.fits += result.model is not None
        self.fit_failures += result.failures
        self.fallbacks += result.fallback

    def _apply(self, row: int, result: FitResult, end: float) -> None:
        self._count(result)
        self._bank.fit_end[row] = end
        if result.model is not None:
            self._set_models(np.array([row]), [result.model], provisional=False)

    def _set_models(self, rows: IntArray, models: list[ARIMAModel], provisional: bool) -> None:
        if rows.size:
            b, ssm = self._bank, kalman.build(models, self._k)
            b.T[rows], b.Z[rows], b.RQR[rows] = ssm.T, ssm.Z, ssm.RQR
            b.integrated[rows] = ssm.integrated
            b.fresh[rows] = True
            b.provisional[rows] = provisional
            for row, model in zip(rows.tolist(), models, strict=True):
                self._models[row] = model

    def _filter(self, rows: IntArray, steps: IntArray, step: float) -> None:
        """Filter new models over their history, and the others over their new points."""
        b = self._bank
        modelled = self._modelled(rows)
        fresh = modelled & b.fresh[rows]
        length = np.minimum(b.hist_len[rows], REFILTER)
        for count in np.unique(length[fresh & (length > 0)]).tolist():
            group = rows[fresh & (length == count)]
            models = [m for m in (self._models[r] for r in group.tolist()) if m is not None]
            since = (b.last_ts[group] - (count - 1) * step - [m.ref_time for m in models]) / step
            ssm, _ = b.system(group)
            state = kalman.initial_state(ssm, models, since)
            self.filtered_points += b.run(group, ssm, state, count)
            b.fresh[group] = False
        for count in np.unique(steps[modelled & ~fresh & (steps > 0)]).tolist():
            group = rows[modelled & ~fresh & (steps == count)]
            self.filtered_points += b.run(group, *b.system(group), count)


register("arima", ARIMAParams, ARIMADetector)
