"""The ARIMA detector's per-series arrays, one row per series, and the operations on rows.

Keeping every series' history, bookkeeping, state-space matrices and filter state in stacked
arrays is what lets a cycle update all series with a few numpy calls (see `detector.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from exporter.detectors.arima import kalman
from exporter.detectors.arima.kalman import FilterState, StateSpace
from exporter.detectors.base import BoolArray, FloatArray, IntArray

PHASE_TOLERANCE = 0.1
"""A window's grid counts as in step with a series' history when its newest point lies within
this fraction of a step of a whole number of steps after the series' last point."""
REPHASE_STEPS = 2.0
"""A window this many steps past the last point is taken whatever its phase (after a restart or
a pause shifted the poll schedule), so the history never stops."""


@dataclass
class SeriesBank:
    """Per-series arrays, one row per series: history, bookkeeping, matrices, filter state."""

    hist: FloatArray  # (n, fit_window): the newest points, oldest first, NaN before the first
    hist_len: IntArray
    last_ts: FloatArray  # when the newest consumed point was taken (-inf: none yet)
    seen: FloatArray  # newest timestamp of the last window holding the series
    fit_end: FloatArray  # when the last point of the model's fit data was taken
    pending: BoolArray  # a fit is running in the pool
    fresh: BoolArray  # a new model: filter it over the history before it scores
    provisional: BoolArray  # a moment estimate standing in for a fit
    last: FloatArray  # (n, 3): newest value, its one-step prediction, its variance
    T: FloatArray
    Z: FloatArray
    RQR: FloatArray
    integrated: BoolArray
    a: FloatArray
    P: FloatArray
    diffuse: BoolArray

    @classmethod
    def empty(cls, n: int, width: int, k: int) -> SeriesBank:
        """`n` rows without history or model."""
        shapes = {"hist": (width,), "last": (3,), "T": (k, k), "Z": (k,), "RQR": (k, k)}
        shapes |= {"a": (k,), "P": (k, k)}
        fills = {"hist": np.nan, "last": np.nan, "seen": np.nan, "last_ts": -np.inf}
        fills |= {"fit_end": -np.inf}
        flags = {"pending", "fresh", "provisional", "integrated", "diffuse"}
        return cls(
            **{
                f.name: np.full(
                    (n, *shapes.get(f.name, ())),
                    fills.get(f.name, 0),
                    dtype=bool if f.name in flags else np.intp if f.name == "hist_len" else float,
                )
                for f in fields(cls)
            }
        )

    def extend(self, other: SeriesBank) -> None:
        """Append the rows of `other`."""
        for f in fields(self):
            setattr(self, f.name, np.concatenate([getattr(self, f.name), getattr(other, f.name)]))

    def keep(self, rows: IntArray) -> None:
        """Keep only `rows`, in that order."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name)[rows])

    def ingest(self, rows: IntArray, values: FloatArray, ts: FloatArray, step: float) -> IntArray:
        """Append each series' columns newer than its last point to its history.

        Returns the steps appended per window row; steps missed between the previous window
        and this one count as missing samples.

        The poller's grid ends at the moment of each poll, so when it polls more often than
        `step` (the defaults: every 1m, step 5m) most windows sit part of a step after the
        history. Their points would enter it at the wrong spacing (every 3 minutes, say, as
        if 5 had passed) and the model, its forecasts most of all, would run slow; such
        windows are skipped until one is back in step.
        """
        width = ts.size
        last = self.last_ts[rows]
        behind = self.steps_behind(rows, ts[-1] if width else np.nan, step)
        with np.errstate(invalid="ignore"):
            in_step = np.abs(behind - np.rint(behind)) <= PHASE_TOLERANCE
        first = np.searchsorted(ts, last + 0.5 * step)
        new = (first < width) & (in_step | ~np.isfinite(last) | (behind >= REPHASE_STEPS))
        with np.errstate(invalid="ignore"):
            gap = np.rint((ts[np.minimum(first, width - 1)] - last) / step) - 1
        gap = np.where(new & np.isfinite(gap), np.maximum(gap, 0), 0).astype(np.intp)
        steps = np.zeros(rows.size, dtype=np.intp)
        for f, g in set(zip(first[new].tolist(), gap[new].tolist(), strict=True)):
            sel = np.flatnonzero(new & (first == f) & (gap == g))
            pad = np.full((sel.size, min(g, self.hist.shape[1])), np.nan)
            block = np.concatenate([pad, values[sel, f:]], axis=1)
            self.append(rows[sel], block)
            steps[sel] = block.shape[1]
        self.last_ts[rows[new]] = ts[-1]
        return steps

    def steps_behind(self, rows: IntArray, end: float, step: float) -> FloatArray:
        """Steps from each row's last point to `end` (inf: no point yet; NaN: no `end`)."""
        with np.errstate(invalid="ignore"):
            return np.asarray((end - self.last_ts[rows]) / step)

    def append(self, rows: IntArray, block: FloatArray) -> None:
        """Shift `block`, one row per series, into the history of `rows`."""
        width, count = self.hist.shape[1], block.shape[1]
        if count >= width:
            self.hist[rows] = block[:, -width:]
        elif rows.size and rows[-1] - rows[0] == rows.size - 1 and (np.diff(rows) == 1).all():
            # The usual case, a query's series in the order they were first seen: shifting
            # in place costs one pass over the history instead of three fancy-index copies.
            hist = self.hist[rows[0] : rows[-1] + 1]
            hist[:, :-count] = hist[:, count:]
            hist[:, -count:] = block
        else:
            self.hist[rows] = np.concatenate([self.hist[rows, count:], block], axis=1)
        self.hist_len[rows] = np.minimum(self.hist_len[rows] + count, width)

    def system(self, rows: IntArray) -> tuple[StateSpace, FilterState]:
        """Copies of the matrices and filter state of `rows`."""
        ssm = StateSpace(self.T[rows], self.Z[rows], self.RQR[rows], self.integrated[rows])
        return ssm, FilterState(self.a[rows], self.P[rows], self.diffuse[rows])

    def run(self, rows: IntArray, ssm: StateSpace, state: FilterState, count: int) -> int:
        """Filter `rows` over their newest `count` points from `state`; the points filtered."""
        y = self.hist[rows, -count:]
        expected, var = kalman.run(ssm, state, y)
        self.a[rows], self.P[rows], self.diffuse[rows] = state.a, state.P, state.diffuse
        self.last[rows] = np.column_stack([y[:, -1], expected[:, -1], var[:, -1]])
        return int(y.size)
