"""One query's look-back kept in memory between polls, so a poll fetches only what is new.

A `History` is a `(series, columns)` float64 matrix on the step-aligned grid: column `t` is
the query evaluated at `t * step` (a "tick"). The newest column is the step boundary at or
after the poll's time: Prometheus evaluates it on the samples it has so far (the step in
progress), and the next poll fetches it again, until it is in the past. So the window the
detectors see is evenly spaced (what ARIMA and the seasonal profiles need) and ends at the
poll's newest sample, and it is exactly the window a full `query_range` over the same grid
would return on the same data (tests/test_history_e2e.py compares the scores).

Memory is one float64 matrix per query with a little slack: columns advance by moving an
offset through `slack` spare columns and copying the window back to the start once they are
used up (one copy per `slack` steps, instead of shifting every column every step). Rows are
kept sorted by label set, as `align` sorts a full fetch, because the detectors' order-
dependent work (the ensemble's bounded bootstrap per call) must see the same order. A row
whose newest sample left the window is dropped, as a full fetch would no longer return it.
float64 rather than float32: the scores must equal a full fetch's, and the history is not
where the memory goes (10,000 x 864 x 8 bytes is 69 MB; the decoded JSON of a full fetch of
the same was over 1 GB).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from exporter.config.queries import QueryConfig
from exporter.detectors.base import FloatArray, IntArray, SeriesKey, Window

_TOLERANCE = 1e-9
NEVER = np.iinfo(np.int64).min


def grid_width(lookback: float, step: float) -> int:
    """Columns in a window of `lookback` seconds at `step`, as `align` counts them."""
    return math.floor(lookback / step + _TOLERANCE) + 1


def tick_at(when: float, step: float) -> int:
    """The step boundary at or after `when` (unix seconds), as a multiple of `step`."""
    return math.ceil(when / step - _TOLERANCE)


def key_of(metric: Mapping[str, str]) -> SeriesKey:
    """The row key of a label set: its sorted pairs, as `align` keys a window."""
    return tuple(sorted(metric.items()))


@dataclass(frozen=True)
class Snapshot:
    """A history as the state store keeps it: float32 values (half the bytes; the columns
    restored carry float32 rounding until they leave the look-back)."""

    tick: int
    keys: list[SeriesKey]
    last: bytes  # int64 per row
    values: bytes  # float32, rows x width, row-major

    @property
    def nbytes(self) -> int:
        """The snapshot's size in bytes (values and newest ticks)."""
        return len(self.last) + len(self.values)


class History:
    """A query's look-back: rows keyed by label set, columns on the step-aligned grid."""

    def __init__(self, step: float, width: int, max_series: int, slack: int = 0) -> None:
        if width < 1:
            raise ValueError(f"width must be at least 1, got {width}")
        self.step = step
        self.width = width
        self.max_series = max_series
        self.slack = slack or max(16, width // 16)
        self.tick: int | None = None
        """The newest column's tick, None until the first fill."""
        self.keys: list[SeriesKey] = []
        self.index: dict[SeriesKey, int] = {}
        self._values: FloatArray = np.empty((0, width + self.slack))
        self._last = np.empty(0, dtype=np.int64)  # each row's newest finite tick
        self._off = 0
        self._sorted = True

    @classmethod
    def of(cls, query: QueryConfig) -> History:
        """An empty history for `query`'s look-back, step and `max_series`."""
        return cls(query.step, grid_width(query.lookback, query.step), query.max_series)

    @property
    def first(self) -> int:
        """The oldest column's tick (only meaningful once `tick` is set)."""
        return (self.tick or 0) - self.width + 1

    @property
    def nbytes(self) -> int:
        """Bytes held by the matrix (its spare rows and columns included)."""
        return int(self._values.nbytes + self._last.nbytes)

    def reset(self, tick: int) -> None:
        """Forget everything; the newest column becomes `tick`."""
        self.tick = tick
        self.keys, self.index = [], {}
        self._values = np.empty((0, self.width + self.slack))
        self._last = np.empty(0, dtype=np.int64)
        self._off = 0

    def advance(self, tick: int) -> None:
        """Move the newest column to `tick`; the columns that enter are NaN, the rows left with
        no sample in the window go (making room under `max_series` before the fetch)."""
        self._shift(tick)
        self.expire()

    def _shift(self, tick: int) -> None:
        if self.tick is None or tick - self.tick >= self.width:
            self._clear_columns(self.first, self.tick or tick)
            self.tick, self._off = tick, 0
            return
        shift = tick - self.tick
        if shift <= 0:
            return  # a clock that went back: keep the grid, refetch as usual
        n = len(self.keys)
        if self._off + shift + self.width > self._values.shape[1]:
            keep = self.width - shift
            self._values[:n, :keep] = self._values[:n, self._off + shift : self._off + self.width]
            self._off = 0
            self._values[:n, keep : self.width] = np.nan
        else:
            self._off += shift
            self._values[:n, self._off + self.width - shift : self._off + self.width] = np.nan
        self.tick = tick

    def room(self) -> int:
        """How many more series `max_series` lets in."""
        return max(0, self.max_series - len(self.keys))

    def write(
        self, series: Iterable[Mapping[str, Any]], lo: int, hi: int, *, clear: bool, add: int
    ) -> list[SeriesKey]:
        """Write a `query_range` matrix evaluated on ticks `lo..hi` into the history.

        `clear` first empties those columns for every row (a refetch: a series the answer no
        longer has must read NaN there, as in a full fetch). Series without a row get one,
        `add` at most; the keys of those added are returned, and the rest are left out.
        """
        lo, hi = max(lo, self.first), min(hi, self.tick if self.tick is not None else hi)
        n = len(self.keys)
        recent = np.empty(0, dtype=np.intp)
        if clear:
            self._clear_columns(lo, hi)
            # Rows whose newest sample was in the cleared columns: set again by what is written.
            # Not the rows whose newest is past `hi`: a refetch in chunks writes the newest
            # chunk first, and clearing an older one must not forget what a newer one wrote.
            last = self._last[:n]
            recent = np.flatnonzero((last >= lo) & (last <= hi))
            self._last[recent] = lo - 1
        rows: list[int] = []
        arrays: list[FloatArray] = []
        new: list[tuple[int, SeriesKey]] = []  # (position in rows, key) of series without a row
        for item in series:
            pairs = item.get("values")
            if not isinstance(pairs, np.ndarray) or pairs.ndim != 2 or not len(pairs):
                continue  # histograms only, or the general parser's lists: not scored
            key = key_of(item["metric"])
            row = self.index.get(key)
            if row is None:
                if len(new) >= min(add, self.room()):
                    continue
                new.append((len(rows), key))
                row = -1
            rows.append(row)
            arrays.append(pairs)
        self._grow(len(self.keys) + len(new))
        for at, key in new:
            rows[at] = self._add(key)
        if arrays:
            self._place(np.asarray(rows, dtype=np.intp), arrays, lo, hi)
        self._recheck(np.setdiff1d(recent, rows), lo)
        return [key for _, key in new]

    def _recheck(self, rows: IntArray, lo: int) -> None:
        """The newest finite tick before `lo` of `rows` (series gone from a refetch)."""
        if not rows.size or lo <= self.first:
            self._last[rows] = NEVER
            return
        finite = np.isfinite(self._values[rows, self._off : self._off + lo - self.first])
        back = np.argmax(finite[:, ::-1], axis=1)
        self._last[rows] = np.where(finite.any(axis=1), lo - 1 - back, NEVER)

    def _place(self, rows: IntArray, arrays: list[FloatArray], lo: int, hi: int) -> None:
        """All series' samples at once: one array operation per answer, not per series."""
        pairs = np.concatenate(arrays)
        row = np.repeat(rows, [len(a) for a in arrays])
        with np.errstate(invalid="ignore", over="ignore"):
            tick = np.rint(pairs[:, 0] / self.step)
            ok = np.isfinite(pairs[:, 1]) & (tick >= lo) & (tick <= hi)
        ticks, row = tick[ok].astype(np.int64), row[ok]
        self._values[row, self._off + (ticks - self.first)] = pairs[ok, 1]
        np.maximum.at(self._last, row, ticks)

    def _grow(self, rows: int) -> None:
        """Room for `rows` rows: once per write, to what it needs plus a quarter (a first fill
        grows once, to its series count)."""
        have = self._values.shape[0]
        if rows <= have:
            return
        grow = min(max(rows, have + have // 4), max(rows, self.max_series)) - have
        self._values = np.concatenate(
            [self._values, np.full((grow, self._values.shape[1]), np.nan)]
        )
        self._last = np.concatenate([self._last, np.full(grow, NEVER)])

    def _add(self, key: SeriesKey) -> int:
        row = len(self.keys)
        self._values[row] = np.nan
        self._last[row] = NEVER
        self.keys.append(key)
        self.index[key] = row
        self._sorted = self._sorted and (row == 0 or self.keys[row - 1] < key)
        return row

    def _clear_columns(self, lo: int, hi: int) -> None:
        if self.tick is None or hi < lo:
            return
        a, b = self._off + max(lo, self.first) - self.first, self._off + hi - self.first + 1
        self._values[: len(self.keys), a : max(a, b)] = np.nan

    def expire(self) -> int:
        """Drop the rows with no sample in the window (a full fetch would not return them)."""
        gone = self._last[: len(self.keys)] < self.first
        if not gone.any():
            return 0
        self._keep_rows(np.flatnonzero(~gone))
        return int(gone.sum())

    def retain(self, keep: Callable[[SeriesKey], bool]) -> int:
        """Drop the rows whose key `keep` rejects (a restored snapshot of another shard's
        series); returns how many went."""
        kept = [i for i, key in enumerate(self.keys) if keep(key)]
        gone = len(self.keys) - len(kept)
        if gone:
            self._keep_rows(np.asarray(kept, dtype=np.intp))
        return gone

    def _keep_rows(self, rows: IntArray) -> None:
        n = len(rows)
        self._values[:n] = self._values[rows]
        self._last[:n] = self._last[rows]
        self._values[n : len(self.keys)] = np.nan
        self.keys = [self.keys[i] for i in rows.tolist()]
        self.index = {key: i for i, key in enumerate(self.keys)}

    def window(self) -> Window:
        """The window to score: a view of the matrix, rows sorted by key, expired rows gone."""
        self.expire()
        if not self._sorted:
            order = sorted(range(len(self.keys)), key=self.keys.__getitem__)
            self._keep_rows(np.asarray(order, dtype=np.intp))
            self._sorted = True
        if self.tick is None:
            return Window(np.empty((0, self.width)), np.empty(0), [], self.step)
        timestamps = self.step * np.arange(self.first, self.tick + 1, dtype=np.float64)
        values = self._values[: len(self.keys), self._off : self._off + self.width]
        return Window(values=values, timestamps=timestamps, keys=list(self.keys), step=self.step)

    def dump(self) -> Snapshot | None:
        """The history as compact bytes, None before the first fill."""
        if self.tick is None:
            return None
        n = len(self.keys)
        values = self._values[:n, self._off : self._off + self.width].astype(np.float32)
        return Snapshot(self.tick, list(self.keys), self._last[:n].tobytes(), values.tobytes())

    def load(self, snap: Snapshot) -> None:
        """Take over a snapshot of a history of the same width (raises ValueError if not)."""
        n = len(snap.keys)
        values = np.frombuffer(snap.values, dtype=np.float32)
        last = np.frombuffer(snap.last, dtype=np.int64)
        if values.size != n * self.width or last.size != n or n > self.max_series:
            raise ValueError("a history snapshot of another shape")
        self.reset(snap.tick)
        self._values = np.full((n, self.width + self.slack), np.nan)
        self._values[:, : self.width] = values.reshape(n, self.width)
        self._last = last.copy()
        self.keys = [tuple((str(k), str(v)) for k, v in key) for key in snap.keys]
        self.index = {key: i for i, key in enumerate(self.keys)}
        self._sorted = self.keys == sorted(self.keys)
