"""Run an intent's template against Prometheus and say the result: one sentence and a table.

`run` checks the slots (`labels.bind`), picks the first metric family this Prometheus has
(`Template.alternatives`), runs its instant queries at `now` and joins their values per row.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from exporter.alerts.measured import Shape, amount, duration
from exporter.assistant.catalog import Intent
from exporter.assistant.discovery import Discovery, discovery_for
from exporter.assistant.errors import NoData, NotAvailable, SlotError
from exporter.assistant.labels import SERVICE_LABELS, Bound, bind, host_part
from exporter.assistant.related import related_anomalies
from exporter.assistant.template import Query, Template
from exporter.assistant.templates import TEMPLATES
from exporter.config.alerts import AlertmanagerConfig
from exporter.prometheus.client import PrometheusClient

__all__ = ["Answer", "NoData", "NotAvailable", "SlotError", "run"]

KEY_COLUMNS = {
    "instance": ("host", "主机"),
    "target": ("target", "目标"),
    "mountpoint": ("mount", "挂载点"),
    "series": ("series", "序列"),
    "query": ("query", "查询"),
    "service": ("service", "服务"),
    "job": ("job", "job"),
    "namespace": ("namespace", "命名空间"),
    "pod": ("pod", "Pod"),
    "container": ("container", "容器"),
    "phase": ("state", "状态"),
    "deployment": ("deployment", "Deployment"),
    "node": ("node", "节点"),
    "condition": ("condition", "状况"),
    "status": ("status", "值"),
    "alertname": ("alert", "告警"),
    "severity": ("severity", "级别"),
    "category": ("category", "类别"),
    "horizon": ("horizon", "预测跨度"),
}
"""Column headers of the row labels, English and Chinese."""
EVAL_TIMEOUT_SECONDS = 10.0
"""Prometheus stops evaluating a question's query after this long: one careless question must
not hold its query engine, whatever the client's own timeout does."""
_HIDDEN = frozenset(("__name__", "query", "detector", "horizon"))
_THEN = {"en": ", then ", "zh": ",其次是 "}


@dataclass
class Answer:
    """What `augur ask` prints: a sentence, a small table and the PromQL that produced it."""

    intent: str
    lang: str
    sentence: str
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    promql: list[str] = field(default_factory=list)


def _key(labels: Mapping[str, str], name: str) -> str:
    if name == "instance":
        return host_part(labels.get("instance", ""))
    if name == "target":
        return labels.get("instance", "")
    if name == "series":
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in _HIDDEN)
    return labels.get(name, "")


def format_value(value: float, unit: str, zh: bool, now: float) -> str:
    """`value` in `unit` as the table shows it: `93 %`, `1.2 GiB`, `3.4k/s`, `2 h`."""
    if unit == "percent":
        return amount(value, Shape(percent=True), zh)
    if unit == "ratio":
        return amount(value, Shape(ratio=True), zh)
    if unit in ("bytes", "bytes/s"):
        return amount(value, Shape(unit="B"), zh) + unit[5:]
    if unit == "seconds":
        return amount(value, Shape(unit="s"), zh)
    if unit == "age":
        return duration(now - value, zh)
    if unit == "rate":
        return amount(value, Shape(), zh) + "/s"
    if unit == "cores":
        return f"{value:.2f}" + (" 核" if zh else " cores")
    if unit == "count":
        return f"{value:.0f}"
    return amount(value, Shape(), zh)


def _pick(template: Template, names: frozenset[str]) -> Query:
    """The first alternative whose metric names all exist; else NotAvailable naming them."""
    for query in template.alternatives:
        if set(query.needs) <= names:
            return query
    missing = [
        f"no {q.family} series ({', '.join(n for n in q.needs if n not in names)})"
        for q in template.alternatives
    ]
    raise NotAvailable(", nor ".join(dict.fromkeys(missing)) + " in this Prometheus")


async def _vector(client: PrometheusClient, expr: str, now: float) -> list[dict[str, Any]]:
    result = await client.query(expr, time=now, eval_timeout=EVAL_TIMEOUT_SECONDS)
    if result.result_type == "scalar":
        return [{"metric": {}, "value": result.result}]
    return list(result.result) if result.result_type == "vector" else []


def _sentence(template: Template, lang: str, rows: list[list[str]], query: Query) -> str:
    width = len(query.keys)

    def key(row: list[str]) -> str:
        parts = [part for part in row[:width] if part]
        if query.keys[:2] == ("namespace", "pod") or query.keys[:2] == ("namespace", "deployment"):
            parts[:2] = ["/".join(parts[:2])]  # `shop/checkout-7d9f…` as kubectl names it
        return " ".join(parts) or "-"

    def value(row: list[str]) -> str:
        return row[width] if len(row) > width else ""

    text = template.lead[lang].format(key=key(rows[0]), value=value(rows[0]), n=len(rows))
    if template.then and query.values[0].unit:
        for i, row in enumerate(rows[1:3]):
            text += (_THEN[lang] if i == 0 or lang == "en" else "、") + f"{key(row)} {value(row)}"
    return text + ("。" if lang == "zh" else ".")


async def run(
    intent: Intent,
    slots: Mapping[str, str],
    lang: str,
    client: PrometheusClient,
    now: float,
    *,
    alertmanager_url: str | None = None,
    alertmanager: AlertmanagerConfig | None = None,
) -> Answer:
    """Answer `intent` with `slots` at `now`; raises SlotError, NoData or NotAvailable."""
    lang = "zh" if lang == "zh" else "en"
    found = discovery_for(client)
    bound = await bind(intent, slots, found, now)
    if intent.name == "related_anomalies":
        columns, rows, said = await related_anomalies(bound, lang, alertmanager_url, alertmanager)
        return Answer(intent.name, lang, said, columns, rows, [])
    template = TEMPLATES[intent.name]
    query = _pick(template, await found.metric_names())
    if "service" in query.keys and bound.service is None:
        bound = replace(bound, service_label=await _service_label(found, query))
    exprs = [v.build(bound) for v in query.values]
    results = await asyncio.gather(*(_vector(client, e, now) for e in exprs))
    rows = _rows(query, results, bound, lang == "zh")
    limit = bound.topk if "topk" in intent.slots and bound.topk else template.rows
    rows = rows[:limit]
    if not rows:
        raise NoData(template.empty[lang], exprs)
    columns = [KEY_COLUMNS.get(k, (k, k))[lang == "zh"] for k in query.keys]
    columns += [v.column[lang] for v in query.values if v.unit]
    return Answer(intent.name, lang, _sentence(template, lang, rows, query), columns, rows, exprs)


async def _service_label(found: Discovery, query: Query) -> str:
    """The first service label the family's series really carry: `service` is not everywhere."""
    carried = await found.labels_of(query.needs[0])
    return next((label for label in SERVICE_LABELS if label in carried), SERVICE_LABELS[0])


def _rows(
    query: Query, results: list[list[dict[str, Any]]], bound: Bound, zh: bool
) -> list[list[str]]:
    """One row per series of the first query, sorted by its value; the others joined by key."""
    by_key: list[dict[tuple[str, ...], float]] = []
    order: list[tuple[str, ...]] = []
    # The `service` column holds the name from the label the queries grouped by.
    names = [bound.service_label if k == "service" else k for k in query.keys]
    for i, result in enumerate(results):
        values: dict[tuple[str, ...], float] = {}
        for sample in result:
            key = tuple(_key(sample["metric"], k) for k in names)
            number = float(sample["value"][1])
            if math.isnan(number) or key in values:
                continue
            values[key] = number
            if i == 0:
                order.append(key)
        by_key.append(values)
    first = by_key[0]
    order.sort(key=lambda k: first[k], reverse=not query.ascending)
    rows = []
    for key in order:
        row = list(key)
        for value, values in zip(query.values, by_key, strict=True):
            if value.unit:
                got = values.get(key)
                row.append("-" if got is None else format_value(got, value.unit, zh, bound.now))
        rows.append(row)
    return rows
