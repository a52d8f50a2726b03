"""What the warm-up figures cost a poll: `observe` after the default detector's `score`.

Run from the repository root: `.venv/bin/python benchmarks/bench_warmup.py [--series N]`.
One query of N series on the default (the ensemble under `seasonality: auto`, 5 m steps, a
3-day look-back, 865 columns), scored the way the poll scores it (`QueryRunner.score`, which
calls `observe`), in three states: every series scored; every series warming up with one
history length (a fleet started together); and with the histories spread over 100 lengths
(probes capped at PROBES per detector). Prints the median seconds of `observe` alone and as
a ratio of the same run's `score` without it: the baseline is measured in the same process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from exporter.config.queries import QueryConfig
from exporter.detectors import Window
from exporter.scoring.runner import QueryRunner
from exporter.scoring.warmup import observe

COLS, STEP = 865, 300.0


def window(series: int, haves: list[int], seed: int = 0) -> Window:
    """`series` noisy rows; row i has `haves[i % len(haves)]` past points (all when 0)."""
    rng = np.random.default_rng(seed)
    values = rng.normal(100, 2, (series, COLS))
    for i in range(series):
        have = haves[i % len(haves)]
        if have:
            values[i, : COLS - 1 - have] = np.nan
    keys = [(("series", f"s{i:05d}"),) for i in range(series)]
    return Window(values, STEP * np.arange(COLS, dtype=np.float64), keys, STEP)


def measure(series: int, haves: list[int], repeats: int) -> tuple[float, float, int]:
    """(median seconds of score without observe, of observe alone, series warming)."""
    q = QueryConfig(name="q", expr="x")
    runner = QueryRunner.build(q)
    w = window(series, haves)
    runner.score(w)  # the first call bootstraps every series; time the polls after it
    scores, observes, warming = [], [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        estimates = runner.score(w)
        total = time.perf_counter() - t0
        t1 = time.perf_counter()
        seen = observe(runner.detectors, w, estimates)
        alone = time.perf_counter() - t1
        # score() ran observe too: the baseline is the rest of it.
        scores.append(total - alone)
        observes.append(alone)
        warming = seen.warming
    return statistics.median(scores), statistics.median(observes), warming


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}; {args.series} series x {COLS} columns")
    print(f"{'state':<42} {'score s':>9} {'observe s':>10} {'ratio':>7} {'warming':>8}")
    for label, haves in (
        ("all scored (3 days of history)", [0]),
        ("all warming, one history (5 points)", [5]),
        ("all warming, 100 histories (1..100 points)", list(range(1, 101))),
    ):
        score, alone, warming = measure(args.series, haves, args.repeats)
        print(f"{label:<42} {score:>9.3f} {alone:>10.4f} {alone / score:>7.3f} {warming:>8}")


if __name__ == "__main__":
    main()
