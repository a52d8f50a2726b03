"""The range-matrix decoder against an earlier version of itself, in the same run.

Builds a compact `query_range` answer (default 1,000 series x 720 points, ~17 MB), then times
the baseline's `loads` (the decoder at `--baseline`, read with `git show`), this tree's
`decode.matrix` with no cap and with `--max-series`, and plain `json.loads` for scale. Best of
`--repeat`; the ratios are against the baseline.

    .venv/bin/python benchmarks/bench_decode.py [--baseline cee513b] [--series 1000]
        [--points 720] [--max-series 100] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from exporter.prometheus import decode

ROOT = Path(__file__).resolve().parent.parent


def body(series: int, points: int) -> bytes:
    rng = np.random.default_rng(1)
    ts = 1_700_000_000 + 15 * np.arange(points)
    result = [
        {
            "metric": {"__name__": "m", "instance": f"host-{i:05d}:9100", "job": "node"},
            "values": [
                [int(t), f"{v:.6g}"] for t, v in zip(ts, rng.normal(50, 1, points), strict=True)
            ],
        }
        for i in range(series)
    ]
    doc = {"status": "success", "data": {"resultType": "matrix", "result": result}}
    return json.dumps(doc, separators=(",", ":")).encode()


def baseline(rev: str) -> types.ModuleType:
    source = subprocess.run(
        ["git", "show", f"{rev}:exporter/prometheus/decode.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType("decode_baseline")
    exec(compile(source, f"{rev}:decode.py", "exec"), module.__dict__)
    return module


def best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    """Print each decoder's best time and its ratio to the baseline."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", default="cee513b", help="git revision to compare with")
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--points", type=int, default=720)
    parser.add_argument("--max-series", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    data = body(args.series, args.points)
    old = baseline(args.baseline)
    print(f"answer: {args.series} series x {args.points} points, {len(data) / 1e6:.1f} MB")
    ref = best(lambda: old.loads(data), args.repeat)
    rows = [
        (f"{args.baseline} decode.loads", ref),
        ("decode.matrix", best(lambda: decode.matrix(data), args.repeat)),
        (
            f"decode.matrix max_series={args.max_series}",
            best(lambda: decode.matrix(data, args.max_series), args.repeat),
        ),
        ("json.loads", best(lambda: json.loads(data), args.repeat)),
    ]
    for name, seconds in rows:
        print(f"  {name:40} {seconds * 1000:8.0f} ms   x{seconds / ref:.2f}")


if __name__ == "__main__":
    main()
