"""The score board and its exposition: label renaming, expiry, collisions, promtool."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter.demo.procs import find_binary
from exporter.detectors import Estimate
from exporter.scoring.board import ScoreBoard, ScoreCollector, export_labels
from exporter.self_metrics import SelfMetrics


def estimate(*scores: float) -> Estimate:
    s = np.array(scores, dtype=np.float64)
    return Estimate(score=s, expected=s + 10, lower=s + 5, upper=s + 15)


KEY_A = (("__name__", "up"), ("instance", "a:9100"), ("job", "node"))
KEY_B = (("__name__", "up"), ("instance", "b:9100"), ("job", "node"))


def test_export_labels_renames_reserved_names() -> None:
    key = (("__name__", "x"), ("detector", "mine"), ("query", "q"), ("zone", "eu"))
    assert export_labels(key) == {
        "metric": "x",
        "exported_detector": "mine",
        "exported_query": "q",
        "zone": "eu",
    }
    assert export_labels(key, keep=["zone"]) == {"zone": "eu"}


def test_publish_skips_unscorable_series_and_expires_vanished_ones() -> None:
    board = ScoreBoard(expire_after=2)
    assert board.publish("q", [KEY_A, KEY_B], {"zscore": estimate(0.5, float("nan"))}) == 1
    assert board.series_count("q") == 1
    # b comes back, a vanishes: a is kept for expire_after cycles, then dropped.
    board.publish("q", [KEY_B], {"zscore": estimate(2.0)})
    assert board.series_count("q") == 2
    board.publish("q", [KEY_B], {"zscore": estimate(2.0)})
    assert board.series_count("q") == 1
    assert [labels["instance"] for labels, _ in board.rows()] == ["b:9100"]


def test_observed_value_is_exported_beside_its_band_and_only_when_scored() -> None:
    registry = CollectorRegistry()
    board = ScoreBoard()
    registry.register(ScoreCollector(board))
    scores = estimate(0.5, float("nan"))
    board.publish("q", [KEY_A, KEY_B], {"zscore": scores}, observed=np.array([412.0, 7.0]))
    text = generate_latest(registry).decode()
    labels = '{detector="zscore",instance="a:9100",job="node",metric="up",query="q"}'
    assert f"augur_observed_value{labels} 412.0" in text
    assert f"augur_expected_value{labels} 10.5" in text
    # b got no score this cycle: neither its band nor its value is exported.
    assert 'instance="b:9100"' not in text
    # Without the window's values (a caller that has none) the value is NaN, not a guess.
    board.publish("q", [KEY_A], {"zscore": scores})
    assert f"augur_observed_value{labels} NaN" in generate_latest(registry).decode()


def test_failed_cycles_age_the_series_too() -> None:
    board = ScoreBoard(expire_after=2)
    board.publish("q", [KEY_A], {"zscore": estimate(0.5)})
    board.missed("q")
    assert board.series_count("q") == 1
    board.missed("q")
    assert board.series_count("q") == 0


def test_collapsed_label_sets_keep_the_highest_score(caplog: pytest.LogCaptureFixture) -> None:
    board = ScoreBoard()
    board.publish("q", [KEY_A, KEY_B], {"zscore": estimate(0.2, 3.0)}, keep=["job"])
    rows = list(board.rows())
    assert len(rows) == 1 and rows[0][1][0] == 3.0
    assert any(r.getMessage() == "labels_collide" for r in caplog.records)


def test_exposition_passes_promtool() -> None:
    registry = CollectorRegistry()
    board = ScoreBoard()
    registry.register(ScoreCollector(board))
    metrics = SelfMetrics(registry)
    metrics.init_query("q")
    board.publish(
        "q",
        [KEY_A, KEY_B],
        {"zscore": estimate(0.5, 1.5), "ewma": estimate(0.1, 0.2)},
        observed=np.array([3.0, 4.0]),
    )
    text = generate_latest(registry)
    assert (
        b'augur_anomaly_score{detector="zscore",instance="b:9100",job="node",metric="up",query="q"} 1.5'
        in text
    )
    assert b'augur_poll_failures_total{query="q"} 0.0' in text
    assert b"# HELP augur_observed_value Value of the series' newest point" in text
    check = subprocess.run(
        [find_binary("promtool"), "check", "metrics"], input=text, capture_output=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_forecasts_are_exported_and_expire_with_their_query() -> None:
    registry = CollectorRegistry()
    board = ScoreBoard(expire_after=1)
    registry.register(ScoreCollector(board))
    board.publish("disk", [KEY_A], {"arima": estimate(0.1)})
    board.publish_forecasts("disk", [KEY_A], ["1h", "4h"], np.array([[0.8, 0.97]]))
    text = generate_latest(registry).decode()
    assert (
        'augur_forecast_value{horizon="4h",instance="a:9100",job="node",metric="up",query="disk"} 0.97'
        in text
    )
    check = subprocess.run(
        [find_binary("promtool"), "check", "metrics"], input=text.encode(), capture_output=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    board.missed("disk")
    assert "augur_forecast_value{" not in generate_latest(registry).decode()


def test_detector_counters_are_found_inside_wrappers_and_ensembles() -> None:
    from exporter.detectors import build
    from exporter.detectors.ensemble import EnsembleParams
    from exporter.detectors.seasonal import wrap
    from exporter.scoring.board import DetectorCollector

    params = EnsembleParams.model_validate(
        {"members": [{"detector": "zscore"}, {"detector": "arima", "workers": 0}]}
    )
    ensemble = wrap(build("ensemble", params), 86400.0, 300.0)
    arima = next(d for d in ensemble.children()[0].children() if hasattr(d, "fits"))  # type: ignore[attr-defined]
    arima.fits, arima.fit_failures = 7, 2
    registry = CollectorRegistry()
    registry.register(DetectorCollector(lambda: [("disk", "ensemble", ensemble)]))
    text = generate_latest(registry).decode()
    assert 'augur_detector_fits_total{detector="ensemble",query="disk"} 7.0' in text
    assert 'augur_detector_fit_failures_total{detector="ensemble",query="disk"} 2.0' in text
