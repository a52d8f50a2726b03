"""Order statistics of rows that are already sorted: the median absolute deviation without a
second sort.

The deviations |x - m| of a sorted row from its median m are two sorted runs: m - x for the
values below m read leftwards, x - m for the rest read rightwards. The t-th smallest
deviation is found by a binary search on how many of the t + 1 smallest come from the left
run (a few vectorised steps per block instead of sorting it again), and it is bit for bit the
value sorting the deviations would give: |x - m| rounds as m - x or x - m does.
"""

from __future__ import annotations

import numpy as np

from exporter.detectors.base import FloatArray, IntArray


def kth_deviation(
    ordered: FloatArray, count: IntArray, median: FloatArray, t: IntArray
) -> FloatArray:
    """The `t`-th smallest (0-based) |x - median| among the first `count` entries of each
    sorted row (+inf or NaN pad the rest); `t` < `count`."""
    rows = np.arange(ordered.shape[0])
    width = max(ordered.shape[1], 1)
    with np.errstate(invalid="ignore"):
        below = np.count_nonzero(ordered < median[:, None], axis=1)
    n_left, n_right = below, count - below

    def left(i: IntArray) -> FloatArray:
        """The i-th smallest of the left run: -inf before it, +inf past its end."""
        with np.errstate(invalid="ignore"):
            value = median - ordered[rows, np.clip(below - 1 - i, 0, width - 1)]
        return np.where(i < 0, -np.inf, np.where(i < n_left, value, np.inf))

    def right(j: IntArray) -> FloatArray:
        """The j-th smallest of the right run, likewise."""
        with np.errstate(invalid="ignore"):
            value = ordered[rows, np.clip(below + j, 0, width - 1)] - median
        return np.where(j < 0, -np.inf, np.where(j < n_right, value, np.inf))

    need = t + 1
    lo, hi = np.maximum(0, need - n_right), np.minimum(need, n_left)
    # The smallest count taken from the left for which the next left deviation is no smaller
    # than the last right one taken: then those `need` are the smallest.
    while True:
        open_ = lo < hi
        if not open_.any():
            break
        mid = (lo + hi) // 2
        enough = right(need - mid - 1) <= left(mid)
        hi = np.where(open_ & enough, mid, hi)
        lo = np.where(open_ & ~enough, mid + 1, lo)
    return np.maximum(left(lo - 1), right(need - lo - 1))


def sorted_mad(ordered: FloatArray, count: IntArray, median: FloatArray) -> FloatArray:
    """The MAD of sorted rows as the linear-interpolation median of their sorted deviations
    (`quantile`'s convention): NaN where `count` is 0."""
    pos = 0.5 * np.maximum(count - 1, 0)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
    a, b = kth_deviation(ordered, count, median, lo), kth_deviation(ordered, count, median, hi)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, a + (pos - lo) * (b - a), np.nan)
