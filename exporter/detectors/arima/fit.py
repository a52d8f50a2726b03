"""Fitting one series' ARIMA with statsmodels, and the worker processes that run the fits.

`fit_model` picks the order (KPSS for d, Hannan-Rissanen and BIC for p and q), estimates it by
exact likelihood, and falls back to simpler orders when a fit raises or does not converge.
Detectors run it in a process pool shared by all of them, started on first use and stopped by
`shutdown_pools`; the functions the pool is given live at module level here, so they pickle.
"""

from __future__ import annotations

import math
import multiprocessing
import signal
import threading
import warnings
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from exporter.detectors.arima import kalman
from exporter.detectors.arima.kalman import ARIMAModel
from exporter.detectors.base import FloatArray

Trend = Literal["n", "c", "t"]
Order = tuple[int, int, int]

MAX_P, MAX_Q = 2, 2
"""Bounds of the automatic order selection (d is 0 or 1, chosen by a KPSS test)."""


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


def stand_ins(
    x: FloatArray, order: Order | None, trend: Trend, ref_times: FloatArray
) -> list[ARIMAModel | None]:
    """Moment AR(1)s for the rows of `x`, standing in for their fits until those land."""
    candidates = [
        kalman.moment_models(x, d, trend, ref_times) for d in ((order[1],) if order else (0, 1))
    ]
    # Without a configured d, the one with the smaller one-step variance.
    return [
        min((c for c in row if c), key=lambda c: c.sigma2, default=None)
        for row in zip(*candidates, strict=True)
    ]


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

    Two least-squares fits per candidate (a long AR for the innovations, then the ARMA
    regression): the whole grid costs less than one likelihood fit (docs/benchmarks.md,
    ARIMA). BIC rather than AIC: it picks smaller models, which fit faster, and these
    residuals flatter larger models anyway. Within 2 units of the best, the fewest terms win.
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
    """Pool initializer: Ctrl-C goes to the parent, which stops the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


_pools: dict[int, ProcessPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(workers: int) -> ProcessPoolExecutor:
    """The fitting processes, started on first use and shared by detectors of one size."""
    with _pools_lock:
        if workers not in _pools:
            # Workers run one BLAS thread each: they inherit exporter.BLAS_THREAD_VARS.
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


def submit(workers: int, jobs: list[tuple[Any, ...]]) -> Future[list[FitResult]] | None:
    """`fit_model(*job)` for each job, as one task of the pool; None if the pool cannot take it.

    A broken pool is stopped, so the next call starts a new one.
    """
    try:
        return _pool(workers).submit(_fit_batch, jobs)
    except RuntimeError as exc:  # broken or shut down
        if isinstance(exc, BrokenProcessPool):
            shutdown_pools(wait=False)
        return None


def collect(future: Future[list[FitResult]], count: int) -> list[FitResult]:
    """A finished task's results; a task that failed counts as `count` failed fits."""
    try:
        return future.result()
    except Exception as exc:  # a killed worker, a cancelled task: counted, retried
        if isinstance(exc, BrokenProcessPool):
            shutdown_pools(wait=False)
        return [FitResult(None, 1, False)] * count
