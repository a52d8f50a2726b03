"""Stand-ins for the catalogue helper's exporter/assistant/{catalog,answer}.py until they merge.

Installed only when the real modules are missing (`install()`), with the contract's intents and
slots, and a `run` that validates each name slot against Prometheus's label values and sends
one fixed query per intent: enough for the matcher's tests of the pipeline. Delete at merge.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_TABLE = """
top_cpu_hosts topk | top_memory_hosts topk | top_disk_usage topk,host? | host_cpu host
host_memory host | host_disk host | host_load host? | host_network host? | host_uptime host?
targets_down - | disk_fill_forecast range? | error_rate_by_service service?,range?
request_rate_by_service service?,range? | latency_by_service service? | service_availability service
top_pod_cpu namespace?,topk | top_pod_memory namespace?,topk | pod_restarts namespace?,range?
pods_not_ready namespace? | deployments_unavailable namespace? | oom_killed namespace?,range?
cpu_throttling namespace? | nodes_not_ready - | anomalous_now service?,host?
anomalies_in_range range | open_incidents - | forecast_of host?,service? | alerts_firing -
alerts_fired_in_range range | alerts_by_category range? | changed_around time
related_anomalies alert | augur_status - | scrape_health -
"""
_LABEL = {"host": "instance", "service": "service", "namespace": "namespace", "pod": "pod"}


@dataclass(frozen=True)
class Intent:
    """Stand-in of catalog.Intent."""

    name: str
    slots: tuple[str, ...]
    required: tuple[str, ...]
    title: Mapping[str, str]


def _catalog() -> dict[str, Intent]:
    out = {}
    for cell in _TABLE.replace("\n", " | ").split("|"):
        if not cell.strip():
            continue
        name, spec = cell.split()
        parts = [] if spec == "-" else spec.split(",")
        slots = tuple(p.rstrip("?") for p in parts)
        required = tuple(p for p in parts if not p.endswith("?") and p != "topk")
        out[name] = Intent(name, slots, required, {"en": name.replace("_", " "), "zh": name})
    return out


@dataclass
class Answer:
    """Stand-in of answer.Answer."""

    intent: str
    lang: str
    sentence: str
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    promql: list[str] = field(default_factory=list)


class SlotError(Exception):
    """Stand-in: a slot value Prometheus does not know."""


class NoData(Exception):
    """Stand-in: the query returned nothing."""


class NotAvailable(Exception):
    """Stand-in: the metrics the intent needs do not exist."""


async def run(
    intent: Intent,
    slots: Mapping[str, str],
    lang: str,
    client: Any,
    now: float,
    *,
    alertmanager_url: str | None = None,
) -> Any:
    """Validate name slots against label values; run `count by (job) (up)`."""
    for slot, value in slots.items():
        label = _LABEL.get(slot)
        if label is None:
            continue
        values = await client.label_values(label)
        plain = {v.split(":")[0] for v in values}
        if value not in plain:
            raise SlotError(f"unknown {slot} {value!r}; known: {', '.join(sorted(plain)[:5])}")
    expr = "count by (job) (up)"
    result = await client.query(expr, time=now)
    rows = [[s["metric"].get("job", ""), s["value"][1]] for s in result.result]
    if not rows:
        raise NoData("no targets")
    sentence = f"{len(rows)} jobs." if lang == "en" else f"{len(rows)} 个 job。"
    return Answer(intent.name, lang, sentence, ["job", "targets"], rows, [expr])


def install() -> None:
    """Put the stand-ins in place of the real modules if those do not exist yet."""
    try:
        importlib.import_module("exporter.assistant.catalog")
        importlib.import_module("exporter.assistant.answer")
        return
    except ImportError:
        pass
    catalog = types.ModuleType("exporter.assistant.catalog")
    catalog.Intent = Intent  # type: ignore[attr-defined]
    catalog.CATALOG = _catalog()  # type: ignore[attr-defined]
    answer = types.ModuleType("exporter.assistant.answer")
    for name, value in (("Answer", Answer), ("SlotError", SlotError), ("NoData", NoData)):
        setattr(answer, name, value)
    answer.NotAvailable = NotAvailable  # type: ignore[attr-defined]
    answer.run = run  # type: ignore[attr-defined]
    sys.modules["exporter.assistant.catalog"] = catalog
    sys.modules["exporter.assistant.answer"] = answer
