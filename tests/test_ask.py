"""`augur ask`: slot filling and intent matching on fixed examples with the real text model, the
CLI's exit codes, and hostile questions through the whole pipeline at a real Prometheus whose
query log shows every expression augur sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from exporter.assistant import slots
from exporter.assistant.ask import MAX_QUESTION_CHARS, ask
from exporter.assistant.match import index, match
from exporter.cli import main
from exporter.demo.procs import Process, Sample
from exporter.prometheus.client import PrometheusClient
from exporter.text.classify import default_model_dir
from exporter.text.encoder import TextModel

ANSWERED = "how many requests per second does each service get"
"""A question the backfilled data answers, with the stand-in catalogue and the real one."""
HOSTS = ("web-01", "web-02", "db-01", "db-02", "cache-01")
SERVICES = ("checkout", "payments", "search")
KNOWN = slots.Known(
    hosts=HOSTS,
    services=SERVICES,
    namespaces=("default", "shop", "payments", "kube-system"),
    pods=("checkout-7d9f8b6c5-xk2lp", "payments-84c6d5f7b-r7t2k"),
    alerts=("HighErrorRate", "DiskWillFillIn4Hours"),
)


@pytest.fixture(scope="module")
def model() -> TextModel:
    return TextModel(default_model_dir())


@pytest.mark.parametrize(
    ("question", "wanted", "expected"),
    [
        ("cpu of db-01 over the last hour", ("host", "range"), {"host": "db-01", "range": "1h"}),
        ("web-02:9100 memory", ("host",), {"host": "web-02"}),
        ("errors of payments in the past 30 minutes", ("service", "range"),
         {"service": "payments", "range": "30m"}),
        ("过去 2 小时 checkout 的错误率", ("service", "range"), {"service": "checkout", "range": "2h"}),
        ("最近一周的告警", ("range",), {"range": "7d"}),
        ("今天触发了哪些告警", ("range",), {"range": "24h"}),
        ("yesterday's alerts", ("range",), {"range": "24h"}),
        ("anomalies in the last 3 days", ("range",), {"range": "3d"}),
        ("what changed at 14:05", ("time",), {"time": "14:05"}),
        ("昨天下午3点发生了什么", ("time",), {"time": "15:00"}),
        ("下午3点半有什么变化", ("time",), {"time": "15:30"}),
        ("what changed 2 hours ago", ("time",), {"time": "-2h"}),
        ("半小时前哪些指标变了", ("time",), {"time": "-30m"}),
        ("top 3 hosts by cpu", ("topk",), {"topk": "3"}),
        ("CPU 前五的主机", ("topk",), {"topk": "5"}),
        ("内存前 10 个 pod", ("topk",), {"topk": "10"}),
        ("CPU 最高的三台服务器", ("topk",), {"topk": "3"}),
        ("which hosts use the most memory", ("topk",), {"topk": slots.DEFAULT_TOPK}),
        ("pods in namespace shop", ("namespace",), {"namespace": "shop"}),
        ("payments 命名空间里的 pod", ("namespace",), {"namespace": "payments"}),
        ("restarts of checkout-7d9f8b6c5-xk2lp", ("pod", "service"),
         {"pod": "checkout-7d9f8b6c5-xk2lp"}),
        ("related anomalies of HighErrorRate", ("alert",), {"alert": "HighErrorRate"}),
        ("related anomalies of NodeClockSkew", ("alert",), {"alert": "NodeClockSkew"}),
        ("cpu of host db-09", ("host",), {"host": "db-09"}),
        ("what is the weather", ("host", "service", "range", "time"), {}),
        ("is anything alerting in the application", ("alert", "service"), {}),
        ("服务checkout的错误率", ("service",), {"service": "checkout"}),
        ("errors of service billing", ("service",), {"service": "billing"}),
        ("requests per second each service gets", ("service",), {}),
    ],
)  # fmt: skip
def test_slots(question: str, wanted: tuple[str, ...], expected: dict[str, str]) -> None:
    assert slots.fill(question, wanted, KNOWN) == expected


@pytest.mark.parametrize(
    ("question", "intent", "filled"),
    [
        ("which servers have the highest CPU?", "top_cpu_hosts", {"topk": "5"}),
        ("哪些服务器 CPU 使用率过高?", "top_cpu_hosts", {"topk": "5"}),
        ("how much memory is db-01 using", "host_memory", {"host": "db-01"}),
        ("cache-01 的磁盘还剩多少", "host_disk", {"host": "cache-01"}),
        ("error rate of checkout in the last hour", "error_rate_by_service",
         {"service": "checkout", "range": "1h"}),
        ("现在有哪些告警在触发", "alerts_firing", {}),
        ("what changed around 14:05", "changed_around", {"time": "14:05"}),
        ("哪些 pod 在 shop 命名空间里重启了", "pod_restarts", {"namespace": "shop"}),
    ],
)  # fmt: skip
def test_match(model: TextModel, question: str, intent: str, filled: dict[str, str]) -> None:
    found = match(question, model, KNOWN)
    assert found.intent is not None and found.intent.name == intent, found.alternatives
    assert found.slots == filled
    assert found.alternatives[0][0] == intent and len(found.alternatives) == 3


@pytest.mark.parametrize("question", ["what's the weather in Paris tomorrow", "讲个笑话吧"])
def test_out_of_scope_offers_the_closest_intents(model: TextModel, question: str) -> None:
    found = match(question, model, KNOWN)
    assert found.intent is None and found.slots == {}
    assert len(found.alternatives) == 3
    scores = [s for _, s in found.alternatives]
    assert scores == sorted(scores, reverse=True)


def test_deterministic_and_cached(model: TextModel) -> None:
    assert index(model) is index(model)
    first = match("which pods use the most memory in shop", model, KNOWN)
    second = match("which pods use the most memory in shop", model, KNOWN)
    assert first.to_json() == second.to_json()


# -- against a real Prometheus --------------------------------------------------------------------


@pytest.fixture
def prometheus(prometheus_factory: Callable[..., Process], tmp_path: Path) -> Iterator[Process]:
    now = time.time()
    samples = [
        Sample("up", {"job": "node", "instance": f"{host}:9100"}, now - 60 * i, 1.0)
        for host in HOSTS
        for i in range(30)
    ]
    samples += [
        Sample("http_requests_total", {"job": svc, "service": svc, "code": "200"}, now - 60 * i,
               1000.0 - 10 * i)
        for svc in SERVICES
        for i in range(30)
    ]  # fmt: skip
    log = tmp_path / "queries.log"
    yield prometheus_factory(
        samples=samples,
        extra_config={"global": {"scrape_interval": "15s", "query_log_file": str(log)}},
    )


def sent_queries(prom: Process) -> list[str]:
    """Every expression Prometheus evaluated (its query log)."""
    log = prom.workdir.parent / "queries.log"  # where the fixture points query_log_file
    if not log.exists():
        return []
    return [
        json.loads(line)["params"]["query"]
        for line in log.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


async def api_requests(session: aiohttp.ClientSession, prom: Process) -> float:
    """Requests Prometheus's API has served, from its own /metrics."""
    async with session.get(f"{prom.url}/metrics") as resp:
        text = await resp.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/' in line
    )


HOSTILE = [
    '"} or vector(1) #',
    'cpu of web-01"} or vector(1) #',
    "memory of db-01'\nor vector(1)",
    'error rate of service checkout"}) or on() vector(1) #',
    "cpu of web-0.*",
    "error rate of checkout|payments",
    'pods in namespace shop\\") or vector(1)',
    '哪些服务器 CPU 使用率过高?\n"} or vector(1)',
]


async def test_hostile_questions_never_reach_a_query(
    model: TextModel, prometheus: Process, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        client = PrometheusClient(session, prometheus.url)
        for question in HOSTILE:
            result = await ask(question, model, client)
            if result.answer is not None:
                assert all(question not in q for q in result.answer.promql)
        sent = sent_queries(prometheus)
        assert sent, "no query logged: the log, not augur, would make this test pass"
        for expr in sent:
            assert "vector(1)" not in expr and ".*" not in expr and "|payments" not in expr
            assert "\n" not in expr and "web-0" not in expr.replace("web-01", "").replace(
                "web-02", ""
            )
        # A 10 KB question is refused before any request reaches Prometheus.
        before = await api_requests(session, prometheus)
        huge = ("cpu of web-01 " * 800)[: 10 * 1024]
        result = await ask(huge, model, client)
        assert not result.answered and str(MAX_QUESTION_CHARS) in result.reason
        assert await api_requests(session, prometheus) == before


async def test_missing_required_slot_asks_for_it(model: TextModel, prometheus: Process) -> None:
    async with aiohttp.ClientSession() as session:
        client = PrometheusClient(session, prometheus.url)
        before = len(sent_queries(prometheus))
        result = await ask("what is the CPU usage of this host", model, client)
        assert not result.answered and result.missing == ["host"]
        assert "host" in result.reason
        result = await ask("cpu of db-07", model, client)  # not a host Prometheus knows
        assert not result.answered and "db-07" in result.reason
        await asyncio.sleep(0)
        assert len(sent_queries(prometheus)) == before


def test_cli_exit_codes(
    prometheus: Process,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AUGUR_PROMETHEUS_URL", raising=False)
    assert main(["ask"]) == 2
    assert main(["ask", "which targets are down?"]) == 2  # no Prometheus named
    bad = tmp_path / "bad.yaml"
    bad.write_text("prometheus: {url: http://127.0.0.1:1}\nno_such_section: 1\n")
    assert main(["ask", "--config", str(bad), "which targets are down?"]) == 2
    assert "no_such_section" in capsys.readouterr().err
    missing = tmp_path / "missing.json"
    assert main(["ask", "--eval", str(bad), "--world", str(missing)]) == 2
    url = ["--prometheus.url", prometheus.url]
    capsys.readouterr()
    assert main(["ask", *url, "--json", ANSWERED]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answered"] and out["answer"]["promql"]
    assert out["match"]["intent"] == "request_rate_by_service"
    assert main(["ask", *url, "what's the weather in Paris tomorrow"]) == 1
    assert "cannot answer" in capsys.readouterr().out


async def test_a_burst_of_asks_is_refused_not_queued(model: TextModel, tmp_path: Path) -> None:
    """With every slot taken by an ask Prometheus has not answered, the next gets 429."""
    from aiohttp import web

    from exporter.assistant.ask_web import RETRY_AFTER_SECONDS, AskService, add_routes

    release, reached = asyncio.Event(), asyncio.Event()

    async def stalled(request: web.Request) -> web.Response:  # a Prometheus that hangs, then
        reached.set()  # answers every request with nothing
        await release.wait()
        data: object = [] if "/label/" in request.path else {"resultType": "vector", "result": []}
        return web.json_response({"status": "success", "data": data})

    prom_app = web.Application()
    prom_app.router.add_route("*", "/{tail:.*}", stalled)
    prom_runner = web.AppRunner(prom_app)
    await prom_runner.setup()
    await web.TCPSite(prom_runner, "127.0.0.1", 0).start()
    async with aiohttp.ClientSession() as session:
        client = PrometheusClient(session, f"http://127.0.0.1:{prom_runner.addresses[0][1]}")
        augur_app = web.Application()
        add_routes(
            augur_app,
            AskService(lambda: client, lambda: model, default_model_dir, max_concurrent=1),
        )
        runner = web.AppRunner(augur_app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            body = {"question": ANSWERED}
            first = asyncio.create_task(session.post(url + "/api/v1/ask", json=body))
            await reached.wait()
            async with session.post(url + "/api/v1/ask", json=body) as resp:
                assert resp.status == 429
                assert resp.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
            async with session.get(url + "/ask", params={"q": ANSWERED}) as resp:
                assert resp.status == 429
            release.set()
            assert (await first).status == 200
            async with session.post(url + "/api/v1/ask", json=body) as resp:
                assert resp.status == 200  # the slot is free again
        finally:
            await runner.cleanup()
            await prom_runner.cleanup()


def test_eval_reports_phrasing_overlap_and_false_accepts(model: TextModel) -> None:
    """A question equal to a phrasing (up to case, spaces and punctuation) is counted apart, and
    an out-of-catalogue question given an intent is a false accept."""
    from exporter.assistant.evaluate import evaluate, report
    from exporter.assistant.phrasings import PHRASINGS

    phrasing = PHRASINGS["request_rate_by_service"]["en"][0]
    rows: list[dict[str, str | None]] = [
        {"q": phrasing.upper() + " ?!", "intent": "request_rate_by_service", "split": "test"},
        {"q": "which scrape targets are down right now", "intent": "nope", "split": "test"},
        {"q": "which scrape targets are down right now", "intent": None, "split": "test"},
        {"q": "what is the weather in Paris tomorrow", "intent": None, "split": "test"},
    ]
    test = evaluate(rows, model, KNOWN)["test"]
    assert (test.total, test.seen, test.seen_intents) == (4, 1, 1)
    assert (test.out_of_scope, test.false_accepts) == (2, 1)
    line = next(x for x in report({"test": test}).splitlines() if x.startswith("test "))
    assert line.split() == "test 4 50.0% 100.0% 3 33.3% 100.0% 1/2 = 50.0%".split()
