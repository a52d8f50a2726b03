"""A day of augur's own series with known anomalies, for the report's tests and benchmark.

Two series are anomalous: `node_load1` on db-01 (one stretch, peak 5 by zscore, and an
incident open 80 minutes) and `http_errors_ratio` of checkout (two stretches, peak 3, an
incident open 24 minutes); the others stay below 1, one of them at 0.99. A disk forecast
reaches 120 % (past 100 %), a load forecast stays under its day's max. Samples lie on the
report's 2-minute grid, so every time the report reads is exact.
"""

from __future__ import annotations

from collections.abc import Iterator

from exporter.demo.procs import Sample

STEP = 120
DAY = 86400
LOAD = {"query": "load", "metric": "node_load1", "instance": "db-01:9100"}
ERRORS = {"query": "errors", "metric": "http_errors_ratio", "service": "checkout"}
DISK = {"query": "disk_used", "metric": "disk_used_ratio", "instance": "db-01:9100"}
QUIET = [
    {"query": "load", "metric": "node_load1", "instance": f"web-0{i}:9100"} for i in (1, 2)
] + [{"query": "errors", "metric": "http_errors_ratio", "service": "search"}, DISK]
INCIDENTS = {  # series -> (opened, closed) seconds before the end, and the minutes open
    "load": (6 * 3600, 6 * 3600 - 80 * 60),
    "errors": (2 * 3600, 2 * 3600 - 24 * 60),
}


def _times(now: int) -> range:
    return range(now - DAY, now + 1, STEP)


def _score(labels: dict[str, str], detector: str, t: int, now: int, quiet: float) -> float:
    ago = now - t
    if labels is LOAD and 5 * 3600 < ago <= 6 * 3600:
        return 5.0 if detector == "zscore" else 2.0
    if labels is ERRORS and (3600 + 1800 < ago <= 2 * 3600 or 9 * 3600 + 600 < ago <= 10 * 3600):
        return 3.0
    return quiet


def world(now: int) -> Iterator[Sample]:
    """The samples of the day ending at `now` (a multiple of STEP)."""
    for labels, quiet in (
        (LOAD, 0.3),
        (ERRORS, 0.2),
        *((q, 0.5) for q in QUIET[:-1]),
        (DISK, 0.99),
    ):
        for detector in ("zscore", "ewma"):
            series = {**labels, "detector": detector}
            for t in _times(now):
                score = _score(labels, detector, t, now, quiet if detector == "zscore" else 0.1)
                yield Sample("augur_anomaly_score", series, t, score)
                anomalous = score >= 1
                base = 0.8 if labels is DISK else 10.0
                yield Sample("augur_observed_value", series, t, base * (3 if anomalous else 1))
                yield Sample("augur_expected_value", series, t, base)
                yield Sample("augur_expected_lower", series, t, base * 0.8)
                yield Sample("augur_expected_upper", series, t, base * 1.2)
    for labels in (LOAD, ERRORS):
        opened, closed = INCIDENTS[labels["query"]]
        for t in _times(now):
            ago = now - t
            stage = 2 if closed + 600 >= ago > closed else 1
            yield Sample(
                "augur_anomaly_incident",
                {**labels, "detector": "zscore"},
                t,
                stage if closed < ago <= opened else 0,
            )
    for t in _times(now):
        yield Sample("augur_forecast_value", {**DISK, "horizon": "4h"}, t, 1.2)
        yield Sample("augur_forecast_value", {**LOAD, "horizon": "1h"}, t, 12.0)
        if now - t <= 3600:  # ALERTS exists only while the alert fires
            alert = {"alertname": "HighErrorRate", "alertstate": "firing"}
            yield Sample("ALERTS", {**alert, "service": "checkout", "category": "errors"}, t, 1)
        yield Sample(
            "augur_alerts_enriched_total", {"category": "disk"}, t, (t - now + DAY) // 3600
        )
