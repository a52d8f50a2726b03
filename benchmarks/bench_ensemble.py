"""What one poll of the default ensemble costs, against the members it replaced (a ratio).

Scores `--series` series of `--points` points (the default query: 3 days at 5 minutes) with
the shipped ensemble (quantile level, z-score of the change, rolling mean) and with the
session-3 members (two robust z-scores), in the same process: the first poll (which
bootstraps every series) and then steady polls, one new point each.

    .venv/bin/python benchmarks/bench_ensemble.py [--series 2000] [--points 864] [--polls 5]

`--scale 1000,10000,50000` instead times the default ensemble before and after issue 14
(a ratio): "before" is the ensemble with the detectors as they were (kept verbatim in
tests/legacy_*.py for the equivalence test), "after" the shipped ones, in the same process on
the same matrix, 864 points per series, one new column per poll. For each size: the median
wall and CPU seconds of the steady polls (`bootstrap: 0`, so every poll scores every series
as a steady poll does), the extra memory of one poll above the input matrix (tracemalloc's
peak, which numpy reports to), and at 10k one bootstrap call (new series replayed up to
BOOTSTRAP_POINTS). It prints the load average, which the wall times depend on.

    .venv/bin/python benchmarks/bench_ensemble.py --scale 1000,10000,50000 [--polls 3]
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from exporter.detectors import base
from exporter.detectors.base import Detector, Window
from exporter.detectors.ensemble import EnsembleDetector, EnsembleParams, make_ensemble

STEP = 300.0
SCALE_STEP, SCALE_POINTS = 300.0, 864
OLD_MEMBERS: list[dict[str, Any]] = [
    {"detector": "zscore", "robust": True, "window": 2000, "refresh": 16},
    {"detector": "zscore", "robust": True, "window": 2000, "refresh": 16, "differences": 1},
]


def run(params: EnsembleParams, values: np.ndarray, points: int, polls: int) -> tuple[float, float]:
    """Seconds of the first poll and the median of the next `polls`."""
    detector = base.build("ensemble", params)
    assert isinstance(detector, EnsembleDetector)
    keys = [(("series", str(i)),) for i in range(values.shape[0])]
    times = STEP * np.arange(values.shape[1], dtype=np.float64)

    def poll(end: int) -> float:
        window = Window(values[:, end - points : end], times[end - points : end], keys, STEP)
        started = time.perf_counter()
        detector.score(window)
        return time.perf_counter() - started

    first = poll(points)
    steady = [poll(points + i) for i in range(1, polls + 1)]
    return first, statistics.median(steady)


def legacy_members(params: EnsembleParams) -> list[Detector]:
    """The default members as they were before issue 14."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    classes: dict[str, Any] = {
        "quantile": importlib.import_module("legacy_quantile").QuantileDetector,
        "zscore": importlib.import_module("legacy_zscore").ZScoreDetector,
        "rolling": importlib.import_module("legacy_rolling").RollingDetector,
    }
    return [classes[m.detector](m.params) for m in params.members]


def build(version: str, bootstrap: int) -> EnsembleDetector:
    params = EnsembleParams(bootstrap=bootstrap)
    if version == "before":
        return EnsembleDetector(params, members=legacy_members(params))
    return make_ensemble(params)


def matrix(rows: int, cols: int) -> np.ndarray:
    """A day-long wave with 10 % noise and 1 % gaps at levels 10..1e6."""
    rng = np.random.default_rng(14)
    values = np.sin(np.arange(cols)[None, :] * 2 * np.pi / 288 + rng.uniform(0, 6, (rows, 1)))
    values += rng.normal(0, 0.1, (rows, cols))
    values *= rng.uniform(10, 1e6, (rows, 1))
    values[rng.random((rows, cols)) < 0.01] = np.nan
    return values


def scale_polls(version: str, values: np.ndarray, count: int) -> tuple[float, float, float]:
    """Median wall and CPU seconds of `count` steady polls, and one poll's extra MB."""
    detector = build(version, bootstrap=0)
    keys = [(("series", str(i)),) for i in range(len(values))]
    stamps = SCALE_STEP * np.arange(values.shape[1], dtype=np.float64)

    def window(end: int) -> Window:
        return Window(
            values[:, end - SCALE_POINTS : end], stamps[end - SCALE_POINTS : end], keys, SCALE_STEP
        )

    detector.score(window(SCALE_POINTS))  # the series' first poll
    walls, cpus = [], []
    for i in range(1, count + 1):
        wall, cpu = time.perf_counter(), time.process_time()
        detector.score(window(SCALE_POINTS + i))
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    tracemalloc.start()
    detector.score(window(SCALE_POINTS + count + 1))
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return statistics.median(walls), statistics.median(cpus), peak


def scale_bootstrap(version: str, values: np.ndarray) -> tuple[float, float, float]:
    """Wall and CPU seconds and extra MB of the first call on new series (one budget)."""
    detector = build(version, bootstrap=400)
    keys = [(("series", str(i)),) for i in range(len(values))]
    stamps = SCALE_STEP * np.arange(SCALE_POINTS, dtype=np.float64)
    tracemalloc.start()
    wall, cpu = time.perf_counter(), time.process_time()
    detector.score(Window(values[:, :SCALE_POINTS], stamps, keys, SCALE_STEP))
    took = time.perf_counter() - wall, time.process_time() - cpu
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return took[0], took[1], peak


def scale(sizes: list[int], count: int) -> None:
    """The before / after table of `--scale`."""
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {SCALE_POINTS} points per series")
    print(f"{'series':>7} {'version':8}{'wall s':>9}{'cpu s':>8}{'extra MB':>10}{'input MB':>10}")
    for size in sizes:
        values = matrix(size, SCALE_POINTS + count + 2)
        for version in ("before", "after"):
            wall, cpu, peak = scale_polls(version, values, count)
            mb = size * SCALE_POINTS * 8 / 1e6
            print(f"{size:>7} {version:8}{wall:9.3f}{cpu:8.3f}{peak:10.1f}{mb:10.1f}", flush=True)
        if size == 10_000:
            for version in ("before", "after"):
                wall, cpu, peak = scale_bootstrap(version, values)
                label = f"{version} bootstrap call"
                print(f"{size:>7} {label:8}{wall:9.2f}{cpu:8.2f}{peak:10.1f}", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--points", type=int, default=864)
    parser.add_argument("--polls", type=int, default=5)
    parser.add_argument("--scale", help="series counts, e.g. 1000,10000,50000")
    args = parser.parse_args()
    if args.scale:
        scale([int(s) for s in args.scale.split(",")], args.polls)
        return
    rng = np.random.default_rng(1)
    values = 100 + rng.normal(0, 2, (args.series, args.points + args.polls + 1))
    shipped = run(EnsembleParams(), values, args.points, args.polls)
    old = run(
        EnsembleParams.model_validate({"members": OLD_MEMBERS}), values, args.points, args.polls
    )
    print(f"{args.series} series x {args.points} points, {args.polls} steady polls")
    print(f"{'':28}{'first poll':>12}{'steady poll':>14}")
    print(f"{'shipped default':28}{shipped[0]:11.2f}s{shipped[1]:13.3f}s")
    print(f"{'session-3 members':28}{old[0]:11.2f}s{old[1]:13.3f}s")
    print(
        f"{'ratio shipped / session 3':28}{shipped[0] / old[0]:11.1f}x{shipped[1] / old[1]:13.1f}x"
    )


if __name__ == "__main__":
    main()
