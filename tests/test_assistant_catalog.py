"""The assistant's catalogue against a real Prometheus fed with the backfilled world.

Every intent's template runs and returns rows; several answers are known from how
tests/assistant_world.py made the data; a missing metric family says what is missing; slot
values are checked against real label values, and hostile ones never reach a query.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from assistant_world import WORLD, WORLD_FILE, all_samples

from exporter.assistant import catalog_doc
from exporter.assistant.answer import Answer, NoData, NotAvailable, SlotError, run
from exporter.assistant.catalog import CATALOG, SLOTS
from exporter.assistant.labels import (
    matcher,
    parse_duration,
    parse_time,
    promql_string,
    render_duration,
    utc_clock,
)
from exporter.assistant.templates import TEMPLATES
from exporter.demo.procs import Process, start_alertmanager, start_prometheus
from exporter.prometheus.client import Form, PrometheusClient

END = float(int(time.time()) // 60 * 60)
"""The world ends on a minute, so ages such as the last poll's are known to the second."""
WEIRD = ('shop"} or vector(1) #', "a\\b.*(", "x|y", "服务-甲\n")
"""Real service names a careless template would break on: quotes, regex, a newline."""
CONTRACT = """top_cpu_hosts top_memory_hosts top_disk_usage host_cpu host_memory host_disk host_load
host_network host_uptime targets_down disk_fill_forecast error_rate_by_service
request_rate_by_service latency_by_service service_availability top_pod_cpu top_pod_memory
pod_restarts pods_not_ready deployments_unavailable oom_killed cpu_throttling nodes_not_ready
anomalous_now anomalies_in_range open_incidents forecast_of alerts_firing alerts_fired_in_range
alerts_by_category changed_around related_anomalies augur_status scrape_health""".split()
HOSTILE = [
    '"} or vector(1) #',
    'web-01"} or vector(1) #',
    'web-01" or up{job="node',
    "web-01\n",
    "web-01\\",
    "web-.*",
    "web-01|db-01",
    "(?i)WEB-01",
    "web\u200b-01",
    "ウェブ-01",
    "x" * 10_000,
]
SLOTS_FOR: dict[str, dict[str, str]] = {
    "host_cpu": {"host": "web-01"},
    "host_memory": {"host": "db-01"},
    "host_disk": {"host": "db-01"},
    "service_availability": {"service": "payments"},
    "anomalies_in_range": {"range": "24h"},
    "alerts_fired_in_range": {"range": "24h"},
    "changed_around": {"time": "-3h"},
    "related_anomalies": {"alert": "HighErrorRate"},
}


class RecordingClient(PrometheusClient):
    """A real client that remembers every request it sent (path and form)."""

    sent: list[str]

    async def _call(self, path: str, form: Form | None = None, **kwargs: Any) -> Any:
        self.sent.append(path + " " + " ".join(v for _, v in form or ()))
        return await super()._call(path, form, **kwargs)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    samples = all_samples(END, extra_services=WEIRD)
    proc = start_prometheus(tmp_path_factory.mktemp("prom"), samples=samples)
    yield proc
    proc.stop()


@pytest.fixture
async def client(prometheus: Process) -> AsyncIterator[RecordingClient]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        made = RecordingClient(session, prometheus.url, retries=0)
        made.sent = []
        yield made


async def ask(client: PrometheusClient, intent: str, lang: str = "en", **slots: str) -> Answer:
    return await run(CATALOG[intent], slots, lang, client, END)


def test_the_catalogue_holds_every_contract_intent_with_titles_and_a_template() -> None:
    assert list(CATALOG)[: len(CONTRACT)] == CONTRACT
    for intent in CATALOG.values():
        assert set(intent.title) == {"en", "zh"} and all(intent.title.values())
        assert set(intent.required) <= set(intent.slots) <= set(SLOTS)
        assert intent.name in TEMPLATES or intent.name == "related_anomalies"
    assert set(TEMPLATES) == set(CATALOG) - {"related_anomalies"}


@pytest.mark.parametrize("name", [n for n in CONTRACT if n != "related_anomalies"])
async def test_every_template_returns_data_from_the_real_prometheus(
    client: PrometheusClient, name: str
) -> None:
    for lang in ("en", "zh"):
        answer = await ask(client, name, lang, **SLOTS_FOR.get(name, {}))
        assert answer.rows and answer.promql and answer.sentence
        assert all(len(row) == len(answer.columns) for row in answer.rows), answer
        assert all(cell != "nan" for row in answer.rows for cell in row)
    assert answer.sentence.endswith("。")


async def test_known_answers_from_the_world(client: PrometheusClient) -> None:
    top = await ask(client, "top_cpu_hosts", topk="3")
    assert top.sentence == "web-01 uses the most CPU: 93 %, then db-01 71 %, then web-02 40 %."
    assert [r[0] for r in top.rows] == ["web-01", "db-01", "web-02"]
    zh = await ask(client, "top_cpu_hosts", "zh", topk="2")
    assert zh.sentence == "web-01 的 CPU 使用率最高:93 %,其次是 db-01 71 %。"
    assert top.columns == ["host", "CPU busy"] and zh.columns == ["主机", "CPU 使用率"]
    assert zh.rows == top.rows[:2]
    assert (await ask(client, "top_memory_hosts")).rows[0][:2] == ["db-01", "90 %"]
    fill = await ask(client, "disk_fill_forecast")
    assert [r[:2] for r in fill.rows] == [["db-01", "/data"]] and fill.rows[0][2] == "2 h"
    errors = {row[0]: row[1] for row in (await ask(client, "error_rate_by_service")).rows}
    assert list(errors.items())[:2] == [("payments", "8 %"), ("checkout", "1 %")]
    assert errors["auth"] == "0 %"  # no 5xx series at all: 0 %, not left out
    assert (await ask(client, "request_rate_by_service")).rows[0][0] == "frontend"
    assert (await ask(client, "latency_by_service")).rows[0][0] == "search"
    assert (await ask(client, "host_uptime")).rows[0][0] == "worker-03"
    assert (await ask(client, "targets_down")).rows == [["inventory", "inventory:8080"]]
    assert (await ask(client, "top_pod_cpu")).rows[0][:3] == [
        "shop",
        "checkout-7d9f8b6c5-xk2lp",
        "1.50 cores",
    ]
    not_ready = {(r[1], r[2]) for r in (await ask(client, "pods_not_ready")).rows}
    # inventory-* is Pending and not ready: one row, its phase, not a second NotReady row.
    assert not_ready == {
        ("search-6b7c8d9f5-m2n4p", "NotReady"),
        ("inventory-5d4c3b2a1-z9y8x", "Pending"),
    }
    missing = await ask(client, "deployments_unavailable")
    assert missing.rows == [["payments", "payments", "1"]]
    assert missing.sentence == "payments/payments misses 1 replica(s)."
    zh3 = await ask(client, "top_cpu_hosts", "zh", topk="3")
    assert zh3.sentence.endswith(",其次是 db-01 71 %、web-02 40 %。")
    assert (await ask(client, "nodes_not_ready")).rows == [["worker-03", "Ready", "false"]]
    assert [r[2] for r in (await ask(client, "oom_killed")).rows] == ["checkout"]
    assert (await ask(client, "cpu_throttling")).rows[0][2:] == ["search", "30 %"]
    now = await ask(client, "anomalous_now")
    assert [r[1] for r in now.rows] == ["metric=http_p99, service=search"]
    period = {r[0] for r in (await ask(client, "anomalies_in_range", range="24h")).rows}
    assert period == {"latency", "errors"}
    assert (await ask(client, "changed_around", time="-3h")).rows[0][0] == "errors"
    clock = utc_clock(END - 3 * 3600 + 120)  # as "at 14:05" would say it
    assert (await ask(client, "changed_around", time=clock)).rows[0][0] == "errors"
    with pytest.raises(NoData):
        await ask(client, "changed_around", time="-5h")
    firing = {r[0] for r in (await ask(client, "alerts_firing")).rows}
    fired = {r[0] for r in (await ask(client, "alerts_fired_in_range", range="6h")).rows}
    assert firing == {"HostHighCpuLoad", "HighErrorRate"} and fired == firing | {
        "DiskWillFillIn4Hours"
    }
    recent = await ask(client, "alerts_fired_in_range", range="30m")
    assert {r[0] for r in recent.rows} == firing
    assert (await ask(client, "augur_status")).rows == [["3", "0", "5 s"]]


async def test_one_host_and_one_service_narrow_the_answer(client: PrometheusClient) -> None:
    cpu = await ask(client, "host_cpu", host="db-01")
    assert cpu.rows == [["db-01", "71 %"]] and 'instance="db-01:9100"' in cpu.promql[0]
    assert (await ask(client, "top_disk_usage", host="db-01")).rows[0][:3] == [
        "db-01",
        "/data",
        "95 %",
    ]
    fill = await ask(client, "disk_fill_forecast", host="db-01", range="7d")
    assert fill.rows[0][:2] == ["db-01", "/data"] and 'instance="db-01:9100"' in fill.promql[0]
    with pytest.raises(NoData):  # web-01's disks do not shrink: the other host's is not its
        await ask(client, "disk_fill_forecast", host="web-01", range="7d")
    ok = await ask(client, "service_availability", service="payments", range="1h")
    assert ok.rows == [["payments", "92 %"]]
    assert (
        (await ask(client, "top_pod_memory", namespace="shop", topk="1"))
        .rows[0][1]
        .startswith("search")
    )


async def test_an_expensive_ask_is_bounded(client: RecordingClient) -> None:
    with pytest.raises(SlotError, match="30d cap"):
        await ask(client, "pod_restarts", range="31d")
    assert not [s for s in client.sent if s.startswith("/api/v1/query ")]
    await ask(client, "pod_restarts", range="30d")
    queries = [s for s in client.sent if s.startswith("/api/v1/query ")]
    # Prometheus's own evaluation timeout goes with every instant query of an answer.
    assert queries and all(s.endswith(" 10.000") for s in queries), queries


async def test_an_empty_answer_is_no_data_with_a_sentence(client: PrometheusClient) -> None:
    with pytest.raises(NoData) as caught:
        await ask(client, "pod_restarts", "zh", namespace="kube-system")
    assert caught.value.sentence == "这段时间内没有 Pod 重启。" and caught.value.promql


async def test_a_missing_family_names_what_is_missing_and_the_next_family_answers(
    tmp_path: Path,
) -> None:
    proc = start_prometheus(
        tmp_path / "prom", samples=all_samples(END, cadvisor=False, legacy=True)
    )
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            bare = PrometheusClient(session, proc.url, retries=0)
            with pytest.raises(
                NotAvailable,
                match=r"^no cAdvisor series \(container_cpu_usage_seconds_total\) in this Prometheus$",
            ):
                await ask(bare, "top_pod_cpu")
            with pytest.raises(
                NotAvailable,
                match=r"\(container_cpu_cfs_throttled_periods_total, container_cpu_cfs_periods_total\)",
            ):
                await ask(bare, "cpu_throttling")
            assert (await ask(bare, "pod_restarts")).rows  # kube-state-metrics is there
            # The second-choice families answer the same questions the same way.
            memory = await ask(bare, "top_memory_hosts", topk="1")
            assert memory.rows == [["db-01", "90 %"]] and "MemFree" in memory.promql[0]
            latency = await ask(bare, "latency_by_service")
            assert latency.rows[0][0] == "search" and 'quantile="0.99"' in latency.promql[0]
            assert latency.rows[0][1:] == ["3.7 s", "2.4 s"]  # 0.8 s * ln(100), * ln(20)
    finally:
        proc.stop()


async def test_services_named_only_by_job_keep_their_names(tmp_path: Path) -> None:
    samples = [s for s in all_samples(END, named_by=("job",)) if s.name.startswith("http_")]
    proc = start_prometheus(tmp_path / "prom", samples=samples)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            bare = PrometheusClient(session, proc.url, retries=0)
            traffic = await ask(bare, "request_rate_by_service")
            assert [r[0] for r in traffic.rows[:3]] == ["frontend", "search", "checkout"]
            assert "sum by (job)" in traffic.promql[0]
            errors = await ask(bare, "error_rate_by_service")
            assert errors.rows[0] == ["payments", "8 %"]
            assert (await ask(bare, "latency_by_service")).rows[0][0] == "search"
            # A named service found in `job`: grouped and keyed by job, its name in the row.
            one = await ask(bare, "request_rate_by_service", service="frontend")
            assert [r[0] for r in one.rows] == ["frontend"]
            ok = await ask(bare, "service_availability", service="payments", range="1h")
            assert ok.rows == [["payments", "92 %"]]
    finally:
        proc.stop()


async def test_slot_values_must_be_real_label_values(client: PrometheusClient) -> None:
    assert (await ask(client, "host_cpu", host="WEB-01")).rows[0][0] == "web-01"
    assert (await ask(client, "host_cpu", host="web-01:9100")).rows[0][0] == "web-01"
    with pytest.raises(SlotError) as caught:
        await ask(client, "host_cpu", host="web-1")
    assert caught.value.slot == "host" and "web-01" in caught.value.closest
    with pytest.raises(SlotError) as caught:
        await ask(client, "service_availability", service="payment")
    assert caught.value.closest[0] == "payments"
    with pytest.raises(SlotError, match="needs a host"):
        await ask(client, "host_cpu")
    for slot, bad in (("topk", "five"), ("topk", "-1"), ("range", "forever"), ("range", "9999y")):
        with pytest.raises(SlotError):
            await ask(client, "top_pod_cpu" if slot == "topk" else "pod_restarts", **{slot: bad})
    with pytest.raises(SlotError):
        await ask(client, "changed_around", time="25:00")


async def test_a_real_label_value_full_of_syntax_is_quoted_not_obeyed(
    client: PrometheusClient,
) -> None:
    for name in WEIRD:
        answer = await ask(client, "request_rate_by_service", service=name)
        assert answer.rows == [[name, "10/s"]], (name, answer.promql)
    counted = await client.query(f"count(http_requests_total{{{matcher('service', WEIRD)}}})", END)
    assert counted.result[0]["value"][1] == str(len(WEIRD))  # one code (200) each


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v[:20]))
async def test_hostile_slot_values_are_refused_and_never_sent(
    client: RecordingClient, value: str
) -> None:
    cases = [
        ("host_cpu", "host"),
        ("service_availability", "service"),
        ("top_pod_cpu", "namespace"),
        ("related_anomalies", "alert"),
        ("top_cpu_hosts", "topk"),
        ("pod_restarts", "range"),
        ("changed_around", "time"),
    ]
    for intent, slot in cases:
        with pytest.raises(SlotError):
            await ask(client, intent, **{slot: value})
    assert not any(value in sent or value.strip() in sent for sent in client.sent if value.strip())
    assert all("/api/v1/query" not in sent for sent in client.sent)


def test_literals_and_numbers_are_rendered_anew() -> None:
    assert promql_string('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert matcher("x", ["a.b", "c|d"]) == 'x=~"a\\\\.b|c\\\\|d"'
    assert render_duration(parse_duration("90m")) == "90m"
    assert render_duration(parse_duration("1d")) == "1d" and render_duration(86400 * 7) == "1w"
    with pytest.raises(ValueError):
        parse_duration("1h or vector(1)")
    assert parse_time("14:05", 86400 * 10 + 15 * 3600) == 86400 * 10 + 14 * 3600 + 300
    assert parse_time("16:00", 86400 * 10 + 15 * 3600) == 86400 * 9 + 16 * 3600


async def test_related_anomalies_come_from_alertmanager(
    client: PrometheusClient, tmp_path: Path
) -> None:
    with pytest.raises(NotAvailable, match="Alertmanager"):
        await ask(client, "related_anomalies", alert="HighErrorRate")
    am = start_alertmanager(
        tmp_path / "am", {"route": {"receiver": "null"}, "receivers": [{"name": "null"}]}
    )
    try:
        related = "payments errors rose 2.1x at 14:05\nauth latency p99 0.9 s"
        alert = {
            "labels": {"alertname": "HighErrorRate", "service": "payments"},
            "annotations": {"augur_related": related},
        }
        async with aiohttp.ClientSession() as session:
            async with session.post(am.url + "/api/v2/alerts", json=[alert]) as resp:
                assert resp.status == 200
        answer = await run(
            CATALOG["related_anomalies"],
            {"alert": "HighErrorRate"},
            "en",
            client,
            END,
            alertmanager_url=am.url,
        )
        assert [r[2] for r in answer.rows] == related.splitlines()
        assert answer.rows[0][1] == "service=payments"
        with pytest.raises(NoData):
            await run(
                CATALOG["related_anomalies"],
                {"alert": "HostHighCpuLoad"},
                "zh",
                client,
                END,
                alertmanager_url=am.url,
            )
    finally:
        am.stop()


def test_the_world_literal_is_the_shared_file() -> None:
    if not WORLD_FILE.exists():
        pytest.skip("models/data/ask-world.json is the questions helper's; not merged yet")
    assert json.loads(WORLD_FILE.read_text(encoding="utf-8")) == WORLD


async def test_metric_names_and_label_values_are_read_once_per_few_seconds(
    client: RecordingClient,
) -> None:
    for _ in range(3):
        await ask(client, "host_cpu", host="web-01")
    lists = [sent for sent in client.sent if sent.startswith("/api/v1/label/")]
    # __name__, instance, node, nodename: once each, however many questions.
    assert sorted(lists) == sorted(
        f"/api/v1/label/{n}/values " for n in ("__name__", "instance", "node", "nodename")
    )
    assert sum(sent.startswith("/api/v1/query ") for sent in client.sent) == 3


def test_the_catalogue_page_lists_every_intent() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "assistant.md").read_text(
        encoding="utf-8"
    )
    assert [line[4:] for line in page.splitlines() if line.startswith("### ")] == list(CATALOG)
    # The queries on the page are the templates' (python -m exporter.assistant.catalog_doc).
    assert page[page.index(catalog_doc.HEADING) :] == catalog_doc.render()
