"""The enrichment worker: one bad alert never spoils its batch; big groups do not starve small
ones; batches waiting on something slow overlap. Real webhook, real outbox, enricher doubles.
"""

# ruff: noqa: F811 - the fixtures imported from test_webhook are parameters here

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from prometheus_client import CollectorRegistry
from test_webhook import (
    LabelEnricherDouble,
    MakeClient,
    alert,
    enriched,
    make_client,  # noqa: F401 - a fixture, used by name
    payload,
    post,
    registry,  # noqa: F401 - a fixture, used by name
    sample,
)

from exporter.alerts.payloads import Enrichment, WebhookAlert


class PickyEnricherDouble(LabelEnricherDouble):
    """Raises on any batch holding an alert named Bad, as an enricher bug on odd input would."""

    async def enrich(self, alerts: Sequence[WebhookAlert]) -> list[Enrichment]:
        if any(a.labels["alertname"] == "Bad" for a in alerts):
            raise ValueError("year 0 is out of range")
        return await super().enrich(alerts)


async def test_one_bad_alert_does_not_spoil_its_batch(
    make_client: MakeClient, registry: CollectorRegistry
) -> None:
    client, box, _ = await make_client(PickyEnricherDouble())
    names = [f"Good{i}" for i in range(7)] + ["Bad"] + [f"Good{i}" for i in range(7, 15)]
    status, _ = await post(client, payload(*(alert(n, kind="disk") for n in names)))
    assert status == 200
    rows = {json.loads(r["labels"])["alertname"]: r for r in await enriched(box)}
    assert len(rows) == 16
    for name, row in rows.items():
        labels, notes = json.loads(row["labels"]), json.loads(row["enrichment"])
        assert labels["augur_enriched"] == "true"
        if name == "Bad":  # still delivered, saying what failed
            assert "category" not in labels
            assert "ValueError: year 0 is out of range" in notes["augur_missing"]
        else:
            assert labels["category"] == "disk" and "augur_missing" not in notes
    assert sample(registry, "augur_alert_enrich_failures_total") == 1


async def test_a_small_group_behind_a_huge_one_is_enriched_among_the_first_batches(
    make_client: MakeClient,
) -> None:
    enricher = LabelEnricherDouble()
    enricher.gate.clear()  # the first batches of the huge group hold until both are in
    client, box, _ = await make_client(enricher)
    huge = payload(*(alert(f"Huge{i}") for i in range(800)))
    assert (await post(client, huge))[0] == 200
    await enricher.started.wait()
    assert (await post(client, payload(alert("Small"))))[0] == 200
    enricher.gate.set()
    await enriched(box, within=60)
    batch_of_small = next(i for i, c in enumerate(enricher.calls) if "Small" in c)
    # First in, first out would take it in batch 51 of 51; it waits for about one batch.
    assert batch_of_small < 8, batch_of_small
    assert len(enricher.calls) == 51


class SlowLookupEnricherDouble(LabelEnricherDouble):
    """Waits like a batch waiting on a slow Prometheus; counts how many wait at once."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0
        self.most_waiting = 0
        self.all_waiting = asyncio.Event()

    async def enrich(self, alerts: Sequence[WebhookAlert]) -> list[Enrichment]:
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        if self.waiting == 4:
            self.all_waiting.set()
        try:
            await self.all_waiting.wait()  # held until four batches wait together
            return await super().enrich(alerts)
        finally:
            self.waiting -= 1


async def test_batches_waiting_on_a_slow_lookup_overlap(make_client: MakeClient) -> None:
    enricher = SlowLookupEnricherDouble()
    client, box, _ = await make_client(enricher, enrich_timeout="30s")
    assert (await post(client, payload(*(alert(f"A{i}") for i in range(64)))))[0] == 200
    await enriched(box, within=30)  # one batch at a time would never get past the first
    assert enricher.most_waiting == 4
