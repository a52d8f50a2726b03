"""Prometheus `query_range` matrices -> aligned `(series, time)` windows."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from exporter.scoring.align import align, select

START = 1_700_000_000.0
STEP = 15.0


def series(labels: dict[str, str], points: dict[int, str], jitter: float = 0.0) -> dict[str, Any]:
    """One matrix entry with samples at grid positions `points` (position -> value text)."""
    return {
        "metric": labels,
        "values": [[START + k * STEP + jitter, v] for k, v in sorted(points.items())],
    }


def test_prometheus_json_lands_on_the_grid_end_included() -> None:
    body = json.loads(
        """{"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"__name__": "up", "job": "node", "instance": "a:9100"},
         "values": [[1700000000, "1"], [1700000015, "1"], [1700000030, "0"],
                    [1700000045, "1"], [1700000060, "1"]]}]}}"""
    )
    w = align(body["data"]["result"], START, START + 60, STEP)
    assert w.timestamps.tolist() == [START + 15 * k for k in range(5)]
    assert w.step == STEP
    assert w.keys == [(("__name__", "up"), ("instance", "a:9100"), ("job", "node"))]
    assert w.values.dtype == np.float64 and w.values.flags.c_contiguous
    assert w.values.tolist() == [[1.0, 1.0, 0.0, 1.0, 1.0]]


@pytest.mark.parametrize(
    ("start", "end", "step", "width"),
    [
        (0.0, 60.0, 15.0, 5),  # end on the grid is included
        (0.0, 70.0, 15.0, 5),  # Prometheus stops at the last step not past end
        (0.1, 0.3, 0.1, 3),  # (0.3 - 0.1) / 0.1 is 1.9999999999999998 in floats
        (5.0, 5.0, 1.0, 1),
    ],
)
def test_grid_width(start: float, end: float, step: float, width: int) -> None:
    w = align([], start, end, step)
    assert w.values.shape == (0, width)
    assert w.timestamps[-1] == pytest.approx(start + (width - 1) * step)


def test_bad_range_is_rejected() -> None:
    with pytest.raises(ValueError, match="step"):
        align([], START, START + 60, 0)
    with pytest.raises(ValueError, match="before start"):
        align([], START, START - 60, STEP)


def test_gaps_and_late_series_are_nan() -> None:
    result = [
        series({"job": "a"}, {0: "1", 1: "2", 4: "5"}),
        series({"job": "b"}, {3: "7", 4: "8"}),  # appears half-way
    ]
    w = align(result, START, START + 60, STEP)
    nan = np.nan
    np.testing.assert_array_equal(w.values, [[1, 2, nan, nan, 5], [nan, nan, nan, 7, 8]])


def test_non_finite_values_become_missing_and_all_missing_series_are_dropped() -> None:
    result = [
        series({"job": "a"}, {0: "NaN", 1: "+Inf", 2: "-Inf", 3: "1e3", 4: "-0.5"}),
        series({"job": "b"}, {0: "NaN", 1: "+Inf"}),
        {"metric": {"job": "c"}, "values": []},
        {"metric": {"job": "d"}, "histograms": [[START, {"count": "1"}]]},
    ]
    w = align(result, START, START + 60, STEP)
    assert w.keys == [(("job", "a"),)]
    np.testing.assert_array_equal(w.values, [[np.nan, np.nan, np.nan, 1000.0, -0.5]])


def test_samples_snap_to_the_nearest_step_and_off_grid_ones_are_ignored() -> None:
    result = [
        series({"job": "a"}, {0: "1", 1: "2", 2: "3"}, jitter=4.0),
        series({"job": "b"}, {-1: "9", 0: "1", 5: "9"}),  # before start, after end
    ]
    w = align(result, START, START + 60, STEP)
    np.testing.assert_array_equal(w.values[0, :3], [1, 2, 3])
    np.testing.assert_array_equal(w.values[1], [1, np.nan, np.nan, np.nan, np.nan])


def test_ragged_label_sets_are_separate_rows_sorted_by_key() -> None:
    result = [
        series({"__name__": "up", "job": "z"}, {0: "3"}),
        series({"__name__": "up", "job": "a", "instance": "x"}, {0: "2"}),
        series({"__name__": "up", "job": "a"}, {0: "1"}),
        series({"job": "a"}, {0: "0"}),  # e.g. rate() drops __name__
    ]
    w = align(result, START, START + 15, STEP)
    assert w.keys == [
        (("__name__", "up"), ("instance", "x"), ("job", "a")),
        (("__name__", "up"), ("job", "a")),
        (("__name__", "up"), ("job", "z")),
        (("job", "a"),),
    ]
    assert w.values[:, 0].tolist() == [2.0, 1.0, 3.0, 0.0]


def test_row_order_does_not_depend_on_input_order() -> None:
    rng = np.random.default_rng(1)
    result = [series({"i": f"{i:03d}"}, {0: str(i), 2: str(-i)}) for i in range(50)]
    shuffled = [result[i] for i in rng.permutation(50)]
    a = align(result, START, START + 30, STEP)
    b = align(shuffled, START, START + 30, STEP)
    assert a.keys == b.keys == sorted(a.keys)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.values[:, 0], np.arange(50.0))


def test_large_matrix_matches_a_per_sample_reference() -> None:
    rng = np.random.default_rng(2)
    result = []
    for i in range(300):
        keep = rng.random(120) < 0.9
        result.append(
            series(
                {"i": str(i)},
                {k: repr(float(x)) for k, x in enumerate(rng.normal(size=120)) if keep[k]},
            )
        )
    w = align(result, START, START + 119 * STEP, STEP)
    want = np.full((300, 120), np.nan)
    for s in result:
        row = w.keys.index(tuple(s["metric"].items()))
        for ts, text in s["values"]:
            want[row, round((ts - START) / STEP)] = float(text)
    np.testing.assert_array_equal(w.values, want)


def test_select_keeps_rows_and_their_keys_in_the_given_order() -> None:
    result = [series({"i": str(i)}, {0: str(i), 1: str(10 * i)}) for i in range(5)]
    w = align(result, START, START + 15, STEP)
    sub = select(w, [3, 0])
    assert sub.keys == [(("i", "3"),), (("i", "0"),)]
    assert sub.values.tolist() == [[3.0, 30.0], [0.0, 0.0]]
    assert sub.timestamps is w.timestamps and sub.step == w.step
    sub.values[0, 0] = -1.0
    assert w.values[3, 0] == 3.0  # a copy: detectors may not write through to the source
    assert select(w, np.array([], dtype=np.intp)).values.shape == (0, 2)
    mask = np.array([False, True, False, False, True])
    assert select(w, mask).keys == [(("i", "1"),), (("i", "4"),)]
