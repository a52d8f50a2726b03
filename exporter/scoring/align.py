"""Prometheus `query_range` matrices -> `Window`: one `(series, time)` array on a common grid.

Prometheus evaluates a range query at `start + k*step` for every k that does not pass `end`,
so each sample belongs to exactly one column; a missing evaluation becomes NaN, which every
detector reads as "no sample".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from exporter.detectors.base import FloatArray, IntArray, SeriesKey, Window

_GRID_TOLERANCE = 1e-9
"""Slack when counting grid points, so float error in `(end - start) / step` cannot drop end."""


def align(result: list[dict[str, Any]], start: float, end: float, step: float) -> Window:
    """Place a `query_range` matrix result on the grid `start, start + step, ..., end`.

    Each sample goes to column `round((ts - start) / step)`; samples off the grid are
    ignored. Values that are not finite ("NaN", "+Inf", "-Inf", stale markers) become NaN.
    Rows are keyed by the series' sorted label pairs (`__name__` included when present) and
    sorted by key; series with no finite sample on the grid are dropped.

    Samples are parsed one series at a time on purpose: string-to-float parsing holds the GIL
    for as long as one C call runs, and a per-series loop lets the event loop in between.
    """
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    if end < start:
        raise ValueError(f"end ({end}) is before start ({start})")
    width = math.floor((end - start) / step + _GRID_TOLERANCE) + 1
    timestamps = start + step * np.arange(width, dtype=np.float64)

    keys: list[SeriesKey] = []
    slots: list[IntArray] = []
    samples: list[FloatArray] = []
    for series in result:
        pairs = series.get("values")
        parsed = _parse(() if pairs is None else pairs, start, step, width)
        if parsed is not None:
            keys.append(_key(series.get("metric") or {}))
            slots.append(parsed[0])
            samples.append(parsed[1])

    order = sorted(range(len(keys)), key=keys.__getitem__)
    values = np.full((len(keys), width), np.nan)
    for row, i in enumerate(order):
        values[row, slots[i]] = samples[i]
    return Window(
        values=values, timestamps=timestamps, keys=[keys[i] for i in order], step=float(step)
    )


def select(window: Window, rows: Sequence[int] | npt.NDArray[np.intp | np.bool_]) -> Window:
    """The window restricted to `rows` (indices, or a boolean mask over `window.keys`)."""
    index = np.asarray(rows)
    index = np.flatnonzero(index) if index.dtype == np.bool_ else index.astype(np.intp)
    return Window(
        values=window.values[index],
        timestamps=window.timestamps,
        keys=[window.keys[i] for i in index.tolist()],
        step=window.step,
    )


def _key(metric: Mapping[str, str]) -> SeriesKey:
    return tuple(sorted(metric.items()))


def _parse(
    pairs: Iterable[Sequence[Any]], start: float, step: float, width: int
) -> tuple[IntArray, FloatArray] | None:
    """The grid columns and finite values of one series' `[ts, "value"]` pairs, if any.

    The pairs are either a `(points, 2)` float array (the client's fast decoding) or the
    lists of plain JSON.
    """
    if isinstance(pairs, np.ndarray):
        if pairs.ndim != 2 or pairs.shape[0] == 0:
            return None
        ts, value = pairs[:, 0], pairs[:, 1]
    else:
        columns = tuple(zip(*pairs, strict=False))
        if len(columns) != 2:
            return None
        ts = np.array(columns[0], dtype=np.float64)
        value = np.fromiter(map(float, columns[1]), np.float64, len(columns[1]))
    with np.errstate(invalid="ignore", over="ignore"):
        slot = np.rint((ts - start) / step)
        keep = np.isfinite(value) & (slot >= 0) & (slot < width)
    if not keep.any():
        return None
    return slot[keep].astype(np.intp), value[keep]
