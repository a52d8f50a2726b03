"""The alerting series against the band augur expected for it, when augur scores that series.

augur exports, beside each score, the value it scored (`augur_observed_value`) and the band its
detector expected (`augur_expected_value`, `…_lower`, `…_upper`). For augur's own alerts and for
a rule's alert whose own series augur scores (`Related.own`), the enricher reads these four at
the moment the series turned anomalous (its onset in the related window, else the alert's
start), so the summary can say "412, 3.2× its expected 130 (band 90–170)" instead of
"augur incident stage 1". Of several detectors of the series, the one whose band the value
lies furthest outside is the one quoted: it is the one that made the score.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.alerts.cause import candidate_selector
from exporter.alerts.related import Related, points, rx, within
from exporter.text.entities import Entities

OBSERVED = "augur_observed_value"
BAND_NAMES = (OBSERVED, "augur_expected_value", "augur_expected_lower", "augur_expected_upper")
"""The value and its band, in the order `Band` holds them."""
_AUGUR_METRICS = ("augur_anomaly_incident", "augur_anomaly_score")


@dataclass(frozen=True, slots=True)
class Band:
    """The alerting series' value and the band augur expected, at `at`."""

    value: float
    expected: float
    lower: float
    upper: float
    at: float
    metric: str
    """The series' metric name (or its query's name), which also tells the unit."""

    @property
    def outside(self) -> float:
        """How far outside the band the value is, in band widths (<= 0: inside)."""
        width = max(self.upper - self.lower, 1e-12)
        return max(self.value - self.upper, self.lower - self.value) / width


def band_selector(
    entities: Entities, metrics: Collection[str], alert_labels: Mapping[str, str]
) -> str:
    """PromQL for the value and band of the series this alert is about, or "" if it names none.

    augur's own alerts carry the series' `query`; a rule's alert is about its metrics on its
    places. Either bounds the answer to a few series (the detectors of one series, mostly).
    """
    if query := alert_labels.get("query"):
        also = f"query={json.dumps(query, ensure_ascii=False)}"
        anywhere = f'{{__name__=~"{"|".join(BAND_NAMES)}",{also}}}'
        return candidate_selector(entities, (), BAND_NAMES, also) or anywhere
    theirs = [m for m in metrics if m not in _AUGUR_METRICS]
    if not theirs:
        return ""
    pattern = "|".join(rx(m) for m in theirs)
    return candidate_selector(
        entities, (), BAND_NAMES, f"metric=~{json.dumps(pattern, ensure_ascii=False)}"
    )


def _at(data: Any, t: float) -> float:
    """The value at time `t` (the latest at or before it), NaN if there is none."""
    rows = data[data[:, 0] <= t + 1e-6]
    return float(rows[-1, 1]) if len(rows) else math.nan


def read_band(
    result: Sequence[Mapping[str, Any]],
    related: Sequence[Related] | None,
    alert_labels: Mapping[str, str],
    starts_at: float,
) -> Band | None:
    """The alerting series' value and band at its onset, from the answer to `band_selector`.

    The series is the related step's own series (the strongest), else the one whose labels
    the alert carries (the related step failed); its onset, else the alert's start, is when.
    """
    own = max((r for r in related or () if r.own), key=lambda r: r.peak, default=None)
    when = own.first if own else starts_at
    by_series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for series in result:
        labels = dict(series["metric"])
        name = labels.pop("__name__", "")
        if name not in BAND_NAMES:
            continue
        plain = {k: v for k, v in labels.items() if k != "detector"}
        if not (plain == dict(own.labels) if own else within(plain, alert_labels)):
            continue
        by_series.setdefault(tuple(sorted(labels.items())), {})[name] = points(series)
    best: Band | None = None
    for key, found in by_series.items():
        if len(found) < len(BAND_NAMES):
            continue
        value, expected, lower, upper = (_at(found[n], when) for n in BAND_NAMES)
        if not all(math.isfinite(x) for x in (value, expected, lower, upper)):
            continue
        labels = dict(key)
        metric = labels.get("metric") or labels.get("query", "")
        band = Band(value, expected, lower, upper, when, metric)
        if best is None or band.outside > best.outside:
            best = band
    return best
