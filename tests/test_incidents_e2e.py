"""What an operator reads in `augur_anomaly_score` and `augur_anomaly_incident`, end to end.

A real Prometheus holds three days of 30 s history (backfilled with promtool); augur runs
with nothing but its default detector. An anomaly happening now is >= 1 on the first poll
after a start and after a restart, whatever happened earlier on the series; a second
incident after the first recovered is reported again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from serving import running

from exporter.app import POLLER, REGISTRY
from exporter.config.prometheus import PrometheusConfig
from exporter.config.queries import QueryConfig
from exporter.config.root import Config
from exporter.demo.procs import Process, Sample, free_port
from exporter.prometheus.client import PrometheusClient, make_session
from exporter.scoring.board import ScoreBoard
from exporter.scoring.poller import Poller
from exporter.self_metrics import SelfMetrics

pytestmark = pytest.mark.integration

SCRAPE = 30.0
DAYS = 3
SPIKED = ("s00", "s01", "s02")


def history(end: float, series: int = 24) -> list[Sample]:
    """`series` noisy loads, some daily-seasonal; the first three spike in their last 2 minutes.

    s00 also had one lone outlier six hours ago: a detection (true or false) earlier on the
    series, which under the old hold silenced everything after it for 12 hours.
    """
    rng = np.random.default_rng(20261204)
    ts = end - SCRAPE * np.arange(int(DAYS * 86400 / SCRAPE))[::-1]
    samples = []
    for i in range(series):
        name = f"s{i:02d}"
        daily = (i % 3) * 10 * np.sin(2 * np.pi * ts / 86400)
        values = 100 + daily + rng.normal(0, 2.0, len(ts))
        if name in SPIKED:
            values[-4:] += 40 * 2.0  # 40 standard deviations
        if name == "s00":
            values[-720] += 30 * 2.0
        samples += [
            Sample("svc_load", {"series": name}, float(t), float(v))
            for t, v in zip(ts, values, strict=True)
        ]
    return samples


def config(prom: Process, state: Path) -> Config:
    """The README's minimal configuration: a URL and one query, every setting its default."""
    return Config.model_validate(
        {
            "prometheus": {"url": prom.url, "timeout": "20s"},
            "poll": {"interval": "1s"},
            "web": {"listen_address": f"127.0.0.1:{free_port()}"},
            "state": {"path": str(state)},
            "queries": [{"name": "svc", "expr": "svc_load"}],
        }
    )


async def first_poll(app: web.Application) -> dict[str, tuple[float, int, float]]:
    """Per series after the first successful poll: score, incident stage, incident start."""
    poller = app[POLLER]
    await asyncio.wait_for(poller.succeeded_once.wait(), 120)
    scores = {labels["series"]: values[0] for labels, values in poller.board.rows()}
    return {
        labels["series"]: (scores[labels["series"]], stage, started)
        for labels, stage, started in poller.board.incidents()
    }


def opened(app: web.Application) -> float | None:
    value: float | None = app[REGISTRY].get_sample_value(
        "augur_incidents_opened_total", {"query": "svc", "detector": "ensemble"}
    )
    return value


async def test_an_anomaly_now_is_reported_on_the_first_poll_and_after_a_restart(
    prometheus_factory: Callable[..., Process], tmp_path: Path
) -> None:
    prom = prometheus_factory(samples=history(time.time() - 5))
    cfg = config(prom, tmp_path / "state" / "augur.db")

    async with running(cfg) as app:
        seen = await first_poll(app)
        assert len(seen) == 24
        for name, (score, stage, started) in seen.items():
            if name in SPIKED:
                assert score >= 1 and stage == 1 and started > 0, (name, score, stage)
            else:
                assert score < 1 and stage == 0, (name, score)
        assert opened(app) == 3

    async with running(cfg) as app:
        again = await first_poll(app)
        for name in SPIKED:
            score, stage, started = again[name]
            assert score >= 1 and stage == 1, (name, score, stage)
            # The incident was restored from the snapshot: the same one, not a new one.
            assert started == seen[name][2]
        assert max(s for n, (s, _, _) in again.items() if n not in SPIKED) < 1
        assert opened(app) == 0


def replay_history(end: float) -> list[Sample]:
    """Three series: two incidents on `twice` three hours apart; on `late`, a lone outlier
    five hours ago and a real spike an hour ago; `calm` never moves."""
    rng = np.random.default_rng(7)
    ts = end - SCRAPE * np.arange(int(DAYS * 86400 / SCRAPE))[::-1]
    ago = end - ts
    out = []
    for name in ("twice", "late", "calm"):
        values = 100 + rng.normal(0, 2.0, len(ts))
        if name == "twice":
            values[(ago <= 4 * 3600) & (ago > 4 * 3600 - 600)] += 60  # 10 minutes, 4 h ago
            values[(ago <= 1 * 3600) & (ago > 1 * 3600 - 600)] += 60  # again 1 h ago
        if name == "late":
            values[(ago <= 5 * 3600) & (ago > 5 * 3600 - SCRAPE)] += 50
            values[(ago <= 1 * 3600) & (ago > 1 * 3600 - 300)] += 60
        out += [
            Sample("replay_load", {"series": name}, float(t), float(v))
            for t, v in zip(ts, values, strict=True)
        ]
    return out


async def test_each_incident_is_opened_once_and_a_later_one_is_reported_again(
    prometheus_factory: Callable[..., Process],
) -> None:
    """The poller driven through the last six hours, a poll every five minutes."""
    end = float(int(time.time() / 300) * 300) - 300
    prom = prometheus_factory(samples=replay_history(end))
    query = QueryConfig(name="replay", expr="replay_load")  # every detector setting default
    now = end - 6 * 3600
    cfg = PrometheusConfig(url=prom.url, timeout=30)
    registry = CollectorRegistry()
    metrics = SelfMetrics(registry)
    timeline: dict[str, list[tuple[float, float, int]]] = {}
    with ThreadPoolExecutor(2) as executor:
        async with make_session(cfg) as session:
            client = PrometheusClient.from_config(cfg, session, executor=executor)
            board = ScoreBoard()
            poller = Poller(
                [query],
                client,
                board,
                metrics,
                executor,
                interval=300,
                cpu_timeout=60,
                clock=lambda: now,
            )
            while now <= end + 1:
                report = await poller.cycle()
                assert report.scored == {"replay": 3}, report
                scores = {labels["series"]: values[0] for labels, values in board.rows()}
                for labels, stage, _ in board.incidents():
                    name = labels["series"]
                    timeline.setdefault(name, []).append(((end - now) / 3600, scores[name], stage))
                now += 300
    opens = {
        name: [
            round(h, 2)
            for (h, _, st), (_, _, prev) in zip(rows[1:], rows, strict=False)
            if st == 1 and prev == 0
        ]
        for name, rows in timeline.items()
    }
    assert opens["calm"] == []
    assert opens["twice"] == [4.0, 1.0], timeline["twice"]
    # The lone outlier five hours ago opened an incident; the spike an hour ago is new again.
    assert opens["late"] == [5.0, 1.0], timeline["late"]
    assert all(score >= 1 for h, score, _ in timeline["late"] if h == 1.0)
    labels = {"query": "replay", "detector": "ensemble"}
    assert registry.get_sample_value("augur_incidents_opened_total", labels) == 4
