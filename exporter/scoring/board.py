"""The score board: the scores of every scored series as /metrics shows them, and the fit
counters the detectors keep.

The scores are computed by the scoring loop on its own timer, like a rule evaluator, not on
scrape: a scrape returns the verdict of the latest cycle, without sample timestamps. Label
sets that a query stopped returning are expired after `expire_after` cycles.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from prometheus_client import Metric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from exporter.detectors import Estimate, SeriesKey
from exporter.detectors.base import parts as detector_parts
from exporter.scoring.incidents import Stages

log = logging.getLogger("augur.metrics")

RESERVED_LABELS = frozenset({"query", "detector", "horizon", "metric", "le", "quantile"})
"""Label names augur sets itself, and the two that mean a bucket or a quantile (invalid on a
gauge, says `promtool check metrics`): a series' own label of such a name is renamed with an
`exported_` prefix."""

_EVALUATED = "Computed by augur every poll interval (not on scrape) for the newest point."
_FORECAST = "Value the query's forecasting detector predicts `horizon` after the newest point."
_FAMILIES = (
    ("augur_anomaly_score", "Anomaly score of the series: 0..1 normal, >= 1 anomalous."),
    ("augur_expected_value", "Value the detector expected for the series."),
    ("augur_expected_lower", "Lower edge of the detector's normal band."),
    ("augur_expected_upper", "Upper edge of the detector's normal band."),
    ("augur_observed_value", "Value of the series' newest point, the one that was scored."),
)
_INCIDENT = (
    "Incident of the series: 0 none, 1 open (opened at a score >= 1), +1 each time it got worse "
    "(a score >= `escalation` x the one that opened or last raised it); back to 0 once the "
    "series scored below 1 for `recovery`. Alert on `augur_anomaly_incident >= 1`."
)
_INCIDENT_START = "Unix time the series' open incident opened (only while one is open)."


def export_labels(key: SeriesKey, keep: Sequence[str] | None = None) -> dict[str, str]:
    """A series' labels as augur exports them.

    `__name__` becomes `metric`; labels that clash with augur's own are renamed
    `exported_<name>`, as Prometheus does on scrape, and prefixed again while that name is
    taken too (`exported_exported_query`); `keep` limits the labels kept.
    """
    out: dict[str, str] = {}
    taken = {name for name, _ in key}
    for name, value in key:
        if name == "__name__":
            name = "metric"
        elif name in RESERVED_LABELS:
            name = f"exported_{name}"
            while name in taken:
                name = f"exported_{name}"
            taken.add(name)
        if keep is not None and name not in keep:
            continue
        out[name] = value
    return out


@dataclass
class _Row:
    labels: dict[str, str]
    values: tuple[float, float, float, float, float]
    """score, expected, lower, upper, observed"""
    cycle: int
    stage: int = 0
    started: float = float("nan")


@dataclass
class _Forecast:
    labels: dict[str, str]
    value: float
    cycle: int


class ScoreBoard:
    """The latest verdict per (query, detector, series), with expiry of vanished series."""

    def __init__(self, expire_after: int = 3) -> None:
        self.expire_after = expire_after
        self._rows: dict[str, dict[tuple[str, SeriesKey], _Row]] = {}
        self._forecasts: dict[str, dict[tuple[str, SeriesKey], _Forecast]] = {}
        self._cycles: dict[str, int] = {}
        self._collisions_logged: set[str] = set()

    def publish(
        self,
        query: str,
        keys: Sequence[SeriesKey],
        estimates: Mapping[str, Estimate],
        keep: Sequence[str] | None = None,
        incidents: Mapping[str, Stages] | None = None,
        observed: npt.NDArray[np.float64] | None = None,
    ) -> int:
        """Record one successful cycle of `query`; returns how many series got a score.

        `observed[i]` is series i's newest value (the window's last column), exported beside
        its band; NaN without it. Series whose score is NaN (too little history, no newest
        point) are left out. When `keep` makes two series' exported labels equal, the higher
        score wins.
        """
        incidents = incidents or {}
        if observed is None:
            observed = np.full(len(keys), np.nan)
        cycle = self._advance(query)
        rows = self._rows.setdefault(query, {})
        exported = [export_labels(k, keep) for k in keys]
        scored: set[int] = set()
        for detector, est in estimates.items():
            stages = incidents.get(detector)
            seen: dict[tuple[tuple[str, str], ...], float] = {}
            for i, labels in enumerate(exported):
                score = float(est.score[i])
                if score != score:  # NaN: not scorable this cycle
                    continue
                ident = tuple(sorted(labels.items()))
                if ident in seen:
                    self._log_collision(query)
                    if seen[ident] >= score:
                        continue
                seen[ident] = score
                scored.add(i)
                rows[(detector, ident)] = _Row(
                    labels={"query": query, "detector": detector, **labels},
                    values=(
                        score,
                        float(est.expected[i]),
                        float(est.lower[i]),
                        float(est.upper[i]),
                        float(observed[i]),
                    ),
                    cycle=cycle,
                    stage=int(stages.stage[i]) if stages else 0,
                    started=float(stages.started[i]) if stages else float("nan"),
                )
        self._expire(query, cycle)
        return len(scored)

    def publish_forecasts(
        self,
        query: str,
        keys: Sequence[SeriesKey],
        horizons: Sequence[str],
        values: npt.NDArray[np.float64],
        keep: Sequence[str] | None = None,
    ) -> None:
        """Record the forecasts of this cycle: `values[i, h]` for series i at `horizons[h]`.

        Call after `publish` of the same cycle; NaN forecasts are left out.
        """
        cycle = self._cycles.get(query, 0)
        rows = self._forecasts.setdefault(query, {})
        for i, key in enumerate(keys):
            labels = export_labels(key, keep)
            ident = tuple(sorted(labels.items()))
            for h, horizon in enumerate(horizons):
                value = float(values[i, h])
                if value == value:
                    rows[(horizon, ident)] = _Forecast(
                        labels={"query": query, "horizon": horizon, **labels},
                        value=value,
                        cycle=cycle,
                    )
        self._expire(query, cycle)

    def forecasts(self) -> Iterator[tuple[dict[str, str], float]]:
        """Every exported forecast as (labels, value)."""
        for rows in self._forecasts.values():
            for row in rows.values():
                yield row.labels, row.value

    def missed(self, query: str) -> None:
        """Record a failed cycle of `query`: its series age and eventually expire."""
        self._expire(query, self._advance(query))

    def forget(self, query: str) -> None:
        """Drop every row of `query` (a reload removed or changed it): its series leave /metrics."""
        for table in (self._rows, self._forecasts, self._cycles):
            table.pop(query, None)
        self._collisions_logged.discard(query)

    def series_count(self, query: str) -> int:
        """How many (detector, series) verdicts of `query` are currently exported."""
        return len(self._rows.get(query, {}))

    def rows(
        self,
    ) -> Iterator[tuple[dict[str, str], tuple[float, float, float, float, float]]]:
        """Every exported verdict as (labels, (score, expected, lower, upper, observed))."""
        for rows in self._rows.values():
            for row in rows.values():
                yield row.labels, row.values

    def incidents(self) -> Iterator[tuple[dict[str, str], int, float]]:
        """Every exported series' incident as (labels, stage, start time or NaN)."""
        for rows in self._rows.values():
            for row in rows.values():
                yield row.labels, row.stage, row.started

    def _advance(self, query: str) -> int:
        cycle = self._cycles.get(query, 0) + 1
        self._cycles[query] = cycle
        return cycle

    def _expire(self, query: str, cycle: int) -> None:
        for table in (self._rows.get(query), self._forecasts.get(query)):
            if table:
                stale = [k for k, r in table.items() if cycle - r.cycle >= self.expire_after]
                for k in stale:
                    del table[k]

    def _log_collision(self, query: str) -> None:
        if query not in self._collisions_logged:
            self._collisions_logged.add(query)
            log.warning(
                "labels_collide",
                extra={
                    "query": query,
                    "hint": "the query's `labels` list makes distinct series look the same; "
                    "the highest score is exported",
                },
            )


class ScoreCollector(Collector):
    """Exposes the score board.

    Sample output::

        # HELP augur_anomaly_score Anomaly score of the series: 0..1 normal, >= 1 anomalous. ...
        # TYPE augur_anomaly_score gauge
        augur_anomaly_score{query="latency",detector="zscore",metric="http_p99",job="api"} 0.42
        augur_expected_value{query="latency",detector="zscore",metric="http_p99",job="api"} 0.21
        augur_observed_value{query="latency",detector="zscore",metric="http_p99",job="api"} 0.38
        augur_anomaly_incident{query="latency",detector="zscore",metric="http_p99",job="api"} 1
        augur_anomaly_incident_start_timestamp_seconds{query="latency",...} 1.7648e+09
        augur_forecast_value{query="disk",horizon="4h",metric="disk_used_ratio",device="sda"} 0.93
    """

    def __init__(self, board: ScoreBoard) -> None:
        self.board = board

    def collect(self) -> Iterable[Metric]:
        """Build the families from the board's current rows."""
        families = [Metric(name, f"{doc} {_EVALUATED}", "gauge") for name, doc in _FAMILIES]
        for labels, values in self.board.rows():
            for family, value in zip(families, values, strict=True):
                family.add_sample(family.name, labels, value)
        incident = Metric("augur_anomaly_incident", f"{_INCIDENT} {_EVALUATED}", "gauge")
        start = Metric("augur_anomaly_incident_start_timestamp_seconds", _INCIDENT_START, "gauge")
        for labels, stage, started in self.board.incidents():
            incident.add_sample(incident.name, labels, stage)
            if stage:
                start.add_sample(start.name, labels, started)
        forecast = Metric("augur_forecast_value", f"{_FORECAST} {_EVALUATED}", "gauge")
        for labels, value in self.board.forecasts():
            forecast.add_sample(forecast.name, labels, value)
        return [*families, incident, start, forecast]


_FIT_COUNTERS = (
    ("fits", "augur_detector_fits", "Model fits completed (ARIMA), per query and detector."),
    (
        "fit_failures",
        "augur_detector_fit_failures",
        "Model fits that raised or did not converge; a simpler model was used instead.",
    ),
    ("fallbacks", "augur_detector_fallbacks", "Series running on a fallback (simpler) model."),
)


class DetectorCollector(Collector):
    """Counters the detectors keep themselves (fits, failures, fallbacks), read at scrape.

    Sample output::

        augur_detector_fits_total{query="disk",detector="arima"} 42.0
        augur_detector_fits_pending{query="disk",detector="arima"} 3.0
    """

    def __init__(self, detectors: Callable[[], Iterable[tuple[str, str, object]]]) -> None:
        self.detectors = detectors

    def collect(self) -> Iterable[Metric]:
        """One sample per (query, detector) that has the counter, summed over its parts."""
        counters = {
            attr: CounterMetricFamily(name, doc, labels=["query", "detector"])
            for attr, name, doc in _FIT_COUNTERS
        }
        pending = GaugeMetricFamily(
            "augur_detector_fits_pending",
            "Series whose model fit is queued or running in the fit workers.",
            labels=["query", "detector"],
        )
        for query, name, detector in self.detectors():
            parts = list(detector_parts(detector))
            for attr, family in counters.items():
                values = [
                    getattr(p, attr) for p in parts if isinstance(getattr(p, attr, None), int)
                ]
                if values:
                    family.add_metric([query, name], sum(values))
            waiting = [w for p in parts if isinstance(w := getattr(p, "pending", None), int)]
            if waiting:
                pending.add_metric([query, name], sum(waiting))
        return [*counters.values(), pending]
