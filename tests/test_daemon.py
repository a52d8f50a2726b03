"""The daemon end to end against a real Prometheus with backfilled history."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import serve
from exporter.config.root import Config
from exporter.demo.procs import Process, Sample, free_port

pytestmark = pytest.mark.integration

STEP = 60.0
SERVICES = ("a", "b", "c", "d", "e", "f")
ANOMALOUS = {"b": "spike", "e": "drop"}  # services whose newest sample is anomalous


def history(now: float, days: float = 2.0) -> list[Sample]:
    """Two days of a daily-seasonal request rate per service, with noise and old incidents.

    The newest sample (a few seconds before `now`) is a spike for service b and a drop for
    service e; an incident a day ago hits every service and must not matter today.
    """
    rng = np.random.default_rng(7)
    end = now - 5
    n = int(days * 86400 / STEP)
    ts = end - STEP * np.arange(n)[::-1]
    samples = []
    for i, svc in enumerate(SERVICES):
        base = 100 + 20 * i
        values = base + 0.3 * base * np.sin(2 * math.pi * ts / 86400) + rng.normal(0, 3, n)
        values[n - 1440 : n - 1430] *= 3  # yesterday's incident
        # Big enough to be anomalous whichever grid column holds it: when the first poll comes
        # more than a step after this sample (a loaded machine), Prometheus's 5-minute look-back
        # repeats it in two columns and EWMA, already half-way there, scored +60 as 0.99.
        if ANOMALOUS.get(svc) == "spike":
            values[-1] += 100
        elif ANOMALOUS.get(svc) == "drop":
            values[-1] -= 100
        samples += [
            Sample("augur_test_requests", {"service": svc, "job": "api"}, float(t), float(v))
            for t, v in zip(ts, values, strict=True)
        ]
    return samples


def scrape_families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def value(
    families: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    for sample_labels, v in families.get(name, []):
        if all(sample_labels.get(k) == want for k, want in labels.items()):
            return v
    raise KeyError(f"{name}{labels} not exported")


def make_config(prom_url: str, port: int, state: Path, **poll: Any) -> Config:
    return Config.model_validate(
        {
            "prometheus": {"url": prom_url, "timeout": "5s", "retries": 1},
            "poll": {"interval": "1s", **poll},
            "state": {"path": str(state)},
            "web": {"listen_address": f"127.0.0.1:{port}"},
            "queries": [
                {
                    "name": "requests",
                    "expr": "augur_test_requests",
                    "lookback": "2h",
                    "step": "1m",
                    "detectors": ["zscore", "ewma"],
                },
                {
                    "name": "requests_capped",
                    "expr": "augur_test_requests",
                    "lookback": "2h",
                    "step": "1m",
                    "detectors": ["zscore"],
                    "max_series": 4,
                },
                {"name": "broken", "expr": "rate(augur_test_requests[5m]"},
            ],
        }
    )


class Augur:
    """augur's `serve` running in the test's event loop, with a scrape helper."""

    def __init__(self, port: int, session: aiohttp.ClientSession) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.session = session

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.url + path) as resp:
            return resp.status, await resp.text()

    async def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        status, text = await self.get("/metrics")
        assert status == 200
        return scrape_families(text)

    async def wait_for(
        self,
        check: Callable[[dict[str, list[tuple[dict[str, str], float]]]], bool],
        within: float = 30,
    ) -> dict[str, list[tuple[dict[str, str], float]]]:
        deadline = time.monotonic() + within
        while True:
            families = await self.metrics()
            if check(families):
                return families
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met in {within} s")
            await asyncio.sleep(0.2)


@pytest.fixture
async def running(
    prometheus_factory: Callable[..., Process], tmp_path: Path
) -> AsyncIterator[tuple[Augur, Process]]:
    prom = prometheus_factory(samples=history(time.time()))
    port = free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(make_config(prom.url, port, tmp_path / "augur.db"), stop))
    async with aiohttp.ClientSession() as session:
        augur = Augur(port, session)
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _ = await augur.get("/-/ready")
                if status == 200:
                    break
            except aiohttp.ClientConnectionError:
                pass
            assert not task.done(), task
            assert time.monotonic() < deadline, "augur did not become ready"
            await asyncio.sleep(0.1)
        yield augur, prom
    stop.set()
    await asyncio.wait_for(task, 25)


async def test_scores_only_the_anomalous_series(running: tuple[Augur, Process]) -> None:
    augur, _ = running
    families = await augur.wait_for(lambda f: "augur_anomaly_score" in f)
    for detector in ("zscore", "ewma"):
        for svc in SERVICES:
            score = value(
                families, "augur_anomaly_score", query="requests", detector=detector, service=svc
            )
            if svc in ANOMALOUS:
                assert score >= 1, (detector, svc, score)
            else:
                assert score < 1, (detector, svc, score)
            expected = value(
                families, "augur_expected_value", query="requests", detector=detector, service=svc
            )
            lower = value(
                families, "augur_expected_lower", query="requests", detector=detector, service=svc
            )
            upper = value(
                families, "augur_expected_upper", query="requests", detector=detector, service=svc
            )
            assert lower < expected < upper
            observed = value(
                families, "augur_observed_value", query="requests", detector=detector, service=svc
            )
            # The anomalous services' newest value is outside the band augur drew around it.
            side = {"spike": observed > upper, "drop": observed < lower}
            assert side.get(ANOMALOUS.get(svc, ""), lower <= observed <= upper), (svc, observed)
    # The series' own labels are kept, __name__ becomes `metric`.
    labels = next(lb for lb, _ in families["augur_anomaly_score"] if lb["query"] == "requests")
    assert labels["metric"] == "augur_test_requests" and labels["job"] == "api"
    assert value(families, "augur_series_scored", query="requests") == len(SERVICES)


async def test_max_series_caps_and_counts(running: tuple[Augur, Process]) -> None:
    augur, _ = running
    families = await augur.wait_for(
        lambda f: (
            "augur_series_dropped_total" in f
            and value(f, "augur_series_dropped_total", query="requests_capped") >= 2
        )
    )
    capped = [lb for lb, _ in families["augur_anomaly_score"] if lb["query"] == "requests_capped"]
    assert len(capped) == 4
    assert value(families, "augur_series_scored", query="requests_capped") == 4


async def test_broken_query_is_reported_and_others_go_on(
    running: tuple[Augur, Process], caplog: pytest.LogCaptureFixture
) -> None:
    augur, _ = running
    families = await augur.wait_for(
        lambda f: value(f, "augur_poll_failures_total", query="broken") >= 1
    )
    assert value(families, "augur_poll_failures_total", query="requests") == 0
    assert value(families, "augur_last_poll_timestamp_seconds", query="requests") > 0
    records = caplog.get_records("setup") + caplog.get_records("call")
    errors = [r.__dict__.get("error", "") for r in records if r.getMessage() == "poll_failed"]
    assert any("parse error" in e for e in errors), errors


async def test_survives_prometheus_going_away(running: tuple[Augur, Process]) -> None:
    augur, prom = running
    await augur.wait_for(lambda f: "augur_anomaly_score" in f)
    prom.stop()
    before = value(await augur.metrics(), "augur_poll_failures_total", query="requests")
    families = await augur.wait_for(
        lambda f: value(f, "augur_poll_failures_total", query="requests") >= before + 2
    )
    status, _ = await augur.get("/-/healthy")
    assert status == 200
    last_ok = value(families, "augur_last_poll_timestamp_seconds", query="requests")
    prom.restart("/-/ready")
    await augur.wait_for(
        lambda f: value(f, "augur_last_poll_timestamp_seconds", query="requests") > last_ok
    )


async def test_endpoints_and_promtool_check_metrics(
    running: tuple[Augur, Process],
    promtool_check_metrics: Callable[[bytes], Awaitable[tuple[int, str]]],
) -> None:
    augur, _ = running
    await augur.wait_for(lambda f: "augur_anomaly_score" in f)
    status, text = await augur.get("/")
    assert status == 200 and 'href="metrics"' in text
    assert (await augur.get("/-/healthy"))[0] == 200
    assert (await augur.get("/-/ready"))[0] == 200
    status, text = await augur.get("/metrics")
    returncode, out = await promtool_check_metrics(text.encode())
    assert returncode == 0, out
    assert "augur_anomaly_score" in text and "# HELP augur_anomaly_score" in text


def test_augur_run_exits_cleanly_on_sigterm(
    prometheus_factory: Callable[..., Process],
    augur_run_argv: Callable[[Path, int], list[str]],
    tmp_path: Path,
) -> None:
    """The real console entry point: JSON logs, readiness, SIGTERM -> exit 0 well within 25 s."""
    prom = prometheus_factory(samples=history(time.time(), days=0.2))
    port = free_port()
    cfg = tmp_path / "augur.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "prometheus": {"url": prom.url},
                "poll": {"interval": "2s"},
                "state": {"path": str(tmp_path / "augur.db")},
                "queries": [{"name": "requests", "expr": "augur_test_requests", "lookback": "1h"}],
            }
        )
    )
    proc = subprocess.Popen(
        augur_run_argv(cfg, port),
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        import urllib.request

        # Ready after the first poll; generous, for a machine busy with other tests.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("augur run did not become ready")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(25) == 0  # raises TimeoutExpired past the 25 s shutdown budget
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        proc.stderr.close()
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    events = [line["event"] for line in lines]
    assert "listening" in events and "shutting_down" in events and events[-1] == "stopped"
    assert all({"ts", "level", "logger", "event"} <= line.keys() for line in lines)


def test_augur_run_with_bad_config_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "augur.yaml"
    cfg.write_text(
        "prometheus: {url: 'http://127.0.0.1:1'}\nqueries: [{name: a, expr: up, detectors: [arma]}]\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "run", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert 'queries[0].detectors: unknown detector "arma"' in proc.stderr
