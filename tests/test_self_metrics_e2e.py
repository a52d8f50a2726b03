"""augur's own series, read at /metrics of the real `augur run`: the process and Python
collectors, the latency histogram of its requests to a real Prometheus (counted against
Prometheus's own count of the requests it served), and `augur_upstream_up` for Alertmanager
from the first scrape, 0 until a real Alertmanager answers and back to 0 when it stops."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from waiting import eventually

from exporter.demo.procs import Process, Sample, free_port

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> Samples:
    """Every sample of the exposition at `url` by (name, sorted labels)."""
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        assert resp.status == 200
        text = await resp.text()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@contextlib.asynccontextmanager
async def augur_run(
    argv: Callable[[Path, int], list[str]], tmp_path: Path, doc: dict[str, Any]
) -> AsyncIterator[str]:
    """The real `augur run` with `doc` as its file, listening; yields its base URL."""
    port = free_port()
    path = tmp_path / "augur.yml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    log = (tmp_path / "augur.log").open("ab")
    proc = await asyncio.create_subprocess_exec(
        *argv(path, port), stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"

    async def listening() -> bool:
        assert proc.returncode is None, (tmp_path / "augur.log").read_text()[-3000:]
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with aiohttp.ClientSession() as s, s.get(url + "/-/healthy") as resp:
                return resp.status == 200
        return False

    try:
        await eventually(listening, within=120)
        yield url
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 40)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


def history(end: float) -> list[Sample]:
    return [
        Sample("svc_load", {"series": s}, end - 60.0 * i, 10.0 + i % 7)
        for s in ("a", "b")
        for i in range(200)
    ]


async def test_process_python_and_prometheus_latency_series_of_a_real_augur_run(
    prometheus_factory: Callable[..., Process],
    augur_run_argv: Callable[[Path, int], list[str]],
    tmp_path: Path,
) -> None:
    prom = prometheus_factory(samples=history(time.time() - 30))
    doc = {
        "prometheus": {"url": prom.url},
        # One cycle in the test: the counts are compared while augur is idle.
        "poll": {"interval": "1h"},
        "state": {"path": str(tmp_path / "augur.db")},
        "queries": [
            {"name": "load", "expr": "svc_load", "step": "1m", "lookback": "3h"},
            {"name": "load_rate", "expr": "rate(svc_load[5m])", "step": "1m", "lookback": "3h"},
        ],
    }
    async with augur_run(augur_run_argv, tmp_path, doc) as url:

        async def polled() -> Samples | None:
            got = await scrape(url + "/metrics")
            done = [
                value(got, "augur_last_poll_timestamp_seconds", query=q)
                for q in ("load", "load_rate")
            ]
            return got if all(done) else None

        found = await eventually(polled, within=120)
        assert found is not None
        got = found
        # The process and the interpreter, as every Python exporter exposes them.
        assert (value(got, "process_resident_memory_bytes") or 0) > 10e6
        assert value(got, "process_cpu_seconds_total") is not None
        assert (value(got, "process_open_fds") or 0) > 0
        assert (value(got, "process_start_time_seconds") or 0) > 1.7e9
        info = [labels for (name, labels) in got if name == "python_info"]
        assert info and dict(info[0])["implementation"] == "CPython"
        assert value(got, "python_gc_collections_total", generation="0") is not None

        # Every request augur made to Prometheus, against what Prometheus says it served.
        served = await scrape(prom.url + "/metrics")
        ranges = value(
            served, "prometheus_http_requests_total", code="200", handler="/api/v1/query_range"
        )
        counted = value(
            got, "augur_prometheus_request_duration_seconds_count", endpoint="/api/v1/query_range"
        )
        assert ranges is not None and ranges >= 2  # at least one fill per query
        assert counted == ranges
        total = value(
            got, "augur_prometheus_request_duration_seconds_sum", endpoint="/api/v1/query_range"
        )
        assert total is not None and total > 0
        inf = value(
            got,
            "augur_prometheus_request_duration_seconds_bucket",
            endpoint="/api/v1/query_range",
            le="+Inf",
        )
        assert inf == counted
        # The endpoint label is the retries counter's; no instant query was needed.
        assert (
            value(got, "augur_prometheus_request_duration_seconds_count", endpoint="/api/v1/query")
            == 0
        )
        assert value(got, "augur_upstream_up", upstream="prometheus") == 1
        # No Alertmanager configured: no gauge for it.
        assert value(got, "augur_upstream_up", upstream="alertmanager") is None


async def test_alertmanager_upstream_is_0_from_the_first_scrape_until_it_answers(
    prometheus_factory: Callable[..., Process],
    alertmanager_factory: Callable[..., Process],
    augur_run_argv: Callable[[Path, int], list[str]],
    tmp_path: Path,
) -> None:
    prom = prometheus_factory()
    am_port = free_port()
    doc = {
        "prometheus": {"url": prom.url},
        "poll": {"interval": "5s"},
        "state": {"path": str(tmp_path / "augur.db")},
        "alertmanager": {"urls": [f"http://127.0.0.1:{am_port}"], "timeout": "2s"},
    }
    async with augur_run(augur_run_argv, tmp_path, doc) as url:
        first = await scrape(url + "/metrics")
        assert value(first, "augur_upstream_up", upstream="alertmanager") == 0
        assert (
            value(first, "augur_upstream_last_success_timestamp_seconds", upstream="alertmanager")
            is None
        )

        am = alertmanager_factory(
            {"route": {"receiver": "none"}, "receivers": [{"name": "none"}]}, port=am_port
        )

        async def up() -> Samples | None:
            got = await scrape(url + "/metrics")
            return got if value(got, "augur_upstream_up", upstream="alertmanager") == 1 else None

        answered = await eventually(up, within=60)
        assert answered is not None
        got = answered
        assert (
            value(got, "augur_upstream_last_success_timestamp_seconds", upstream="alertmanager")
            or 0
        ) > 0

        am.stop()  # idle: no alert to post, only the probe can tell

        async def down() -> bool:
            got = await scrape(url + "/metrics")
            return value(got, "augur_upstream_up", upstream="alertmanager") == 0

        await eventually(down, within=90)
