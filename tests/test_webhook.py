"""POST /webhook on a real aiohttp server with a real outbox and the enrichment worker.

The loop is the one `augur run` runs (`AlertLoop`), with a stand-in enricher and no sender.

Answers, validation, idempotency, and the order of events: the webhook answers 200 once the
group is on disk, before enrichment; the worker enriches afterwards, also after a crash.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from exporter.alerts.loop import AlertLoop
from exporter.alerts.metrics import AlertMetrics
from exporter.alerts.outbox import Outbox
from exporter.alerts.payloads import (
    Enrichment,
    WebhookAlert,
    WebhookPayload,
    fingerprint,
)
from exporter.alerts.webhook import WebhookReceiver
from exporter.config.alerts import AlertmanagerConfig, ModelConfig, WebhookConfig
from exporter.config.prometheus import PrometheusConfig
from exporter.config.root import Config, WebConfig

Client = TestClient[web.Request, web.Application]
REPLICA = "http://127.0.0.1:9"


class LabelEnricherDouble:
    """Test double of the real enricher: category from the `kind` label, counts its calls."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[list[str]] = []
        self.gate = asyncio.Event()  # cleared by a test to hold enrichment back
        self.gate.set()
        self.started = asyncio.Event()
        self.cancelled = False

    async def enrich(self, alerts: Sequence[WebhookAlert]) -> list[Enrichment]:
        self.calls.append([a.labels["alertname"] for a in alerts])
        self.started.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.delay:
            await asyncio.sleep(self.delay)
        return [
            Enrichment(
                labels={"augur_enriched": "true", "category": a.labels.get("kind", "other")},
                annotations={
                    "augur_category": a.labels.get("kind", "other"),
                    "augur_summary": f"{a.labels['alertname']} needs a look",
                },
            )
            for a in alerts
        ]


class BrokenEnricherDouble:
    """Test double that fails the way a buggy enricher might: raise, hang or miscount."""

    def __init__(self, how: str) -> None:
        self.how = how

    async def enrich(self, alerts: Sequence[WebhookAlert]) -> list[Enrichment]:
        if self.how == "raise":
            raise RuntimeError("model exploded")
        if self.how == "hang":
            await asyncio.sleep(60)
        return []


def alert(name: str = "DiskFull", status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "instance": "pg-1:9100", **labels},
        "annotations": {"summary": f"{name} on pg-1"},
        "startsAt": "2024-05-01T10:00:00.123456789Z",
        "endsAt": "2024-05-01T10:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
    }


def payload(*alerts: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="DiskFull"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "augur",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts) or [alert()],
        "someFutureField": {"ignored": True},
        **fields,
    }


MakeClient = Callable[..., Awaitable[tuple[Client, Outbox, WebhookReceiver]]]


def alert_loop(
    registry: CollectorRegistry,
    path: Path,
    enricher: Any = None,
    *,
    enrich: bool = True,
    **settings: Any,
) -> AlertLoop:
    """The alert loop with a stand-in enricher, no sender, its outbox at `path`."""
    web = {"read_timeout": settings.pop("read_timeout")} if "read_timeout" in settings else {}
    config = Config(
        prometheus=PrometheusConfig(url="http://127.0.0.1:1"),  # not asked: a stand-in enricher
        alertmanager=AlertmanagerConfig(urls=[REPLICA]),
        webhook=WebhookConfig(**settings),
        web=WebConfig(**web),
    )
    return AlertLoop(config, registry, enricher=enricher, outbox=path, enrich=enrich, send=False)


@pytest.fixture
def registry() -> CollectorRegistry:
    """The test's own registry, where `make_client`'s webhook registers its metrics."""
    return CollectorRegistry()


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


@pytest.fixture
async def make_client(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    tmp_path: Path,
    registry: CollectorRegistry,
) -> Any:
    count = 0

    async def make(
        enricher: Any = None, *, enrich: bool = True, **settings: Any
    ) -> tuple[Client, Outbox, WebhookReceiver]:
        """The alert loop (no sender) on a test server; its metrics on the test's registry."""
        nonlocal count
        path = tmp_path / f"outbox-{count}.db"
        count += 1
        # Once per test: a second loop's metrics would clash on the registry.
        loop = alert_loop(
            registry, path, enricher or LabelEnricherDouble(), enrich=enrich, **settings
        )
        app = web.Application()
        app.cleanup_ctx.append(loop.cleanup_ctx)
        app.router.add_post("/webhook", loop.handle)
        client = await aiohttp_client(app)  # starts the app: the loop is running from here
        return client, loop.outbox, loop.receiver

    return make


async def enriched(box: Outbox, within: float = 5.0) -> list[dict[str, Any]]:
    """The outbox's rows once nothing awaits enrichment any more."""
    deadline = asyncio.get_running_loop().time() + within
    while await box.awaiting_count():
        assert asyncio.get_running_loop().time() < deadline, "enrichment did not finish"
        await asyncio.sleep(0.01)
    return await box.rows()


async def post(client: Client, body: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if isinstance(body, dict | list) else body
    if isinstance(data, bytes) and len(data) > 1 << 20:
        data = io.BytesIO(data)  # aiohttp warns of large bytes sent in one go
    async with client.post("/webhook", data=data, **kwargs) as resp:
        return resp.status, await resp.json()


async def test_accepts_a_group_and_stores_enriched_alerts(
    make_client: MakeClient, registry: CollectorRegistry
) -> None:
    client, box, _ = await make_client()
    status, body = await post(client, payload(alert("DiskFull", kind="disk"), alert("CPU")))
    assert status == 200, body
    assert body["inserted"] == 2
    rows = {json.loads(r["labels"])["alertname"]: r for r in await enriched(box)}
    disk = rows["DiskFull"]
    assert json.loads(disk["labels"]) == {
        "alertname": "DiskFull",
        "instance": "pg-1:9100",
        "kind": "disk",
        "augur_enriched": "true",
        "category": "disk",
    }
    assert json.loads(disk["enrichment"])["augur_summary"] == "DiskFull needs a look"
    assert disk["fingerprint"] == fingerprint(
        {"alertname": "DiskFull", "instance": "pg-1:9100", "kind": "disk"}
    )
    assert disk["starts_at"] == "2024-05-01T10:00:00.123456Z"
    assert (disk["enriched"], disk["source"]) == (1, None)
    assert sample(registry, "augur_alerts_received_total") == 2
    # Counted by the category augur gave: the dashboards' "enriched alerts by category".
    assert sample(registry, "augur_alerts_enriched_total", category="disk") == 1
    assert sample(registry, "augur_alerts_enriched_total", category="other") == 1
    assert sample(registry, "augur_alerts_enriched_total", category="cpu") == 0
    assert sample(registry, "augur_alerts_awaiting_enrichment") == 0
    assert (sample(registry, "augur_alert_enrichment_duration_seconds_sum") or 0) > 0


def test_fingerprint_is_alertmanagers() -> None:
    # Values read from a real Alertmanager 0.25's webhook for these label sets.
    assert fingerprint({"alertname": "A", "instance": "h1"}) == "4267501e55649193"
    assert fingerprint({"alertname": "B"}) == "d2c2efc389db2050"


async def test_same_group_twice_is_one_entry_enriched_once(make_client: MakeClient) -> None:
    enricher = LabelEnricherDouble()
    client, box, _ = await make_client(enricher)
    first = await post(client, payload())
    second = await post(client, payload())
    assert first[1]["inserted"] == 1
    assert (second[1]["inserted"], second[1]["refreshed"]) == (0, 1)
    assert len(await enriched(box)) == 1
    assert enricher.calls == [["DiskFull"]]


async def test_concurrent_replicas_enrich_once(make_client: MakeClient) -> None:
    # Two unclustered replicas deliver the same alert at the same moment.
    enricher = LabelEnricherDouble(delay=0.2)
    client, box, _ = await make_client(enricher)
    results = await asyncio.gather(*(post(client, payload()) for _ in range(3)))
    assert [status for status, _ in results] == [200, 200, 200]
    assert sum(body["inserted"] for _, body in results) == 1
    assert len(await enriched(box)) == 1
    assert enricher.calls == [["DiskFull"]]


async def test_resolved_notification_updates_the_entry(make_client: MakeClient) -> None:
    client, box, _ = await make_client()
    await post(client, payload())
    status, body = await post(client, payload(alert(status="resolved"), status="resolved"))
    assert (status, body["changed"]) == (200, 1)
    (row,) = await box.rows()
    assert row["state"] == "resolved"
    assert row["ends_at"] == pytest.approx(1714557900.0)


async def test_answers_200_before_enrichment_then_the_worker_enriches(
    make_client: MakeClient, registry: CollectorRegistry
) -> None:
    enricher = LabelEnricherDouble()
    enricher.gate.clear()  # the model is busy: enrichment cannot finish
    client, box, _ = await make_client(enricher)
    status, body = await asyncio.wait_for(post(client, payload(alert(kind="disk"))), 2.0)
    assert (status, body["inserted"]) == (200, 1)
    # On disk, raw and not yet sendable: no delivery is due.
    (row,) = await box.rows()
    assert row["enriched"] == 0 and "augur_enriched" not in json.loads(row["labels"])
    assert await box.due(REPLICA, 1e12, 10) == []
    assert await box.next_due(REPLICA) is None
    await asyncio.wait_for(enricher.started.wait(), 2.0)
    assert sample(registry, "augur_alerts_enriched_total", category="disk") == 0
    enricher.gate.set()
    (row,) = await enriched(box)
    assert json.loads(row["labels"])["category"] == "disk"
    (entry,) = await box.due(REPLICA, 1e12, 10)
    assert entry.annotations["augur_summary"] == "DiskFull needs a look"
    assert sample(registry, "augur_alerts_enriched_total", category="disk") == 1


async def test_resolved_before_enrichment_finishes_is_delivered_resolved_and_enriched(
    make_client: MakeClient,
) -> None:
    enricher = LabelEnricherDouble()
    enricher.gate.clear()
    client, box, _ = await make_client(enricher)
    assert (await post(client, payload(alert(kind="disk"))))[0] == 200
    await asyncio.wait_for(enricher.started.wait(), 2.0)
    resolved = payload(alert(status="resolved", kind="disk"), status="resolved")
    status, body = await post(client, resolved)
    assert (status, body["changed"]) == (200, 1)
    assert await box.due(REPLICA, 1e12, 10) == []  # resolved, but still not sendable
    enricher.gate.set()
    (row,) = await enriched(box)
    assert row["state"] == "resolved"
    (entry,) = await box.due(REPLICA, 1e12, 10)
    assert entry.state == "resolved"
    assert entry.ends_at == pytest.approx(1714557900.0)
    assert entry.labels["category"] == "disk"
    assert entry.annotations["augur_summary"] == "DiskFull needs a look"


async def test_alerts_accepted_before_a_crash_are_enriched_at_the_next_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    # The webhook only: nothing gets enriched in this life.
    first = alert_loop(CollectorRegistry(), path, LabelEnricherDouble(), enrich=False)
    await first.start()
    await first.receiver.accept(WebhookPayload.model_validate(payload(alert("A"), alert("B"))))
    await first.stop()  # the process dies here: accepted, answered, not enriched
    enricher = LabelEnricherDouble()
    enricher.gate.clear()  # so the backlog is seen before the worker takes it
    again = alert_loop(CollectorRegistry(), path, enricher)
    await again.start()
    try:
        assert await again.outbox.awaiting_count() == 2
        enricher.gate.set()
        rows = await enriched(again.outbox)
        assert enricher.calls == [["A", "B"]]  # oldest first, in one batch
        assert sorted(json.loads(r["enrichment"])["augur_summary"] for r in rows) == [
            "A needs a look",
            "B needs a look",
        ]
        assert len(await again.outbox.due(REPLICA, 1e12, 10)) == 2
    finally:
        await again.stop()


async def test_stop_mid_enrichment_is_prompt_and_leaves_the_alerts_accepted(
    tmp_path: Path,
) -> None:
    enricher = LabelEnricherDouble()
    enricher.gate.clear()  # hangs until cancelled
    loop = alert_loop(CollectorRegistry(), tmp_path / "outbox.db", enricher, enrich_timeout=60)
    await loop.start()
    await loop.receiver.accept(WebhookPayload.model_validate(payload()))
    await asyncio.wait_for(enricher.started.wait(), 2.0)
    # Cut, not waited out: the enrichment would hang past its 60 s timeout, the shutdown
    # budget (STYLE.md: 25 s for all of augur) is far shorter.
    await asyncio.wait_for(loop.stop(), 25)
    assert enricher.cancelled
    again = await Outbox.open(tmp_path / "outbox.db", [REPLICA], 0.0)
    try:
        assert await again.awaiting_count() == 1  # for the next start to pick up
    finally:
        await again.close()


async def test_new_alerts_wake_the_worker_and_changes_the_sender(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "outbox.db", [REPLICA], 0.0)
    woken: list[str] = []
    receiver = WebhookReceiver(
        WebhookConfig(),
        box,
        AlertMetrics(CollectorRegistry()),
        on_accepted=lambda: woken.append("worker"),
        on_changed=lambda: woken.append("sender"),
    )
    try:
        for body in (
            payload(),
            payload(),  # a repeat: nothing new, nothing changed
            payload(alert(status="resolved"), status="resolved"),
        ):
            await receiver.accept(WebhookPayload.model_validate(body))
        assert woken == ["worker", "sender"]
    finally:
        await box.close()


async def test_already_enriched_alerts_are_ignored_and_counted(
    make_client: MakeClient, registry: CollectorRegistry
) -> None:
    enricher = LabelEnricherDouble()
    client, box, _ = await make_client(enricher)
    status, body = await post(client, payload(alert(augur_enriched="true")))
    assert (status, body["inserted"]) == (200, 0)
    assert enricher.calls == []
    assert await box.rows() == []
    assert sample(registry, "augur_alerts_ignored_total", reason="already_enriched") == 1


@pytest.mark.parametrize("how", ["raise", "hang", "miscount"])
async def test_failing_enricher_still_stores_a_marked_alert(
    make_client: MakeClient, registry: CollectorRegistry, how: str
) -> None:
    client, box, _ = await make_client(BrokenEnricherDouble(how), enrich_timeout=0.2)
    status, _ = await post(client, payload())
    assert status == 200  # the enricher runs after the answer and cannot affect it
    (row,) = await enriched(box)
    assert json.loads(row["labels"])["augur_enriched"] == "true"
    missing = json.loads(row["enrichment"])["augur_missing"]
    assert {"raise": "model exploded", "hang": "enrich_timeout", "miscount": "0 results"}[how] in (
        missing
    )
    assert sample(registry, "augur_alert_enrich_failures_total") == 1
    assert sample(registry, "augur_alerts_enriched_total", category="none") == 1


async def test_bearer_token(make_client: MakeClient, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    client, _, _ = await make_client(bearer_token_file=tmp_path / "token")
    assert (await post(client, payload()))[0] == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await post(client, payload(), headers=wrong))[0] == 401
    basic = {"Authorization": "Basic czNjcmV0"}
    assert (await post(client, payload(), headers=basic))[0] == 401
    right = {"Authorization": "Bearer s3cret"}
    assert (await post(client, payload(), headers=right))[0] == 200


async def test_body_size_limit(make_client: MakeClient) -> None:
    client, box, _ = await make_client(max_body_bytes=2048)
    huge = payload(*(alert(f"A{i}") for i in range(50)))
    status, body = await post(client, huge)
    assert status == 413 and "max_body_bytes (2048 bytes)" in body["error"]

    async def chunks() -> Any:  # no Content-Length: the limit holds while reading
        data = json.dumps(huge).encode()
        for i in range(0, len(data), 1000):
            yield data[i : i + 1000]

    async with client.post("/webhook", data=chunks()) as resp:
        assert resp.status == 413
    assert await box.rows() == []


BAD = {
    "not JSON": (b'{"version": "4",', 400, "not JSON"),
    "invalid UTF-8": (b'{"version": "\xff4"}', 400, "not JSON: invalid unicode code point"),
    "top-level list": ([], 422, "(body): Input should be an object"),
    "wrong version": (payload(version="3"), 422, "version: augur reads webhook payload version 4"),
    "missing alerts": (
        {k: v for k, v in payload().items() if k != "alerts"},
        422,
        "alerts: required field is missing",
    ),
    "missing startsAt": (
        payload({k: v for k, v in alert().items() if k != "startsAt"}),
        422,
        "alerts[0].startsAt: required field is missing",
    ),
    "empty label set": (
        payload({**alert(), "labels": {"alertname": ""}}),
        422,
        "alerts[0].labels: at least one label with a value is needed",
    ),
    "invalid label name": (
        payload(alert(**{"bad-name": "x"})),
        422,
        "label name 'bad-name' is not valid",
    ),
    "lone surrogate": (
        json.dumps(payload(alert(host="\ud800"))).encode(),
        400,
        "not JSON: unexpected end of hex escape",
    ),
    "number as label value": (
        payload({**alert(), "labels": {"alertname": 1}}),
        422,
        "alerts[0].labels.alertname: Input should be a valid string",
    ),
    "unknown status": (payload(alert(status="pending")), 422, "alerts[0].status"),
}


@pytest.mark.parametrize("case", list(BAD))
async def test_bad_payloads_get_a_4xx_naming_the_problem(
    make_client: MakeClient, registry: CollectorRegistry, case: str
) -> None:
    client, box, _ = await make_client()
    body, want_status, want_text = BAD[case]
    status, answer = await post(client, body)
    assert status == want_status, answer
    assert want_text in answer["error"] + " ".join(answer.get("problems", []))
    assert await box.rows() == []
    assert sample(registry, "augur_webhook_requests_total", code=str(want_status)) == 1


async def test_only_post_is_served(make_client: MakeClient) -> None:
    client, _, _ = await make_client()
    async with client.get("/webhook") as resp:
        assert resp.status == 405


async def test_storage_failure_answers_503_so_alertmanager_retries(
    make_client: MakeClient,
) -> None:
    client, box, _ = await make_client()
    await box.close()
    status, body = await post(client, payload())
    assert status == 503 and "try again" in body["error"]


def test_alertmanager_settings() -> None:
    cfg = AlertmanagerConfig.model_validate(
        {"urls": "http://am-0:9093/, http://am-1:9093", "repost_interval": "30s"}
    )
    assert cfg.urls == ["http://am-0:9093", "http://am-1:9093"]
    assert (cfg.repost_interval, cfg.resolve_timeout) == (30.0, 300.0)
    assert not AlertmanagerConfig().enabled()
    for urls, error in [
        (["am:9093"], "must be http:// or https://"),
        (["http://am:9093/api/v2/alerts"], "augur adds /api/v2/alerts"),
        (["http://am:9093", "http://am:9093/"], "listed twice"),
        (["http://admin:pw@am:9093"], "credentials in a URL are not supported: am "),
    ]:
        with pytest.raises(ValidationError, match=error):
            AlertmanagerConfig(urls=urls)
    with pytest.raises(ValidationError, match="Extra inputs"):
        WebhookConfig.model_validate({"max_body_byte": 10})
    assert WebhookConfig.model_validate({"enrich_timeout": "500ms"}).enrich_timeout == 0.5


@pytest.mark.parametrize("workers", [1, 2])
async def test_model_calls_run_model_workers_at_once(
    tmp_path: Path, registry: CollectorRegistry, workers: int
) -> None:
    # model.workers calls of the text model may run at once: two that wait for each other
    # finish only when there are two threads.
    config = Config(
        prometheus=PrometheusConfig(url="http://127.0.0.1:1"),
        alertmanager=AlertmanagerConfig(urls=[REPLICA]),
        model=ModelConfig(workers=workers),
    )
    loop = AlertLoop(
        config,
        registry,
        enricher=LabelEnricherDouble(),
        outbox=tmp_path / "outbox.db",
        enrich=False,
        send=False,
    )
    await loop.start()
    try:
        assert loop.model_executor is not None
        meet = threading.Barrier(2, timeout=2.0)
        running = asyncio.get_running_loop()
        calls = [running.run_in_executor(loop.model_executor, meet.wait) for _ in range(2)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        met = not any(isinstance(r, BaseException) for r in results)
        assert met is (workers == 2), results
    finally:
        await loop.stop()
