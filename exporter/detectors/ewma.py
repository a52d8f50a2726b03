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
                m, s = self._moments(values[lo:hi, :-1], trace=False)
                mean[lo:hi], std[lo:hi] = m[:, 0], s[:, 0]
        newest = values[:, -1] if width else mean
        return band_estimate(newest, mean, std, self.params.threshold)

    def score_all(self, window: Window) -> Estimate:
        """Every column scored as `score` would score it as the newest: `(series, time)` arrays.

        The recursion is the same as `score`'s, its state recorded after every column, so the
        two agree to the last bit.
        """
        values = np.asarray(window.values, dtype=np.float64)
        rows, width = values.shape
        mean = np.full((rows, width), np.nan)
        std = np.full((rows, width), np.nan)
        for lo in range(0, rows, _BLOCK_ROWS):
            hi = min(rows, lo + _BLOCK_ROWS)
            m, s = self._moments(values[lo:hi], trace=True)
            mean[lo:hi], std[lo:hi] = m[:, :width], s[:, :width]
        return band_estimate(values, mean, std, self.params.threshold)

    def _moments(self, past: FloatArray, trace: bool) -> tuple[FloatArray, FloatArray]:
        """EW mean and bias-corrected EW standard deviation per row (NaN below min_points).

        Arrays of shape `(rows, 1)` describing all of `past`; with `trace`, `(rows, width + 1)`
        where column j describes `past[:, :j]`.
        """
        alpha = self.params.alpha
        rows, width = past.shape
        out = (rows, width + 1) if trace else (rows, 1)
        if width < self.params.min_points and not trace:
            return np.full(out, np.nan), np.full(out, np.nan)
        finite = np.isfinite(past)
        means, variances = np.full(out, np.nan), np.zeros(out)
        if trace:
            counts = np.zeros(out, dtype=np.intp)
            np.cumsum(finite, axis=1, out=counts[:, 1:])
        else:
            counts = np.count_nonzero(finite, axis=1)[:, None]
        # Starting each series at its first sample makes that step a no-op (d = 0), so the
        # loop needs no per-series "first point" branch.
        first = np.argmax(finite, axis=1) if width else np.zeros(rows, dtype=np.intp)
        mean = past[np.arange(rows), first] if width else np.full(rows, np.nan)
        var = np.zeros(rows)
        # Time-major and contiguous, so each step reads one cache-friendly row.
        cols = np.ascontiguousarray(past.T)
        d = np.empty(rows)
        with np.errstate(invalid="ignore", over="ignore"):
            if not width or counts[:, -1].min() == width:
                for j, x in enumerate(cols, start=1):
                    np.subtract(x, mean, out=d)
                    mean += alpha * d
                    var += alpha * d * d
                    var *= 1 - alpha
                    if trace:
                        means[:, j], variances[:, j] = mean, var
            else:
                seen = finite.T.astype(np.float64, order="C")
                cols[~np.isfinite(cols)] = 0.0
                for j, (x, ok) in enumerate(zip(cols, seen, strict=True), start=1):
                    np.subtract(x, mean, out=d)
                    d *= ok
                    mean += alpha * d
                    # Decay only where a sample arrived (d is already 0 where none did), so
                    # a gap leaves the variance as it was.
                    var -= (alpha * ok) * var
                    var += (1 - alpha) * alpha * d * d
                    if trace:
                        means[:, j], variances[:, j] = mean, var
            if not trace:
                means[:, 0], variances[:, 0] = mean, var
            # Started from 0, the EW variance reaches its level only after a few 1/alpha
            # points; dividing by 1 - (1-alpha)^(n-1) keeps the early band from being too
            # narrow, as Adam's bias correction does for its moments.
            warm = 1.0 - (1.0 - alpha) ** np.maximum(counts - 1, 1)
            std = np.sqrt(variances / warm)
        enough = counts >= self.params.min_points
        return np.where(enough, means, np.nan), np.where(enough, std, np.nan)


register("ewma", EWMAParams, EWMADetector)
