"""What else went wrong around an alert, as augur's own scores and the rule's expression show it.

The PromQL selector for augur's scores of series sharing the alert's entities, the ranking of the
anomalous ones among them, and the rule expression's reading at the alert's start.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from exporter.text.entities import Entities

_SCORE = "augur_anomaly_score"
_NAMING = ("instance", "pod", "service", "node", "device", "mountpoint", "container")


@dataclass(frozen=True, slots=True)
class Related:
    """A scored series sharing the alert's entities: its peak score, when it turned anomalous."""

    labels: Mapping[str, str]
    peak: float
    first: float

    @property
    def metric(self) -> str:
        """The scored series' metric name (or its query's name)."""
        return self.labels.get("metric") or self.labels.get("query") or _SCORE

    def name(self) -> str:
        """`metric{instance="pg-1:9100",device="sda"}`, with the labels that name the series."""
        # exported_instance is the series' own instance; a plain one beside it is augur's.
        own = {k: v for k, v in self.labels.items() if k in _NAMING}
        for key, value in self.labels.items():
            if key.startswith("exported_") and key[len("exported_") :] in _NAMING:
                own[key[len("exported_") :]] = value
        shown = sorted(own.items(), key=lambda kv: _NAMING.index(kv[0]))
        inner = ",".join(f'{k}="{v}"' for k, v in shown[:3])
        return f"{self.metric}{{{inner}}}" if inner else self.metric


@dataclass(frozen=True, slots=True)
class Reading:
    """The rule expression's value at the alert's start and at the start of the window."""

    value: float
    at: float
    earlier: float
    earlier_at: float


def _rx(value: str) -> str:
    """`value` as a literal in an RE2 regex (Python's re.escape writes escapes RE2 refuses)."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", value)


def related_selector(entities: Entities) -> str:
    """PromQL for augur's scores of series sharing the alert's machines, pods or services.

    Scraped without honor_labels, a series' own `instance` or `pod` is `exported_instance` or
    `exported_pod`, so both spellings are asked for.
    """
    alternatives = {
        kind: "|".join(_rx(v) for v in values)
        for kind, values in (
            ("machine", entities.machines()),
            ("url", entities.url),
            ("pod", entities.pod),
            ("service", entities.service),
        )
        if values
    }
    labels = {
        "machine": ("node", "exported_node", "host"),
        "url": ("instance", "exported_instance"),
        "pod": ("pod", "exported_pod"),
        "service": ("service", "exported_service"),
    }
    matchers = [
        f"{label}=~{json.dumps(rx, ensure_ascii=False)}"  # a JSON string is a PromQL string
        for kind, rx in alternatives.items()
        for label in labels[kind]
    ]
    if "machine" in alternatives:
        port = json.dumps(f"(?:{alternatives['machine']})(?::[0-9]+)?", ensure_ascii=False)
        matchers += [f"instance=~{port}", f"exported_instance=~{port}"]
    return " or ".join(f"{_SCORE}{{{m}}}" for m in matchers)


def _points(series: Mapping[str, Any]) -> np.ndarray:
    values = np.asarray(series.get("values", ()), dtype=np.float64).reshape(-1, 2)
    return values[np.isfinite(values[:, 1])]


def _within(labels: Mapping[str, str], alert_labels: Mapping[str, str]) -> bool:
    return all(
        alert_labels.get(k) == v for k, v in labels.items() if k not in ("__name__", "detector")
    )


def rank_related(
    result: Sequence[Mapping[str, Any]], alert_labels: Mapping[str, str], threshold: float
) -> list[Related]:
    """Anomalous series, the first to turn anomalous first, then the highest; not the alert's."""
    out = []
    for series in result:
        if _within(series["metric"], alert_labels):
            continue  # the alert is about this very series, not related to it
        points = _points(series)
        anomalous = points[points[:, 1] >= threshold]
        if len(anomalous):
            labels = {k: v for k, v in series["metric"].items() if k != "__name__"}
            out.append(Related(labels, float(anomalous[:, 1].max()), float(anomalous[0, 0])))
    return sorted(out, key=lambda r: (r.first, -r.peak))


def expr_reading(
    result: Sequence[Mapping[str, Any]], alert_labels: Mapping[str, str]
) -> Reading | None:
    """The rule's values for this alert's series: the one whose labels the alert carries."""
    mine = [s for s in result if _within(s["metric"], alert_labels)]
    if not mine and len(result) == 1:
        mine = list(result)  # the rule's labels replaced the series' own: take the only one
    points = _points(mine[0]) if mine else np.zeros((0, 2))
    if not len(points):
        return None
    (first_at, first), (last_at, last) = points[0], points[-1]
    return Reading(float(last), float(last_at), float(first), float(first_at))
