"""NAB on augur's detections, cross-validated over the corpus' categories.

Every candidate configuration (one query each, from a YAML file of `queries`, or the shipped
default alone) is backtested once over a labelled corpus (NAB's layout: DIR/data, DIR/labels).
NAB's three profiles are then computed on the `detection` column (incident onsets and
escalations, what notifies someone) for the whole corpus and for two halves of its categories.
The cross-validated figure picks the candidate that scores best on one half and reports it on
the other, both ways round: what choosing among these candidates is worth on data it was not
chosen on. With one candidate it is simply the score of each half.

    .venv/bin/python benchmarks/nab_cv.py --nab ../shared/data/nab
    .venv/bin/python benchmarks/nab_cv.py --nab ../shared/data/nab --config candidates.yaml
    .venv/bin/python benchmarks/nab_cv.py --nab /tmp/synthetic --half-a spikes,dips,...
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from exporter.backtest import nab
from exporter.backtest.command import Scored, Setup, _score_everything, load_queries
from exporter.backtest.inputs import read_folder

HALF_A = ("artificialNoAnomaly", "artificialWithAnomaly", "realAdExchange", "realTraffic")
"""NAB's categories of the first half (the rest are the second): 40 and 76 of the windows."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nab", type=Path, required=True, help="DIR with data/ and labels/")
    parser.add_argument("--config", type=Path, help="YAML whose queries are the candidates")
    parser.add_argument("--half-a", default=",".join(HALF_A), help="categories of half A")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)

    queries = load_queries(args.config)
    setups = [Setup(q.name, q, name) for q in queries for name in q.detectors]
    series = read_folder(args.nab / "data")
    windows = nab.load_windows(args.nab / "labels" / "combined_windows.json")
    started = time.perf_counter()
    results = _score_everything(series, setups, None, args.jobs, quiet=True)
    elapsed = time.perf_counter() - started
    half_a = set(args.half_a.split(","))
    names = [s.name for s in series if s.name in windows]
    groups = {
        "all": names,
        "A": [n for n in names if n.split("/")[0] in half_a],
        "B": [n for n in names if n.split("/")[0] not in half_a],
    }
    stamps = {s.name: s.times.astype("datetime64[s]") for s in series}
    table: dict[str, dict[str, list[float]]] = {}
    for setup in setups:
        table[setup.label] = {
            group: [
                _score(results, stamps, files, windows, setup.label, profile)
                for profile in nab.PROFILES.values()
            ]
            for group, files in groups.items()
        }
    print(f"{len(series)} files, {len(setups)} candidate(s), scored in {elapsed:.1f} s")
    print(f"half A: {', '.join(sorted(half_a))}; half B: the other categories")
    head = f"{'candidate':34}" + "".join(
        f"{g + ' ' + p[:6]:>14}" for g in groups for p in ("std", "lowFP", "lowFN")
    )
    print(head)
    for label, row in table.items():
        cells = [f"{v:14.1f}" for g in groups for v in row[g]]
        print(f"{label[:34]:34}" + "".join(cells))
    for i, profile in enumerate(nab.PROFILES):
        on_b = _cross(table, "A", "B", i)
        on_a = _cross(table, "B", "A", i)
        print(
            f"cross-validated, {profile}: chosen on A -> {on_b[0]} scores {on_b[1]:.1f} on B; "
            f"chosen on B -> {on_a[0]} scores {on_a[1]:.1f} on A"
        )
    return 0


def _score(
    results: Mapping[str, Mapping[str, Scored]],
    stamps: Mapping[str, np.ndarray],
    files: Sequence[str],
    windows: nab.Windows,
    label: str,
    profile: nab.Profile,
) -> float:
    fired = {n: (stamps[n], results[n][label].detection) for n in files}
    return nab.score_corpus(fired, windows, profile, 1.0).normalized


def _cross(
    table: Mapping[str, Mapping[str, list[float]]], tune: str, test: str, i: int
) -> tuple[str, float]:
    best = max(table, key=lambda label: table[label][tune][i])
    return best, table[best][test][i]


if __name__ == "__main__":
    sys.exit(main())
