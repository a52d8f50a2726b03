"""The first links of a chain: which firing alerts, sharing a place, started before this one.

A disk burst on a host slows its service, then raises its errors: three alerts, each about one
link. When an alert is enriched, the firing alerts already in the outbox that share its machine,
pod, service or node and started within `enrich.related_before` before it are named in
`augur_follows`, the closest in time first, at most `MAX_LINKS`: "follows: HighDiskIO on pg-1
(14:01 UTC)". Only alerts augur enriched count (their `augur_entities` say where they are).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from exporter.alerts.outbox_schema import Earlier
from exporter.alerts.payloads import WebhookAlert
from exporter.alerts.summary import format_clock
from exporter.text.entities import split_host_port

MAX_LINKS = 3
FOLLOWS_ANNOTATION = "augur_follows"

_PLACES = ("pod", "service", "node")


def places(entities: Mapping[str, Sequence[str]]) -> set[tuple[str, str]]:
    """(kind, name) of the machines, pods, services and nodes an alert's entities name."""
    out = {("machine", h) for h in entities.get("host", ())}
    out |= {("machine", split_host_port(i)[0]) for i in entities.get("instance", ())}
    out |= {("machine", n) for n in entities.get("node", ())}
    out |= {(kind, v) for kind in _PLACES for v in entities.get(kind, ())}
    return {(kind, v) for kind, v in out if v}


def _read(text: str) -> dict[str, list[str]]:
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: [str(x) for x in v] for k, v in data.items() if isinstance(v, list)}


def follows(
    alert: WebhookAlert,
    entities: str,
    earlier: Sequence[Earlier],
    *,
    window: float,
    now: float,
    zh: bool = False,
) -> str:
    """`augur_follows`: the earlier firing alerts sharing a place, one line each, or ""."""
    mine = places(_read(entities))
    start = alert.startsAt.timestamp()
    links: list[tuple[float, str]] = []
    for other in earlier:
        try:
            at = datetime.fromisoformat(other.starts_at).timestamp()
        except ValueError:
            continue
        if not (start - window <= at < start) or other.labels.items() >= alert.labels.items():
            continue  # too old, not earlier, or this very alert (its enriched copy)
        shared = mine & places(_read(other.entities))
        if shared:
            name = other.labels.get("alertname", "alert")
            where = sorted(shared)[0][1]
            line = f"跟随：{name}（{where}，{{}}）" if zh else f"follows: {name} on {where} ({{}})"
            links.append((at, line.format(format_clock(at, now))))
    links.sort(key=lambda link: -link[0])  # the closest in time first: the direct predecessor
    return "\n".join(line for _, line in links[:MAX_LINKS])
