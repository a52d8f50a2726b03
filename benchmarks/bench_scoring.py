"""Scoring throughput: augur's detectors on 10,000 series x 720 points, against pandas.

Run from the repository root: `.venv/bin/python benchmarks/bench_scoring.py [--quick]`.
Prints one table: points/s (input points per second, median of the repetitions), the extra
memory each detector allocates at its peak (tracemalloc, numpy reports to it), the process's
peak RSS, the per-series pandas `rolling().mean()/std()` baseline a user would otherwise write,
the time to align a JSON-decoded 2,000 x 720 `query_range` result, and a backtest's
`score_all` over one 22,000-point series. Results are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import threading
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from exporter.detectors import DETECTORS, Detector, FloatArray, Window, build, score_all
from exporter.scoring.align import align

SERIES, POINTS = 10_000, 720
PANDAS_SERIES = 300
ALIGN_SERIES = 2_000
DETECTORS_UNDER_TEST: list[tuple[str, str, dict[str, Any]]] = [
    ("zscore", "zscore (window: all 719 past points)", {}),
    ("zscore", "zscore window=60", {"window": 60}),
    ("zscore", "zscore robust (median/MAD)", {"robust": True}),
    ("ewma", "ewma alpha=0.1", {}),
]
LONG_POINTS = 22_000
LONG_UNDER_TEST: list[tuple[str, dict[str, Any]]] = [
    ("zscore", {}),
    ("zscore robust window=2000 refresh=16", {"robust": True, "window": 2000, "refresh": 16}),
]


def matrix(rows: int, width: int, gaps: float, seed: int = 0) -> FloatArray:
    """Seasonal series with 1 % noise at levels 10..1e6; `gaps` is the fraction of NaNs.

    Built in place and in blocks of rows, so the peak RSS printed later is not the generator's.
    """
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, rows)
    level = rng.uniform(10, 1e6, rows)
    values = np.add.outer(phase, 2 * np.pi * np.arange(width) / 288)
    np.sin(values, out=values)
    values *= 0.1
    values += 1.0
    for lo in range(0, rows, 1000):
        block = values[lo : lo + 1000]
        block += rng.normal(0, 0.01, block.shape)
        if gaps:
            block[rng.random(block.shape) < gaps] = np.nan
    values *= level[:, None]
    return values


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def extra_peak_mb(fn: Callable[[], object]) -> float:
    """Peak memory allocated while `fn` runs (untimed: tracemalloc slows allocation)."""
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def pandas_zscore(values: FloatArray, window: int) -> FloatArray:
    """What a user writes without augur: per series, rolling mean/std of the past points."""
    out = np.empty(values.shape[0])
    for i, row in enumerate(values):
        s = pd.Series(row)
        past = s.shift(1).rolling(window, min_periods=10)
        z = (s - past.mean()) / past.std()
        out[i] = z.iloc[-1]
    return out


def prometheus_result(rows: int, width: int, start: float, step: float) -> list[dict[str, Any]]:
    """A decoded query_range matrix: full-precision value strings, as Prometheus writes them."""
    rng = np.random.default_rng(1)
    result = [
        {
            "metric": {"__name__": "node_load1", "instance": f"host-{i:04d}:9100", "job": "node"},
            "values": [
                [start + k * step, repr(float(v))] for k, v in enumerate(rng.gamma(2.0, size=width))
            ],
        }
        for i in range(rows)
    ]
    decoded: list[dict[str, Any]] = json.loads(json.dumps(result))
    return decoded


def loop_stall_ms(fn: Callable[[], object]) -> float:
    """Longest gap of a 1 ms ticker on this thread while `fn` runs in another (GIL holding)."""
    done = threading.Event()

    def run() -> None:
        fn()
        done.set()

    worker = threading.Thread(target=run)
    worst, last = 0.0, time.perf_counter()
    worker.start()
    while not done.is_set():
        time.sleep(0.001)
        now = time.perf_counter()
        worst, last = max(worst, now - last), now
    worker.join()
    return worst * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per measurement")
    parser.add_argument("--quick", action="store_true", help="1,000 series, for a smoke run")
    args = parser.parse_args()
    rows = SERIES // 10 if args.quick else SERIES
    points = rows * POINTS

    print(f"python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}")
    print(f"nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    print(f"matrix: {rows} series x {POINTS} points = {points / 1e6:.1f} M points\n")

    print(f"{'detector':40} {'gaps':>5} {'ms':>8} {'M points/s':>11} {'extra MB':>9}")
    rates: dict[str, float] = {}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for gaps in (0.0, 0.01):
        window = Window(
            values=matrix(rows, POINTS, gaps),
            timestamps=np.arange(POINTS, dtype=np.float64) * 60.0,
            keys=[(("i", str(i)),) for i in range(rows)],
            step=60.0,
        )
        for name, label, params in DETECTORS_UNDER_TEST:
            detector: Detector = build(name, DETECTORS[name].params.model_validate(params))
            detector.score(window)  # warm up
            seconds = median_seconds(partial(detector.score, window), args.repeat)
            extra = extra_peak_mb(partial(detector.score, window))
            rates[f"{label}/{gaps}"] = points / seconds
            print(
                f"{label:40} {gaps:5.0%} {seconds * 1e3:8.1f} {points / seconds / 1e6:11.1f} "
                f"{extra:9.1f}"
            )

        del window
    scoring_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"peak RSS: {before:.0f} MB before scoring (interpreter, numpy, pandas), "
        f"{scoring_peak:.0f} MB while scoring (one {points * 8 / 2**20:.0f} MB input matrix)"
    )

    sample = matrix(PANDAS_SERIES, POINTS, 0.0)
    print(f"\npandas per-series baseline ({PANDAS_SERIES} series x {POINTS} points):")
    for window_len, label in (
        (719, "zscore (window: all 719 past points)"),
        (60, "zscore window=60"),
    ):
        seconds = median_seconds(partial(pandas_zscore, sample, window_len), args.repeat)
        rate = PANDAS_SERIES * POINTS / seconds
        ratio = rates[f"{label}/0.0"] / rate
        print(
            f"  rolling({window_len}): {rate / 1e6:.2f} M points/s; "
            f"augur {label} is {ratio:.0f}x faster"
        )

    start, step = 1_700_000_000.0, 15.0
    result = prometheus_result(ALIGN_SERIES, POINTS, start, step)
    end = start + (POINTS - 1) * step
    seconds = median_seconds(lambda: align(result, start, end, step), max(3, args.repeat // 2))
    # The median of a few: on a loaded 2-core machine the OS alone can delay the ticker.
    stall = statistics.median(
        loop_stall_ms(lambda: align(result, start, end, step)) for _ in range(5)
    )
    print(
        f"\nalign {ALIGN_SERIES} x {POINTS} query_range result: {seconds * 1e3:.0f} ms "
        f"({ALIGN_SERIES * POINTS / seconds / 1e6:.2f} M samples/s); "
        f"longest stall of another thread meanwhile (median of 5): {stall:.0f} ms"
    )

    long = np.random.default_rng(13).normal(0, 1, (1, LONG_POINTS))
    times = np.arange(LONG_POINTS, dtype=np.float64) * 60.0
    long_window = Window(long, times, [(("series", "long"),)], 60.0)
    print(f"\nscore_all (backtest) of one {LONG_POINTS:,}-point series, a NAB-sized file:")
    for label, params in LONG_UNDER_TEST:
        detector = build("zscore", DETECTORS["zscore"].params.model_validate(params))
        seconds = median_seconds(partial(score_all, detector, long_window), args.repeat)
        print(f"  {label}: {seconds:.2f} s")

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the whole run (decoded JSON included): {peak:.0f} MB")


if __name__ == "__main__":
    main()
