"""Related anomalies that find the cause, against a real Prometheus (and a real Alertmanager).

Scores with known onsets are backfilled with promtool: the alert's own series is listed and said
to be; a series on the alert's machine that crossed before is its likely cause; one that crossed
after, however strong, never is; the same metric on another host ranks after the alert's own
places. An alert enriched before `enrich.related_settle` is looked at once more when evidence
arrives later (a score served live and scraped), and the update reaches Alertmanager.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from model_files import MODEL_DIR
from test_alert_pipeline import Augur, am_config, capture, enriched_in, post_alerts
from waiting import eventually

from exporter.alerts.enrich import AlertEnricher
from exporter.alerts.payloads import WebhookAlert, format_time
from exporter.config.alerts import EnrichConfig
from exporter.demo.procs import Process, Sample, free_port
from exporter.prometheus.client import PrometheusClient
from exporter.text import TextModel

__all__ = ["capture"]  # a fixture of test_alert_pipeline's, used here

STEP = 15
NOW = int(time.time()) // STEP * STEP
T0 = NOW - 900
"""The alerts' startsAt: the whole window (15 min before, 5 after) lies in the backfill."""
APP1 = {"instance": "app-1:8080", "job": "shop", "service": "checkout"}
LATENCY = "demo_http_request_duration_seconds"
LATENCY_EXPR = f'{LATENCY}{{service="checkout"}} > 0.5'


def _score(metric: str, labels: dict[str, str], cross: float, peak: float) -> list[Sample]:
    return [
        Sample(
            "augur_anomaly_score",
            {**labels, "metric": metric, "detector": "zscore"},
            t,
            peak if t >= cross else 0.4,
        )
        for t in range(NOW - 3600, NOW - 60, STEP)
    ]


def _history() -> list[Sample]:
    return [
        # The cause: the disk of the service's host, 5 minutes before the alert.
        *_score("node_disk_io_time_seconds_total", {**APP1, "query": "disk"}, T0 - 300, 4.0),
        # The alert's own series: the rule's metric on its host, a minute before.
        *_score(LATENCY, {**APP1, "query": "latency"}, T0 - 60, 6.0),
        # An effect: errors of the same service two minutes after, stronger than the cause.
        *_score("demo_http_errors_ratio", {**APP1, "query": "errors"}, T0 + 120, 20.0),
        # The rule's metric on another host, earliest of all: not where the alert is.
        *_score(LATENCY, {"instance": "app-2:8080", "query": "latency"}, T0 - 600, 9.0),
        # Another host, another metric: not a candidate at all.
        *_score("node_load1", {"instance": "db-9:9100", "query": "load"}, T0 - 700, 8.0),
    ]


def _band(
    metric: str,
    labels: dict[str, str],
    cross: float,
    values: tuple[float, float],
    band: tuple[float, float, float],
    detector: str = "zscore",
) -> list[Sample]:
    """augur's value and band of a series: `values[0]` until `cross`, then `values[1]`."""
    expected, lower, upper = band
    out = []
    for t in range(NOW - 3600, NOW - 60, STEP):
        series = {**labels, "metric": metric, "detector": detector}
        value = values[1] if t >= cross else values[0]
        out += [
            Sample("augur_observed_value", series, t, value),
            Sample("augur_expected_value", series, t, expected),
            Sample("augur_expected_lower", series, t, lower),
            Sample("augur_expected_upper", series, t, upper),
        ]
    return out


def _bands() -> list[Sample]:
    return [
        # The alert's own series, by two detectors: zscore's narrow band is the one quoted.
        *_band(LATENCY, {**APP1, "query": "latency"}, T0 - 60, (0.3, 1.2), (0.3, 0.2, 0.4)),
        *_band(LATENCY, {**APP1, "query": "latency"}, T0 - 60, (0.3, 1.2), (0.3, 0.1, 1.0), "ewma"),
        # The same metric on another host, far outside its band: not this alert's series.
        *_band(
            LATENCY, {"instance": "app-2:8080", "query": "latency"}, T0 - 600, (1, 90), (1, 0, 2)
        ),
        *_band(
            "demo_http_errors_ratio",
            {**APP1, "query": "errors"},
            T0 + 120,
            (0.01, 0.2),
            (0.01, 0.005, 0.015),
        ),
    ]


def _alert(labels: dict[str, str], summary: str, expr: str = "") -> WebhookAlert:
    url = f"http://127.0.0.1:9090/graph?g0.expr={quote(expr)}" if expr else ""
    return WebhookAlert(
        status="firing",
        labels=labels,
        annotations={"summary": summary},
        startsAt=datetime.fromtimestamp(T0, UTC),
        generatorURL=url,
    )


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M UTC")


def _second(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S UTC")


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="model") as pool:
        yield pool


@pytest.fixture(scope="module")
def model() -> TextModel:
    return TextModel(MODEL_DIR, threads=1)


@pytest.fixture
async def enricher_for(
    model: TextModel, executor: ThreadPoolExecutor
) -> AsyncIterator[Callable[..., Awaitable[AlertEnricher]]]:
    made: list[tuple[aiohttp.ClientSession, AlertEnricher]] = []

    async def make(url: str, **settings: Any) -> AlertEnricher:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        client = PrometheusClient(session, url, retries=1, max_concurrency=8)
        enricher = AlertEnricher(model, client, EnrichConfig(**settings), executor=executor)
        made.append((session, enricher))
        assert await enricher.start() == []
        return enricher

    yield make
    for session, enricher in made:
        await enricher.close()
        await session.close()


async def test_the_cause_is_named_the_own_series_said_and_a_later_one_never_a_cause(
    prometheus_factory: Callable[..., Process],
    enricher_for: Callable[..., Awaitable[AlertEnricher]],
) -> None:
    prom = prometheus_factory(samples=_history())
    enricher = await enricher_for(prom.url, deadline=5.0)
    rule = _alert(
        {"alertname": "HighLatency", **APP1}, "Checkout p99 latency is high", LATENCY_EXPR
    )
    (out,) = await enricher.enrich([rule])
    lines = out.annotations["augur_related"].splitlines()
    assert lines[:4] == [
        f'likely cause: node_disk_io_time_seconds_total{{instance="app-1:8080",service="checkout"}}'
        f" anomalous since {_second(T0 - 300)} (peak 4.00)",
        f'this alert\'s series: {LATENCY}{{instance="app-1:8080",service="checkout"}}'
        f" anomalous since {_second(T0 - 60)} (peak 6.00)",
        f'related: demo_http_errors_ratio{{instance="app-1:8080",service="checkout"}}'
        f" anomalous since {_second(T0 + 120)} (peak 20.00)",
        f'same metric elsewhere: {LATENCY}{{instance="app-2:8080"}}'
        f" anomalous since {_second(T0 - 600)} (peak 9.00)",
    ]
    assert not any("node_load1" in line for line in lines)
    assert out.annotations["augur_cause"] == lines[0]
    assert (
        "likely cause: node_disk_io_time_seconds_total anomalous (score 4.0)"
        in (out.annotations["augur_summary"])
    )


async def test_augurs_own_alert_names_its_series_and_what_crossed_before_it(
    prometheus_factory: Callable[..., Process],
    enricher_for: Callable[..., Awaitable[AlertEnricher]],
) -> None:
    prom = prometheus_factory(samples=_history())
    enricher = await enricher_for(prom.url, deadline=5.0)
    # augur's own alert on the errors series: its labels name the series.
    labels = {"alertname": "AugurAnomaly", "query": "errors", "metric": "demo_http_errors_ratio"}
    own = _alert({**labels, **APP1}, "demo_http_errors_ratio is anomalous on app-1:8080")
    (out,) = await enricher.enrich([own])
    lines = out.annotations["augur_related"].splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "likely cause",  # the disk, 7 minutes before the errors
        "likely cause",  # the latency, 3 minutes before the errors
        "this alert's series",
    ]
    assert "node_disk_io_time_seconds_total" in lines[0] and LATENCY in lines[1]
    assert "demo_http_errors_ratio" in lines[2] and "(peak 20.00)" in lines[2]


async def test_the_summary_says_the_alerting_series_against_its_expected_band(
    prometheus_factory: Callable[..., Process],
    enricher_for: Callable[..., Awaitable[AlertEnricher]],
) -> None:
    """augur's value and band of the alert's own series, at its onset, in both languages."""
    prom = prometheus_factory(samples=[*_history(), *_bands()])
    enricher = await enricher_for(prom.url, deadline=5.0)
    labels = {"alertname": "AugurAnomaly", "query": "errors", "metric": "demo_http_errors_ratio"}
    own_en = _alert({**labels, **APP1}, "demo_http_errors_ratio is anomalous on app-1:8080")
    own_zh = _alert({**labels, **APP1}, "app-1:8080 上的 demo_http_errors_ratio 异常")
    rule = _alert({"alertname": "HighLatency", **APP1}, "Checkout latency is high", LATENCY_EXPR)
    en, zh, by_rule = (
        e.annotations["augur_summary"] for e in await enricher.enrich([own_en, own_zh, rule])
    )
    # augur's own alert: the value that crossed, against its band; no "incident stage 1".
    assert "; 20 %, 20× its expected 1 % (band 0.5 %–1.5 %); likely cause: " in en, en
    assert "stage" not in en
    assert "；20 %，是预期 1 % 的 20 倍（正常区间 0.5 %–1.5 %）；可能原因：" in zh, zh
    # A rule's alert: what the rule read, then its series' band (the narrower detector's,
    # on this host: the same metric elsewhere is 90 s).
    assert (
        f"{LATENCY} 1.2 s, 4× its expected 300 ms (band 200 ms–400 ms); likely cause: " in by_rule
    ), by_rule


async def test_the_settle_look_rewrites_the_summary_with_the_first_reading_in_chinese(
    prometheus_factory: Callable[..., Process],
    enricher_for: Callable[..., Awaitable[AlertEnricher]],
) -> None:
    """The second look names the cause in the summary; the rule's reading is the first
    enrichment's (Prometheus has no raw latency series here: run again, it would be gone)."""
    prom = prometheus_factory(samples=[*_history(), *_bands()])
    enricher = await enricher_for(prom.url, deadline=5.0)
    rule = _alert({"alertname": "HighLatency", **APP1}, "结账服务延迟过高", LATENCY_EXPR)
    before = (
        f"none: no series of app-1 scored >= 1 between {_clock(T0 - 900)} and {_clock(T0)}\n"
        f"rule expression: 1.2 at {_clock(T0)} (0.3 at {_clock(T0 - 900)})"
    )
    (notes,) = await enricher.resettle([(rule, before)])
    said = notes["augur_summary"]
    assert said.startswith("结账服务延迟过高（app-1）；"), said  # it says 延迟 itself
    assert f"当前 1.2 秒（{_clock(T0 - 900)} 时为 300 毫秒），高于阈值 500 毫秒；" in said, said
    assert "为 1.2 秒，是预期 300 毫秒 的 4 倍（正常区间 200 毫秒–400 毫秒）；" in said, said
    assert "；可能原因：node_disk_io_time_seconds_total 自 " in said, said
    assert notes["augur_related"].splitlines()[-1] == before.splitlines()[-1]
    # A reading that was unavailable stays said to be; the summary is still rewritten.
    gone = "rule expression unavailable: Prometheus is unreachable"
    (notes,) = await enricher.resettle([(rule, f"none: x\n{gone}")])
    assert "规则值未知（首次富化时未能读取）" in notes["augur_summary"], notes["augur_summary"]
    assert notes["augur_related"].endswith(gone)
    # Posted first under another category (a model since reloaded): the summary stays as it was.
    other = _alert({**rule.labels, "category": "cpu"}, "结账服务延迟过高", LATENCY_EXPR)
    (notes,) = await enricher.resettle([(other, before)])
    assert "augur_summary" not in notes and "可能原因" in notes["augur_cause"]


async def test_a_series_crossing_with_or_after_the_alert_is_not_its_cause(
    prometheus_factory: Callable[..., Process],
    enricher_for: Callable[..., Awaitable[AlertEnricher]],
) -> None:
    """The issue's case: the rule fired seconds before augur's score of its series crossed."""
    history = [
        *_score("node_disk_io_time_seconds_total", {**APP1, "query": "disk"}, T0 + 30, 9.0),
        *_score(LATENCY, {**APP1, "query": "latency"}, T0 + 15, 3.0),
    ]
    prom = prometheus_factory(samples=history)
    enricher = await enricher_for(prom.url, deadline=5.0)
    rule = _alert({"alertname": "HighLatency", **APP1}, "Checkout latency", LATENCY_EXPR)
    (out,) = await enricher.enrich([rule])
    lines = out.annotations["augur_related"].splitlines()
    assert lines[0].startswith(f"this alert's series: {LATENCY}")  # found after its start
    assert lines[1].startswith("related: node_disk_io_time_seconds_total")
    assert "augur_cause" not in out.annotations


class LiveScore:
    """A scrape target serving one augur score whose value the test sets."""

    def __init__(self) -> None:
        self.value = 0.3
        self.disk = 0.2
        self.url = ""

    async def metrics(self, request: web.Request) -> web.Response:
        labels = 'metric="demo_http_request_duration_seconds",query="latency",service="checkout"'
        disk = 'metric="node_disk_io_time_seconds_total",query="disk",service="checkout"'
        body = (
            f"augur_anomaly_score{{{labels}}} {self.value}\n"
            f"augur_anomaly_score{{{disk}}} {self.disk}\n"
        )
        return web.Response(text=body, content_type="text/plain")


@pytest.fixture
async def live_score() -> AsyncIterator[LiveScore]:
    live = LiveScore()
    app = web.Application()
    app.router.add_get("/metrics", live.metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    live.url = f"127.0.0.1:{port}"
    yield live
    await runner.cleanup()


async def test_an_alert_enriched_before_its_settle_time_is_re_enriched_once_and_reposted(
    prometheus_factory: Callable[..., Process],
    alertmanager_factory: Callable[..., Process],
    capture: Any,
    live_score: LiveScore,
    model: TextModel,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
) -> None:
    prom = prometheus_factory(scrape_targets={"augur": live_score.url}, scrape_interval="1s")
    port = free_port()
    am = alertmanager_factory(am_config(f"http://127.0.0.1:{port}", capture.url))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        client = PrometheusClient(session, prom.url, retries=1, max_concurrency=8)
        # Long enough for the score to be served and scraped in between, whatever the machine.
        settle = 30.0
        cfg = EnrichConfig(deadline=5.0, related_step=1.0, related_settle=settle)
        enricher = AlertEnricher(model, client, cfg, executor=executor)
        calls: list[int] = []
        resettle = enricher.resettle

        async def counted(alerts: Any) -> list[dict[str, str]]:
            calls.append(len(alerts))
            return await resettle(alerts)

        enricher.resettle = counted  # type: ignore[method-assign]
        await enricher.start()
        augur = await Augur.start(port, tmp_path / "outbox.db", [am.url], enricher)
        try:
            start = time.time()
            await post_alerts(
                session,
                am,
                {
                    "labels": {"alertname": "HighLatency", "service": "checkout"},
                    "annotations": {"summary": "Checkout latency is high"},
                    "startsAt": format_time(datetime.fromtimestamp(start, UTC)),
                    "generatorURL": "http://127.0.0.1:9090/graph?g0.expr="
                    + quote(f'{LATENCY}{{service="checkout"}} > 0.5'),
                },
            )
            (first,) = await eventually(lambda: capture.alerts("firing"), within=30)
            assert first["annotations"]["augur_related"].startswith("none: no series of checkout")
            (row,) = await augur.outbox.rows()
            assert row["settle_at"] == pytest.approx(start + settle, abs=1.0)
            first_summary = first["annotations"]["augur_summary"]
            assert "cause" not in first_summary
            # The evidence arrives after the first post: the service's disk crosses, then
            # (a few related steps later) augur's score of the alert's own series.
            live_score.disk = 4.0

            async def scraped(n: int) -> bool:
                return len((await client.query("augur_anomaly_score >= 1")).result) == n

            await eventually(lambda: scraped(1), within=settle / 4)
            await asyncio.sleep(3 * cfg.related_step)
            live_score.value = 7.5
            await eventually(lambda: scraped(2), within=settle / 4)

            async def updated() -> str:
                (alert,) = await enriched_in(session, am)
                text: str = alert["annotations"]["augur_related"]
                return text if "this alert's series" in text else ""

            text = await eventually(updated, within=60)
            assert text.startswith("likely cause: node_disk_io_time_seconds_total{")
            assert f"this alert's series: {LATENCY}{{" in text and "(peak 7.50)" in text
            # The summary is rewritten too, and names the cause; the same labels make it an
            # update of the one alert Alertmanager has (enriched_in found exactly one).
            (alert,) = await enriched_in(session, am)
            said = alert["annotations"]["augur_summary"]
            assert said != first_summary and said.startswith(first_summary.rstrip("."))
            assert "; likely cause: node_disk_io_time_seconds_total anomalous (score 4.0)" in said
            assert alert["labels"] == first["labels"]
            (row,) = await augur.outbox.rows()
            assert row["settle_at"] is None and calls == [1]
        finally:
            await augur.stop()
            await enricher.close()
