"""Incidents: open at >= 1, escalate at 2x, close after `recovery` back in band."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.detectors.base import SeriesKey
from exporter.scoring.incidents import IncidentBook, detections

STEP = 60.0
A: SeriesKey = (("instance", "a"),)
B: SeriesKey = (("instance", "b"),)


def run(scores: list[float], recovery: float = 300.0) -> tuple[list[int], list[int]]:
    times = np.arange(len(scores), dtype=np.float64) * STEP
    fired, stage = detections(times, np.array(scores, dtype=np.float64), recovery, 2.0)
    return fired.tolist(), stage.tolist()


def test_an_incident_opens_once_and_stays_open_while_the_series_flickers() -> None:
    fired, stage = run([0.2, 1.5, 0.5, 1.2, 0.4, 1.1, 0.3])
    assert fired == [0, 1, 0, 0, 0, 0, 0]
    assert stage == [0, 1, 1, 1, 1, 1, 1]


def test_it_closes_after_recovery_and_the_next_anomaly_opens_a_new_one() -> None:
    # recovery 300 s = 5 points at 60 s: closed at the first in-band point 5 points after.
    scores = [0.1, 3.0] + [0.2] * 6 + [1.5, 0.1]
    fired, stage = run(scores)
    assert stage[:8] == [0, 1, 1, 1, 1, 1, 0, 0]
    assert fired == [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]


def test_a_much_worse_deviation_inside_an_incident_escalates_it() -> None:
    fired, stage = run([1.5, 2.0, 2.9, 3.0, 5.0, 6.5, 12.0])
    # Escalates at >= 2x the score that opened it (1.5 -> 3.0), then at 2x 3.0 (6.5), and
    # 12.0 is short of 2x 6.5.
    assert fired == [1, 0, 0, 1, 0, 1, 0]
    assert stage == [1, 1, 1, 2, 2, 3, 3]


def test_missing_scores_neither_extend_nor_close_an_incident() -> None:
    nan = float("nan")
    fired, stage = run([2.0, nan, nan, 0.5, nan, 0.5], recovery=240.0)
    assert fired == [1, 0, 0, 0, 0, 0]
    assert stage == [1, 1, 1, 1, 1, 0]  # 0.5 at 300 s: 300 s after the last score >= 1


def test_with_no_recovery_a_run_is_one_incident_closed_by_the_first_point_in_band() -> None:
    fired, stage = run([2.0, 3.0, 1.5, 0.5, 1.2], recovery=0.0)
    assert fired == [1, 0, 0, 0, 1]
    assert stage == [1, 1, 1, 0, 1]


def test_an_anomaly_after_a_gap_longer_than_recovery_is_a_new_incident() -> None:
    nan = float("nan")
    fired, stage = run([2.0] + [nan] * 10 + [1.2], recovery=300.0)
    assert fired[-1] == 1 and stage[-1] == 1


def test_the_book_tracks_series_independently_and_counts_events() -> None:
    book = IncidentBook(recovery=120.0, escalation=2.0)
    first = book.update([A, B], np.array([1.5, 0.2]), 0.0)
    assert first.stage.tolist() == [1, 0] and (first.opened, first.escalated) == (1, 0)
    assert first.started[0] == 0.0 and np.isnan(first.started[1])
    second = book.update([A, B], np.array([3.5, 1.0]), 60.0)
    assert second.stage.tolist() == [2, 1] and (second.opened, second.escalated) == (1, 1)
    assert second.started.tolist() == [0.0, 60.0]
    book.update([A, B], np.array([0.1, 1.2]), 120.0)
    fourth = book.update([A, B], np.array([0.1, 0.1]), 185.0)
    assert fourth.stage.tolist() == [0, 1]  # A in band 125 s after its last >= 1, B only 65 s
    assert list(book.open) == [B]


def test_a_series_that_disappears_is_closed_once_it_would_have_recovered() -> None:
    book = IncidentBook(recovery=120.0)
    book.update([A], np.array([5.0]), 0.0)
    book.update([], np.array([]), 60.0)
    assert A in book.open
    book.update([], np.array([]), 120.0)
    assert not book.open


def test_a_snapshot_restores_open_incidents() -> None:
    book = IncidentBook(recovery=600.0)
    book.update([A, B], np.array([4.0, 0.0]), 1000.0)
    state = json.loads(json.dumps(book.dump_state()))
    restored = IncidentBook(recovery=600.0)
    restored.load_state(state)
    again = restored.update([A], np.array([5.0]), 1060.0)
    assert again.stage.tolist() == [1] and again.opened == 0  # the same incident, not a new one
    assert again.started.tolist() == [1000.0]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(st.floats(0, 10), st.just(float("nan"))), min_size=1, max_size=60).map(
        np.array
    ),
    st.sampled_from([0.0, 60.0, 300.0]),
)
def test_the_book_and_the_backtest_agree(scores: np.ndarray, recovery: float) -> None:
    """A poll at a time (the daemon) and the whole series at once (backtest) give one answer."""
    times = np.arange(len(scores), dtype=np.float64) * STEP
    fired, stage = detections(times, scores, recovery, 2.0)
    book = IncidentBook(recovery=recovery, escalation=2.0)
    for i, ts in enumerate(times):
        stages = book.update([A], scores[i : i + 1], float(ts))
        assert stages.stage[0] == stage[i]
        assert stages.opened + stages.escalated == fired[i]
