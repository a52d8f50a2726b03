"""The alert loop end to end against the real Alertmanager binary.

An alert posted to a real Alertmanager is routed to augur's webhook (a real aiohttp server
running the receiver, outbox and sender), enriched by a test double, posted back, and must
arrive at a capture receiver through a route matching `augur_enriched="true"`. Also:
Alertmanager down and back, augur SIGKILLed after answering 200 and before enriching (a
subprocess running this file as a script), two replicas, refused alerts, the resolve timeout,
and the routing docs.

Run as a script, this file serves augur's alert loop:
`python tests/test_alert_pipeline.py --port P --outbox F --alertmanager URL [--accept-only]`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from waiting import eventually
from webhook_bodies import notification

from exporter.alerts.alertmanager import AlertmanagerSender
from exporter.alerts.loop import AlertLoop
from exporter.alerts.outbox import Outbox, Record
from exporter.alerts.payloads import (
    Enrichment,
    WebhookAlert,
    fingerprint,
    format_time,
)
from exporter.config.alerts import AlertmanagerConfig, WebhookConfig
from exporter.config.prometheus import PrometheusConfig
from exporter.config.root import Config
from exporter.demo.procs import Process, find_binary, free_port

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parent.parent / "docs" / "alertmanager.md"
AMTOOL = shutil.which("amtool") or "amtool"  # Debian's prometheus-alertmanager package has it


class KindEnricherDouble:
    """Test double of the real enricher: category from the source's `kind` label."""

    def __init__(self) -> None:
        self.enriched: list[str] = []

    async def enrich(self, alerts: Sequence[WebhookAlert]) -> list[Enrichment]:
        self.enriched += [a.labels["alertname"] for a in alerts]
        out = []
        for a in alerts:
            kind = a.labels.get("kind", "other")
            summary = f"{a.labels['alertname']} on {a.labels.get('instance', '?')}: {kind}"
            out.append(
                Enrichment(
                    labels={"augur_enriched": "true", "category": kind},
                    annotations={
                        "augur_category": kind,
                        "augur_confidence": "0.90",
                        "augur_entities": json.dumps({"instance": a.labels.get("instance")}),
                        "augur_related": "",
                        "augur_runbook": f"runbooks/{kind}.md",
                        "augur_summary": summary,
                    },
                )
            )
        return out


@dataclass
class Augur:
    """augur's alert loop as `augur run` builds it (`AlertLoop`), on a real server."""

    url: str
    loop: AlertLoop
    registry: CollectorRegistry
    runner: web.AppRunner

    @classmethod
    async def start(
        cls,
        port: int,
        outbox_path: Path,
        urls: Sequence[str],
        enricher: Any,
        *,
        sender: bool = True,
        token_file: Path | None = None,
        repost_interval: float = 1.0,
        resolve_timeout: float = 3600.0,
    ) -> Augur:
        registry = CollectorRegistry()
        config = Config(
            # Not asked: the enricher is a stand-in.
            prometheus=PrometheusConfig(url="http://127.0.0.1:1"),
            alertmanager=AlertmanagerConfig(
                urls=list(urls),
                repost_interval=repost_interval,
                resolve_timeout=resolve_timeout,
                timeout=2.0,
                backoff_base=0.1,
                backoff_max=0.5,
            ),
            webhook=WebhookConfig(bearer_token_file=token_file),
        )
        loop = AlertLoop(
            config,
            registry,
            enricher=enricher,
            outbox=outbox_path,
            enrich=sender,
            send=sender,
            housekeeping_interval=0.1,
        )
        app = web.Application()
        app.cleanup_ctx.append(loop.cleanup_ctx)
        app.router.add_post("/webhook", loop.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return cls(f"http://127.0.0.1:{port}", loop, registry, runner)

    @property
    def outbox(self) -> Outbox:
        return self.loop.outbox

    @property
    def sender(self) -> AlertmanagerSender:
        return self.loop.sender

    async def stop(self) -> None:
        await self.runner.cleanup()


@dataclass
class Capture:
    """A webhook receiver standing in for the humans: records every notification."""

    url: str = ""
    notifications: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.notifications.append(await request.json())
        return web.Response(text="ok")

    def alerts(self, status: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        return [
            {**a, "receiver": n["receiver"], "externalURL": n["externalURL"]}
            for n in self.notifications
            for a in n["alerts"]
            if (status is None or a["status"] == status)
            and (name is None or a["labels"]["alertname"] == name)
        ]


def posted(augur: Augur, url: str) -> float:
    """augur_alerts_posted_total for one replica: alerts it accepted, re-posts included."""
    value = augur.registry.get_sample_value("augur_alerts_posted_total", {"alertmanager": url})
    return value or 0.0


async def reposted(augur: Augur, urls: Sequence[str], alerts: int) -> None:
    """Wait until augur re-posted `alerts` alerts twice more to every replica in `urls`.

    Re-posts come every repost_interval (1 s here); by the second, each replica has had a whole
    interval (ten of its 100 ms group intervals) to notify anyone twice, had it been going to.
    """
    want = {url: posted(augur, url) + 2 * alerts for url in urls}
    await eventually(lambda: all(posted(augur, url) >= n for url, n in want.items()))


def am_config(augur_url: str, capture_url: str, token_file: Path | None = None) -> dict[str, Any]:
    """Originals to augur only; enriched alerts to the capture receiver; nothing else anywhere."""
    webhook: dict[str, Any] = {"url": augur_url + "/webhook", "send_resolved": True}
    if token_file is not None:
        webhook["http_config"] = {"authorization": {"credentials_file": str(token_file)}}
    fast = {"group_wait": "0s", "group_interval": "100ms", "repeat_interval": "1h"}
    return {
        "route": {
            "receiver": "nobody",
            "group_by": ["..."],
            **fast,
            "routes": [
                {"receiver": "augur", "matchers": ['augur_enriched!="true"'], "continue": False},
                {"receiver": "capture", "matchers": ['augur_enriched="true"']},
            ],
        },
        "receivers": [
            {"name": "nobody"},
            {"name": "augur", "webhook_configs": [webhook]},
            {"name": "capture", "webhook_configs": [{"url": capture_url, "send_resolved": True}]},
        ],
    }


def source(name: str, starts: float, ends: float | None = None, **labels: str) -> dict[str, Any]:
    """An alert as Prometheus posts it to Alertmanager."""
    return {
        "labels": {"alertname": name, "instance": "pg-1:9100", **labels},
        "annotations": {"summary": f"{name} on pg-1"},
        "startsAt": format_time(datetime.fromtimestamp(starts, UTC)),
        "endsAt": format_time(datetime.fromtimestamp(ends or starts + 3600, UTC)),
        "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=up",
    }


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


@pytest.fixture
async def capture() -> AsyncIterator[Capture]:
    cap = Capture()
    app = web.Application()
    app.router.add_post("/", cap.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    cap.url = f"http://127.0.0.1:{port}/"
    yield cap
    await runner.cleanup()


@pytest.fixture
async def augurs() -> AsyncIterator[list[Augur]]:
    started: list[Augur] = []
    yield started
    for augur in started:
        await augur.stop()


async def post_alerts(session: aiohttp.ClientSession, am: Process, *alerts: Any) -> None:
    async with session.post(am.url + "/api/v2/alerts", json=list(alerts)) as resp:
        assert resp.status == 200, await resp.text()


async def enriched_in(session: aiohttp.ClientSession, am: Process) -> list[dict[str, Any]]:
    params = {"filter": 'augur_enriched="true"'}
    async with session.get(am.url + "/api/v2/alerts", params=params) as resp:
        alerts: list[dict[str, Any]] = await resp.json()
        return alerts


async def test_enriched_alert_arrives_and_resolves_with_its_source(
    alertmanager_factory: Callable[..., Process],
    capture: Capture,
    augurs: list[Augur],
    session: aiohttp.ClientSession,
    promtool_check_metrics: Callable[[bytes], Awaitable[tuple[int, str]]],
    tmp_path: Path,
) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    port = free_port()
    am = alertmanager_factory(am_config(f"http://127.0.0.1:{port}", capture.url, token))
    enricher = KindEnricherDouble()
    augur = await Augur.start(port, tmp_path / "outbox.db", [am.url], enricher, token_file=token)
    augurs.append(augur)
    now = time.time()
    await post_alerts(
        session, am, source("DiskFull", now, kind="disk"), source("HighCPU", now, kind="cpu")
    )
    await eventually(lambda: len(capture.alerts("firing")) == 2)
    disk = capture.alerts("firing", "DiskFull")[0]
    assert disk["receiver"] == "capture"  # the route matching augur_enriched="true"
    assert disk["labels"] == {
        "alertname": "DiskFull",
        "instance": "pg-1:9100",
        "kind": "disk",
        "augur_enriched": "true",
        "category": "disk",
    }
    assert disk["annotations"]["summary"] == "DiskFull on pg-1"
    assert disk["annotations"]["augur_summary"] == "DiskFull on pg-1:9100: disk"
    assert disk["annotations"]["augur_runbook"] == "runbooks/disk.md"
    assert disk["generatorURL"] == "http://127.0.0.1:9090/graph?g0.expr=up"
    assert capture.alerts("firing", "HighCPU")[0]["labels"]["category"] == "cpu"
    # The stored key is Alertmanager's own fingerprint, which augur computes identically.
    params = {"filter": 'augur_enriched!="true"'}
    async with session.get(am.url + "/api/v2/alerts", params=params) as resp:
        sources = await resp.json()
    assert sorted(r["fingerprint"] for r in await augur.outbox.rows()) == sorted(
        s["fingerprint"] for s in sources
    )
    assert all(fingerprint(s["labels"]) == s["fingerprint"] for s in sources)
    # The source resolves: so does the enriched copy, and only that one.
    await post_alerts(session, am, source("DiskFull", now, time.time(), kind="disk"))
    resolved = await eventually(lambda: capture.alerts("resolved"))
    assert [a["labels"]["alertname"] for a in resolved] == ["DiskFull"]
    assert resolved[0]["labels"]["augur_enriched"] == "true"
    assert sorted(enricher.enriched) == ["DiskFull", "HighCPU"]
    (cpu,) = [a for a in await enriched_in(session, am) if a["labels"]["alertname"] == "HighCPU"]
    assert cpu["status"]["state"] == "active"
    # Re-posted every repost_interval (1 s here) with endsAt three intervals ahead.
    ends = datetime.fromisoformat(cpu["endsAt"]).timestamp()
    assert time.time() + 1.0 < ends <= time.time() + 3.5
    # The self-metrics pass promtool's lint.
    exposition = generate_latest(augur.registry)
    assert b'augur_alerts_posted_total{alertmanager="' + am.url.encode() in exposition
    returncode, out = await promtool_check_metrics(exposition)
    assert returncode == 0, out


async def test_alertmanager_down_then_back_gets_everything_once(
    alertmanager_factory: Callable[..., Process],
    capture: Capture,
    augurs: list[Augur],
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    port = free_port()
    am = alertmanager_factory(am_config(f"http://127.0.0.1:{port}", capture.url))
    augur = await Augur.start(port, tmp_path / "outbox.db", [am.url], KindEnricherDouble())
    augurs.append(augur)
    now = time.time()
    await post_alerts(session, am, source("Before", now))
    await eventually(lambda: capture.alerts("firing", "Before"))
    am.stop()
    # Meanwhile another replica (played by the test) keeps notifying augur, which accepts.
    body = notification(source("During1", now, kind="disk"), source("During2", now))
    async with session.post(augur.url + "/webhook", json=body) as resp:
        assert resp.status == 200
    labels = {"alertmanager": am.url}
    await eventually(  # retried, not given up
        lambda: (
            (augur.registry.get_sample_value("augur_alert_post_failures_total", labels) or 0) >= 2
        )
    )
    am.restart("/-/ready")
    await eventually(
        lambda: capture.alerts("firing", "During1") and capture.alerts("firing", "During2")
    )
    # Reposts keep coming; Alertmanager merges them, nobody is notified twice, and the alert
    # lost in the restart is back.
    await reposted(augur, [am.url], alerts=3)
    assert len(capture.alerts("firing", "During1")) == 1
    assert len(capture.alerts("firing", "During2")) == 1
    names = sorted(a["labels"]["alertname"] for a in await enriched_in(session, am))
    assert names == ["Before", "During1", "During2"]
    assert len(await augur.outbox.rows()) == 3
    await eventually(lambda: augur.registry.get_sample_value("augur_outbox_pending") == 0)


def _serve_args(port: int, outbox: Path, am: Process, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--port",
        str(port),
        "--outbox",
        str(outbox),
        "--alertmanager",
        am.url,
        *extra,
    ]


async def _webhook_notifications(
    session: aiohttp.ClientSession, am: Process
) -> tuple[float, float]:
    async with session.get(am.url + "/metrics") as resp:
        text = await resp.text()

    def total(name: str) -> float:
        found = re.search(rf'^{name}{{integration="webhook"}} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    return total("alertmanager_notifications_total"), total(
        "alertmanager_notifications_failed_total"
    )


async def test_augur_sigkilled_after_answering_200_delivers_enriched_after_restart(
    alertmanager_factory: Callable[..., Process],
    capture: Capture,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    port = free_port()
    am = alertmanager_factory(am_config(f"http://127.0.0.1:{port}", capture.url))
    outbox = tmp_path / "outbox.db"
    log = (tmp_path / "augur.log").open("ab")

    async def spawn(*extra: str) -> asyncio.subprocess.Process:
        args = _serve_args(port, outbox, am, *extra)
        return await asyncio.create_subprocess_exec(*args, stdout=log, stderr=log)

    # First life: the webhook only, so that nothing is enriched or delivered before the kill.
    proc = await spawn("--accept-only")
    try:
        await eventually(lambda: _listening(port))
        await post_alerts(session, am, source("Crash", time.time(), kind="memory"))
        # Alertmanager got its 200 (one webhook notification, none failed) ...
        await eventually(lambda: _sent_ok(session, am))
        proc.kill()  # ... and augur dies at once by SIGKILL, without any shutdown.
        assert await proc.wait() == -signal.SIGKILL
        assert capture.notifications == []
        box = await Outbox.open(outbox, [am.url], time.time())
        try:
            (row,) = await box.rows()
            assert (row["enriched"], row["state"]) == (0, "firing")  # accepted, raw
        finally:
            await box.close()
        # Second life on the same outbox file, worker and sender on: the accepted alert is
        # enriched and delivered.
        proc = await spawn()
        await eventually(lambda: capture.alerts("firing", "Crash"))
        # Until augur re-posted it twice (every 1 s): time for anyone to be notified twice.
        received = await _alerts_received(session, am)

        async def reposted_twice() -> bool:
            return await _alerts_received(session, am) >= received + 2

        await eventually(reposted_twice)
        (crash,) = capture.alerts("firing", "Crash")
        assert crash["labels"]["category"] == "memory"
        assert await _webhook_notifications(session, am) == (2.0, 0.0)  # augur's 1 + capture's 1
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()


async def _alerts_received(session: aiohttp.ClientSession, am: Process) -> float:
    """alertmanager_alerts_received_total of firing alerts: those posted to its API."""
    async with session.get(am.url + "/metrics") as resp:
        text = await resp.text()
    found = re.findall(
        r'^alertmanager_alerts_received_total{status="firing",.*} (\S+)$', text, re.M
    )
    return sum(float(v) for v in found)


async def _sent_ok(session: aiohttp.ClientSession, am: Process) -> bool:
    # notifications_total counts a notification when it starts; the latency histogram only
    # once the webhook answered 2xx, which is the moment this test must kill augur after.
    async with session.get(am.url + "/metrics") as resp:
        text = await resp.text()
    answered = re.search(
        r'^alertmanager_notification_latency_seconds_count{integration="webhook"} (\S+)$',
        text,
        re.M,
    )
    return (
        answered is not None
        and float(answered.group(1)) == 1.0
        and await _webhook_notifications(session, am) == (1.0, 0.0)
    )


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def test_two_replicas_one_enriched_alert_per_source(
    alertmanager_factory: Callable[..., Process],
    capture: Capture,
    augurs: list[Augur],
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    port = free_port()
    config = am_config(f"http://127.0.0.1:{port}", capture.url)
    replicas = [alertmanager_factory(config), alertmanager_factory(config)]
    enricher = KindEnricherDouble()
    augur = await Augur.start(port, tmp_path / "outbox.db", [r.url for r in replicas], enricher)
    augurs.append(augur)
    now = time.time()
    alerts = [source(f"Alert{i}", now, kind="disk") for i in range(3)]
    # Prometheus sends the same alerts (same startsAt) to every replica; both notify augur.
    await asyncio.gather(*(post_alerts(session, r, *alerts) for r in replicas))
    await eventually(lambda: len(capture.alerts("firing")) >= 6)
    for replica in replicas:
        names = sorted(a["labels"]["alertname"] for a in await enriched_in(session, replica))
        assert names == ["Alert0", "Alert1", "Alert2"]
    assert sorted(enricher.enriched) == ["Alert0", "Alert1", "Alert2"]
    assert len(await augur.outbox.rows()) == 3
    await reposted(augur, [r.url for r in replicas], alerts=3)
    for replica in replicas:  # each replica notified the capture once per enriched alert
        seen = [a for a in capture.alerts("firing") if a["externalURL"] == replica.url]
        assert sorted(a["labels"]["alertname"] for a in seen) == ["Alert0", "Alert1", "Alert2"]


@pytest.fixture
async def broken_replica() -> AsyncIterator[tuple[str, list[float]]]:
    """An 'Alertmanager' that answers 503 to everything or, at /hang, never answers."""
    hits: list[float] = []

    async def unavailable(request: web.Request) -> web.Response:
        hits.append(time.monotonic())
        if request.path.startswith("/hang"):
            await asyncio.Event().wait()  # never answers
        return web.Response(status=503, text="overloaded")

    app = web.Application()
    app.router.add_post("/{tail:.*}", unavailable)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", hits
    await runner.cleanup()


async def test_a_failing_replica_backs_off_and_delays_nobody(
    alertmanager_factory: Callable[..., Process],
    capture: Capture,
    augurs: list[Augur],
    session: aiohttp.ClientSession,
    broken_replica: tuple[str, list[float]],
    tmp_path: Path,
) -> None:
    broken, hits = broken_replica
    port = free_port()
    am = alertmanager_factory(am_config(f"http://127.0.0.1:{port}", capture.url))
    augur = await Augur.start(port, tmp_path / "outbox.db", [broken, am.url], KindEnricherDouble())
    augurs.append(augur)
    await post_alerts(session, am, source("Live", time.time()))
    await eventually(lambda: capture.alerts("firing", "Live"))

    async def delivered(name: str) -> None:
        body = notification(source(name, time.time()))
        async with session.post(augur.url + "/webhook", json=body) as resp:
            assert resp.status == 200
        await eventually(lambda: capture.alerts("firing", name))

    # Every new alert wakes the sender for both replicas and reaches the live one at once,
    # while the failing one is retried on its backoff schedule only, not once per wake-up:
    # 0.1 s doubling to 0.5 s here, half of each fixed, half jitter.
    sent = 0
    while len(hits) < 6:
        assert sent < 200, f"{len(hits)} posts to the failing replica after {sent} alerts"
        await delivered(f"More{sent}")
        sent += 1
    gaps = [b - a for a, b in itertools.pairwise(hits)]
    floors = [min(0.5, 0.1 * 2**i) / 2 for i in range(len(gaps))]
    assert all(gap >= floor for gap, floor in zip(gaps, floors, strict=True)), (gaps, floors)
    assert len(capture.alerts("firing")) == 1 + sent
    (row, *_) = await augur.outbox.rows()
    delivery = row["deliveries"][broken]
    assert delivery["pending"] == 1 and delivery["attempts"] >= 3
    assert delivery["last_error"] == "HTTP 503: overloaded"


async def test_stop_returns_promptly_with_a_post_hanging(
    broken_replica: tuple[str, list[float]], session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    broken, hits = broken_replica
    port = free_port()
    augur = await Augur.start(
        port, tmp_path / "outbox.db", [broken + "/hang"], KindEnricherDouble()
    )
    try:
        async with session.post(augur.url + "/webhook", json=notification(source("X", 1e9))) as r:
            assert r.status == 200
        await eventually(lambda: hits)
    finally:
        # Within augur's 25 s shutdown budget, though the post in flight is never answered.
        await asyncio.wait_for(augur.stop(), 25)
    # Nothing is lost: the alert is still waiting in the outbox for the next start.
    again = await Outbox.open(tmp_path / "outbox.db", [broken + "/hang"], time.time())
    try:
        assert len(await again.due(broken + "/hang", time.time() + 60, 10)) == 1
    finally:
        await again.close()


async def test_refused_alert_is_marked_and_the_rest_of_its_batch_delivered(
    alertmanager_factory: Callable[..., Process],
    capture: Capture,
    augurs: list[Augur],
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    am = alertmanager_factory(am_config("http://127.0.0.1:1", capture.url))
    augur = await Augur.start(free_port(), tmp_path / "outbox.db", [am.url], KindEnricherDouble())
    augurs.append(augur)
    starts = format_time(datetime.now(UTC))

    def record(name: str, labels: dict[str, str]) -> Record:
        return Record(name, starts, "firing", None, labels, {}, {"augur_summary": "x"}, "")

    # Written past the webhook's validation, as a future bug or an older augur might have.
    await augur.outbox.accept(
        [
            record("good", {"alertname": "Good", "augur_enriched": "true"}),
            record("bad", {"alertname": "Bad", "bad-name": "x", "augur_enriched": "true"}),
        ],
        time.time(),
    )
    augur.sender.wake()
    await eventually(lambda: capture.alerts("firing", "Good"))
    labels = {"alertmanager": am.url}
    await eventually(
        lambda: augur.registry.get_sample_value("augur_alert_post_failures_total", labels) == 1
    )
    assert augur.registry.get_sample_value("augur_alerts_refused_total", labels) == 1
    rows = {r["fingerprint"]: r for r in await augur.outbox.rows()}
    bad = rows["bad"]["deliveries"][am.url]
    assert bad["last_error"] == 'HTTP 400: invalid label set: invalid name "bad-name"'
    assert (bad["pending"], bad["due_at"]) == (0, None)  # not retried forever
    assert rows["good"]["deliveries"][am.url]["due_at"] is not None  # reposted while firing


async def test_source_not_heard_of_for_resolve_timeout_is_resolved(
    alertmanager_factory: Callable[..., Process],
    capture: Capture,
    augurs: list[Augur],
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    port = free_port()
    am = alertmanager_factory(am_config(f"http://127.0.0.1:{port}", capture.url))
    augur = await Augur.start(
        port, tmp_path / "outbox.db", [am.url], KindEnricherDouble(), resolve_timeout=1.5
    )
    augurs.append(augur)
    # The augur route's repeat_interval is 1h: augur hears of the source once only.
    await post_alerts(session, am, source("Quiet", time.time()))
    await eventually(lambda: capture.alerts("firing", "Quiet"))
    (resolved,) = await eventually(lambda: capture.alerts("resolved", "Quiet"))
    assert resolved["labels"]["augur_enriched"] == "true"


def _doc_blocks() -> list[dict[str, Any]]:
    text = DOCS.read_text(encoding="utf-8")
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]


def test_every_alertmanager_snippet_in_the_docs_is_valid(tmp_path: Path) -> None:
    configs = [b for b in _doc_blocks() if "route" in b]
    assert len(configs) == 3
    for i, config in enumerate(configs):
        path = tmp_path / f"am-{i}.yml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        check = subprocess.run(
            [AMTOOL, "check-config", str(path)],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        # Originals go to augur only; augur's enriched copies to the tree, which routes on
        # category; augur's own alerts bypass it.
        (["alertname=DiskFull", "service=postgres"], "augur"),
        (["alertname=DiskFull", "augur_enriched=true", "category=disk"], "storage"),
        (["alertname=Slow", "augur_enriched=true", "service=postgres"], "db-team"),
        (["alertname=Other", "augur_enriched=true", "category=cpu"], "oncall"),
        (["alertname=AugurDown", "job=augur"], "oncall"),
    ],
)
def test_docs_route_sends_alerts_where_it_says(
    tmp_path: Path, labels: list[str], receivers: str
) -> None:
    path = tmp_path / "am.yml"
    path.write_text(yaml.safe_dump(_doc_blocks()[0]), encoding="utf-8")
    test = subprocess.run(
        [
            AMTOOL,
            "config",
            "routes",
            "test",
            f"--config.file={path}",
            f"--verify.receivers={receivers}",
            *labels,
        ],
        capture_output=True,
        text=True,
    )
    assert test.returncode == 0, test.stdout + test.stderr


def test_docs_augur_settings_and_rules_are_valid(tmp_path: Path) -> None:
    blocks = _doc_blocks()
    (settings,) = [b for b in blocks if "alertmanager" in b]
    # The example names a mounted secret, and validating reads it: give it one here.
    token = tmp_path / "webhook-token"
    token.write_text("s3cret\n", encoding="utf-8")
    WebhookConfig.model_validate({**settings["webhook"], "bearer_token_file": token})
    assert len(AlertmanagerConfig.model_validate(settings["alertmanager"]).urls) == 2
    (rules,) = [b for b in blocks if "groups" in b]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    check = subprocess.run(
        [find_binary("promtool"), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


async def _serve(args: argparse.Namespace) -> None:
    augur = await Augur.start(
        args.port,
        Path(args.outbox),
        args.alertmanager,
        KindEnricherDouble(),
        sender=not args.accept_only,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await augur.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Serve augur's alert loop for the tests.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--outbox", required=True)
    parser.add_argument("--alertmanager", action="append", default=[])
    parser.add_argument("--accept-only", action="store_true", help="no worker, no sender")
    asyncio.run(_serve(parser.parse_args()))
