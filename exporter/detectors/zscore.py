"""Rolling z-score: how far the newest point is from the recent mean, in standard deviations.

The statistics come from the past points of the look-back window only (never the point being
scored, so a spike cannot widen its own band). `robust: true` swaps mean and standard
deviation for the median and 1.4826 x the median absolute deviation, which a few outliers in
the history do not move. Every series of the query is scored at once; the matrix is walked in
blocks of rows small enough to stay in the CPU cache.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pydantic import Field, ValidationInfo, field_validator

from exporter.detectors.base import (
    DetectorParams,
    Estimate,
    FloatArray,
    Window,
    band_estimate,
    register,
)

MAD_TO_STD = 1.4826
"""Makes the median absolute deviation estimate the standard deviation of normal data."""

_BLOCK_ROWS = 128
"""Rows per block: 128 x 720 float64 is ~0.7 MB, inside the 1 MB L2 cache of a core."""

IntArray = npt.NDArray[np.intp]


class ZScoreParams(DetectorParams):
    """Settings of the `zscore` detector."""

    threshold: float = Field(3.0, gt=0)
    """Half-width of the band in standard deviations (the score is 1 on its edge)."""
    robust: bool = False
    """Use median and 1.4826 x MAD instead of mean and standard deviation.

    When more than half of the past points are equal (a mostly-idle error rate) the MAD is 0
    and the band shrinks to the scale floor, so any other value scores high.
    """
    min_points: int = Field(10, ge=2)
    """Series with fewer non-missing past points get a NaN score."""
    window: int | None = Field(None, ge=2)
    """How many past columns (steps) the statistics use; None uses the whole look-back."""

    # `window` comes after `min_points` so that this check can see it and an error is
    # reported at `zscore.window`, the setting that is usually wrong.
    @field_validator("window")
    @classmethod
    def _window_holds_min_points(cls, value: int | None, info: ValidationInfo) -> int | None:
        min_points = info.data.get("min_points")
        if value is not None and min_points is not None and value < min_points:
            raise ValueError(
                f"must be at least min_points ({min_points}), or no series could ever be scored"
            )
        return value


class ZScoreDetector:
    """Scores the newest point against the mean and spread of the points before it."""

    def __init__(self, params: ZScoreParams | None = None) -> None:
        self.params = params or ZScoreParams()

    def score(self, window: Window) -> Estimate:
        """Score the last column of `window.values` against the columns before it."""
        values = np.asarray(window.values, dtype=np.float64)
        if values.shape[1] == 0:
            return _missing(values.shape[0])
        past = values[:, :-1]
        if self.params.window is not None:
            past = past[:, -self.params.window :]
        stats = _median_mad if self.params.robust else _mean_std
        expected, scale = stats(past, self.params.min_points)
        return band_estimate(values[:, -1], expected, scale, self.params.threshold)


def _missing(rows: int) -> Estimate:
    nan = np.full(rows, np.nan)
    return Estimate(score=nan, expected=nan.copy(), lower=nan.copy(), upper=nan.copy())


def _mean_std(past: FloatArray, min_points: int) -> tuple[FloatArray, FloatArray]:
    """Per-row mean and sample standard deviation of the finite values (NaN below min_points).

    Two passes (mean, then squared deviations) rather than sum and sum of squares: counters
    and byte gauges sit far from zero, where the one-pass formula cancels catastrophically.
    """
    rows, width = past.shape
    mean = np.full(rows, np.nan)
    std = np.full(rows, np.nan)
    if width < min_points:
        return mean, std
    buf = np.empty((min(rows, _BLOCK_ROWS), width))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for lo in range(0, rows, _BLOCK_ROWS):
            block = buf[: min(_BLOCK_ROWS, rows - lo)]
            np.copyto(block, past[lo : lo + _BLOCK_ROWS])
            total = block.sum(axis=1)
            if np.isfinite(total).all():
                # A finite row sum means no NaN or Inf in the row: skip the masking.
                count = np.full(block.shape[0], width)
                m = total / width
                block -= m[:, None]
            else:
                missing = ~np.isfinite(block)
                block[missing] = 0.0
                count = width - np.count_nonzero(missing, axis=1)
                m = block.sum(axis=1) / count
                block -= m[:, None]
                block[missing] = 0.0
            var = np.einsum("ij,ij->i", block, block) / (count - 1)
            enough = count >= min_points
            mean[lo : lo + block.shape[0]] = np.where(enough, m, np.nan)
            std[lo : lo + block.shape[0]] = np.where(enough, np.sqrt(var), np.nan)
    return mean, std


def _median_mad(past: FloatArray, min_points: int) -> tuple[FloatArray, FloatArray]:
    """Per-row median and 1.4826 x MAD of the finite values (NaN below min_points).

    `np.nanmedian` falls back to a Python loop per row when NaNs are present, so instead the
    missing values become +inf (they sort last) and rows are partitioned in groups that share
    a count of finite values, which is usually one group for the whole block.
    """
    rows, width = past.shape
    median = np.full(rows, np.nan)
    mad = np.full(rows, np.nan)
    if width < min_points:
        return median, mad
    buf = np.empty((min(rows, _BLOCK_ROWS), width))
    with np.errstate(invalid="ignore", over="ignore"):
        for lo in range(0, rows, _BLOCK_ROWS):
            block = buf[: min(_BLOCK_ROWS, rows - lo)]
            np.copyto(block, past[lo : lo + _BLOCK_ROWS])
            missing = ~np.isfinite(block)
            block[missing] = np.inf
            count = width - np.count_nonzero(missing, axis=1)
            med = _middle(block, count, min_points)
            np.subtract(block, med[:, None], out=block)
            np.abs(block, out=block)
            median[lo : lo + block.shape[0]] = med
            mad[lo : lo + block.shape[0]] = _middle(block, count, min_points)
    return median, MAD_TO_STD * mad


def _middle(block: FloatArray, count: IntArray, min_points: int) -> FloatArray:
    """The median of the first `count[i]` order statistics of each row (+inf pads the rest).

    Partitions `block` in place; the multiset of each row is unchanged.
    """
    out = np.full(block.shape[0], np.nan)
    for n in np.unique(count[count >= min_points]):
        kth = [(n - 1) // 2, n // 2]
        if n == count.min() == count.max():
            block.partition(kth, axis=1)
            out[:] = 0.5 * (block[:, kth[0]] + block[:, kth[1]])
            continue
        rows = np.flatnonzero(count == n)
        part = np.partition(block[rows], kth, axis=1)
        out[rows] = 0.5 * (part[:, kth[0]] + part[:, kth[1]])
    return out


register("zscore", ZScoreParams, ZScoreDetector)
