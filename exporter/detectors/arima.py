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
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import signal
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, ValidationInfo, field_validator

from exporter.detectors import kalman
from exporter.detectors.base import (
    DetectorParams,
    Estimate,
    FloatArray,
    SeriesKey,
    Window,
    band_estimate,
    register,
)
from exporter.detectors.kalman import ARIMAModel, FilterState, StateSpace

Trend = Literal["n", "c", "t"]
Order = tuple[int, int, int]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

MAX_P, MAX_Q = 2, 2
"""Bounds of the automatic order selection (d is 0 or 1, chosen by a KPSS test)."""

REFILTER = 200
"""Points of history a new model is filtered over before it scores: its warm-up."""

_BATCH = 8
"""Series per pool task: a large first fit lands progressively, and a shutdown waits for at
most one task per worker (8 fits: ~0.5 s, a few seconds at worst)."""

_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class ARIMAParams(DetectorParams):
    """Settings of the `arima` detector."""

    order: Order | None = None
    """(p, d, q); None selects it per series (KPSS for d, BIC over p, q <= 2)."""
    trend: Trend = "c"
    """"n" none, "c" a mean (d=0) or drift (d=1), "t" a linear trend (d=0) or drift (d=1).

    A drift is what lets a d=1 forecast extrapolate ("disk full in 4 h")."""
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


@dataclass(frozen=True)
class FitResult:
    """A fit's outcome: the model (None if the data cannot carry one) and how it went."""

    model: ARIMAModel | None
    failures: int
    fallback: bool


def fit_model(
    values: FloatArray,
    order: Order | None,
    trend: Trend,
    ref_time: float,
    start: ARIMAModel | None = None,
) -> FitResult:
    """Fit one series with statsmodels; warnings are swallowed, failures counted.

    `ref_time` is when `values[0]` was taken; `start`, the previous model, warm-starts the
    optimiser when the order is unchanged.
    """
    x = np.asarray(values, dtype=np.float64)
    if np.count_nonzero(np.isfinite(x)) < 3:
        return FitResult(None, 0, False)
    # Imported before the block below: statsmodels adds "always" filters on first import,
    # which would outrank the block's "ignore".
    import statsmodels.tsa.arima.model
    import statsmodels.tsa.stattools  # noqa: F401

    ok = np.isfinite(x)
    idx = np.arange(x.size)
    filled = np.interp(idx, idx[ok], x[ok])  # KPSS and least squares cannot skip gaps
    failures = 0
    with warnings.catch_warnings(action="ignore"):
        d = order[1] if order else _choose_d(filled, trend)
        p, q = (order[0], order[2]) if order else _choose_pq(np.diff(filled) if d else filled)
        chain = [(p, q)] + [pq for pq in ((1, 0), (0, 0)) if sum(pq) < p + q]
        for p, q in chain:
            if (p, q) == (0, 0):
                model = kalman.moment_models(x[None], d, trend, np.array([ref_time]), False)[0]
            else:
                guess = start if start and start.order == (p, d, q) else None
                model = _mle(np.diff(x) if d else x, (p, d, q), trend, ref_time, guess)
                failures += model is None
            if model is not None:
                break
    return FitResult(model, failures, (p, q) != chain[0])


def _choose_d(x: FloatArray, trend: Trend) -> int:
    """1 when KPSS rejects (level or trend) stationarity at 5 %, as auto.arima does."""
    from statsmodels.tsa.stattools import kpss

    try:
        pvalue = kpss(x, regression="ct" if trend == "t" else "c", result_object=True).pvalue
    except (ValueError, ZeroDivisionError, np.linalg.LinAlgError):
        return 0  # a constant series: nothing to difference
    return 1 if pvalue < 0.05 else 0


def _choose_pq(y: FloatArray) -> tuple[int, int]:
    """(p, q) by BIC over the grid, each candidate estimated by Hannan-Rissanen.

    Two least-squares fits (a long AR for the innovations, then the ARMA regression) cost
    ~2 ms for all nine candidates, where a likelihood fit costs 10-400 ms each. BIC rather
    than AIC: on NAB it picks smaller models whose fits are 2.5x faster, and these residuals
    flatter larger models anyway. Within 2 units of the best, the fewest terms win.
    """
    y = y - y.mean()
    n = y.size
    m = min(math.ceil(10 * math.log10(max(n, 2))), n // 4)
    if m < 1 or n - m <= MAX_Q + 10 or not y.any():
        return 0, 0
    long_ar = np.column_stack([y[m - i : n - i] for i in range(1, m + 1)])
    e = np.zeros(n)
    e[m:] = y[m:] - long_ar @ np.linalg.lstsq(long_ar, y[m:], rcond=None)[0]
    lo = m + max(MAX_P, MAX_Q)
    target = y[lo:]
    scored = []
    for p in range(MAX_P + 1):
        for q in range(MAX_Q + 1):
            cols = [y[lo - i : n - i] for i in range(1, p + 1)]
            cols += [e[lo - i : n - i] for i in range(1, q + 1)]
            resid = target
            if cols:
                design = np.column_stack(cols)
                resid = target - design @ np.linalg.lstsq(design, target, rcond=None)[0]
            var = float(resid @ resid) / target.size
            penalty = math.log(target.size) * (p + q)
            scored.append((target.size * math.log(var) + penalty if var > 0 else -math.inf, p, q))
    best = min(s[0] for s in scored)
    return min((p + q, bic, p, q) for bic, p, q in scored if bic <= best + 2)[2:]


def _mle(
    y: FloatArray, order: Order, trend: Trend, ref_time: float, start: ARIMAModel | None
) -> ARIMAModel | None:
    """Exact-likelihood ARMA(p, q) fit of `y` (the differenced series when d=1).

    statsmodels' ARIMA on the differences rather than on the levels or SARIMAX: the same
    model without a diffuse state, and its constant is the mean (regression with ARMA
    errors) where SARIMAX's is a state intercept. Scale concentrated out, no parameter
    covariance: the fastest variant measured.
    """
    from statsmodels.tsa.arima.model import ARIMA

    p, d, q = order
    line = d == 0 and trend == "t"
    sm_trend = "n" if trend == "n" else ("ct" if line else "c")
    k = {"n": 0, "c": 1, "ct": 2}[sm_trend]
    guess = None if start is None or line else np.array([start.mean] * k + [*start.ar, *start.ma])
    try:
        model = ARIMA(y, order=(p, 0, q), trend=sm_trend, concentrate_scale=True)
        res = model.fit(start_params=guess, cov_type="none", low_memory=True)
    except (ValueError, np.linalg.LinAlgError, IndexError, OverflowError):
        return None
    params, sigma2 = np.asarray(res.params, dtype=np.float64), float(res.scale)
    if not (res.mle_retvals.get("converged") and np.isfinite(params).all() and sigma2 >= 0):
        return None
    slope = float(params[1]) if line else 0.0
    mean = float(params[0]) + slope if k else 0.0  # statsmodels counts time from 1
    ar, ma = params[k : k + p], params[k + p : k + p + q]
    return ARIMAModel(
        order, trend, tuple(ar.tolist()), tuple(ma.tolist()), mean, slope, sigma2, ref_time
    )


def _fit_batch(jobs: list[tuple[Any, ...]]) -> list[FitResult]:
    """One pool task: `fit_model(*job)` for each job."""
    return [fit_model(*job) for job in jobs]


def _init_worker() -> None:
    """Pool initializer: BLAS single-threaded for anything loaded later; Ctrl-C to the parent."""
    for var in _THREAD_VARS:
        os.environ[var] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)


_pools: dict[int, ProcessPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(workers: int) -> ProcessPoolExecutor:
    """The fitting processes, started on first use and shared by detectors of one size."""
    with _pools_lock:
        if workers not in _pools:
            # A worker's BLAS reads these as it loads, before any initializer runs (unpickling
            # the first task imports numpy): they must be in the environment it inherits.
            # 100 fits in 2 workers: 21 s with the default threads, 1.5 s with one.
            for var in _THREAD_VARS:
                os.environ.setdefault(var, "1")
            context = multiprocessing.get_context("spawn")  # fork is unsafe with threads
            _pools[workers] = ProcessPoolExecutor(workers, context, initializer=_init_worker)
        return _pools[workers]


def shutdown_pools(wait: bool = True) -> None:
    """Stop the fitting processes (call on exit); a later fit starts them again."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.shutdown(wait=wait, cancel_futures=True)


@dataclass
class _Bank:
    """Per-series arrays, one row per series: history, bookkeeping, matrices, filter state."""

    hist: FloatArray  # (n, fit_window): the newest points, oldest first, NaN before the first
    hist_len: IntArray
    last_ts: FloatArray  # when the newest consumed point was taken (-inf: none yet)
    seen: FloatArray  # newest timestamp of the last window holding the series
    fit_end: FloatArray  # when the last point of the model's fit data was taken
    pending: BoolArray  # a fit is running in the pool
    fresh: BoolArray  # a new model: filter it over the history before it scores
    provisional: BoolArray  # a moment estimate standing in for a fit
    last: FloatArray  # (n, 3): newest value, its one-step prediction, its variance
    T: FloatArray
    Z: FloatArray
    RQR: FloatArray
    integrated: BoolArray
    a: FloatArray
    P: FloatArray
    diffuse: BoolArray

    @classmethod
    def empty(cls, n: int, width: int, k: int) -> _Bank:
        """`n` rows without history or model."""
        shapes = {"hist": (width,), "last": (3,), "T": (k, k), "Z": (k,), "RQR": (k, k)}
        shapes |= {"a": (k,), "P": (k, k)}
        fills = {"hist": np.nan, "last": np.nan, "seen": np.nan, "last_ts": -np.inf}
        fills |= {"fit_end": -np.inf}
        flags = {"pending", "fresh", "provisional", "integrated", "diffuse"}
        return cls(
            **{
                f.name: np.full(
                    (n, *shapes.get(f.name, ())),
                    fills.get(f.name, 0),
                    dtype=bool if f.name in flags else np.intp if f.name == "hist_len" else float,
                )
                for f in fields(cls)
            }
        )

    def extend(self, other: _Bank) -> None:
        """Append the rows of `other`."""
        for f in fields(self):
            setattr(self, f.name, np.concatenate([getattr(self, f.name), getattr(other, f.name)]))

    def keep(self, rows: IntArray) -> None:
        """Keep only `rows`, in that order."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name)[rows])

    def system(self, rows: IntArray) -> tuple[StateSpace, FilterState]:
        """Copies of the matrices and filter state of `rows`."""
        ssm = StateSpace(self.T[rows], self.Z[rows], self.RQR[rows], self.integrated[rows])
        return ssm, FilterState(self.a[rows], self.P[rows], self.diffuse[rows])


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
        self._bank = _Bank.empty(0, self.params.fit_window, self._k)

    @property
    def pending(self) -> int:
        """Series whose fit is running in the pool."""
        return int(np.count_nonzero(self._bank.pending))

    def score(self, window: Window) -> Estimate:
        """Score the last column of `window.values`; only columns not seen before are filtered."""
        rows = self._update(window)
        newest, expected, var = self._bank.last[rows].T
        # Only an estimate of this window's last column answers for it.
        end = window.timestamps[-1] if window.timestamps.size else np.nan
        newest = np.where(
            np.abs(self._bank.last_ts[rows] - end) < 0.5 * window.step, newest, np.nan
        )
        with np.errstate(invalid="ignore"):
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
        ok = np.isfinite(self._bank.last_ts[rows]) & self._modelled(rows)
        if ok.any():
            mean[ok], var[ok] = kalman.forecast(*self._bank.system(rows[ok]), steps)
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
            steps = self._ingest(rows, values, ts, window.step)
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
        self._bank.extend(_Bank.empty(len(keys), self.params.fit_window, self._k))

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

    def _ingest(self, rows: IntArray, values: FloatArray, ts: FloatArray, step: float) -> IntArray:
        """Append each series' columns newer than its last point to its history.

        Returns the steps appended per window row; steps missed between the previous window
        and this one count as missing samples.
        """
        b, width = self._bank, ts.size
        last = b.last_ts[rows]
        first = np.searchsorted(ts, last + 0.5 * step)
        new = first < width
        with np.errstate(invalid="ignore"):
            gap = np.rint((ts[np.minimum(first, width - 1)] - last) / step) - 1
        gap = np.where(new & np.isfinite(gap), np.maximum(gap, 0), 0).astype(np.intp)
        steps = np.zeros(rows.size, dtype=np.intp)
        for f, g in set(zip(first[new].tolist(), gap[new].tolist(), strict=True)):
            sel = np.flatnonzero(new & (first == f) & (gap == g))
            pad = np.full((sel.size, min(g, self.params.fit_window)), np.nan)
            block = np.concatenate([pad, values[sel, f:]], axis=1)
            self._append(rows[sel], block)
            steps[sel] = block.shape[1]
        b.last_ts[rows[new]] = ts[-1]
        b.fresh[rows[steps > REFILTER]] = True  # cheaper to start over from the history
        return steps

    def _append(self, rows: IntArray, block: FloatArray) -> None:
        b, width, count = self._bank, self.params.fit_window, block.shape[1]
        if count >= width:
            b.hist[rows] = block[:, -width:]
        elif rows.size and rows[-1] - rows[0] == rows.size - 1 and (np.diff(rows) == 1).all():
            # The usual case, a query's series in the order they were first seen: shifting
            # in place costs one pass over the history instead of three fancy-index copies.
            hist = b.hist[rows[0] : rows[-1] + 1]
            hist[:, :-count] = hist[:, count:]
            hist[:, -count:] = block
        else:
            b.hist[rows] = np.concatenate([b.hist[rows, count:], block], axis=1)
        b.hist_len[rows] = np.minimum(b.hist_len[rows] + count, width)

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
        order = self.params.order
        candidates = [
            kalman.moment_models(x, d, self.params.trend, refs)
            for d in ((order[1],) if order else (0, 1))
        ]
        # Without a configured d, the one with the smaller one-step variance.
        best = [
            min((c for c in row if c), key=lambda c: c.sigma2, default=None)
            for row in zip(*candidates, strict=True)
        ]
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
            try:
                future = _pool(p.workers).submit(_fit_batch, jobs[batch])
            except RuntimeError as exc:  # broken or shut down: these try again next cycle
                if isinstance(exc, BrokenProcessPool):
                    shutdown_pools(wait=False)
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
            try:
                results = job.future.result()
            except Exception as exc:  # a killed worker, a cancelled task: counted, retried
                if isinstance(exc, BrokenProcessPool):
                    shutdown_pools(wait=False)
                results = [FitResult(None, 1, False)] * len(job.keys)
            for key, end, result in zip(job.keys, job.ends, results, strict=True):
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
            self._run(group, ssm, kalman.initial_state(ssm, models, since), count)
            b.fresh[group] = False
        for count in np.unique(steps[modelled & ~fresh & (steps > 0)]).tolist():
            group = rows[modelled & ~fresh & (steps == count)]
            self._run(group, *b.system(group), count)

    def _run(self, rows: IntArray, ssm: StateSpace, state: FilterState, count: int) -> None:
        b, y = self._bank, self._bank.hist[rows, -count:]
        expected, var = kalman.run(ssm, state, y)
        b.a[rows], b.P[rows], b.diffuse[rows] = state.a, state.P, state.diffuse
        b.last[rows] = np.column_stack([y[:, -1], expected[:, -1], var[:, -1]])
        self.filtered_points += y.size


register("arima", ARIMAParams, ARIMADetector)
