"""The detector protocol, the data it works on, and the name -> detector table.

A detector scores the newest point of every series of one query at once: it gets the whole
`(series, time)` matrix and returns one score, expected value and band per series. Anything
with a `score(window) -> Estimate` method is a detector; `DETECTORS` maps the names used in
the configuration to a parameter model and a factory.

A detector may set `thread_safe = True` when `score` keeps no state and touches no global
(warning filters included): the ensemble then scores blocks of series in threads.

Three optional capabilities, checked with isinstance():
- `StreamScorer.score_all(window)` scores every point of the window causally, which is what
  `augur backtest` needs (the fallback `score_all()` below replays `score` column by column);
- `Forecaster.forecast(window, steps)` predicts values some grid steps ahead;
- `Stateful.dump_state()` / `load_state()` let the scoring loop snapshot what a detector
  learned (fitted parameters, running moments) to SQLite and restore it after a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
"""Row and column indices."""
BoolArray = npt.NDArray[np.bool_]
SeriesKey = tuple[tuple[str, str], ...]
"""A series' identity: its label pairs sorted by name (``__name__`` included)."""

Direction = Literal["up", "down", "both"]

RELATIVE_SCALE_FLOOR = 1e-6
"""The band's scale is never below this fraction of |expected| (one part per million).

The floor is numerical, not a judgement of what deviation matters: it keeps flat series
finite and ignores float rounding, while a gauge at 1e10 with noise of 1e5 is still scored
on its noise. Practical significance is the query's `min_deviation` and
`min_relative_deviation`.
"""

ABSOLUTE_SCALE_FLOOR = 1e-9
"""Nor below this absolute value, for series that sit flat at zero."""


@dataclass(frozen=True)
class Window:
    """The look-back window of one query, aligned on a common time grid.

    `values[i, j]` is series `keys[i]` at `timestamps[j]`; NaN marks a missing sample. The last
    column is the point being scored. `values` may be float32 (the history matrix): detectors
    convert a block of rows at a time, never the whole matrix.

    `shared`, when set, is scratch space for one scoring call: detectors that compute the same
    statistic of the same rows (the ensemble's quantile member and its rolling member's level
    check) leave it there for each other. Whoever sets it owns its lifetime and must not
    change `values` while it is in use.
    """

    values: FloatArray
    timestamps: FloatArray
    keys: Sequence[SeriesKey]
    step: float
    shared: dict[Any, Any] | None = field(default=None, compare=False, repr=False)


ROW_BLOCK = 512
"""Series per block when scoring the newest point: a block's temporaries (512 x 864 float64
is 3.5 MB each) stay small whatever the number of series, and every statistic is per series,
so the blocks give the same numbers as the whole matrix. A multiple of zscore's 128."""


def row_blocks(window: Window) -> Iterator[tuple[slice, Window]]:
    """The window cut into blocks of at most ROW_BLOCK series: views, with the same `shared`."""
    rows, size = len(window.values), ROW_BLOCK
    for lo in range(0, rows, size):
        part = slice(lo, min(lo + size, rows))
        values = window.values[part]
        yield part, Window(values, window.timestamps, window.keys[part], window.step, window.shared)


def memo_key(values: npt.NDArray[Any]) -> tuple[int, tuple[int, ...], tuple[int, ...], str]:
    """Identifies the memory `values` views (address, shape, strides, type) for `shared`: the
    same rows of the same matrix, whichever view object is passed."""
    address = int(values.__array_interface__["data"][0])
    return address, values.shape, values.strides, values.dtype.str


@dataclass(frozen=True)
class Estimate:
    """A detector's verdict on the newest point of each series (arrays of shape `(series,)`).

    `score` is 0..1 when normal and >= 1 when anomalous: |deviation| / (threshold x scale).
    NaN anywhere means the series could not be scored (too few points, missing newest point).
    """

    score: FloatArray
    expected: FloatArray
    lower: FloatArray
    upper: FloatArray


class Detector(Protocol):
    """Anything that scores the newest point of every series in a window."""

    def score(self, window: Window) -> Estimate:
        """Score the last column of `window.values`."""
        ...


@runtime_checkable
class StreamScorer(Protocol):
    """A detector that can score every point of a window, for backtests."""

    def score_all(self, window: Window) -> Estimate:
        """Arrays of shape `(series, time)`: column j judged only from the columns before it."""
        ...


@runtime_checkable
class Forecaster(Protocol):
    """A detector that can predict where each series is heading."""

    def forecast(self, window: Window, steps: Sequence[int]) -> FloatArray:
        """Predicted values `steps[k]` grid steps after the newest point: `(series, len(steps))`."""
        ...


@runtime_checkable
class Stateful(Protocol):
    """A detector whose learned state is worth keeping across restarts."""

    state_version: int
    """Bumped whenever the state's layout changes; a snapshot of another version is dropped."""

    def dump_state(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot of what the detector learned."""
        ...

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a snapshot taken by `dump_state` of the same `state_version`."""
        ...


class DetectorParams(BaseModel):
    """Base of every detector's parameter model: strict, so typos (and `.nan`, `.inf`) are
    reported."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


@dataclass(frozen=True)
class DetectorSpec:
    """How to build a detector by name: its parameter model and a factory."""

    params: type[DetectorParams]
    factory: Callable[[DetectorParams], Detector]


DETECTORS: dict[str, DetectorSpec] = {}
"""Detector name -> spec. Filled by `exporter.detectors` on import."""


def register(name: str, params: type[DetectorParams], factory: Callable[..., Detector]) -> None:
    """Add a detector to the table under `name`."""
    DETECTORS[name] = DetectorSpec(params=params, factory=factory)


def build(name: str, params: DetectorParams) -> Detector:
    """Build the detector called `name` with already validated `params`."""
    return DETECTORS[name].factory(params)


def apply_filters(
    estimate: Estimate,
    newest: FloatArray,
    *,
    direction: Direction = "both",
    min_deviation: float = 0.0,
    min_relative_deviation: float = 0.0,
    valid_range: tuple[float, float] | None = None,
) -> Estimate:
    """Apply the query's false-positive controls to a detector's verdict.

    `direction="up"` ignores drops below the expected value, `"down"` ignores rises;
    deviations smaller than `min_deviation` (absolute) or `min_relative_deviation` x
    |expected| are not anomalies however narrow the band is. With `valid_range` the expected
    value and band are clipped into the range (a ratio is never predicted below 0), and a
    newest value outside the range is anomalous whatever the detector thought.
    """
    expected, lower, upper = estimate.expected, estimate.lower, estimate.upper
    if valid_range is not None:
        expected, lower, upper = (np.clip(a, *valid_range) for a in (expected, lower, upper))
    deviation = newest - expected
    score = estimate.score.copy()
    keep = np.ones_like(score, dtype=bool)
    if direction == "up":
        keep &= ~(deviation < 0)
    elif direction == "down":
        keep &= ~(deviation > 0)
    with np.errstate(invalid="ignore"):
        if min_deviation > 0:
            keep &= ~(np.abs(deviation) < min_deviation)
        if min_relative_deviation > 0:
            keep &= ~(np.abs(deviation) < min_relative_deviation * np.abs(expected))
    score[~keep & ~np.isnan(score)] = 0.0
    if valid_range is not None:
        outside = (newest < valid_range[0]) | (newest > valid_range[1])
        score[outside] = np.fmax(score[outside], 1.0)
    return Estimate(score=score, expected=expected, lower=lower, upper=upper)


def scale_floor(scale: FloatArray, expected: FloatArray) -> FloatArray:
    """`scale`, raised to at least 1e-6 x |expected| and 1e-9 so flat series stay finite."""
    floor = np.maximum(RELATIVE_SCALE_FLOOR * np.abs(expected), ABSOLUTE_SCALE_FLOOR)
    return np.maximum(scale, floor)


def band_estimate(
    newest: FloatArray, expected: FloatArray, scale: FloatArray, threshold: float
) -> Estimate:
    """The estimate for a band of `threshold` x `scale` around `expected` (scale floored).

    A missing (non-finite) newest point makes every field NaN for that series, and so does a
    NaN `expected` or `scale` (too few points).
    """
    with np.errstate(invalid="ignore", over="ignore"):
        half = threshold * scale_floor(scale, expected)
        unscorable = ~np.isfinite(newest) | np.isnan(half)
        expected = np.where(unscorable, np.nan, expected)
        half[unscorable] = np.nan
        score = np.abs(newest - expected) / half
        # An infinite sample makes an infinite band around an infinite expectation: NaN edges.
        lower, upper = expected - half, expected + half
    return Estimate(score=score, expected=expected, lower=lower, upper=upper)


def score_all(detector: Detector, window: Window) -> Estimate:
    """Score every column of `window` causally; uses the detector's own `score_all` if it has one.

    The fallback replays `score` on every prefix of the window, which is quadratic in the
    window's length: fine for tests and short series, too slow for a NAB corpus.
    """
    if isinstance(detector, StreamScorer):
        return detector.score_all(window)
    rows, cols = window.values.shape
    out = {name: np.full((rows, cols), np.nan) for name in ("score", "expected", "lower", "upper")}
    for j in range(1, cols + 1):
        prefix = Window(window.values[:, :j], window.timestamps[:j], window.keys, window.step)
        est = detector.score(prefix)
        for name in out:
            out[name][:, j - 1] = getattr(est, name)
    return Estimate(**out)


def parts(detector: object) -> Iterator[object]:
    """The detector and, depth first, everything it is made of.

    Wrappers and combinations (seasonality, the ensemble) expose `children()`; the scoring
    loop uses this to export the counters of a detector nested in them and to close it.
    """
    yield detector
    children = getattr(detector, "children", None)
    if callable(children):
        for child in children():
            yield from parts(child)
