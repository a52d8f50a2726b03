"""The first links of a chain: an alert names the firing alerts sharing its place that started
before it (`augur_follows`). Real SQLite outbox, the real worker, an enricher double that
writes `augur_entities` from the labels as the real one does."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry

from exporter.alerts.chain import follows
from exporter.alerts.metrics import AlertMetrics
from exporter.alerts.outbox import Outbox, Record
from exporter.alerts.outbox_schema import Earlier
from exporter.alerts.payloads import Enrichment, WebhookAlert, fingerprint, format_time
from exporter.alerts.summary import format_clock
from exporter.alerts.worker import EnrichmentWorker
from exporter.text.entities import extract

NOW = time.time()


class EntityEnricherDouble:
    """Entities from the labels (the real extraction), nothing else."""

    async def enrich(self, alerts: Sequence[WebhookAlert]) -> list[Enrichment]:
        return [
            Enrichment(
                {"augur_enriched": "true"},
                {"augur_entities": extract(a.labels, []).to_json(1000)},
            )
            for a in alerts
        ]


def _alert(name: str, starts: float, **labels: str) -> WebhookAlert:
    return WebhookAlert(
        status="firing",
        labels={"alertname": name, **labels},
        annotations={"summary": name},
        startsAt=datetime.fromtimestamp(starts, UTC),
    )


def _record(alert: WebhookAlert) -> Record:
    return Record(
        fingerprint=fingerprint(alert.labels),
        starts_at=format_time(alert.startsAt),
        status="firing",
        ends_at=None,
        labels=alert.labels,
        annotations=alert.annotations,
        enrichment={},
        generator_url="",
        source=alert.model_dump_json(),
    )


async def test_an_alert_follows_the_earlier_firing_alerts_of_its_place(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "outbox.db", ["http://am:9093"])
    worker = EnrichmentWorker(
        box, EntityEnricherDouble(), AlertMetrics(CollectorRegistry()), timeout=5, chain_window=900
    )
    try:
        first = [
            _alert("HighDiskIO", NOW - 300, instance="pg-1:9100", device="sda"),
            _alert("HighCPU", NOW - 200, instance="web-7:9100"),  # another machine
            _alert("OldDiskFull", NOW - 2000, instance="pg-1:9100"),  # too long before
        ]
        await box.accept([_record(a) for a in first], NOW)
        assert await worker.run_once() == 3
        later = [
            _alert("HighLatency", NOW - 120, instance="pg-1:8080", service="orders"),
            _alert("HighErrors", NOW - 60, service="orders", pod="orders-5d8-abc"),
        ]
        await box.accept([_record(a) for a in later], NOW)
        assert await worker.run_once() == 2
        await box.accept(
            [_record(_alert("ErrorBudgetBurn", NOW, service="orders", namespace="shop"))], NOW
        )
        assert await worker.run_once() == 1
        notes = {
            json.loads(r["labels"])["alertname"]: json.loads(r["enrichment"])
            for r in await box.rows()
        }
    finally:
        await box.close()
    assert "augur_follows" not in notes["HighDiskIO"]  # nothing of pg-1 fired before it
    assert notes["HighLatency"]["augur_follows"] == (
        f"follows: HighDiskIO on pg-1 ({format_clock(NOW - 300, NOW)})"
    )
    # HighLatency and HighErrors came in one batch: the chain links what was stored before.
    assert "augur_follows" not in notes["HighErrors"]
    assert notes["ErrorBudgetBurn"]["augur_follows"].splitlines() == [
        f"follows: HighErrors on orders ({format_clock(NOW - 60, NOW)})",
        f"follows: HighLatency on orders ({format_clock(NOW - 120, NOW)})",
    ]


def test_follows_says_it_in_chinese_and_skips_the_alerts_own_copy() -> None:
    alert = _alert("延迟过高", NOW, instance="pg-1:8080")
    own_copy = Earlier(
        1, {**alert.labels, "augur_enriched": "true"}, format_time(alert.startsAt), ""
    )
    disk = Earlier(
        2,
        {"alertname": "磁盘繁忙"},
        format_time(datetime.fromtimestamp(NOW - 60, UTC)),
        '{"host":["pg-1"]}',
    )
    entities = '{"instance":["pg-1:8080"]}'
    line = follows(alert, entities, [own_copy, disk], window=900, now=NOW, zh=True)
    assert line == f"跟随：磁盘繁忙（pg-1，{format_clock(NOW - 60, NOW)}）"
