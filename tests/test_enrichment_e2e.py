"""augur's own app end to end: real Alertmanager -> webhook -> real model -> Alertmanager -> route.

Unlike tests/test_alert_pipeline.py (which drives the pipeline with a test double), this
starts the application `augur run` builds, with the shipped text model and runbooks and a
real Prometheus behind the enrichment.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from test_alert_pipeline import am_config
from webhook_bodies import notification

from exporter.app import ALERTS, EXECUTOR, build_app
from exporter.config.root import Config
from exporter.demo.procs import Process, Sample, free_port

pytestmark = pytest.mark.integration


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class Capture:
    """A webhook receiver standing in for the team's real one (Slack, PagerDuty…)."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.alerts.extend(body["alerts"])
        self.arrived.set()
        return web.Response(text="ok")

    async def wait_for(
        self, check: Callable[[dict[str, Any]], bool], within: float = 30
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for alert in self.alerts:
                if check(alert):
                    return alert
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), max(0.05, deadline - time.monotonic()))
            except TimeoutError:
                break
        raise AssertionError(f"no matching alert arrived; got {json.dumps(self.alerts)[:2000]}")


async def serve_capture(capture: Capture) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/", capture.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/"


@pytest.fixture
async def stack(
    prometheus_factory: Callable[..., Process],
    alertmanager_factory: Callable[..., Process],
    tmp_path: Path,
) -> AsyncIterator[tuple[Process, Capture]]:
    now = time.time()
    # augur's scores for node-1's disk crossed 1 a few minutes ago: the related series.
    history = [
        Sample(
            "augur_anomaly_score",
            {
                "query": "disk_io",
                "detector": "ensemble",
                "instance": "node-1:9100",
                "device": "sda",
            },
            now - 600 + 15 * i,
            0.3 if i < 20 else 3.2,
        )
        for i in range(40)
    ]
    prom = prometheus_factory(samples=history)
    capture = Capture()
    capture_runner, capture_url = await serve_capture(capture)
    augur_port = free_port()
    am = alertmanager_factory(am_config(f"http://127.0.0.1:{augur_port}", capture_url))
    config = Config.model_validate(
        {
            "prometheus": {"url": prom.url},
            "poll": {"interval": "1m"},
            "web": {
                "listen_address": f"127.0.0.1:{augur_port}",
                "external_url": f"http://127.0.0.1:{augur_port}",
            },
            "state": {"path": str(tmp_path / "augur.db")},
            "queries": [{"name": "up", "expr": "up"}],
            "alertmanager": {"urls": [am.url], "repost_interval": "1m"},
            "enrich": {"deadline": "2s"},
        }
    )
    runner = web.AppRunner(build_app(config))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", augur_port).start()
    try:
        yield am, capture
    finally:
        await runner.cleanup()
        await capture_runner.cleanup()


async def post_alert(am: Process, alert: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(am.url + "/api/v2/alerts", json=[alert]) as resp:
            assert resp.status == 200, await resp.text()


async def test_chinese_alert_arrives_enriched_and_resolves(stack: tuple[Process, Capture]) -> None:
    am, capture = stack
    starts = time.time() - 60
    alert = {
        "labels": {
            "alertname": "HostHighCpuLoad",
            "instance": "node-1:9100",
            "severity": "warning",
        },
        "annotations": {
            "summary": "服务器 CPU 使用率过高",
            "description": "node-1 的 CPU 使用率已连续 10 分钟超过 95%",
        },
        "startsAt": iso(starts),
        "generatorURL": "http://prometheus:9090/graph?g0.expr=100+-+avg+by+(instance)+(rate(node_cpu_seconds_total%7Bmode%3D%22idle%22%7D%5B5m%5D))+*+100+%3E+90",
    }
    await post_alert(am, alert)
    enriched = await capture.wait_for(lambda a: a["status"] == "firing")
    labels, notes = enriched["labels"], enriched["annotations"]
    assert labels["augur_enriched"] == "true"
    assert labels["category"] == "cpu"
    assert labels["alertname"] == "HostHighCpuLoad" and labels["instance"] == "node-1:9100"
    assert notes["augur_category"] == "cpu" and 0 < float(notes["augur_confidence"]) <= 1
    entities = json.loads(notes["augur_entities"])
    assert "node-1:9100" in json.dumps(entities) and "node_cpu_seconds_total" in json.dumps(
        entities
    )
    assert 'device="sda"' in notes["augur_related"] and "3.20" in notes["augur_related"]
    # The runbook's link is augur's own page, in the alert's language, and it opens.
    link = notes["runbook_url"]
    assert link.endswith("/runbooks/cpu?lang=zh") and f" — {link} (match " in notes["augur_runbook"]
    async with aiohttp.ClientSession() as session, session.get(link) as page:
        assert page.status == 200 and '<html lang="zh">' in await page.text()
    assert any("\u4e00" <= c <= "\u9fff" for c in notes["augur_summary"])  # said in Chinese
    assert notes["summary"] == "服务器 CPU 使用率过高"  # the original annotations stay

    await post_alert(am, {**alert, "endsAt": iso(time.time())})
    resolved = await capture.wait_for(lambda a: a["status"] == "resolved")
    assert resolved["labels"]["augur_enriched"] == "true"
    assert resolved["labels"]["category"] == "cpu"
    said = resolved["annotations"]["augur_summary"]
    assert said.startswith("已于 ") and "恢复（持续 1 分钟）——" in said, said


async def test_the_model_answers_while_the_scoring_threads_are_all_busy(
    prometheus_factory: Callable[..., Process], tmp_path: Path
) -> None:
    """The text model has a thread of its own: scoring load cannot make it miss its timeout."""
    prom = prometheus_factory()
    port = free_port()
    config = Config.model_validate(
        {
            "prometheus": {"url": prom.url},
            "poll": {"interval": "1m", "workers": 2},
            "state": {"path": str(tmp_path / "augur.db")},
            "queries": [{"name": "up", "expr": "up"}],
            "alertmanager": {"urls": ["http://127.0.0.1:1"]},  # never reached: not asked here
            "enrich": {"model_timeout": "2s"},
        }
    )
    app = build_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    release = threading.Event()
    try:
        # Every scoring thread is taken by a call that outlasts the model's timeout many times.
        busy = [app[EXECUTOR].submit(release.wait, 60) for _ in range(config.poll.workers)]
        body = notification(
            {
                "labels": {"alertname": "DiskFull", "instance": "node-1:9100"},
                "annotations": {"summary": "disk /var on node-1 is 97% full"},
                "startsAt": iso(time.time() - 60),
            }
        )
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/webhook", json=body) as resp:
                assert resp.status == 200, await resp.text()
        outbox = app[ALERTS].outbox
        deadline = time.monotonic() + 30
        while await outbox.awaiting_count():
            assert time.monotonic() < deadline, "the alert was not enriched"
            await asyncio.sleep(0.05)
        assert not any(f.done() for f in busy)  # the scoring threads were held throughout
        (row,) = await outbox.rows()
        notes = json.loads(row["enrichment"])
        assert notes["augur_category"] == "disk", notes
        assert "text model" not in notes.get("augur_missing", ""), notes
    finally:
        release.set()
        await runner.cleanup()


async def test_a_storm_of_one_rule_is_answered_from_the_template_cache(
    prometheus_factory: Callable[..., Process], tmp_path: Path
) -> None:
    """`augur run` serves the model through its template cache (`model.cache_size`): the same
    rule firing for three pods is read by the model once and answered alike for all three."""
    prom = prometheus_factory()
    port = free_port()
    config = Config.model_validate(
        {
            "prometheus": {"url": prom.url},
            "poll": {"interval": "1m"},
            "state": {"path": str(tmp_path / "augur.db")},
            "queries": [{"name": "up", "expr": "up"}],
            "alertmanager": {"urls": ["http://127.0.0.1:1"]},  # never reached: not asked here
        }
    )
    app = build_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    pods = (
        "checkout-api-7d9f8b6c5-x2k4p",
        "checkout-api-7d9f8b6c5-q8zrt",
        "checkout-api-7d9f8b6c5-mm4kz",
    )
    try:
        body = notification(
            *(
                {
                    "labels": {"alertname": "KubePodCrashLooping", "pod": pod},
                    "annotations": {
                        "summary": f"Pod payments/{pod} is crash looping",
                        "description": f"Pod payments/{pod} restarted 5 times in 10 minutes.",
                    },
                    "startsAt": iso(time.time() - 60),
                }
                for pod in pods
            )
        )
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/webhook", json=body) as resp:
                assert resp.status == 200, await resp.text()
            outbox = app[ALERTS].outbox
            deadline = time.monotonic() + 30
            while await outbox.awaiting_count():
                assert time.monotonic() < deadline, "the alerts were not enriched"
                await asyncio.sleep(0.05)
            async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                exposition = await resp.text()
        samples = {
            line.split(" ")[0]: float(line.split(" ")[1])
            for line in exposition.splitlines()
            if line.startswith("augur_model_cache_")
        }
        assert samples["augur_model_cache_misses_total"] == 1, samples
        assert samples["augur_model_cache_hits_total"] == 2, samples
        categories = {
            json.loads(row["enrichment"])["augur_category"] for row in await outbox.rows()
        }
        assert categories == {"availability"}, categories
    finally:
        await runner.cleanup()
