"""Answers a real Prometheus cannot be made to give, each through the real poller and client.

A small aiohttp server on 127.0.0.1 stands in for Prometheus here, and only here: 5xx, a
proxy's page, JSON of the wrong shape, a truncated or endless body, a scalar where a matrix
belongs, NaN and infinities, duplicate series, shuffled samples, answers past the size cap.
Each is a counted failure with a clear message, or is scored correctly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from exporter.config.prometheus import PrometheusConfig
from exporter.config.queries import QueryConfig
from exporter.prometheus.client import PrometheusClient, make_session
from exporter.scoring.board import ScoreBoard
from exporter.scoring.poller import CycleReport, Poller
from exporter.self_metrics import SelfMetrics

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
STEP = 15.0
END = 1_700_000_010.0  # a multiple of STEP: augur asks Prometheus for a step-aligned grid
POINTS = 120
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def series(labels: dict[str, str], values: list[str], shuffle: bool = False) -> dict[str, Any]:
    ts = [END - STEP * (len(values) - 1 - i) for i in range(len(values))]
    pairs = [[t, v] for t, v in zip(ts, values, strict=True)]
    if shuffle:
        np.random.default_rng(1).shuffle(pairs)
    return {"metric": labels, "values": pairs}


def normal(n: int = POINTS, seed: int = 0) -> list[str]:
    return [f"{v:.4f}" for v in 50 + np.random.default_rng(seed).normal(0, 1, n)]


def matrix(*result: dict[str, Any]) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "matrix", "result": list(result)}}


def answer(body: Any, status: int = 200, content_type: str = "application/json") -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/api/v1/query":  # the poller's probe: Prometheus is fine
            return web.json_response(
                {"status": "success", "data": {"resultType": "scalar", "result": [END, "1"]}}
            )
        text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
        return web.Response(text=text, status=status, content_type=content_type)

    return handler


async def truncated(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={"Content-Type": "application/json", "Content-Length": "100000"}
    )
    await resp.prepare(request)
    await resp.write(b'{"status":"success","data":{"resultType":"matrix","result":[')
    assert request.transport is not None
    request.transport.close()  # the connection drops mid-body
    return resp


async def trickle(request: web.Request) -> web.StreamResponse:
    """Headers at once, then a byte a second: only a timeout covering the body ends it."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    for _ in range(600):
        await resp.write(b" ")
        await asyncio.sleep(1)
    return resp


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as pool:
        yield pool


@pytest.fixture
async def poll(
    aiohttp_server: ServerFactory, executor: ThreadPoolExecutor
) -> AsyncIterator[Callable[..., Awaitable[tuple[CycleReport, Poller, CollectorRegistry]]]]:
    """One poller cycle against a fake Prometheus answering with `handler`."""
    sessions = []

    async def run(
        handler: Handler, max_response_bytes: int = 1 << 20, max_series: int = 1000
    ) -> tuple[CycleReport, Poller, CollectorRegistry]:
        app = web.Application()
        app.router.add_route("*", "/api/v1/{endpoint:.*}", handler)
        server = await aiohttp_server(app)
        url = str(server.make_url("")).rstrip("/")
        cfg = PrometheusConfig(url=url, timeout=2, retries=1)
        session = make_session(cfg)
        sessions.append(session)
        client = PrometheusClient(
            session,
            url,
            retries=1,
            backoff_base=0.01,
            max_response_bytes=max_response_bytes,
            executor=executor,
        )
        query = QueryConfig(
            name="q",
            expr='hostile{job="x"}',
            lookback=STEP * (POINTS - 1),
            step=STEP,
            detectors=["zscore", "ensemble"],
            seasonality="none",
            max_series=max_series,
        )
        registry = CollectorRegistry()
        poller = Poller(
            [query],
            client,
            ScoreBoard(),
            SelfMetrics(registry),
            executor,
            interval=60,
            cpu_timeout=60,
            clock=lambda: END,
        )
        return await poller.cycle(), poller, registry

    yield run
    for session in sessions:
        await session.close()


def failures(registry: CollectorRegistry) -> dict[str, float]:
    out = {}
    for metric in registry.collect():
        for s in metric.samples:
            if s.name == "augur_upstream_failures_total" and s.value:
                out[s.labels["reason"]] = s.value
    return out


FAILING: list[tuple[str, Handler, str, str, bool]] = [
    # name, handler, reason counted, in the message, Prometheus still counted as up
    (
        "503 JSON",
        answer({"status": "error", "errorType": "unavailable", "error": "TSDB not ready"}, 503),
        "http",
        "TSDB not ready",
        False,
    ),
    ("502 from a proxy", answer("Bad Gateway", 502, "text/plain"), "http", "Bad Gateway", False),
    (
        "400 bad_data",
        answer(
            {"status": "error", "errorType": "bad_data", "error": 'parse error: unexpected "}"'},
            400,
        ),
        "api_error",
        "bad_data: parse error",
        True,
    ),
    (
        "login page",
        answer("<html>Sign in</html>", 200, "text/html"),
        "bad_response",
        "not at a login page",
        False,
    ),
    ("not JSON", answer("{garbage", 200), "bad_response", "expected a Prometheus JSON", False),
    (
        "JSON 100,000 deep",
        answer("[" * 100_000, 200),
        "bad_response",
        "expected a Prometheus",
        False,
    ),
    (
        "wrong shape",
        answer({"status": "success", "data": {"resultType": "matrix", "result": {"a": 1}}}),
        "bad_response",
        "result is a dict",
        False,
    ),
    (
        "scalar",
        answer({"status": "success", "data": {"resultType": "scalar", "result": [END, "1"]}}),
        "bad_response",
        "resultType 'scalar' where a range query returns a matrix",
        False,
    ),
    (
        "string",
        answer({"status": "success", "data": {"resultType": "string", "result": [END, "x"]}}),
        "bad_response",
        "resultType 'string'",
        False,
    ),
    (
        "garbage samples",
        answer(matrix({"metric": {}, "values": [[END, "x", 3]]})),
        "bad_response",
        "sample pairs",
        False,
    ),
    (
        "label value a number",
        answer(matrix({"metric": {"a": 1}, "values": [[END, "1"]]})),
        "bad_response",
        "not a string",
        False,
    ),
    ("truncated body", truncated, "connection", "cannot talk to", False),
    ("body past the timeout", trickle, "timeout", "within 2.0 s", False),
    (
        "past the size cap",
        answer(matrix(*(series({"i": str(i)}, normal()) for i in range(500)))),
        "too_large",
        "bytes, over prometheus.max_response_bytes (1048576)",
        True,
    ),
]


@pytest.mark.parametrize(
    ("handler", "reason", "message", "up"), [c[1:] for c in FAILING], ids=[c[0] for c in FAILING]
)
async def test_bad_answer_is_a_counted_failure_with_a_clear_message(
    poll: Callable[..., Awaitable[tuple[CycleReport, Poller, CollectorRegistry]]],
    caplog: pytest.LogCaptureFixture,
    handler: Handler,
    reason: str,
    message: str,
    up: bool,
) -> None:
    caplog.set_level(logging.DEBUG, logger="augur")
    report, poller, registry = await poll(handler)
    assert message in report.errors["q"], report.errors
    assert failures(registry) == {reason: 1}
    assert registry.get_sample_value("augur_poll_failures_total", {"query": "q"}) == 1
    assert poller.health.up is up
    # No traceback: every one of these is an expected failure, logged as such.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    print(f"{reason}: {report.errors['q']}")


HOSTILE = [0.0, 1e308, -1e308, 5e-324, 50.0]


@pytest.mark.parametrize(
    ("name", "result", "scored"),
    [
        (
            "NaN, Inf and huge values",
            [
                series({"s": "nan"}, ["NaN"] * POINTS),
                series({"s": "inf"}, ["+Inf", "-Inf"] * (POINTS // 2)),
                series({"s": "huge"}, [repr(HOSTILE[i % 5]) for i in range(POINTS)]),
                series({"s": "spiky"}, [*normal()[:-1], "1e308"]),
                series({"s": "constant"}, ["7"] * POINTS),
                series({"s": "tail nan"}, [*normal()[:-1], "NaN"]),
            ],
            None,
        ),
        ("duplicate series", [series({"s": "a"}, normal()), series({"s": "a"}, normal(seed=2))], 1),
        ("shuffled samples", [series({"s": "a"}, normal(), shuffle=True)], 1),
    ],
)
async def test_hostile_series_are_scored_finite_or_not_at_all(
    poll: Callable[..., Awaitable[tuple[CycleReport, Poller, CollectorRegistry]]],
    name: str,
    result: list[dict[str, Any]],
    scored: int | None,
) -> None:
    report, poller, _ = await poll(answer(matrix(*result)))
    assert not report.errors, report.errors
    assert poller.health.up is True
    rows = list(poller.board.rows())
    for labels, values in rows:
        assert all(math.isfinite(v) for v in values), (labels, values)
    if scored is not None:
        assert report.scored == {"q": scored}
    print(f"{name}: scored {report.scored['q']} series, every exported value finite")


async def test_series_past_max_series_are_not_decoded(
    poll: Callable[..., Awaitable[tuple[CycleReport, Poller, CollectorRegistry]]],
) -> None:
    many = matrix(*(series({"i": f"{i:04d}"}, normal(seed=i)) for i in range(300)))
    report, poller, registry = await poll(answer(many), max_series=10)
    assert report.scored == {"q": 10}
    assert registry.get_sample_value("augur_series_dropped_total", {"query": "q"}) == 290
    assert {dict(labels)["i"] for labels, _ in poller.board.rows()} == {
        f"{i:04d}" for i in range(10)
    }
