"""What else went wrong around an alert, as augur's own scores and the rule's expression show it.

A related series (`Related`, found and ranked by `cause.py`), the helpers to read augur's scores,
and the rule expression's reading at the alert's start.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

SCORE = "augur_anomaly_score"
"""The metric of augur's per-series scores."""
_NAMING = ("instance", "pod", "service", "node", "device", "mountpoint", "container")


@dataclass(frozen=True, slots=True)
class Related:
    """A scored series sharing the alert's entities: its peak score, when it turned anomalous."""

    labels: Mapping[str, str]
    peak: float
    first: float
    own: bool = False
    """The alerting series itself (augur's alert on it, or the rule's metric where it fires)."""
    share: int = 0
    """How it shares the alert's entities: `cause.PLACE`, `NAMESPACE` or `METRIC` (only)."""
    cause: bool = False
    """Shares a place and turned anomalous at least a step before the alerting series."""

    def marked(self, *, cause: bool) -> Related:
        """This series, said to be a likely cause or not."""
        return replace(self, cause=cause)

    @property
    def metric(self) -> str:
        """The scored series' metric name (or its query's name)."""
        return self.labels.get("metric") or self.labels.get("query") or SCORE

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


def rx(value: str) -> str:
    """`value` as a literal in an RE2 regex (Python's re.escape writes escapes RE2 refuses)."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", value)


def points(series: Mapping[str, Any]) -> np.ndarray:
    """A matrix series' finite (time, value) rows."""
    values = np.asarray(series.get("values", ()), dtype=np.float64).reshape(-1, 2)
    return values[np.isfinite(values[:, 1])]


def within(labels: Mapping[str, str], alert_labels: Mapping[str, str]) -> bool:
    """Whether the alert carries all of a scored series' labels: it is about that series."""
    return all(
        alert_labels.get(k) == v for k, v in labels.items() if k not in ("__name__", "detector")
    )


def expr_reading(
    result: Sequence[Mapping[str, Any]], alert_labels: Mapping[str, str]
) -> Reading | None:
    """The rule's values for this alert's series: the one whose labels the alert carries."""
    mine = [s for s in result if within(s["metric"], alert_labels)]
    if not mine and len(result) == 1:
        mine = list(result)  # the rule's labels replaced the series' own: take the only one
    data = points(mine[0]) if mine else np.zeros((0, 2))
    if not len(data):
        return None
    (first_at, first), (last_at, last) = data[0], data[-1]
    return Reading(float(last), float(last_at), float(first), float(first_at))
