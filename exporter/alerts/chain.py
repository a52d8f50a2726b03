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


class Predecessors:
    """The earlier firing alerts of one batch, each read once and indexed by place.

    A batch of 16 alerts is compared with up to `CHAIN_CANDIDATES` earlier ones: reading their
    `augur_entities` JSON once per batch, not once per alert and candidate, keeps this off the
    profile (it was 62 % of the event loop's time in a storm, bench_webhook.py --profile).
    """

    def __init__(self, earlier: Sequence[Earlier]) -> None:
        """Read each earlier alert's start and places; unreadable starts are left out."""
        self._by_place: dict[tuple[str, str], list[tuple[float, Earlier]]] = {}
        for other in earlier:
            try:
                at = datetime.fromisoformat(other.starts_at).timestamp()
            except ValueError:
                continue
            for place in places(_read(other.entities)):
                self._by_place.setdefault(place, []).append((at, other))

    def __bool__(self) -> bool:
        return bool(self._by_place)

    def follows(
        self, alert: WebhookAlert, entities: str, *, window: float, now: float, zh: bool = False
    ) -> str:
        """`augur_follows`: the earlier firing alerts sharing a place, one line each, or ""."""
        start = alert.startsAt.timestamp()
        shared: dict[int, tuple[float, Earlier, set[tuple[str, str]]]] = {}
        for place in places(_read(entities)):
            for at, other in self._by_place.get(place, ()):
                if not (start - window <= at < start):
                    continue  # too old, or not earlier
                if other.labels.items() >= alert.labels.items():
                    continue  # this very alert (its enriched copy)
                shared.setdefault(other.alert_id, (at, other, set()))[2].add(place)
        links: list[tuple[float, str]] = []
        for at, other, where_all in shared.values():
            name = other.labels.get("alertname", "alert")
            where = sorted(where_all)[0][1]
            line = f"跟随：{name}（{where}，{{}}）" if zh else f"follows: {name} on {where} ({{}})"
            links.append((at, line.format(format_clock(at, now))))
        links.sort(key=lambda link: -link[0])  # the closest in time first: the direct predecessor
        return "\n".join(line for _, line in links[:MAX_LINKS])


def follows(
    alert: WebhookAlert,
    entities: str,
    earlier: Sequence[Earlier],
    *,
    window: float,
    now: float,
    zh: bool = False,
) -> str:
    """`augur_follows` of one alert against `earlier` (a batch builds `Predecessors` once)."""
    return Predecessors(earlier).follows(alert, entities, window=window, now=now, zh=zh)
