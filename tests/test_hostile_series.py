"""Hostile series and labels: whatever the values, no NaN or infinity is exported, and whatever
the labels, the exposition is valid and no series' label overwrites one of augur's."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from prometheus_client import CollectorRegistry, generate_latest

from exporter.config.queries import QueryConfig
from exporter.detectors import Estimate, Window
from exporter.scoring.board import ScoreBoard, ScoreCollector, export_labels
from exporter.scoring.runner import QueryRunner

STEP = 60.0

VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1e308, -1e308, 5e-324, 7.0, math.nan]),
)


def runner() -> QueryRunner:
    return QueryRunner.build(
        QueryConfig(
            name="q",
            expr="x",
            lookback=STEP * 40,
            step=STEP,
            detectors=["ensemble", "zscore", "ewma"],
            seasonality="none",
        )
    )


@settings(max_examples=150, deadline=None)
@given(
    values=hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(2, 41)), elements=VALUES)
)
def test_scores_are_finite_or_absent(values: np.ndarray) -> None:
    """For any array (NaN, infinities, 1e308, constant), every detector scores without raising
    and every score, band and value the board would export is finite."""
    width = values.shape[1]
    window = Window(
        values=values,
        timestamps=1_700_000_000 + STEP * np.arange(width, dtype=np.float64),
        keys=[(("i", str(i)),) for i in range(values.shape[0])],
        step=STEP,
    )
    run = runner()
    for _ in range(2):  # a second cycle scores with what the first one learned
        estimates = run.score(window)
        for est in estimates.values():
            score = est.score
            assert np.all(np.isnan(score) | np.isfinite(score))
            shown = ~np.isnan(score)
            for part in (est.expected, est.lower, est.upper):
                assert np.all(np.isfinite(part[shown]))
        board = ScoreBoard()
        board.publish("q", window.keys, estimates, observed=values[:, -1])
        for _, row in board.rows():  # a scored series' newest value is a number too
            assert all(math.isfinite(v) for v in row)


HOSTILE_LABELS = [
    (("__name__", "up"), ("query", "theirs"), ("detector", 'a"b'), ("job", "line\nbreak")),
    (("exported_query", "x"), ("query", "y"), ("instance", "höst-東京\\"), ("le", "+Inf")),
    (("metric", "m"), ("horizon", "1h"), ("path", 'C:\\tmp\\"x"')),
]


def test_clashing_labels_are_renamed_never_lost() -> None:
    labels = export_labels(HOSTILE_LABELS[1])
    # `query` cannot become `exported_query`: the series has one; Prometheus prefixes again.
    assert labels == {
        "exported_query": "x",
        "exported_exported_query": "y",
        "instance": "höst-東京\\",
        "exported_le": "+Inf",  # a bucket's label on a gauge: promtool refuses it
    }
    assert export_labels(HOSTILE_LABELS[0]) == {
        "metric": "up",
        "exported_query": "theirs",
        "exported_detector": 'a"b',
        "job": "line\nbreak",
    }


async def test_hostile_labels_pass_promtool(
    promtool_check_metrics: Callable[[bytes], Awaitable[tuple[int, str]]],
) -> None:
    board = ScoreBoard()
    n = len(HOSTILE_LABELS)
    score = np.linspace(0.1, 2.0, n)
    board.publish(
        "q",
        HOSTILE_LABELS,
        {"zscore": Estimate(score=score, expected=score, lower=score - 1, upper=score + 1)},
    )
    registry = CollectorRegistry()
    registry.register(ScoreCollector(board))
    exposition = generate_latest(registry)
    code, out = await promtool_check_metrics(exposition)
    assert code == 0, (out, exposition.decode())
    text = exposition.decode()
    assert 'job="line\\nbreak"' in text and 'exported_detector="a\\"b"' in text
    rows = [line for line in text.splitlines() if line.startswith("augur_anomaly_score{")]
    assert len(rows) == n and all('query="q"' in r and 'detector="zscore"' in r for r in rows)
