"""The faster scoring of issue 14 gives the scores it always gave.

The detectors before the change are kept verbatim in tests/legacy_*.py; every test here scores
the same windows with both and compares every field to 1e-9 relative (they are in fact equal
bit for bit). The windows are hostile on purpose: gaps, level shifts, flat and mostly-idle
series, values from 1e-9 to 1e12, all-missing and infinite series, float32 history matrices,
row blocks and chunks cut small so their edges fall inside the data, consecutive polls across
refresh boundaries, series appearing and disappearing between polls.
"""

from __future__ import annotations

from typing import Any

import legacy_quantile
import legacy_rolling
import legacy_zscore
import numpy as np
import pytest

from exporter.detectors import base, ensemble, order, quantile, rolling, zscore
from exporter.detectors.base import Estimate, SeriesKey, Window

STEP = 300.0
FIELDS = ("score", "expected", "lower", "upper")
LEGACY: dict[str, Any] = {
    "quantile": legacy_quantile.QuantileDetector,
    "zscore": legacy_zscore.ZScoreDetector,
    "rolling": legacy_rolling.RollingDetector,
}
MEMBERS: list[dict[str, Any]] = [
    *ensemble.DEFAULT_MEMBERS,
    {"detector": "quantile", "threshold": 3, "window": 300, "refresh": 5, "differences": 1},
    {"detector": "quantile", "window": 100, "refresh": 1, "relearn": None},
    {"detector": "zscore", "robust": True, "window": 200, "refresh": 7},
    {"detector": "zscore", "robust": False, "window": 200},
    {"detector": "rolling", "stat": "spread", "span": "1h", "side": "down", "window": 300},
]


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks and chunks small enough that their edges fall inside the test's matrices."""
    monkeypatch.setattr(base, "ROW_BLOCK", 128)
    monkeypatch.setattr(quantile, "_CHUNK_POINTS", 1 << 14)
    monkeypatch.setattr(rolling, "_STAT_ROWS", 50)
    monkeypatch.setattr(zscore, "_SORT_BLOCKS", 2)


def hostile(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Noise at many scales with the shapes that break statistics."""
    scale = rng.choice([1e-9, 1e-3, 1.0, 1e6, 1e12], (rows, 1))
    level = rng.choice([0.0, 5.0, -3e3, 1e9], (rows, 1))
    values = level + scale * rng.normal(0, 1, (rows, cols))
    values[rng.random((rows, cols)) < 0.05] = np.nan  # scattered gaps
    values[rng.random(rows) < 0.1, : cols // 3] = np.nan  # series that started late
    values[0:15] = 3.0  # flat
    values[15:30, cols // 2 :] += 40 * scale[15:30]  # level shifts
    idle = rng.random((15, cols)) < 0.8
    values[30:45] = np.where(idle, 0.0, rng.integers(1, 4, (15, cols)))  # mostly idle counts
    values[45:48] = np.nan  # never seen
    values[48, -5:] = np.inf
    values[49, ::7] = -np.inf
    values[50:60] = np.round(values[50:60])  # ties
    return values


def window(values: np.ndarray, start: int, keys: list[SeriesKey] | None = None) -> Window:
    """A window whose first column is grid tick `start` (so refresh anchors move with it)."""
    stamps = STEP * (start + np.arange(values.shape[1], dtype=np.float64))
    return Window(values, stamps, keys or _keys(len(values)), STEP)


def _keys(rows: int, offset: int = 0) -> list[SeriesKey]:
    return [(("series", str(offset + i)),) for i in range(rows)]


def assert_same(new: Estimate, old: Estimate, what: str) -> None:
    for name in FIELDS:
        np.testing.assert_allclose(
            getattr(new, name), getattr(old, name), rtol=1e-9, atol=0, equal_nan=True,
            err_msg=f"{what}: {name}",
        )  # fmt: skip


@pytest.mark.parametrize("settings", MEMBERS, ids=lambda s: "-".join(map(str, s.values())))
def test_members_score_as_before(settings: dict[str, Any]) -> None:
    member = ensemble.Member.model_validate(settings)
    new, old = base.build(member.detector, member.params), LEGACY[member.detector](member.params)
    rng = np.random.default_rng(14)
    values = hostile(rng, 300, 400)
    for start in (0, 3, 11):
        win = window(values[:, start : start + 380], 1000 + start)
        assert_same(new.score(win), old.score(win), f"score from {start}")
        assert_same(base.score_all(new, win), old.score_all(win), f"score_all from {start}")
        # A float32 history matrix: converted block by block, scored as the same values.
        narrow = window(win.values.astype(np.float32), 1000 + start)
        assert_same(new.score(narrow), old.score(narrow), f"float32 from {start}")


def test_short_and_empty_windows_score_as_before() -> None:
    rng = np.random.default_rng(3)
    values = hostile(rng, 64, 40)
    for settings in MEMBERS:
        member = ensemble.Member.model_validate(settings)
        new, old = (
            base.build(member.detector, member.params),
            LEGACY[member.detector](member.params),
        )
        for cols in (1, 2, 9, 25, 40):
            win = window(values[:, :cols], 7)
            assert_same(new.score(win), old.score(win), f"{settings} with {cols} columns")
        # No column at all (the old rolling member raised IndexError): nothing to score.
        empty = new.score(window(values[:, :0], 7))
        assert all(np.isnan(getattr(empty, name)).all() for name in FIELDS)


def test_the_default_ensemble_polls_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """Consecutive polls, one new column each, across refresh boundaries, with new series
    bootstrapped over several polls and series that come and go."""
    monkeypatch.setattr(ensemble, "BOOTSTRAP_POINTS", 40_000)
    params = ensemble.EnsembleParams()
    new = ensemble.make_ensemble(params)
    legacy_members = [LEGACY[m.detector](m.params) for m in params.members]
    old = ensemble.EnsembleDetector(params, members=legacy_members)
    rng = np.random.default_rng(2014)
    values = hostile(rng, 400, 330)
    keys = _keys(400)
    present = np.arange(300)
    for poll in range(40):
        if poll == 10:
            present = np.concatenate([present[20:], np.arange(300, 340)])  # 20 go, 40 come
        if poll == 25:
            present = np.concatenate([present, np.arange(340, 400), np.arange(0, 20)])
        rows = np.sort(present)
        win = window(values[rows, poll : poll + 290], poll, [keys[i] for i in rows])
        if poll % 3 == 0:
            win = Window(win.values.astype(np.float32), win.timestamps, win.keys, STEP)
        assert_same(new.score(win), old.score(win), f"poll {poll}")
    assert new.dump_state() == old.dump_state()


def test_quantile_statistics_are_computed_once_per_block() -> None:
    """The rolling member's level check reads the quantile member's statistics from the
    window's scratch space instead of sorting the same rows again."""
    rng = np.random.default_rng(5)
    values = hostile(rng, 300, 300)
    detector = base.build("ensemble", ensemble.EnsembleParams())
    shared: dict[Any, Any] = {}
    win = window(values, 0)
    detector.score(Window(win.values, win.timestamps, win.keys, STEP, shared))
    # One entry per block of the level, one per block of the rolling statistic would not be
    # there (its windows carry no scratch space): 3 blocks of 128 rows, nothing else.
    assert sorted(key[3] for key in shared) == [0, 0, 0]
    assert len(shared) == 3


def test_mad_from_sorted_rows_is_the_sorted_deviations_median() -> None:
    rng = np.random.default_rng(11)
    for width in (1, 2, 3, 10, 101):
        block = rng.integers(-3, 4, (500, width)).astype(np.float64)  # many ties
        block[rng.random((500, width)) < 0.2] = np.nan
        finite = np.isfinite(block)
        count = finite.sum(axis=1)
        ordered = np.sort(np.where(finite, block, np.inf), axis=1)
        median = np.where(count > 0, legacy_quantile._quantile(ordered, count, 0.5), np.nan)
        kept = np.isfinite(ordered)
        with np.errstate(invalid="ignore"):
            dev = np.sort(np.where(kept, np.abs(ordered - median[:, None]), np.inf), axis=1)
        expected = legacy_quantile._quantile(dev, count, 0.5)
        np.testing.assert_array_equal(order.sorted_mad(ordered, count, median), expected)
