"""The enricher end to end: the real text model, a real Prometheus with backfilled scores.

History: augur's scores for series of host pg-1 (some anomalous, one normal), of another host,
and of a crash-looping pod, plus the filesystem series a disk rule reads. Alerts start ten
minutes ago; the history ends two minutes ago, so every sample is in a loaded block.
"""

from __future__ import annotations

import asyncio
import json
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
from aiohttp.test_utils import TestServer
from model_files import MODEL_DIR, swap_head_rows
from waiting import eventually

from exporter.alerts.cause import rank_causes
from exporter.alerts.enrich import (
    ANNOTATION_CHARS,
    AlertEnricher,
    Model,
)
from exporter.alerts.payloads import ANNOTATIONS, WebhookAlert
from exporter.config.alerts import EnrichConfig
from exporter.demo.procs import Process, Sample
from exporter.prometheus.client import PrometheusClient
from exporter.text import TextModel
from exporter.text.entities import Entities
from exporter.text.reload import ReloadableModel

STEP = 15
NOW = int(time.time()) // STEP * STEP
T0 = NOW - 600
"""The alerts' startsAt."""
PG = {"instance": "pg-1:9100", "job": "node"}
DISK_EXPR = 'node_filesystem_avail_bytes{fstype!=""} / node_filesystem_size_bytes * 100 < 20'
ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


def _score(
    name: str, labels: dict[str, str], cross: float, peak: float, normal: float = 0.3
) -> list[Sample]:
    return [
        Sample("augur_anomaly_score", {**labels, "metric": name}, t, peak if t >= cross else normal)
        for t in range(NOW - 3600, NOW - 120, STEP)
    ]


def _free_percent(t: float) -> float:
    return 25.0 - (t - (NOW - 3600)) / 3480 * 20


def _history() -> list[Sample]:
    fs = {**PG, "device": "/dev/sda1", "mountpoint": "/var/lib/postgresql", "fstype": "ext4"}
    disk_io = {**PG, "query": "disk_io", "device": "sda"}
    samples = [
        # Crossed first and highest: ranks first (its two detectors merge into one series).
        *_score(
            "node_disk_io_time_seconds_total", {**disk_io, "detector": "zscore"}, T0 - 480, 3.1
        ),
        *_score("node_disk_io_time_seconds_total", {**disk_io, "detector": "ewma"}, T0 - 420, 2.5),
        # Crossed together later: the higher one first.
        *_score("node_load1", {**PG, "query": "load", "detector": "zscore"}, T0 - 180, 2.6),
        *_score(
            "node_cpu_seconds_total",  # scraped without honor_labels
            {
                "exported_instance": "pg-1:9100",
                "instance": "augur:9465",
                "query": "cpu",
                "detector": "zscore",
            },
            T0 - 180,
            1.8,
        ),
        *_score(
            "node_memory_MemAvailable_bytes", {**PG, "query": "mem", "detector": "zscore"}, NOW, 9
        ),
        *_score(
            "node_network_receive_errs_total",
            {**PG, "query": "net", "detector": "zscore"},
            T0 + 450,
            7,
        ),
        *_score(
            "node_cpu_seconds_total",
            {"instance": "web-2:9100", "query": "cpu", "detector": "zscore"},
            T0 - 900,
            5,
        ),
        *_score(
            "kube_pod_container_status_restarts_total",
            {
                "namespace": "shop",
                "pod": "api-7d9f8b-x2kq",
                "container": "api",
                "query": "restarts",
                "detector": "ewma",
            },
            T0 - 60,
            6.0,
        ),
    ]
    for t in range(NOW - 3600, NOW - 120, STEP):
        samples.append(Sample("node_filesystem_avail_bytes", fs, t, _free_percent(t)))
        samples.append(Sample("node_filesystem_size_bytes", fs, t, 100.0))
    return samples


def alert(
    labels: dict[str, str], summary: str, description: str = "", expr: str = "", **extra: Any
) -> WebhookAlert:
    url = f"http://127.0.0.1:9090/graph?g0.expr={quote(expr)}&g0.tab=1" if expr else ""
    return WebhookAlert(
        status="firing",
        labels=labels,
        annotations={"summary": summary, "description": description, **extra},
        startsAt=datetime.fromtimestamp(T0, UTC),
        generatorURL=url,
    )


DISK_EN = alert(
    {
        "alertname": "NodeFilesystemAlmostOutOfSpace",
        "device": "/dev/sda1",
        "mountpoint": "/var/lib/postgresql",
        "fstype": "ext4",
        "severity": "warning",
        **PG,
    },
    "Filesystem has less than 20% space left.",
    "Filesystem on /dev/sda1, mounted on /var/lib/postgresql, at pg-1:9100 has only 3.52% available space left.",
    DISK_EXPR,
)
DISK_ZH = alert(
    {"alertname": "磁盘空间不足", "instance": "pg-1:9100"},
    "磁盘空间不足，剩余 5%",
    "主机 pg-1 挂载点 /var/lib/postgresql 剩余 5%，预计 3 小时后写满",
    DISK_EXPR,
)
CRASHLOOP = alert(
    {
        "alertname": "KubePodCrashLooping",
        "namespace": "shop",
        "pod": "api-7d9f8b-x2kq",
        "container": "api",
    },
    "Pod is crash looping.",
    'Pod shop/api-7d9f8b-x2kq (api) is in waiting state (reason: "CrashLoopBackOff").',
    'max_over_time(kube_pod_container_status_waiting_reason{reason="CrashLoopBackOff"}[5m]) >= 1',
)
CERT_ZH = alert(
    {"alertname": "证书即将过期", "instance": "https://shop.example.com"},
    "证书即将过期",
    "域名 shop.example.com 的证书将在 7 天后过期",
    "probe_ssl_earliest_cert_expiry - time() < 86400 * 7",
)
CPU_ZH = alert({"alertname": "HighCPU"}, "服务器 CPU 使用率过高")


@pytest.fixture(scope="module")
def model() -> Iterator[TextModel]:
    yield TextModel(MODEL_DIR, threads=1)


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="model") as pool:
        yield pool


@pytest.fixture
def prom(prometheus_factory: Callable[..., Process]) -> Process:
    return prometheus_factory(samples=_history())


@pytest.fixture
async def enricher_for(
    model: TextModel, executor: ThreadPoolExecutor
) -> AsyncIterator[Callable[..., Awaitable[AlertEnricher]]]:
    """Make started enrichers for a Prometheus URL, each with its own client as the app would."""
    made: list[tuple[aiohttp.ClientSession, AlertEnricher]] = []

    async def make(
        url: str,
        text_model: Model | None = None,
        on_stage: Callable[[str, float], None] | None = None,
        **settings: Any,
    ) -> AlertEnricher:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        client = PrometheusClient(session, url, retries=1, max_concurrency=8)
        cfg = EnrichConfig(**settings)
        enricher = AlertEnricher(
            text_model or model, client, cfg, executor=executor, on_stage=on_stage
        )
        made.append((session, enricher))
        assert await enricher.start() == []
        return enricher

    yield make
    for session, enricher in made:
        await enricher.close()
        await session.close()


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M UTC")


def _second(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S UTC")


def check_valid(labels: dict[str, str], annotations: dict[str, str]) -> None:
    assert labels["augur_enriched"] == "true" and labels["category"]
    assert set(ANNOTATIONS) <= set(annotations)
    for value in (*labels.values(), *annotations.values()):
        assert isinstance(value, str) and len(value) <= ANNOTATION_CHARS
        value.encode("utf-8")  # no lone surrogates
    json.loads(annotations["augur_entities"])
    assert 0 <= float(annotations["augur_confidence"]) <= 1


async def test_english_and_chinese_alerts_end_to_end(
    prom: Process, enricher_for: Callable[..., Awaitable[AlertEnricher]]
) -> None:
    enricher = await enricher_for(prom.url)
    out = await enricher.enrich([DISK_EN, DISK_ZH, CRASHLOOP, CERT_ZH, CPU_ZH])
    for e in out:
        check_valid(e.labels, e.annotations)
    disk_en, disk_zh, crash, cert, cpu = (e.annotations for e in out)
    assert [e.labels["category"] for e in out] == [
        "disk",
        "disk",
        "availability",
        "security",
        "cpu",
    ]

    entities = json.loads(disk_en["augur_entities"])
    assert entities["instance"] == ["pg-1:9100"] and entities["host"] == ["pg-1"]
    assert entities["mountpoint"] == ["/var/lib/postgresql"]
    assert entities["metric"] == ["node_filesystem_avail_bytes", "node_filesystem_size_bytes"]

    related = disk_en["augur_related"].splitlines()
    # augur scores none of the rule's metrics: of those that crossed before the alert started
    # on its machine only the first is a likely cause (the others may be its effects).
    assert related[:3] == [
        f'likely cause: node_disk_io_time_seconds_total{{instance="pg-1:9100",device="sda"}} anomalous since {_second(T0 - 480)} (peak 3.10)',
        f'related: node_load1{{instance="pg-1:9100"}} anomalous since {_second(T0 - 180)} (peak 2.60)',
        f'related: node_cpu_seconds_total{{instance="pg-1:9100"}} anomalous since {_second(T0 - 180)} (peak 1.80)',
    ]
    assert disk_en["augur_cause"] == related[0]
    now, then = f"{_free_percent(T0):.3g}", f"{_free_percent(T0 - 900):.3g}"
    assert related[3] == f"rule expression: {now} at {_clock(T0)} ({then} at {_clock(T0 - 900)})"
    assert len(related) == 4  # normal, other-host and later series are not related
    assert disk_zh["augur_related"].splitlines()[0] == (
        f'可能原因：node_disk_io_time_seconds_total{{instance="pg-1:9100",device="sda"}} 自 {_second(T0 - 480)} 起异常（峰值 3.10）'
    )

    assert "disk.en.md" in disk_en["augur_runbook"] and "disk.zh.md" in disk_zh["augur_runbook"]
    assert disk_en["augur_summary"] == (
        "Disk: Filesystem has less than 20% space left on pg-1; /var/lib/postgresql 3.52%; "
        f"at {now} % (was {then} % at {_clock(T0 - 900)}), below the 20 % threshold; "
        f"likely cause: node_disk_io_time_seconds_total "
        f"anomalous (score 3.1) since {_clock(T0 - 480)} and 2 more."
    )
    assert disk_zh["augur_summary"].startswith(
        "磁盘空间不足，剩余 5%（pg-1）；/var/lib/postgresql；"
    )
    assert (
        f"可能原因：node_disk_io_time_seconds_total 自 {_clock(T0 - 480)} 起异常（分数 3.1），另有 2 个序列。"
        in disk_zh["augur_summary"]
    )

    assert crash["augur_related"].splitlines()[0] == (
        f'likely cause: kube_pod_container_status_restarts_total{{pod="api-7d9f8b-x2kq",container="api"}} anomalous since {_second(T0 - 60)} (peak 6.00)'
    )
    assert "rule expression" not in crash["augur_related"]  # Prometheus has no such series
    assert "availability-crashloop.en.md" in crash["augur_runbook"]
    assert crash["augur_summary"].startswith(
        "Availability: Pod is crash looping on shop/api-7d9f8b-x2kq; likely cause:"
    )

    assert "security-certificate.zh.md" in cert["augur_runbook"]
    assert cert["augur_related"].startswith(
        "none: no series of shop.example.com scored >= 1 between"
    )
    assert cert["augur_summary"] == "安全：证书即将过期（shop.example.com）。"
    assert (
        cpu["augur_related"]
        == "none: the alert names no instance, host, pod or service to look for"
    )
    assert "cpu.zh.md" in cpu["augur_runbook"] and cpu["augur_summary"] == "服务器 CPU 使用率过高。"
    assert not any("augur_missing" in e.annotations for e in out)


async def test_each_batch_reports_how_long_its_model_and_prometheus_stages_took(
    prom: Process, enricher_for: Callable[..., Awaitable[AlertEnricher]]
) -> None:
    stages: list[tuple[str, float]] = []
    enricher = await enricher_for(prom.url, on_stage=lambda name, s: stages.append((name, s)))
    started = time.perf_counter()
    await enricher.enrich([DISK_EN, DISK_ZH])
    took = time.perf_counter() - started
    assert sorted(name for name, _ in stages) == ["model", "prometheus"]
    # Seconds of this batch, not milliseconds or a timestamp: within what the whole call took.
    assert all(0 < seconds <= took for _, seconds in stages), (stages, took)
    stages.clear()
    await enricher.enrich([DISK_EN])  # a repeat: the model's verdict is cached
    assert [name for name, _ in stages] == ["prometheus"]


async def test_an_alert_on_a_score_names_its_own_series_and_no_later_cause(
    prom: Process, enricher_for: Callable[..., Awaitable[AlertEnricher]]
) -> None:
    enricher = await enricher_for(prom.url)
    labels = {
        "alertname": "AugurAnomaly",
        "query": "disk_io",
        "metric": "node_disk_io_time_seconds_total",
        "device": "sda",
        **PG,
    }
    (out,) = await enricher.enrich(
        [
            alert(
                labels,
                "node_disk_io_time_seconds_total is anomalous on pg-1:9100",
                expr="min without (detector) (augur_anomaly_score) >= 1",
            )
        ]
    )
    lines = out.annotations["augur_related"].splitlines()
    assert lines == [
        f'this alert\'s series: node_disk_io_time_seconds_total{{instance="pg-1:9100",device="sda"}} anomalous since {_second(T0 - 480)} (peak 3.10)',
        # They crossed after the alerting series did: related, not its cause.
        f'related: node_load1{{instance="pg-1:9100"}} anomalous since {_second(T0 - 180)} (peak 2.60)',
        f'related: node_cpu_seconds_total{{instance="pg-1:9100"}} anomalous since {_second(T0 - 180)} (peak 1.80)',
        f"rule expression: 2.5 at {_clock(T0)}",  # not yet >= 1 15 min before
    ]
    assert "augur_cause" not in out.annotations
    assert "; related: node_load1 anomalous (score 2.6)" in out.annotations["augur_summary"]


async def test_prometheus_stopped_still_enriches_and_says_what_is_missing(
    prom: Process, enricher_for: Callable[..., Awaitable[AlertEnricher]]
) -> None:
    enricher = await enricher_for(prom.url)
    await enricher.enrich([DISK_EN, DISK_ZH])  # the model's answers are cached from here on
    prom.stop()
    # "unreachable", not "did not answer within": the refused connection ends the wait at once.
    en, zh = await enricher.enrich([DISK_EN, DISK_ZH])
    for e in (en, zh):
        check_valid(e.labels, e.annotations)
        assert e.labels["category"] == "disk" and "disk." in e.annotations["augur_runbook"]
        assert e.annotations["augur_related"] == (
            "unavailable: Prometheus is unreachable\n"
            "rule expression unavailable: Prometheus is unreachable"
        )
        assert (
            e.annotations["augur_missing"]
            == "related: Prometheus is unreachable; expression: Prometheus is unreachable"
        )
    assert en.annotations["augur_summary"] == (
        "Disk: Filesystem has less than 20% space left on pg-1; /var/lib/postgresql 3.52%; "
        "related series, rule value unknown (Prometheus is unreachable)."
    )
    assert zh.annotations["augur_summary"].endswith(
        "；相关序列、规则值未知（无法连接 Prometheus）。"
    )


async def test_slow_prometheus_is_cut_off_at_the_deadline(
    aiohttp_server: ServerFactory, enricher_for: Callable[..., Awaitable[AlertEnricher]]
) -> None:
    async def hang(request: web.Request) -> web.Response:
        if request.path.endswith("/__name__/values"):
            return web.json_response({"status": "success", "data": ["up"]})
        await asyncio.Event().wait()  # never answers: only the enricher's deadline ends the wait
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hang)
    server = await aiohttp_server(app)
    enricher = await enricher_for(str(server.make_url("")), deadline="300ms")
    await enricher.enrich([DISK_EN, CRASHLOOP])  # warm the model cache
    disk, crash = await enricher.enrich([DISK_EN, CRASHLOOP])
    assert disk.annotations["augur_related"].startswith(
        "unavailable: Prometheus did not answer within 0.3 s\n"
    )
    assert crash.annotations["augur_summary"].endswith(
        "; related series, rule value unknown (Prometheus did not answer within 0.3 s)."
    )


async def test_text_model_too_slow(
    prom: Process, enricher_for: Callable[..., Awaitable[AlertEnricher]]
) -> None:
    enricher = await enricher_for(prom.url, model_timeout="1ms")
    (out,) = await enricher.enrich([DISK_ZH])
    check_valid(out.labels, out.annotations)
    assert out.labels["category"] == "other" and out.annotations["augur_confidence"] == "0"
    assert (
        out.annotations["augur_runbook"]
        == "unavailable: the text model did not answer within 0.001 s"
    )
    assert (
        out.annotations["augur_missing"] == "category: the text model did not answer within 0.001 s"
    )
    assert "可能原因：node_disk_io_time_seconds_total" in out.annotations["augur_summary"]
    assert "分类与手册未知（文本模型在 0.001 秒内未响应）" in out.annotations["augur_summary"]


async def test_the_reloadable_model_serves_and_can_be_swapped(
    prom: Process,
    enricher_for: Callable[..., Awaitable[AlertEnricher]],
    executor: ThreadPoolExecutor,
    model_copy: Path,
) -> None:
    loop = asyncio.get_running_loop()
    reloadable = await loop.run_in_executor(executor, lambda: ReloadableModel(model_copy))
    enricher = await enricher_for(prom.url, reloadable)
    (before,) = await enricher.enrich([CERT_ZH])
    assert before.labels["category"] == "security"
    assert "security-certificate.zh.md" in before.annotations["augur_runbook"]
    # A rebuilt head that files certificates under cpu: the next verdict is the new model's.
    swap_head_rows(model_copy, "security", "cpu")
    assert await reloadable.reload(executor) is None
    (after,) = await enricher.enrich([CERT_ZH])
    assert after.labels["category"] == "cpu"
    assert after.annotations["augur_category"] == "cpu"


async def test_already_enriched_alerts_are_left_alone(
    prom: Process, enricher_for: Callable[..., Awaitable[AlertEnricher]]
) -> None:
    enricher = await enricher_for(prom.url)
    mine = alert(
        {"augur_enriched": "true", **DISK_EN.labels}, "Filesystem has less than 20% space left."
    )
    first, second = await enricher.enrich([mine, CRASHLOOP])
    assert first.labels == {} and first.annotations == {}
    assert second.labels["category"] == "availability"
    assert await enricher.enrich([mine]) == [first]


async def test_huge_and_odd_alerts_stay_within_alertmanagers_limits(
    prom: Process, enricher_for: Callable[..., Awaitable[AlertEnricher]]
) -> None:
    enricher = await enricher_for(prom.url)
    hosts = " ".join(f"web-{i}.example.com:{9000 + i} 10.0.{i}.1 /data{i}" for i in range(200))
    huge = alert(
        {
            "alertname": "Noisy",
            "instance": "x" * 300 + ":9100",
            "pod": "pod-\u200b-0\U0001f525",
            "service": 'my "svc" (prod) \\ [v1]+',
        },
        "磁盘满了\x00\x1b[31m " * 500,
        hosts * 20,
        "sum(" * 3000,  # PromQL Prometheus refuses
    )
    (out,) = await enricher.enrich([huge])
    check_valid(out.labels, out.annotations)
    # The selector built from those values is valid PromQL: only the broken rule fails.
    assert out.annotations["augur_missing"].startswith("expression: Prometheus failed: ")
    assert out.annotations["augur_related"].startswith("none: no series of pod-\u200b-0")


async def test_metric_names_from_text_are_checked_against_prometheus(
    prom: Process, enricher_for: Callable[..., Awaitable[AlertEnricher]]
) -> None:
    enricher = await enricher_for(prom.url)
    await eventually(lambda: enricher.catalog.loaded)
    text = "node_load1 and node_filesystem_size_bytes are fine; node_made_up_total is not a metric."
    (out,) = await enricher.enrich([alert({"alertname": "Check", **PG}, "Check", text)])
    assert json.loads(out.annotations["augur_entities"])["metric"] == ["node_filesystem_size_bytes"]


def test_ranking_prefers_the_first_to_turn_anomalous_then_the_highest() -> None:
    def series(name: str, points: list[tuple[float, float]]) -> dict[str, Any]:
        return {
            "metric": {"metric": name, "instance": "a"},
            "values": [[t, str(v)] for t, v in points],
        }

    result = [
        series("late_high", [(100, 0.2), (115, 9.0)]),
        series("early_low", [(100, 1.2), (115, 1.1)]),
        series("early_high", [(100, 4.0), (115, 0.5)]),
        series("never", [(100, 0.9), (115, float("nan"))]),
    ]
    ranked = rank_causes(
        result,
        {"alertname": "X", "instance": "a"},
        Entities(instance=("a",)),
        (),
        threshold=1.0,
        step=15,
        starts_at=130,
    )
    assert [(r.metric, r.peak, r.first, r.cause) for r in ranked] == [
        ("early_high", 4.0, 100.0, True),
        ("early_low", 1.2, 100.0, True),
        ("late_high", 9.0, 115.0, False),  # no own series: only the first crossers are claimed
    ]
