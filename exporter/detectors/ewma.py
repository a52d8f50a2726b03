"""EWMA: the newest point against an exponentially weighted mean and variance of the past.

Where the z-score weighs the whole window alike, the EWMA follows the level and the noise of
the last ~1/alpha points, so it adapts to slow drifts and to regimes of calm and noise. The
recursions (Finch, "Incremental calculation of weighted mean and variance", 2009) run over
the time axis with one vector operation per step for all series; missing samples leave a
series' state untouched. The band's scale has the same floor as the z-score's
(`base.scale_floor`: 1e-6 x |expected|, at least 1e-9), so flat series stay finite.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from exporter.detectors.base import (
    DetectorParams,
    Estimate,
    FloatArray,
    Window,
    band_estimate,
    register,
)

_BLOCK_ROWS = 2048
"""Series per block: bounds the transposed copy (~12 MB at 720 points) without making each
per-step vector operation so short that numpy's call overhead dominates."""


class EWMAParams(DetectorParams):
    """Settings of the `ewma` detector."""

    alpha: float = Field(0.1, gt=0, le=1)
    """Weight of each new point; the memory is roughly the last 1/alpha points."""
    threshold: float = Field(3.0, gt=0)
    """Half-width of the band in EW standard deviations (the score is 1 on its edge)."""
    min_points: int = Field(10, ge=2)
    """Series with fewer non-missing past points get a NaN score."""


class EWMADetector:
    """Scores the newest point against the EWMA and EW variance of the points before it."""

    def __init__(self, params: EWMAParams | None = None) -> None:
        self.params = params or EWMAParams()

    def score(self, window: Window) -> Estimate:
        """Score the last column of `window.values` against the columns before it."""
        values = np.asarray(window.values, dtype=np.float64)
        rows, width = values.shape
        mean = np.full(rows, np.nan)
        std = np.full(rows, np.nan)
        if width >= 1:
            for lo in range(0, rows, _BLOCK_ROWS):
                hi = min(rows, lo + _BLOCK_ROWS)
                mean[lo:hi], std[lo:hi] = self._moments(values[lo:hi, :-1])
        newest = values[:, -1] if width else mean
        return band_estimate(newest, mean, std, self.params.threshold)

    def _moments(self, past: FloatArray) -> tuple[FloatArray, FloatArray]:
        """EW mean and bias-corrected EW standard deviation per row (NaN below min_points)."""
        alpha = self.params.alpha
        rows, width = past.shape
        if width < self.params.min_points:
            return np.full(rows, np.nan), np.full(rows, np.nan)
        finite = np.isfinite(past)
        count = np.count_nonzero(finite, axis=1)
        # Starting each series at its first sample makes that step a no-op (d = 0), so the
        # loop needs no per-series "first point" branch.
        first = np.argmax(finite, axis=1)
        mean = past[np.arange(rows), first]
        var = np.zeros(rows)
        # Time-major and contiguous, so each step reads one cache-friendly row.
        cols = np.ascontiguousarray(past.T)
        d = np.empty(rows)
        with np.errstate(invalid="ignore", over="ignore"):
            if count.min() == width:
                for x in cols:
                    np.subtract(x, mean, out=d)
                    mean += alpha * d
                    var += alpha * d * d
                    var *= 1 - alpha
            else:
                seen = finite.T.astype(np.float64, order="C")
                cols[~np.isfinite(cols)] = 0.0
                for x, ok in zip(cols, seen, strict=True):
                    np.subtract(x, mean, out=d)
                    d *= ok
                    mean += alpha * d
                    # Decay only where a sample arrived (d is already 0 where none did), so
                    # a gap leaves the variance as it was.
                    var -= (alpha * ok) * var
                    var += (1 - alpha) * alpha * d * d
            # Started from 0, the EW variance reaches its level only after a few 1/alpha
            # points; dividing by 1 - (1-alpha)^(n-1) keeps the early band from being too
            # narrow, as Adam's bias correction does for its moments.
            warm = 1.0 - (1.0 - alpha) ** np.maximum(count - 1, 1)
            std = np.sqrt(var / warm)
        enough = count >= self.params.min_points
        return np.where(enough, mean, np.nan), np.where(enough, std, np.nan)


register("ewma", EWMAParams, EWMADetector)
