"""What one poll of the default ensemble costs, against the members it replaced (a ratio).

Scores `--series` series of `--points` points (the default query: 3 days at 5 minutes) with
the shipped ensemble (quantile level, z-score of the change, rolling mean) and with the
session-3 members (two robust z-scores), in the same process: the first poll (which
bootstraps every series) and then steady polls, one new point each.

    .venv/bin/python benchmarks/bench_ensemble.py [--series 2000] [--points 864] [--polls 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from exporter.detectors import base
from exporter.detectors.base import Window
from exporter.detectors.ensemble import EnsembleDetector, EnsembleParams

STEP = 300.0
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--points", type=int, default=864)
    parser.add_argument("--polls", type=int, default=5)
    args = parser.parse_args()
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
