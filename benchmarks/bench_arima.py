"""ARIMA streaming updates for 1,000 series, against statsmodels refitting or extending per series.

Run from the repository root: `.venv/bin/python benchmarks/bench_arima.py [--series N]`.
Measures, in one run: the first fit of every series in the process pool (2 workers) and how
long `score()` takes while those fits land; one scoring cycle of 1 and of 4 new points per
series with the vectorised Kalman filter; the same cycle done the statsmodels way on a
sample of series (refit every step, `results.extend`, `results.append`), scaled to all series;
a backtest (`score_all`) of one 22,000-point series; peak RSS of this process and of the
workers, and the workers' thread counts (OpenBLAS must run single-threaded there).
Results are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import statsmodels

from exporter.detectors.arima import ARIMADetector, ARIMAParams, kalman
from exporter.detectors.arima import detector as arima
from exporter.detectors.arima import fit as arima_fit
from exporter.detectors.base import FloatArray, Window

POINTS, STEP = 720, 15.0
BASELINE_SERIES = 20


def series(rows: int, width: int, seed: int = 0) -> FloatArray:
    """A mix of what a fleet exports: AR(1) gauges, ARMA(1,1), random walks with drift
    (filling disks), white noise; levels from 10 to 1e6."""
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(rows, width + 100))
    kind = np.arange(rows) % 4
    phi = np.where(kind == 0, 0.8, np.where(kind == 1, 0.5, np.where(kind == 2, 0.3, 0.0)))
    theta = np.where(kind == 1, 0.4, 0.0)
    y = np.zeros_like(e)
    for t in range(1, e.shape[1]):
        y[:, t] = phi * y[:, t - 1] + e[:, t] + theta * e[:, t - 1]
    y = y[:, 100:]
    walk = kind == 2
    y[walk] = np.cumsum(y[walk] + 0.2, axis=1)
    level = rng.uniform(10, 1e6, (rows, 1))
    return level + level * 0.01 * y


def window(x: FloatArray, end: int) -> Window:
    keys = [(("instance", f"host-{i:04d}"),) for i in range(x.shape[0])]
    ts = STEP * np.arange(end - POINTS, end, dtype=np.float64)
    return Window(x[:, end - POINTS : end], ts, keys, STEP)


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def proc_status(pid: int, field: str) -> int:
    """A numeric field of /proc/PID/status (VmHWM in kB, Threads)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def first_fit(det: ARIMADetector, w: Window) -> dict[str, Any]:
    """Score until every series' pool fit has landed; how long, and score() meanwhile."""
    t0 = time.perf_counter()
    det.score(w)
    first_call = time.perf_counter() - t0
    calls: list[float] = []
    threads: list[int] = []
    while det.pending:
        time.sleep(0.25)
        c0 = time.perf_counter()
        det.score(w)
        calls.append(time.perf_counter() - c0)
        pool = arima_fit._pools.get(det.params.workers)
        if det.fits and not threads and pool is not None:
            # Results have come back: the workers have imported numpy and statsmodels.
            threads = [proc_status(pid, "Threads") for pid in pool._processes]
    total = time.perf_counter() - t0
    pool = arima_fit._pools.get(det.params.workers)
    hwm = [proc_status(p, "VmHWM") for p in (pool._processes if pool else {})]
    return {
        "first_call": first_call,
        "total": total,
        "calls": calls,
        "threads": threads,
        "worker_hwm_mb": [h / 1024 for h in hwm],
    }


def statsmodels_baselines(x: FloatArray, det: ARIMADetector, rows: list[int]) -> dict[str, float]:
    """Seconds per series for one new point: refit, `extend`, `append` (same orders)."""
    from statsmodels.tsa.arima.model import ARIMA

    refit, extend, append = [], [], []
    for i in rows:
        model = det._models[det._index[(("instance", f"host-{i:04d}"),)]]
        assert model is not None
        order = model.order
        trend = "n" if model.trend == "n" else ("t" if order[1] else "c")
        hist, new = x[i, :POINTS], x[i, POINTS : POINTS + 1]
        with warnings.catch_warnings(action="ignore"):
            t0 = time.perf_counter()
            res = ARIMA(np.concatenate([hist[1:], new]), order=order, trend=trend).fit()
            refit.append(time.perf_counter() - t0)
            res = ARIMA(hist, order=order, trend=trend).fit()
            t0 = time.perf_counter()
            res.extend(new)
            extend.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            res.append(new)
            append.append(time.perf_counter() - t0)
    return {
        "refit": statistics.mean(refit),
        "extend": statistics.mean(extend),
        "append": statistics.mean(append),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=15, help="cycles per streaming timing")
    args = parser.parse_args()
    n = args.series

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"statsmodels {statsmodels.__version__}"
    )
    print(
        f"nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')} in this process"
    )
    cycles = 2 * args.repeat + 2
    x = series(n, POINTS + 5 * cycles)
    print(f"{n} series x {POINTS} points, step {STEP:.0f} s\n")

    det = ARIMADetector(ARIMAParams(workers=2))
    try:
        fit = first_fit(det, window(x, POINTS))
    finally:
        arima_fit.shutdown_pools()
    calls = fit["calls"]
    orders = Counter(str(m.order) for m in det._models if m is not None)
    print(
        f"first fit of {n} series in the pool (2 workers): {fit['total']:.1f} s "
        f"({fit['total'] / n * 1e3 * 2:.0f} ms per fit per worker)"
    )
    print(
        f"  first score() (moment stand-ins, {n} series filtered over {arima.REFILTER} points): "
        f"{fit['first_call'] * 1e3:.0f} ms"
    )
    if calls:
        print(
            f"  score() while fits land: median {statistics.median(calls) * 1e3:.0f} ms, "
            f"max {max(calls) * 1e3:.0f} ms over {len(calls)} calls"
        )
    print(
        f"  fits {det.fits}, failures {det.fit_failures}, fallbacks {det.fallbacks}; "
        f"orders {dict(orders.most_common(6))}"
    )
    print(
        f"  worker threads {fit['threads']}, "
        f"worker peak RSS {[round(h) for h in fit['worker_hwm_mb']]} MB"
    )

    # Streaming cycles: the window moves on by k points, every series scored.
    end = POINTS
    done = det.filtered_points

    def cycle(k: int) -> None:
        nonlocal end
        end += k
        det.score(window(x, end))

    one = median_seconds(lambda: cycle(1), args.repeat)
    four = median_seconds(lambda: cycle(4), args.repeat)
    assert det.filtered_points - done == n * (args.repeat * 5), (
        "a cycle filtered more than new points"
    )
    assert not det.pending, "a refit was scheduled during the streaming timings"
    print(
        f"\nstreaming score() cycle, {n} series: 1 new point {one * 1e3:.1f} ms, "
        f"4 new points {four * 1e3:.1f} ms (median of {args.repeat})"
    )

    models = [m for m in det._models if m is not None]
    ssm = kalman.build(models, det._k)
    y, origin = x[:, : arima.REFILTER], np.zeros(len(models))
    refilter = median_seconds(
        lambda: kalman.run(ssm, kalman.initial_state(ssm, models, origin), y), 3
    )
    print(
        f"all {n} models filtered afresh over {arima.REFILTER} points (all fits landing at once): "
        f"{refilter * 1e3:.0f} ms"
    )

    sample = list(range(0, n, max(1, n // BASELINE_SERIES)))[:BASELINE_SERIES]
    base = statsmodels_baselines(x, det, sample)
    print(f"\nstatsmodels per series, one new point (mean of {len(sample)} series, scaled to {n}):")
    for name, sec in base.items():
        print(
            f"  {name:7} {sec * 1e3:7.2f} ms/series -> {sec * n:7.2f} s per cycle; "
            f"the vectorised filter is {sec * n / one:,.0f}x faster"
        )

    long = series(1, 22_000, seed=5)
    bt = ARIMADetector(ARIMAParams(workers=0))
    t0 = time.perf_counter()
    bt.score_all(Window(long, np.arange(22_000, dtype=np.float64), [(("f", "x"),)], 1.0))
    print(
        f"\nscore_all (backtest) of one 22,000-point series: {time.perf_counter() - t0:.1f} s "
        f"({bt.fits} synchronous fits)"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
