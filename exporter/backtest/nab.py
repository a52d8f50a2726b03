"""Scoring against NAB, the Numenta Anomaly Benchmark, exactly as NAB's own code does it.

This is numenta/NAB's `nab/sweeper.py` (per-row sweep scores and the threshold sweep),
`nab/optimizer.py` (one threshold per detector and profile, tuned on the whole corpus),
`nab/scorer.py` (per-file scores at that threshold) and the normalisation in `nab/runner.py`,
vectorised: scoring and tuning all three profiles on the 365k-row corpus takes well under a
second. Scores may be on any scale; a row is a detection when its score is >= the threshold,
and a NaN score (a detector that could not score the row) is never a detection.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt

from exporter.detectors.base import FloatArray, IntArray

Timestamps = npt.NDArray[np.datetime64]
FileScores = tuple[npt.ArrayLike, npt.ArrayLike]
"""One file's `(timestamps, anomaly scores)`, row for row."""
Windows = Mapping[str, Sequence[tuple[datetime, datetime]]]
"""Relative data path ("realKnownCause/nyc_taxi.csv") -> its anomaly windows, in time order."""

PROBATION_FRACTION: Final = 0.15
"""Share of each file's first rows that is never scored (capped at 15 % of 5000 rows)."""


@dataclass(frozen=True)
class Profile:
    """An NAB profile: what a detected window earns and what a false positive and a miss cost."""

    name: str
    a_fp: float
    a_fn: float
    a_tp: float = 1.0


PROFILES: Final[Mapping[str, Profile]] = MappingProxyType(
    {
        p.name: p
        for p in (
            Profile("standard", a_fp=0.11, a_fn=1.0),
            Profile("reward_low_FP_rate", a_fp=0.22, a_fn=1.0),
            Profile("reward_low_FN_rate", a_fp=0.11, a_fn=2.0),
        )
    }
)
"""NAB's three profiles, by NAB's names."""


@dataclass(frozen=True)
class Tally:
    """Raw NAB score and counts of one file, one category or the corpus at one threshold."""

    raw: float
    windows_hit: int
    windows_missed: int
    fp_rows: int

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.raw + other.raw,
            self.windows_hit + other.windows_hit,
            self.windows_missed + other.windows_missed,
            self.fp_rows + other.fp_rows,
        )


@dataclass(frozen=True)
class CorpusScore:
    """A corpus scored under one profile at one threshold.

    `normalized` is NAB's figure: 0 for never firing, 100 for perfect (NaN without windows).
    """

    profile: Profile
    threshold: float
    normalized: float
    total: Tally
    files: Mapping[str, Tally]

    def categories(self) -> dict[str, Tally]:
        """Totals per category, the directory part of the file names ("realKnownCause")."""
        out: dict[str, Tally] = {}
        for name, tally in sorted(self.files.items()):
            category = name.rpartition("/")[0]
            out[category] = out[category] + tally if category in out else tally
        return out


def load_windows(path: str | Path) -> dict[str, list[tuple[datetime, datetime]]]:
    """Read NAB's `combined_windows.json` into naive datetimes per relative data path."""
    raw: dict[str, list[list[str]]] = json.loads(Path(path).read_text())
    return {
        name: [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in windows]
        for name, windows in raw.items()
    }


def load_series(path: str | Path) -> tuple[Timestamps, FloatArray]:
    """Read a two-column NAB CSV (`timestamp,value` or `timestamp,anomaly_score`)."""
    with Path(path).open(newline="") as f:
        rows = list(csv.reader(f))[1:]
    return (
        np.array([r[0] for r in rows], dtype="datetime64[us]"),
        np.array([r[1] for r in rows], dtype=np.float64),
    )


def _scaled_sigmoid(x: FloatArray) -> FloatArray:
    # NAB's 2*sigmoid(-5x) - 1, flattened to -1 beyond 3 (clipping first keeps exp finite).
    y: FloatArray = 2.0 / (1.0 + np.exp(5.0 * np.minimum(x, 3.0))) - 1.0
    return np.where(x > 3.0, -1.0, y)


_MAX_TP: Final = float(_scaled_sigmoid(np.array([-1.0]))[0])


@dataclass(frozen=True)
class _Rows:
    """The scorable (post-probation) rows of a corpus, file after file, and its windows."""

    names: tuple[str, ...]
    file: IntArray  # file index of each row
    score: FloatArray
    window: IntArray  # window index, -1 outside every window
    credit: FloatArray  # inside a window: A_TP multiplier, 1.0 on the window's first row
    cost: FloatArray  # outside: A_FP multiplier, -1.0 when no window precedes the row
    window_file: IntArray  # file index of each window
    scorable: npt.NDArray[np.bool_]  # windows with a row after probation; NAB skips the others


def _layout(
    name: str, ts: Timestamps, windows: Sequence[tuple[datetime, datetime]], first: int
) -> tuple[IntArray, FloatArray, FloatArray]:
    """Per-row window index, credit and cost of one file, following Sweeper.calcSweepScore."""
    n = len(ts)
    window = np.full(n, -1, dtype=np.intp)
    credit = np.zeros(n)
    cost = np.full(n, -1.0)
    enter_from, prev_exit = 0, -1
    for k, (start, end) in enumerate(windows):
        starts = np.flatnonzero(ts == np.datetime64(start, "us"))
        ends = np.flatnonzero(ts == np.datetime64(end, "us"))
        later = starts[starts >= enter_from]
        if not later.size or not ends.size:
            raise ValueError(f"{name}: window {start} .. {end} does not match its timestamps")
        # NAB enters a window on the first row carrying its start (after the previous window's),
        # leaves it on the first row carrying its end, but measures it with list.index(): the
        # first occurrence of each timestamp in the whole file. Duplicated timestamps matter.
        enter, right, width = int(later[0]), int(ends[0]), int(ends[0] - starts[0] + 1)
        exits = ends[ends >= enter]
        if not exits.size or enter <= prev_exit or width < 2:
            raise ValueError(f"{name}: window {start} .. {end} is empty, reversed or overlapping")
        leave = int(exits[0])
        rows = np.arange(enter, leave + 1)
        window[rows] = first + k
        credit[rows] = _scaled_sigmoid(-(right - rows + 1) / width) / _MAX_TP
        # FP cost counts from the row where NAB left the window, scaled by its width - 1.
        cost[leave + 1 :] = _scaled_sigmoid((np.arange(leave + 1, n) - leave) / (width - 1))
        enter_from, prev_exit = enter + 1, leave
    return window, credit, cost


def _prepare(scores: Mapping[str, FileScores], windows: Windows) -> _Rows:
    names = tuple(sorted(scores))
    if not names:
        raise ValueError("no files to score")
    parts: list[tuple[IntArray, FloatArray, IntArray, FloatArray, FloatArray]] = []
    window_file: list[int] = []
    for f, name in enumerate(names):
        if name not in windows:
            raise ValueError(f"{name}: no anomaly windows labelled for this file")
        ts = np.asarray(scores[name][0], dtype="datetime64[us]")
        score = np.asarray(scores[name][1], dtype=np.float64)
        if ts.ndim != 1 or ts.shape != score.shape:
            raise ValueError(f"{name}: {ts.shape} timestamps but {score.shape} scores")
        if np.isinf(score).any():
            raise ValueError(f"{name}: infinite scores cannot be swept; clip them")
        window, credit, cost = _layout(name, ts, windows[name], len(window_file))
        window_file += [f] * len(windows[name])
        # NAB's probation: min(floor(0.15 * n), 0.15 * 5000), in floats as NAB computes it.
        skip = int(min(math.floor(PROBATION_FRACTION * len(ts)), PROBATION_FRACTION * 5000))
        keep = slice(skip, None)
        parts.append(
            (np.full(len(ts) - skip, f), score[keep], window[keep], credit[keep], cost[keep])
        )
    file, score, window, credit, cost = (np.concatenate(p) for p in zip(*parts, strict=True))
    n_windows = len(window_file)
    return _Rows(
        names=names,
        file=file.astype(np.intp),
        score=score,
        window=window.astype(np.intp),
        credit=credit,
        cost=cost,
        window_file=np.array(window_file, dtype=np.intp),
        scorable=np.bincount(window[window >= 0], minlength=n_windows) > 0,
    )


def _tally(rows: _Rows, profile: Profile, fired: npt.NDArray[np.bool_]) -> list[Tally]:
    """Per-file raw score and counts when exactly the `fired` rows are detections."""
    nf, nw = len(rows.names), len(rows.window_file)
    inside = rows.window >= 0
    tp = fired & inside
    # A window is worth its best detection, which is its earliest: credit falls along it.
    best = np.full(nw, -np.inf)
    np.maximum.at(best, rows.window[tp], rows.credit[tp])
    hit = best > -np.inf
    part = np.where(hit, np.maximum(profile.a_tp * np.where(hit, best, 0.0), -profile.a_fn), 0.0)
    part[rows.scorable & ~hit] = -profile.a_fn
    fp = fired & ~inside
    raw = np.bincount(rows.window_file, weights=part, minlength=nf) + np.bincount(
        rows.file[fp], weights=profile.a_fp * rows.cost[fp], minlength=nf
    )
    hits = np.bincount(rows.window_file[hit], minlength=nf)
    misses = np.bincount(rows.window_file[rows.scorable & ~hit], minlength=nf)
    fps = np.bincount(rows.file[fp], minlength=nf)
    return [Tally(float(raw[f]), int(hits[f]), int(misses[f]), int(fps[f])) for f in range(nf)]


def _normalize(rows: _Rows, profile: Profile, raw: float) -> float:
    """100 * (raw - null) / (perfect - null), NAB's normalisation."""
    # NAB's null is its "null" detector (a constant score) run through the same optimiser, so
    # it is the better of never firing and always firing; on a real corpus that is never firing.
    never = -profile.a_fn * float(rows.scorable.sum())
    always = sum(t.raw for t in _tally(rows, profile, np.ones(len(rows.score), dtype=bool)))
    null = max(never, always)
    # NAB's perfect score counts every labelled window, scorable or not.
    perfect = profile.a_tp * len(rows.window_file)
    if perfect <= null:  # no windows at all: nothing to normalise against
        return math.nan
    return 100.0 * (raw - null) / (perfect - null)


def _sweep(rows: _Rows, profile: Profile) -> tuple[FloatArray, FloatArray]:
    """Every candidate threshold, highest first, and the corpus raw score at each."""
    valid = np.flatnonzero(~np.isnan(rows.score))
    order = valid[np.argsort(-rows.score[valid], kind="stable")]
    ordered = rows.score[order]
    window = rows.window[order]
    delta = np.where(window < 0, profile.a_fp * rows.cost[order], 0.0)
    # A window's part is the best credit among its detections so far (starting from -A_FN),
    # so a newly detected row changes the score only by how much it raises that running max.
    inside = np.flatnonzero(window >= 0)
    grouped = inside[np.argsort(window[inside], kind="stable")]
    for seg in np.split(grouped, np.flatnonzero(np.diff(window[grouped])) + 1):
        if seg.size:
            best = np.maximum(profile.a_tp * rows.credit[order[seg]], -profile.a_fn)
            delta[seg] = np.diff(np.maximum.accumulate(best), prepend=-profile.a_fn)
    start = -profile.a_fn * float(rows.scorable.sum())
    if not len(ordered):
        return np.array([np.inf]), np.array([start])
    # A threshold is every distinct score; its raw score includes all rows at or above it.
    ends = np.append(np.flatnonzero(np.diff(ordered)), len(ordered) - 1)
    running = start + np.cumsum(delta)
    # +inf stands for NAB's starting threshold 1.1, above every 0..1 score: nothing fires.
    thresholds = np.concatenate([[np.inf], ordered[ends]])
    raw = np.concatenate([[start], running[ends]])
    return thresholds, raw


def score_corpus(
    scores: Mapping[str, FileScores], windows: Windows, profile: Profile, threshold: float
) -> CorpusScore:
    """Score every file of `scores` at `threshold` (a detection is a score >= threshold)."""
    rows = _prepare(scores, windows)
    tallies = _tally(rows, profile, rows.score >= threshold)
    total = sum(tallies[1:], tallies[0])
    return CorpusScore(
        profile=profile,
        threshold=threshold,
        normalized=_normalize(rows, profile, total.raw),
        total=total,
        files=MappingProxyType(dict(zip(rows.names, tallies, strict=True))),
    )


def optimize_threshold(
    scores: Mapping[str, FileScores], windows: Windows, profile: Profile
) -> tuple[float, float]:
    """NAB's threshold tuning: the corpus-wide threshold with the best score, and that score.

    Sweeps every distinct score value, as NAB's Sweeper.calcScoreByThreshold does; ties go to
    the highest threshold, as NAB's stable sort leaves them. `math.inf` means never firing.
    """
    rows = _prepare(scores, windows)
    thresholds, raw = _sweep(rows, profile)
    best = int(np.argmax(raw))
    return float(thresholds[best]), _normalize(rows, profile, float(raw[best]))
