"""Which of augur's anomalous series may have caused an alert: candidates, onsets, the ranking.

Candidates are the series augur scores that share a place with the alert (its machine, pod,
service, node or namespace) or whose `metric` is one the rule's expression reads. Each gets its
onset (the first step its score was >= `related_min_score` in the window) and its peak. The
alert's own series is among them and said to be: for augur's own alerts the series its labels
name; for a rule's alert the series of the rule's metrics on the alert's machine, pod or service.

The ranking follows from what a cause is: it is somewhere the alert is (sharing a place ranks
above sharing only a metric name, which another host can have too), and it went wrong first
(earliest onset first, the stronger first at the same step). "Likely cause" is said only of a
series that shares a place and crossed at least one step before the alerting series did: a
series that crossed after cannot have caused it, whatever its strength. When augur scores none
of the alert's own series, its onset is unknown (a rule's alert starts when its condition held,
which may be after the effects of the same cause crossed): then only the first series of the
alert's places to cross, a step or more before the alert started, is called a likely cause.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from exporter.alerts.related import SCORE, Related, points, rx, within
from exporter.text.entities import Entities, split_host_port

PLACE, NAMESPACE, METRIC = 0, 1, 2
"""How a candidate shares the alert's entities, closest first: its `Related.share`."""

_MACHINE_LABELS = ("node", "exported_node", "host", "instance", "exported_instance")
_LABELS = {
    "machine": ("node", "exported_node", "host"),
    "url": ("instance", "exported_instance"),
    "pod": ("pod", "exported_pod"),
    "service": ("service", "exported_service"),
    "namespace": ("namespace", "exported_namespace"),
}


def candidate_selector(
    entities: Entities, metrics: Collection[str], names: Sequence[str] = (SCORE,), also: str = ""
) -> str:
    """PromQL for augur's scores of series sharing the alert's places or the rule's metrics.

    Scraped without honor_labels, a series' own `instance` or `pod` is `exported_instance` or
    `exported_pod`, so both spellings are asked for. `names` asks for other families of augur's
    series instead (its bands), `also` is one more matcher every alternative must meet.
    """
    alternatives = {
        kind: "|".join(rx(v) for v in values)
        for kind, values in (
            ("machine", entities.machines()),
            ("url", entities.url),
            ("pod", entities.pod),
            ("service", entities.service),
            ("namespace", entities.namespace),
            ("metric", tuple(metrics)),
        )
        if values
    }
    matchers = [
        f"{label}=~{json.dumps(pattern, ensure_ascii=False)}"  # a JSON string is a PromQL string
        for kind, pattern in alternatives.items()
        for label in _LABELS.get(kind, ("metric",))
    ]
    if "machine" in alternatives:
        port = json.dumps(f"(?:{alternatives['machine']})(?::[0-9]+)?", ensure_ascii=False)
        matchers += [f"instance=~{port}", f"exported_instance=~{port}"]
    head = names[0] if len(names) == 1 else ""
    if not head:
        matchers = [f'__name__=~"{"|".join(names)}",{m}' for m in matchers]
    if also:
        matchers = [f"{m},{also}" for m in matchers]
    return " or ".join(f"{head}{{{m}}}" for m in matchers)


def share(labels: Mapping[str, str], entities: Entities, metrics: Collection[str]) -> int | None:
    """How a scored series shares the alert's entities (`PLACE`, ...), or None if it does not.

    `exported_*` are the series' own labels; a plain `instance` beside `exported_instance` is
    augur's own scrape target and says nothing of the series.
    """

    def own(key: str) -> str:
        return labels.get(f"exported_{key}") or labels.get(key, "")

    machines = set(entities.machines())
    for key in _MACHINE_LABELS:
        value = labels.get(key, "")
        if key == "instance" and "exported_instance" in labels:
            continue
        if value and (split_host_port(value)[0] in machines or value in entities.url):
            return PLACE
    if (pod := own("pod")) and pod in entities.pod:
        return PLACE
    if (service := own("service")) and service in entities.service:
        return PLACE
    if (namespace := own("namespace")) and namespace in entities.namespace:
        return NAMESPACE
    if labels.get("metric") in metrics:
        return METRIC
    return None


def rank_causes(
    result: Sequence[Mapping[str, Any]],
    alert_labels: Mapping[str, str],
    entities: Entities,
    metrics: Collection[str],
    *,
    threshold: float,
    step: float,
    starts_at: float,
) -> list[Related]:
    """The anomalous candidates, most likely cause first, the alert's own series marked.

    Sorted by (shares a place or namespace before a metric name only, onset, -peak). `cause` is
    set on those sharing a place or namespace whose onset is at least `step` before the alerting
    series' onset: the earliest own series'. When none of them is scored, only the earliest of
    those sharing a place or namespace can be, and only if it crossed a step before `starts_at`.
    """
    found: list[Related] = []
    for series in result:
        labels = {k: v for k, v in series["metric"].items() if k != "__name__"}
        tier = share(labels, entities, metrics)
        is_own = within(labels, alert_labels) or (tier == PLACE and labels.get("metric") in metrics)
        data = points(series)
        anomalous = data[data[:, 1] >= threshold]
        if not len(anomalous) or (tier is None and not is_own):
            continue
        found.append(
            Related(
                labels,
                float(anomalous[:, 1].max()),
                float(anomalous[0, 0]),
                own=is_own,
                share=PLACE if is_own else (tier if tier is not None else METRIC),
            )
        )
    own_onsets = [r.first for r in found if r.own]
    near = [r.first for r in found if r.share <= NAMESPACE]
    # Without the alerting series' onset, a series that crossed before the alert started may
    # still be another effect that crossed after it: only the first to go wrong is claimed.
    reference = min(own_onsets) if own_onsets else min([starts_at, *(t + step for t in near)])
    ranked = [
        r.marked(cause=not r.own and r.share <= NAMESPACE and r.first <= reference - step)
        for r in found
    ]
    return sorted(ranked, key=lambda r: (r.share == METRIC, r.first, -r.peak))


_LINES = (
    {
        "cause": "likely cause: {name} anomalous since {since} (peak {peak:.2f})",
        "own": "this alert's series: {name} anomalous since {since} (peak {peak:.2f})",
        "other": "related: {name} anomalous since {since} (peak {peak:.2f})",
        "metric": "same metric elsewhere: {name} anomalous since {since} (peak {peak:.2f})",
    },
    {
        "cause": "可能原因：{name} 自 {since} 起异常（峰值 {peak:.2f}）",
        "own": "本告警的序列：{name} 自 {since} 起异常（峰值 {peak:.2f}）",
        "other": "相关：{name} 自 {since} 起异常（峰值 {peak:.2f}）",
        "metric": "其他位置的同一指标：{name} 自 {since} 起异常（峰值 {peak:.2f}）",
    },
)


def related_line(r: Related, since: str, zh: bool) -> str:
    """One line of `augur_related` for a ranked series, in the alert's language."""
    kind = "cause" if r.cause else "own" if r.own else "metric" if r.share == METRIC else "other"
    return _LINES[zh][kind].format(name=r.name(), since=since, peak=r.peak)
