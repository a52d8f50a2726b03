"""The Prometheus API client against the real Prometheus binary with backfilled history.

Failures a real Prometheus will not produce on demand (503 then success, a hang, an HTML page
from a proxy, checking credentials) come from a small real aiohttp server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from exporter import __version__
from exporter.config.load import load
from exporter.config.prometheus import PrometheusConfig
from exporter.demo.procs import Process, Sample
from exporter.prometheus.client import PrometheusClient, PrometheusError, make_session

STEP = 10
HISTORY = 3 * 3600
OFFSETS = {"a": 0.5, "b": 1000.25}
VECTOR = {"status": "success", "data": {"resultType": "vector", "result": []}}
MATRIX = {"resultType": "matrix", "result": []}
ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


@dataclass(frozen=True)
class History:
    """Two series sampled every STEP seconds from `start` to `end`, plus one sparse metric."""

    start: int
    end: int

    def value(self, instance: str, t: int) -> float:
        return (t - self.start) / STEP + OFFSETS[instance]

    def samples(self) -> list[Sample]:
        out = [
            Sample("augur_test_value", {"instance": i}, t, self.value(i, t))
            for i in OFFSETS
            for t in range(self.start, self.end + 1, STEP)
        ]
        out += [Sample("augur_test_other", {"job": "batch"}, self.end, 1.0)]
        return out


@dataclass
class Requests:
    """Every request a session sent, seen through aiohttp's tracing hooks."""

    paths: list[str] = field(default_factory=list)

    def trace_config(self) -> aiohttp.TraceConfig:
        trace = aiohttp.TraceConfig()

        async def started(
            session: aiohttp.ClientSession, ctx: Any, params: aiohttp.TraceRequestStartParams
        ) -> None:
            self.paths.append(params.url.path)

        trace.on_request_start.append(started)
        return trace


class CountingExecutor(ThreadPoolExecutor):
    """A thread pool that counts the work handed to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def points(series: dict[str, Any]) -> list[tuple[float, float]]:
    return [(float(t), float(v)) for t, v in series["values"]]


def by_instance(matrix: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    return {s["metric"]["instance"]: points(s) for s in matrix}


@pytest.fixture
def history() -> History:
    # Ends two minutes before now so every sample is in a block Prometheus has loaded.
    end = int(time.time()) // STEP * STEP - 120
    return History(start=end - HISTORY, end=end)


@pytest.fixture
def prom(prometheus_factory: Callable[..., Process], history: History) -> Process:
    return prometheus_factory(samples=history.samples())


@pytest.fixture
def requests() -> Requests:
    return Requests()


@pytest.fixture
async def sessions(requests: Requests) -> AsyncIterator[Callable[..., aiohttp.ClientSession]]:
    """Open sessions with `make_session(PrometheusConfig(url=..., **settings))`, traced."""
    opened: list[aiohttp.ClientSession] = []

    def open_session(
        url: str, environ: dict[str, str] | None = None, **settings: Any
    ) -> aiohttp.ClientSession:
        cfg = PrometheusConfig(url=url, **settings)
        if environ is not None:
            # Secrets in the environment are read by config.load, not by the model.
            cfg = load(environ={"AUGUR_PROMETHEUS_URL": url, **environ}).prometheus
        session = make_session(cfg, trace_configs=[requests.trace_config()])
        opened.append(session)
        return session

    yield open_session
    for session in opened:
        await session.close()


@pytest.fixture
def executor() -> Iterator[CountingExecutor]:
    pool = CountingExecutor()
    yield pool
    pool.shutdown()


@pytest.mark.integration
async def test_query_returns_backfilled_values(
    prom: Process, history: History, sessions: Callable[..., aiohttp.ClientSession]
) -> None:
    client = PrometheusClient(sessions(prom.url), prom.url)
    for t in (history.start, history.start + 37 * STEP, history.end):
        answer = await client.query("augur_test_value", t)
        assert answer.result_type == "vector"
        got = {
            s["metric"]["instance"]: (s["value"][0], float(s["value"][1])) for s in answer.result
        }
        assert got == {i: (t, history.value(i, t)) for i in OFFSETS}
    # Between samples an instant query sees the latest sample before it.
    answer = await client.query('augur_test_value{instance="b"}', history.start + STEP + 3)
    assert float(answer.result[0]["value"][1]) == history.value("b", history.start + STEP)
    answer = await client.query("2 * 21")
    assert answer.result_type == "scalar"
    assert float(answer.result[1]) == 42


@pytest.mark.integration
async def test_long_promql_is_posted(
    prom: Process, history: History, sessions: Callable[..., aiohttp.ClientSession]
) -> None:
    # ~100 KB of PromQL: far past what proxies accept in a URL.
    alternatives = "|".join(["a", *(f"nope{n}" for n in range(12_000))])
    client = PrometheusClient(sessions(prom.url), prom.url)
    answer = await client.query(f'augur_test_value{{instance=~"{alternatives}"}}', history.end)
    assert [s["metric"]["instance"] for s in answer.result] == ["a"]


@pytest.mark.integration
@pytest.mark.parametrize("step", [STEP, 6 * STEP])
async def test_query_range_returns_backfilled_values(
    prom: Process, history: History, sessions: Callable[..., aiohttp.ClientSession], step: int
) -> None:
    client = PrometheusClient(sessions(prom.url), prom.url)
    lo, hi = history.start + 600, history.start + 2400
    matrix = await client.query_range("augur_test_value", lo, hi, step)
    assert by_instance(matrix) == {
        i: [(t, history.value(i, t)) for t in range(lo, hi + 1, step)] for i in OFFSETS
    }


@pytest.mark.integration
@pytest.mark.parametrize(
    ("expr", "start_shift", "end_shift", "step", "max_points"),
    [
        ("augur_test_value", 0, 0, STEP, 100),
        # Off the sample grid at both ends; the last chunk is short.
        ("augur_test_value", 5, -3, STEP, 100),
        # A step off the sample grid, many small chunks.
        ("augur_test_value", 0, 0, 7, 33),
        # Series "a" passes the filter only late: it first shows up in a later chunk.
        ("augur_test_value > 900", 0, 0, STEP, 100),
    ],
)
async def test_query_range_split_equals_unsplit(
    prom: Process,
    history: History,
    sessions: Callable[..., aiohttp.ClientSession],
    requests: Requests,
    expr: str,
    start_shift: int,
    end_shift: int,
    step: int,
    max_points: int,
) -> None:
    session = sessions(prom.url)
    start, end = history.start + start_shift, history.end + end_shift
    unsplit = await PrometheusClient(session, prom.url).query_range(expr, start, end, step)
    assert requests.paths == ["/api/v1/query_range"]
    requests.paths.clear()

    client = PrometheusClient(session, prom.url, max_points_per_request=max_points)
    split = await client.query_range(expr, start, end, step)

    total_points = (end - start) // step + 1
    assert total_points > 1000
    assert requests.paths == ["/api/v1/query_range"] * math.ceil(total_points / max_points)
    assert [(s["metric"], points(s)) for s in split] == [(s["metric"], points(s)) for s in unsplit]
    for series in split:
        stamps = [t for t, _ in series["values"]]
        assert stamps == sorted(set(stamps))
        assert all((t - start) % step == 0 for t in stamps)


@pytest.mark.integration
async def test_query_range_past_prometheus_limit_is_split(
    prom: Process,
    history: History,
    sessions: Callable[..., aiohttp.ClientSession],
    requests: Requests,
    executor: CountingExecutor,
) -> None:
    session = sessions(prom.url)
    start, end = history.start - 600, history.end  # 11,401 points at a 1 s step
    unbounded = PrometheusClient(session, prom.url, max_points_per_request=10**6)
    with pytest.raises(PrometheusError, match="exceeded maximum resolution") as info:
        await unbounded.query_range("augur_test_value", start, end, 1)
    assert (info.value.status, info.value.error_type) == (400, "bad_data")

    client = PrometheusClient(session, prom.url, executor=executor)
    await client.query("augur_test_value", history.end)
    assert executor.submitted == 0  # small answers are decoded on the loop

    requests.paths.clear()
    matrix = await client.query_range("augur_test_value", start, end, 1)
    assert requests.paths == ["/api/v1/query_range"] * 2
    # The first chunk's answer is ~450 KB, so it was decoded off the loop; the 400-point tail not.
    assert executor.submitted == 1
    for instance, values in by_instance(matrix).items():
        assert [t for t, _ in values] == list(range(history.start, end + 1))
        assert values[-1] == (end, history.value(instance, end))


@pytest.mark.integration
async def test_series_labels_and_metric_names(
    prom: Process, history: History, sessions: Callable[..., aiohttp.ClientSession]
) -> None:
    client = PrometheusClient(sessions(prom.url), prom.url)
    found = await client.series(["augur_test_value", '{job="batch"}'])
    assert sorted(found, key=lambda s: sorted(s.items())) == [
        {"__name__": "augur_test_other", "job": "batch"},
        {"__name__": "augur_test_value", "instance": "a"},
        {"__name__": "augur_test_value", "instance": "b"},
    ]
    before = await client.series(["augur_test_value"], history.start - 7200, history.start - 3600)
    assert before == []
    assert await client.label_names() == ["__name__", "instance", "job"]
    assert await client.label_values("instance") == ["a", "b"]
    assert await client.label_values("no_such_label") == []
    assert await client.metric_names() == ["augur_test_other", "augur_test_value"]


@pytest.mark.integration
@pytest.mark.parametrize("max_points", [11_000, 100])
async def test_bad_query_fails_at_once(
    prometheus_factory: Callable[..., Process],
    history: History,
    sessions: Callable[..., aiohttp.ClientSession],
    requests: Requests,
    max_points: int,
) -> None:
    prom = prometheus_factory()
    retried: list[str] = []
    client = PrometheusClient(
        sessions(prom.url), prom.url, max_points_per_request=max_points, on_retry=retried.append
    )
    expr = "rate(augur_test_value[5m]"
    with pytest.raises(PrometheusError) as info:
        await client.query(expr)
    error = info.value
    assert (error.status, error.error_type, error.retryable) == (400, "bad_data", False)
    assert str(error) == (
        "Prometheus /api/v1/query failed (HTTP 400): bad_data: "
        'invalid parameter "query": 1:26: parse error: unclosed left parenthesis'
    )
    assert requests.paths == ["/api/v1/query"]

    requests.paths.clear()
    with pytest.raises(PrometheusError) as info:
        await client.query_range(expr, history.start, history.end, STEP)
    # query_range words the same error without naming the parameter.
    assert str(info.value) == (
        "Prometheus /api/v1/query_range failed (HTTP 400): bad_data: "
        "1:26: parse error: unclosed left parenthesis"
    )
    assert retried == []
    # Split or not, nothing was tried twice (chunks may have been cut short by the failure).
    assert 1 <= len(requests.paths) <= math.ceil((HISTORY / STEP + 1) / max_points)


@pytest.mark.integration
async def test_execution_error_is_not_retried(
    prom: Process,
    history: History,
    sessions: Callable[..., aiohttp.ClientSession],
    requests: Requests,
) -> None:
    client = PrometheusClient(sessions(prom.url), prom.url)
    # Both series collapse into one label set: valid PromQL that fails while evaluating.
    expr = 'label_replace(augur_test_value, "instance", "x", "instance", ".*")'
    with pytest.raises(PrometheusError, match="same labelset") as info:
        await client.query(expr, history.end)
    assert (info.value.status, info.value.error_type) == (422, "execution")
    assert requests.paths == ["/api/v1/query"]


@pytest.mark.integration
async def test_stopped_prometheus_is_retried_then_restarted_works(
    prom: Process,
    history: History,
    sessions: Callable[..., aiohttp.ClientSession],
    requests: Requests,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="augur.prometheus")
    retried: list[str] = []
    client = PrometheusClient(
        sessions(prom.url), prom.url, retries=2, backoff_base=0.01, on_retry=retried.append
    )
    assert (await client.query("augur_test_value", history.end)).result

    await asyncio.to_thread(prom.stop)
    requests.paths.clear()
    with pytest.raises(PrometheusError) as info:
        await client.query("augur_test_value", history.end)
    assert (info.value.status, info.value.error_type, info.value.retryable) == (
        None,
        "connection",
        True,
    )
    assert prom.url in str(info.value)
    assert requests.paths == ["/api/v1/query"] * 3
    assert retried == ["/api/v1/query"] * 2
    logged = [r for r in caplog.records if r.getMessage() == "prometheus_retry"]
    assert [r.__dict__["attempt"] for r in logged] == [1, 2]
    # At debug: the caller logs the outcome once, not a line per attempt (issue 12's spam).
    assert all(r.levelno == logging.DEBUG for r in logged)
    assert all(r.__dict__["url"] == prom.url + "/api/v1/query" for r in logged)

    await asyncio.to_thread(prom.restart, "/-/ready")
    answer = await client.query("augur_test_value", history.end)
    assert {s["metric"]["instance"]: float(s["value"][1]) for s in answer.result} == {
        i: history.value(i, history.end) for i in OFFSETS
    }


# From here on a small aiohttp server stands in for Prometheus: a real one cannot be made to
# fail, hang or ask for credentials on demand.


def fake_prometheus(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/api/v1/{endpoint:.*}", handler)
    return app


def unavailable() -> web.Response:
    body = {"status": "error", "errorType": "unavailable", "error": "TSDB not ready"}
    return web.json_response(body, status=503)


async def test_transient_503_is_retried_until_success(
    aiohttp_server: ServerFactory,
    sessions: Callable[..., aiohttp.ClientSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="augur.prometheus")
    seen: list[tuple[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        form = await request.post()
        seen.append((request.method, str(form["query"])))
        return unavailable() if len(seen) <= 2 else web.json_response(VECTOR)

    server = await aiohttp_server(fake_prometheus(handler))
    url = str(server.make_url(""))
    retried: list[str] = []
    client = PrometheusClient(sessions(url), url, backoff_base=0.01, on_retry=retried.append)
    assert (await client.query("up")).result_type == "vector"
    assert seen == [("POST", "up")] * 3
    assert retried == ["/api/v1/query"] * 2
    logged = [r for r in caplog.records if r.getMessage() == "prometheus_retry"]
    assert "unavailable: TSDB not ready" in logged[0].__dict__["error"]


@pytest.mark.parametrize(
    ("status", "content_type", "body", "error_type", "text"),
    [
        (429, "application/json", b'{"status":"error","errorType":"x","error":"slow down"}',
         "x", "slow down"),
        (500, "application/json", b'{"status":"error","errorType":"internal","error":"boom"}',
         "internal", "internal: boom"),
        (502, "text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>",
         "http", "502 Bad Gateway"),
    ],
)  # fmt: skip
async def test_retries_run_out(
    aiohttp_server: ServerFactory,
    sessions: Callable[..., aiohttp.ClientSession],
    requests: Requests,
    status: int,
    content_type: str,
    body: bytes,
    error_type: str,
    text: str,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type=content_type)

    server = await aiohttp_server(fake_prometheus(handler))
    url = str(server.make_url(""))
    client = PrometheusClient(sessions(url), url, retries=2, backoff_base=0.01)
    with pytest.raises(PrometheusError) as info:
        await client.label_values("job")
    assert (info.value.status, info.value.error_type, info.value.retryable) == (
        status,
        error_type,
        True,
    )
    assert f"(HTTP {status})" in str(info.value)
    assert text in str(info.value)
    assert requests.paths == ["/api/v1/label/job/values"] * 3


async def test_html_page_is_a_clear_error_not_retried(
    aiohttp_server: ServerFactory,
    sessions: Callable[..., aiohttp.ClientSession],
    requests: Requests,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="<html><title>Sign in</title></html>", content_type="text/html")

    server = await aiohttp_server(fake_prometheus(handler))
    url = str(server.make_url(""))
    with pytest.raises(PrometheusError) as info:
        await PrometheusClient(sessions(url), url).query("up")
    assert (info.value.error_type, info.value.retryable) == ("bad_response", False)
    assert "text/html" in str(info.value)
    assert "Sign in" in str(info.value)
    assert "prometheus.url" in str(info.value)
    assert requests.paths == ["/api/v1/query"]


async def test_hang_past_timeout_is_retried_then_raised(
    aiohttp_server: ServerFactory,
    sessions: Callable[..., aiohttp.ClientSession],
    requests: Requests,
) -> None:
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response(VECTOR)

    server = await aiohttp_server(fake_prometheus(handler))
    url = str(server.make_url(""))
    client = PrometheusClient(sessions(url, timeout=0.3), url, retries=1, backoff_base=0.01)
    try:
        with pytest.raises(PrometheusError) as info:
            await client.query("up")
    finally:
        release.set()
    assert (info.value.status, info.value.error_type, info.value.retryable) == (
        None,
        "timeout",
        True,
    )
    assert "prometheus.timeout" in str(info.value)
    assert requests.paths == ["/api/v1/query"] * 2


@pytest.mark.parametrize("how", ["bearer_file", "bearer_env", "basic_auth"])
async def test_credentials_are_sent_and_never_logged(
    aiohttp_server: ServerFactory,
    sessions: Callable[..., aiohttp.ClientSession],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    how: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="augur.prometheus")
    secret = "s3cret-Value"
    secret_file = tmp_path / "secret"
    secret_file.write_text(secret + "\n", encoding="utf-8")
    settings: dict[str, Any] = {}
    expected = f"Bearer {secret}"
    if how == "bearer_file":
        settings["bearer_token_file"] = secret_file
    elif how == "bearer_env":
        settings["environ"] = {"AUGUR_PROMETHEUS_BEARER_TOKEN": secret}
    else:
        settings["basic_auth"] = {"username": "augur", "password_file": secret_file}
        expected = "Basic " + base64.b64encode(f"augur:{secret}".encode()).decode()
    headers: list[tuple[str | None, str | None]] = []

    async def handler(request: web.Request) -> web.Response:
        headers.append((request.headers.get("Authorization"), request.headers.get("User-Agent")))
        return unavailable() if len(headers) == 1 else web.json_response(VECTOR)

    server = await aiohttp_server(fake_prometheus(handler))
    url = str(server.make_url(""))
    client = PrometheusClient(sessions(url, **settings), url, backoff_base=0.01)
    await client.query("up")
    assert headers == [(expected, f"augur/{__version__}")] * 2
    assert any(r.getMessage() == "prometheus_retry" for r in caplog.records)
    for record in caplog.records:
        assert secret not in repr(record.__dict__)


async def test_concurrency_is_bounded_across_calls(
    aiohttp_server: ServerFactory, sessions: Callable[..., aiohttp.ClientSession]
) -> None:
    in_flight, peak = 0, 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        if request.path.endswith("query_range"):
            return web.json_response({"status": "success", "data": MATRIX})
        return web.json_response(VECTOR)

    server = await aiohttp_server(fake_prometheus(handler))
    url = str(server.make_url(""))
    client = PrometheusClient(sessions(url), url, max_concurrency=2, max_points_per_request=10)
    calls = [client.query("up") for _ in range(6)]
    await asyncio.gather(*calls, client.query_range("up", 0, 999, 1))  # 100 chunks
    assert peak == 2


async def test_warnings_are_logged_once_at_debug(
    aiohttp_server: ServerFactory,
    sessions: Callable[..., aiohttp.ClientSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="augur.prometheus")

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({**VECTOR, "warnings": ["partial response: store down"]})

    server = await aiohttp_server(fake_prometheus(handler))
    url = str(server.make_url(""))
    client = PrometheusClient(sessions(url), url)
    for _ in range(3):
        assert (await client.query("up")).result == []
    logged = [r for r in caplog.records if r.getMessage() == "prometheus_warnings"]
    assert len(logged) == 1
    assert logged[0].levelno == logging.DEBUG
    assert logged[0].__dict__["warnings"] == ["partial response: store down"]


async def test_session_asks_for_gzip_only_off_loopback() -> None:
    async with make_session(PrometheusConfig(url="http://127.0.0.1:9090")) as local:
        assert local.headers["Accept-Encoding"] == "identity"
    async with make_session(PrometheusConfig(url="http://prometheus:9090")) as remote:
        assert remote.headers["Accept-Encoding"] == "gzip"


@pytest.mark.integration
async def test_eval_timeout_stops_the_query_in_prometheus(
    prom: Process, history: History, sessions: Callable[..., aiohttp.ClientSession]
) -> None:
    # A rule expression posted to the webhook is run with an evaluation timeout Prometheus
    # itself enforces (its `timeout` parameter), and series past the bound are not decoded.
    client = PrometheusClient(sessions(prom.url), prom.url, retries=0)
    heavy = "count_over_time(augur_test_value[1d:1s])"  # 86,400 sub-steps per point
    lo, hi = history.end - 3600, history.end
    with pytest.raises(PrometheusError, match=r"timed out|timeout") as info:
        await client.range_matrix(heavy, lo, hi, 60, eval_timeout=0.001)
    assert info.value.status == 503
    kept = await client.range_matrix("augur_test_value", lo, hi, 60, max_series=1, eval_timeout=10)
    assert len(kept) == 1 and kept.dropped == len(OFFSETS) - 1
