"""NAB scoring: hand-computed rules, and NAB's published figures from NAB's own detector outputs."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from exporter.backtest import nab
from exporter.detectors.base import FloatArray

NAB_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"
STANDARD = nab.PROFILES["standard"]
LOW_FP = nab.PROFILES["reward_low_FP_rate"]
LOW_FN = nab.PROFILES["reward_low_FN_rate"]
T0 = datetime(2024, 1, 1)
FILE = "cat/a.csv"
# 100 rows: rows 0..14 are probation, windows cover rows 40..49 and 70..79 (width 10).
TWO_WINDOWS: nab.Windows = {
    FILE: [
        (T0 + timedelta(minutes=40), T0 + timedelta(minutes=49)),
        (T0 + timedelta(minutes=70), T0 + timedelta(minutes=79)),
    ]
}


def stamps(n: int) -> nab.Timestamps:
    return np.datetime64(T0, "us") + np.arange(n) * np.timedelta64(1, "m")


def firing(*rows: int, n: int = 100) -> FloatArray:
    scores = np.zeros(n)
    scores[list(rows)] = 1.0
    return scores


def score(
    scores: FloatArray, profile: nab.Profile = STANDARD, windows: nab.Windows = TWO_WINDOWS
) -> nab.CorpusScore:
    return nab.score_corpus({FILE: (stamps(len(scores)), scores)}, windows, profile, 1.0)


def credit(row: int, left: int = 40, right: int = 49) -> float:
    """A_TP share of a first detection at `row`: 2/(1+e^(5y))-1 = tanh(-5y/2), over its max."""
    return math.tanh(2.5 * (right - row + 1) / (right - left + 1)) / math.tanh(2.5)


def test_a_detector_that_never_fires_scores_zero() -> None:
    result = score(firing())
    assert result.total == nab.Tally(raw=-2.0, windows_hit=0, windows_missed=2, fp_rows=0)
    assert result.normalized == 0.0


def test_a_detection_on_each_windows_first_row_scores_100() -> None:
    result = score(firing(40, 70))
    assert result.total == nab.Tally(raw=2.0, windows_hit=2, windows_missed=0, fp_rows=0)
    assert result.normalized == pytest.approx(100.0)


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    result = score(firing(45, 42, 48, 49))
    assert result.total.raw == pytest.approx(credit(42) - 1.0)
    assert (result.total.windows_hit, result.total.windows_missed, result.total.fp_rows) == (
        1,
        1,
        0,
    )


def test_a_window_inside_probation_is_neither_scored_nor_missed() -> None:
    windows: nab.Windows = {FILE: [(T0 + timedelta(minutes=2), T0 + timedelta(minutes=9))]}
    result = score(firing(5), windows=windows)
    assert result.total == nab.Tally(raw=0.0, windows_hit=0, windows_missed=0, fp_rows=0)
    assert result.normalized == 0.0  # NAB's perfect score still counts it


def test_sigmoid_weight_at_the_window_edges() -> None:
    assert score(firing(40)).total.raw == pytest.approx(1.0 - 1.0)
    # NAB's "+ 1" puts the right edge at y = -1/width, not 0: it still earns tanh(0.25)/tanh(2.5).
    right_edge = score(firing(49)).total.raw + 1.0
    assert right_edge == pytest.approx(math.tanh(0.25) / math.tanh(2.5))
    assert right_edge == pytest.approx(0.24824, abs=1e-5)


def test_probation_rows_are_never_scored() -> None:
    assert score(firing(*range(15))).total.raw == -2.0
    assert score(firing(15)).total.raw == pytest.approx(-2.0 - 0.11)
    # Long files: probation is capped at 750 rows (0.15 x 5000).
    windows: nab.Windows = {FILE: []}
    assert score(firing(*range(750), n=10_000), windows=windows).total.fp_rows == 0
    assert score(firing(750, n=10_000), windows=windows).total.raw == pytest.approx(-0.11)


@pytest.mark.parametrize(("profile", "a_fp"), [(STANDARD, 0.11), (LOW_FP, 0.22), (LOW_FN, 0.11)])
def test_a_false_positive_before_any_window_costs_the_full_a_fp(
    profile: nab.Profile, a_fp: float
) -> None:
    result = score(firing(20, 40, 70), profile)
    assert result.total.raw == pytest.approx(2.0 - a_fp)
    assert result.total.fp_rows == 1


def test_a_false_positive_after_a_window_is_weighted_by_its_distance() -> None:
    # Distance d rows after the window's last row, scaled by width - 1: cost A_FP * tanh(2.5 d/9).
    assert score(firing(40, 70, 50)).total.raw == pytest.approx(2.0 - 0.11 * math.tanh(2.5 / 9))
    assert score(firing(40, 70, 60)).total.raw == pytest.approx(2.0 - 0.11 * math.tanh(27.5 / 9))
    one: nab.Windows = {FILE: TWO_WINDOWS[FILE][:1]}
    # More than three widths away it is the full A_FP again.
    assert score(firing(40, 99), windows=one).total.raw == pytest.approx(1.0 - 0.11)


def test_missed_windows_cost_a_fn_per_profile() -> None:
    assert score(firing(40), LOW_FN).total.raw == pytest.approx(1.0 - 2.0)
    assert score(firing(40), LOW_FN).normalized == pytest.approx(100 * (-1 + 4) / (2 + 4))


def test_duplicated_end_timestamp_leaves_the_window_on_its_first_row() -> None:
    # Row 50 repeats row 49's timestamp, the first window's end; the second window moves to 71.
    ts = np.concatenate([stamps(50), stamps(100)[49:99]])
    result = nab.score_corpus({FILE: (ts, firing(40, 71, 50))}, TWO_WINDOWS, STANDARD, 1.0)
    assert result.total.fp_rows == 1
    assert result.total.raw == pytest.approx(2.0 - 0.11 * math.tanh(2.5 / 9))


def test_nan_never_fires_and_infinity_is_refused() -> None:
    assert score(np.where(firing(40, 70) > 0, np.nan, 0.0)).total.raw == -2.0
    with pytest.raises(ValueError, match="infinite"):
        score(np.where(firing(40) > 0, np.inf, 0.0))


def test_a_window_missing_from_the_timestamps_is_refused() -> None:
    windows: nab.Windows = {FILE: [(T0 + timedelta(seconds=30), T0 + timedelta(minutes=9))]}
    with pytest.raises(ValueError, match="does not match"):
        score(firing(), windows=windows)


def test_categories_sum_their_files() -> None:
    ts = stamps(100)
    scores = {
        FILE: (ts, firing(40, 20)),
        "cat/b.csv": (ts, firing(70)),
        "other/c.csv": (ts, firing()),
    }
    windows = {**TWO_WINDOWS, "cat/b.csv": TWO_WINDOWS[FILE], "other/c.csv": []}
    result = nab.score_corpus(scores, windows, STANDARD, 1.0)
    cats = result.categories()
    assert cats.keys() == {"cat", "other"}
    assert (cats["cat"].windows_hit, cats["cat"].windows_missed, cats["cat"].fp_rows) == (2, 2, 1)
    assert cats["other"] == nab.Tally(0.0, 0, 0, 0)
    assert cats["cat"].raw == pytest.approx(result.total.raw)


def test_optimizer_matches_brute_force_on_any_scale() -> None:
    rng = np.random.default_rng(7)
    raw = np.round(rng.gamma(1.0, 1.0, size=(3, 100)), 1)  # rounded: many tied scores
    raw[:, [44, 72]] += 2.0
    scores = {f"cat/{i}.csv": (stamps(100), raw[i]) for i in range(3)}
    windows = {name: TWO_WINDOWS[FILE] for name in scores}
    for profile in nab.PROFILES.values():
        threshold, best = nab.optimize_threshold(scores, windows, profile)
        candidates = [math.inf, *np.unique(raw)]
        brute = [nab.score_corpus(scores, windows, profile, t).normalized for t in candidates]
        assert best == pytest.approx(max(brute))
        assert threshold == max(
            t for t, b in zip(candidates, brute, strict=True) if b >= best - 1e-9
        )
        assert nab.score_corpus(scores, windows, profile, threshold).normalized == pytest.approx(
            best
        )
        scaled = {k: (ts, v * 1000.0) for k, (ts, v) in scores.items()}
        t2, b2 = nab.optimize_threshold(scaled, windows, profile)
        assert (t2, b2) == pytest.approx((threshold * 1000.0, best))


def test_optimizer_keeps_a_silent_detector_silent() -> None:
    assert nab.optimize_threshold({FILE: (stamps(100), firing())}, TWO_WINDOWS, STANDARD) == (
        math.inf,
        0.0,
    )


def test_optimizer_breaks_ties_towards_the_higher_threshold() -> None:
    # A later detection in an already detected window changes nothing: 5.0 and 3.0 tie.
    scores = firing(40, 70) * 5.0
    scores[45] = 3.0
    threshold, best = nab.optimize_threshold({FILE: (stamps(100), scores)}, TWO_WINDOWS, STANDARD)
    assert threshold == 5.0
    assert best == pytest.approx(100.0)


def test_null_score_is_the_tuned_constant_detector() -> None:
    # NAB normalises against its "null" detector (a constant score) after threshold tuning.
    # Here always firing (window hit on its first scored row, five early FPs) beats never firing,
    # so the constant detector scores 0 and the silent one goes negative.
    windows: nab.Windows = {FILE: [(T0 + timedelta(minutes=20), T0 + timedelta(minutes=99))]}
    always, never = firing(*range(100)), firing()
    assert score(always, windows=windows).total.raw == pytest.approx(1.0 - 5 * 0.11)
    assert nab.optimize_threshold({FILE: (stamps(100), always)}, windows, STANDARD)[1] == 0.0
    assert score(never, windows=windows).normalized == pytest.approx(100 * (-1 - 0.45) / (1 - 0.45))


@pytest.fixture(scope="module")
def corpus_windows() -> dict[str, list[tuple[datetime, datetime]]]:
    if not NAB_DIR.is_dir():
        pytest.skip(f"NAB corpus not found at {NAB_DIR} (a copy of shared/ beside the repo)")
    windows = nab.load_windows(NAB_DIR / "labels" / "combined_windows.json")
    assert (len(windows), sum(map(len, windows.values()))) == (58, 116)
    return windows


# NAB v1.1's scoreboard: standard / reward_low_FP_rate / reward_low_FN_rate.
PUBLISHED = {
    "windowedGaussian": (39.65, 20.87, 47.41),
    "numenta": (70.10, 63.21, 74.32),
}


@pytest.mark.parametrize("detector", PUBLISHED)
def test_reproduces_nabs_published_scores(
    detector: str, corpus_windows: dict[str, list[tuple[datetime, datetime]]]
) -> None:
    results = NAB_DIR / "results" / detector
    scores = {name: nab.load_series(results / name) for name in corpus_windows}
    assert sum(len(s) for _, s in scores.values()) == 365_558
    profiles = (STANDARD, LOW_FP, LOW_FN)
    for profile, published in zip(profiles, PUBLISHED[detector], strict=True):
        threshold, best = nab.optimize_threshold(scores, corpus_windows, profile)
        assert best == pytest.approx(published, abs=0.1), profile.name
        result = nab.score_corpus(scores, corpus_windows, profile, threshold)
        assert result.normalized == pytest.approx(best)
        total = result.total
        assert total.windows_hit + total.windows_missed == 116
        by_category = sum(result.categories().values(), nab.Tally(0.0, 0, 0, 0))
        assert by_category.raw == pytest.approx(total.raw)
        assert (by_category.windows_hit, by_category.fp_rows) == (total.windows_hit, total.fp_rows)
        assert result.categories()["artificialNoAnomaly"].windows_hit == 0
