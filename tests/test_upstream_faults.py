"""A real Prometheus that dies, comes back and stalls, under the real app on loopback.

`/metrics` keeps serving through all of it, `augur_upstream_up{upstream="prometheus"}` says
what happened, failures are counted, the logs say it once, and scores flow again without a
restart of augur.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from serving import running
from waiting import eventually

from exporter.config.prometheus import PrometheusConfig
from exporter.config.queries import QueryConfig
from exporter.config.root import Config
from exporter.demo.procs import Process, Sample, free_port
from exporter.prometheus.client import PrometheusClient, PrometheusError, make_session
from exporter.prometheus.health import UpstreamHealth
from exporter.scoring.board import ScoreBoard
from exporter.scoring.poller import Poller
from exporter.self_metrics import SelfMetrics

pytestmark = pytest.mark.integration

STEP = 15.0


def history(now: float) -> list[Sample]:
    rng = np.random.default_rng(5)
    ts = now - 5 - STEP * np.arange(240)[::-1]
    return [
        Sample("load", {"host": host}, float(t), float(50 + rng.normal(0, 1)))
        for host in ("a", "b")
        for t in ts
    ]


def config(prom: Process, state: Path) -> Config:
    return Config.model_validate(
        {
            "prometheus": {"url": prom.url, "timeout": "2s", "retries": 1},
            "poll": {"interval": "1s"},
            "web": {"listen_address": f"127.0.0.1:{free_port()}"},
            "state": {"path": str(state)},
            "queries": [
                {
                    "name": "load",
                    "expr": "load",
                    "lookback": "1h",
                    "step": "15s",
                    "detectors": ["zscore"],
                    "seasonality": "none",
                }
            ],
        }
    )


async def scrape(url: str) -> dict[str, float]:
    """Every sample of a real scrape of /metrics, keyed `name{label="v",...}`."""
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        text = await resp.text()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


UP = 'augur_upstream_up{upstream="prometheus"}'
CONNECTION = 'augur_upstream_failures_total{reason="connection",upstream="prometheus"}'
TIMEOUT = 'augur_upstream_failures_total{reason="timeout",upstream="prometheus"}'
FAILED = 'augur_poll_failures_total{query="load"}'


def scores(metrics: dict[str, float]) -> int:
    return sum(1 for k in metrics if k.startswith("augur_anomaly_score{"))


async def test_killed_prometheus_is_reported_and_recovered_without_restart(
    prometheus_factory: Callable[..., Process], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="augur")
    prom = prometheus_factory(samples=history(time.time()))
    cfg = config(prom, tmp_path / "augur.db")
    url = f"http://{cfg.web.listen_address}/metrics"
    async with running(cfg):
        up = await eventually(lambda: _when(url, lambda m: m[UP] == 1 and scores(m) == 2), 60)
        assert up[CONNECTION] == 0 and up[FAILED] == 0

        await asyncio.to_thread(prom.kill)  # SIGKILL, whatever the cycle is doing
        down = await eventually(lambda: _when(url, lambda m: m[UP] == 0 and m[CONNECTION] >= 3), 60)
        assert down[FAILED] >= 1
        # Scores of a query that cannot be polled expire (poll.expire_after cycles), not linger.
        await eventually(lambda: _when(url, lambda m: scores(m) == 0), 60)

        await asyncio.to_thread(prom.restart, "/-/ready")  # same port, same data
        back = await eventually(lambda: _when(url, lambda m: m[UP] == 1 and scores(m) == 2), 60)
        assert back[CONNECTION] >= down[CONNECTION]

    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("augur")]
    warnings = [m for level, m in lines if level >= logging.WARNING]
    # One warning for the whole outage, whatever the number of probes and cycles it lasted.
    assert warnings.count("prometheus_down") == 1, warnings
    assert "poll_failed" not in warnings and "prometheus_retry" not in warnings, warnings
    assert [m for level, m in lines if m == "prometheus_recovered"] == ["prometheus_recovered"]
    recovered = next(r for r in caplog.records if r.getMessage() == "prometheus_recovered")
    print(
        f"outage: {down[CONNECTION]:.0f}+ connection failures, "
        f"recovered after {recovered.__dict__['down_seconds']} s, {len(warnings)} warning line(s)"
    )


async def _when(url: str, ok: Callable[[dict[str, float]], bool]) -> dict[str, float]:
    """The scrape if `ok` holds for it, else nothing (falsy, so `eventually` scrapes again)."""
    metrics = await scrape(url)
    return metrics if ok(metrics) else {}


async def test_stalled_prometheus_times_out_and_recovers(
    prometheus_factory: Callable[..., Process],
) -> None:
    """A Prometheus stopped with SIGSTOP accepts connections and never answers: the timeout
    (prometheus.timeout, covering the whole call) ends each call; SIGCONT brings it back."""
    prom = prometheus_factory(samples=history(time.time()))
    cfg = PrometheusConfig(url=prom.url, timeout=1, retries=0)
    query = QueryConfig(name="load", expr="load", lookback=3600, step=STEP, detectors=["zscore"])
    registry = CollectorRegistry()
    metrics = SelfMetrics(registry)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"upstream": "prometheus", **labels})

    with ThreadPoolExecutor(2) as executor:
        async with make_session(cfg) as session:
            client = PrometheusClient.from_config(cfg, session, executor=executor)
            poller = Poller(
                [query], client, ScoreBoard(), metrics, executor, interval=1, cpu_timeout=30
            )
            assert (await poller.cycle()).scored == {"load": 2}
            assert poller.health.up is True
            os.kill(prom.proc.pid, signal.SIGSTOP)
            try:
                report = await poller.cycle()
                assert "timeout" in report.errors["load"], report
                assert poller.health.up is False
                assert value("augur_upstream_up") == 0
                assert value("augur_upstream_failures_total", reason="timeout") == 1
            finally:
                os.kill(prom.proc.pid, signal.SIGCONT)
            assert await eventually(poller._probe, 30)
            assert (await poller.cycle()).scored == {"load": 2}
            assert value("augur_upstream_up") == 1


def test_backoff_doubles_to_the_interval_and_logs_once_per_streak(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="augur.upstream")
    registry = CollectorRegistry()
    health = UpstreamHealth("prometheus", SelfMetrics(registry), max_delay=10.0)
    assert registry.get_sample_value("augur_upstream_up", {"upstream": "prometheus"}) == 0
    down = PrometheusError("refused", error_type="connection", retryable=True)
    delays = []
    for _ in range(6):
        health.failed(down)
        assert health.settle() is False
        delays.append(health.retry_delay())
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    # A query Prometheus refuses (400 bad_data) is an answer: Prometheus is back.
    health.failed(PrometheusError("parse error", status=400, error_type="bad_data"))
    assert health.settle() is True
    assert registry.get_sample_value("augur_upstream_up", {"upstream": "prometheus"}) == 1
    failures = {
        reason: registry.get_sample_value(
            "augur_upstream_failures_total", {"upstream": "prometheus", "reason": reason}
        )
        for reason in ("connection", "api_error", "timeout")
    }
    assert failures == {"connection": 6, "api_error": 1, "timeout": 0}
    logged = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert logged == [("WARNING", "prometheus_down"), ("INFO", "prometheus_recovered")]
    assert caplog.records[1].__dict__["failed_calls"] == 6
