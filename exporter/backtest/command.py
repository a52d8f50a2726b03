"""`augur backtest`: the daemon's detector settings run offline over history, with NAB's score.

CSV folders (NAB's layout) or a Prometheus range are scored causally by every configured
detector, with the query's seasonality and filters, into one `timestamp,value,anomaly_score,
expected,lower,upper,detection` CSV per input under `--out`; `detection` is 1 where an incident
opens or escalates (`exporter.scoring.incidents`, with the query's `recovery` and
`escalation`): what would notify someone. With anomaly windows it prints NAB's three
profiles on the detections (the headline), on `anomaly_score >= 1`, and at NAB's optimised
score threshold, with per-category counts.
Exit codes: 0 done, 2 bad usage, configuration or input (with a message), 1 runtime failure.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from exporter import logs
from exporter.backtest import nab
from exporter.backtest.history import fetch_prometheus, prometheus_config
from exporter.backtest.inputs import BacktestError, InputSeries, read_folder, read_settings
from exporter.config.base import located
from exporter.config.queries import QueryConfig
from exporter.detectors import ensemble as _ensemble  # noqa: F401  (registers "ensemble")
from exporter.detectors.base import Estimate, FloatArray, Window, apply_filters, build, score_all
from exporter.detectors.seasonal import wrap
from exporter.scoring.incidents import detections

_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Setup:
    """One detector of one query: what a column of results is called and how it is built."""

    label: str
    query: QueryConfig
    detector: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `augur backtest` flags."""
    logs.add_arguments(parser)
    add = parser.add_argument
    add("--data", type=Path, help="input: a folder of timestamp,value CSV files (any depth)")
    add("--nab", type=Path, help="input: NAB's DIR/data, scored with DIR/labels")
    add(
        "--prometheus",
        metavar="URL",
        help="input: history pulled from this Prometheus, with the credentials and TLS of "
        "--config's prometheus section and AUGUR_PROMETHEUS_*",
    )
    add("--query", metavar="PROMQL", help="with --prometheus (default: the config's queries)")
    add("--start", help="RFC 3339, unix seconds or now-<duration> (default: now-1d)")
    add("--end", help="as --start (default: now)")
    add("--step", help="resolution of the pulled history (default: the query's step)")
    add("--labels", type=Path, help="anomaly windows, NAB's combined_windows.json format")
    add(
        "--config",
        type=Path,
        help="the daemon's YAML: its `queries` (default: shipped ones) and `prometheus`",
    )
    add("--out", type=Path, help="write one CSV of scores per input and detector here")
    add("--jobs", type=int, default=1, help="worker processes (default: 1)")
    add("--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    """Run `augur backtest` with parsed `args`; returns the exit code."""
    logs.setup_from(args)
    try:
        return _run(args)
    except BacktestError as exc:
        print(f"augur backtest: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a crash in a detector or a worker: report, do not trace
        print(f"augur backtest: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    sources = [s for s in (args.data, args.nab, args.prometheus) if s is not None]
    if len(sources) != 1:
        raise BacktestError("give exactly one of --data DIR, --nab DIR or --prometheus URL")
    if args.jobs < 1:
        raise BacktestError("--jobs must be at least 1")
    queries = load_queries(args.config)
    labels = args.labels
    if args.nab is not None:
        args.data = args.nab / "data"
        labels = labels or args.nab / "labels" / "combined_windows.json"
    try:
        windows = nab.load_windows(labels) if labels else None
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise BacktestError(f"{labels}: cannot read NAB windows from it ({exc})") from None
    started = time.perf_counter()
    if args.prometheus:
        section = read_settings(args.config).get("prometheus") if args.config else None
        cfg = prometheus_config(args.prometheus, section)
        series = fetch_prometheus(cfg, args.query, args.start, args.end, args.step, queries)
    else:
        series = read_folder(args.data)
    setups = [
        Setup(name if len(queries) == 1 else f"{q.name}.{name}", q, name)
        for q in queries
        for name in q.detectors
    ]
    results = _score_everything(series, setups, args.out, args.jobs, args.quiet)
    elapsed = time.perf_counter() - started
    rows = sum(len(s.values) for s in series)
    speed = rows * len(setups) / max(elapsed, 1e-9)
    print(f"backtest: {len(series)} series, {rows:,} rows, {len(setups)} detector(s) in ", end="")
    print(f"{elapsed:.1f} s ({speed:,.0f} rows/s, {args.jobs} job(s))")
    if windows is not None:
        print(nab_report(series, setups, results, windows))
    return 0


def load_queries(path: Path | None) -> list[QueryConfig]:
    """The `queries` of a config file (the daemon's format), or the shipped default query."""
    if path is None:
        return [QueryConfig(name="default", expr="")]
    raw = read_settings(path).get("queries")
    if raw is None:
        return [QueryConfig(name="default", expr="")]
    if not isinstance(raw, list) or not raw:
        raise BacktestError(f"{path}: queries must be a non-empty list")
    queries, problems = [], []
    for i, item in enumerate(raw):
        try:
            item = {"name": f"query{i}", "expr": "", **item} if isinstance(item, dict) else item
            queries.append(QueryConfig.model_validate(item))
        except ValidationError as exc:
            problems += located(exc.errors(), f"queries[{i}]")
    if problems:
        raise BacktestError(f"{path}: invalid configuration:\n  " + "\n  ".join(problems))
    return queries


def score_series(setup: Setup, series: InputSeries) -> Estimate:
    """`setup`'s detector over the whole series, causally, with the query's filters."""
    diffs = np.diff(series.times)
    positive = diffs[diffs > 0]
    # Irregular files (NAB has 25) are scored row by row; the grid step is the median one.
    step = float(np.median(positive)) if positive.size else setup.query.step
    q = setup.query
    detector = wrap(build(setup.detector, q.detectors[setup.detector]), q.season_seconds(), step)
    window = Window(series.values[None, :], series.times, [(("series", series.name),)], step)
    filters = q.model_dump(
        include={"direction", "min_deviation", "min_relative_deviation", "valid_range"}
    )
    return apply_filters(score_all(detector, window), window.values, **filters)


@dataclass(frozen=True)
class Scored:
    """One series' results under one setup: the score per row and the detections."""

    score: FloatArray
    detection: FloatArray


def _work(
    series: InputSeries, setups: Sequence[Setup], out: Path | None
) -> tuple[str, dict[str, Scored], float]:
    """Score one series with its setups and write its CSVs; returns the results (for NAB)."""
    started = time.perf_counter()
    results = {}
    for setup in setups:
        if series.query is not None and setup.query.name != series.query:
            continue
        est = score_series(setup, series)
        fired, _ = detections(
            series.times, est.score[0], setup.query.recovery, setup.query.escalation
        )
        results[setup.label] = Scored(est.score[0], fired.astype(np.float64))
        if out is not None:
            target = out / (setup.label if len(setups) > 1 else "") / series.name
            write_csv(target, series, est, fired)
    return series.name, results, time.perf_counter() - started


def write_csv(path: Path, series: InputSeries, est: Estimate, fired: npt.NDArray[np.int8]) -> None:
    """`timestamp,value,anomaly_score,expected,lower,upper,detection`; NaN is written empty."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = (series.values, est.score[0], est.expected[0], est.lower[0], est.upper[0])
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["timestamp", "value", "anomaly_score", "expected", "lower", "upper", "detection"]
        )
        for i, stamp in enumerate(series.stamps):
            writer.writerow([stamp, *(_fmt(c[i]) for c in columns), int(fired[i])])


def _fmt(x: float) -> str:
    return repr(float(x)) if math.isfinite(x) else ""


def _score_everything(
    series: list[InputSeries], setups: list[Setup], out: Path | None, jobs: int, quiet: bool
) -> dict[str, dict[str, Scored]]:
    results: dict[str, dict[str, Scored]] = {}

    def done(name: str, scores: dict[str, Scored], seconds: float) -> None:
        results[name] = scores
        if not quiet and len(series) > 1:
            print(f"[{len(results)}/{len(series)}] {name} ({seconds:.1f} s)", file=sys.stderr)

    if jobs == 1:
        for s in series:
            done(*_work(s, setups, out))
        return results
    saved = dict(os.environ)
    # Spawned workers read these before numpy loads: one BLAS thread each, no oversubscription.
    os.environ.update(dict.fromkeys(_THREAD_VARS, "1"))
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            for future in as_completed([pool.submit(_work, s, setups, out) for s in series]):
                done(*future.result())
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return results


def nab_report(
    series: list[InputSeries],
    setups: list[Setup],
    results: dict[str, dict[str, Scored]],
    windows: nab.Windows,
) -> str:
    """NAB scores of every setup: on its detections (the headline), on score >= 1, and at
    NAB's optimised score threshold; per-category counts of the detections."""
    stamps = {s.name: s.times.astype("datetime64[s]") for s in series if s.name in windows}
    if not stamps:
        raise BacktestError("no input file has anomaly windows in the labels file")
    total = sum(len(windows[name]) for name in stamps)
    head = f"{'':30}" + "".join(f"{p:>20}" for p in nab.PROFILES)
    lines = [f"NAB score: {len(stamps)} of {len(series)} files labelled, {total} windows", head]
    counts = []
    for setup in setups:
        mine = {
            n: (t, results[n][setup.label]) for n, t in stamps.items() if setup.label in results[n]
        }
        if not mine:
            continue
        scores = {n: (t, r.score) for n, (t, r) in mine.items()}
        fired = {n: (t, r.detection) for n, (t, r) in mine.items()}
        try:
            notified = [nab.score_corpus(fired, windows, p, 1.0) for p in nab.PROFILES.values()]
            fixed = [nab.score_corpus(scores, windows, p, 1.0) for p in nab.PROFILES.values()]
            tuned = [nab.optimize_threshold(scores, windows, p) for p in nab.PROFILES.values()]
        except ValueError as exc:
            raise BacktestError(f"labels do not fit the data: {exc}") from None
        lines += [
            f"{setup.label + ' detections':30}"
            + "".join(f"{f.normalized:20.1f}" for f in notified),
            f"{setup.label + ' score >= 1':30}" + "".join(f"{f.normalized:20.1f}" for f in fixed),
            f"{setup.label + ' score optimised':30}" + "".join(f"{b:20.1f}" for _, b in tuned),
            f"{'  (its thresholds)':30}" + "".join(f"{t:20.3g}" for t, _ in tuned),
        ]
        counts.append(f"{setup.label}, detections, standard profile: windows hit / missed, FP rows")
        for category, t in notified[0].categories().items():
            counts.append(f"  {category:28}{t.windows_hit:5} /{t.windows_missed:4}{t.fp_rows:8}")
    return "\n".join(lines + counts)
