"""What augur says about series still warming up, checked against what then happens.

First with the real detectors on windows of known history, poll by poll: the estimate of the
first poll is the number of polls it then takes (the shipped default at a 5 m step and 1 m
polls included: 3 h for a series without history). Then end to end with a real Prometheus
holding backfilled series of known length: the gauges, the log lines and the landing page's
table say how many series warm up and for how long, and go to 0 once they are scored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from serving import running
from waiting import eventually

from exporter.app import POLLER, REGISTRY
from exporter.config.durations import parse_duration
from exporter.config.queries import QueryConfig
from exporter.config.root import Config
from exporter.demo.procs import Process, Sample, free_port
from exporter.detectors import Window
from exporter.scoring.runner import QueryRunner
from exporter.self_metrics import SelfMetrics


def polls_until_scored(
    detectors: Any, have: int, *, cols: int, step: float, interval: float, per_step: int
) -> tuple[int, float, int | None]:
    """Poll a young series (`have` past points, one more every `per_step` polls) beside an
    old one until it is scored: (warming at the first poll, its remaining seconds, the polls
    it took after the first; None if it was not scored within 2,000 or 500 steps)."""
    q = QueryConfig.model_validate(
        {"name": "q", "expr": "x", "step": step, "lookback": step * (cols - 1)}
        | {"detectors": detectors}
    )
    runner, metrics = QueryRunner.build(q), SelfMetrics(CollectorRegistry())
    values = np.random.default_rng(7).normal(100, 2, (2, cols + 500))
    first: tuple[int, float] = (0, 0.0)
    for poll in range(min(2000, 500 * per_step)):
        grown = poll // per_step
        v = values[:, grown : grown + cols].copy()
        v[1, : cols - (have + 1 + grown)] = np.nan
        stamps = step * np.arange(cols, dtype=np.float64) + step * grown
        window = Window(v, stamps, [(("s", "a"),), (("s", "b"),)], step)
        scores = np.array([e.score for e in runner.score(window).values()])
        runner.status.publish(metrics, int((~np.isnan(scores)).any(axis=0).sum()), 0.0, interval)
        if poll == 0:
            first = (runner.status.warming, runner.status.remaining)
        elif not runner.status.warming:
            return (*first, poll)
    return (*first, None)


@pytest.mark.parametrize(
    ("detectors", "have", "cols", "step", "interval", "per_step"),
    [
        # The shipped default: 5 m steps, a poll a minute, a three-day look-back.
        (["ensemble"], 3, 865, 300.0, 60.0, 5),
        (["ensemble"], 60, 865, 300.0, 60.0, 5),
        # Bootstrapped from history, then calibrating poll by poll on the same column.
        ({"ensemble": {"warmup": 50}}, 45, 180, 60.0, 1.0, 10_000),
        (["zscore"], 3, 180, 60.0, 60.0, 1),
        ({"zscore": {"differences": 1, "min_points": 20}}, 3, 180, 60.0, 60.0, 1),
        (["ewma"], 3, 180, 60.0, 60.0, 1),
        (["quantile"], 3, 865, 300.0, 300.0, 1),
    ],
)
def test_the_first_polls_estimate_is_the_polls_it_takes(
    detectors: Any, have: int, cols: int, step: float, interval: float, per_step: int
) -> None:
    warming, remaining, took = polls_until_scored(
        detectors, have, cols=cols, step=step, interval=interval, per_step=per_step
    )
    assert warming == 1
    assert took is not None
    assert remaining == took * interval, (remaining, took)


def test_the_default_detector_takes_three_hours_for_a_series_without_history() -> None:
    _, remaining, took = polls_until_scored(
        ["ensemble"], 0, cols=865, step=300.0, interval=60.0, per_step=5
    )
    assert took is not None and 2.5 * 3600 <= remaining == took * 60 <= 3.5 * 3600


def test_a_series_the_look_back_cannot_warm_says_it_cannot_tell() -> None:
    # 60 points of a quantile, after its relearn's 2 h set aside, never fit in 3 h of 1 m steps.
    warming, remaining, took = polls_until_scored(
        {"quantile": {"min_points": 60}}, 30, cols=180, step=60.0, interval=60.0, per_step=1
    )
    assert warming == 2 and np.isnan(remaining) and took is None


STEP = 60.0
YOUNG = 45
"""Minutes of the young series' history."""
MIN_POINTS = 120


def history(end: float) -> list[Sample]:
    """`old`: three hours a minute apart; `young`: the last YOUNG minutes."""
    rng = np.random.default_rng(15)
    out = []
    for name, minutes in (("old", 180), ("young", YOUNG)):
        for i in range(minutes):
            value = float(100 + rng.normal(0, 2))
            out.append(Sample("svc_load", {"series": name}, end - STEP * i, value))
    return out


def config(prom: Process, state: Path) -> Config:
    query = {"expr": "svc_load", "step": "1m", "lookback": "3h"}
    return Config.model_validate(
        {
            "prometheus": {"url": prom.url, "timeout": "20s"},
            "poll": {"interval": "1s"},
            "web": {"listen_address": f"127.0.0.1:{free_port()}"},
            "state": {"path": str(state)},
            "queries": [
                {"name": "fresh", "detectors": {"ensemble": {"warmup": 60}}, **query},
                {"name": "slow", "detectors": {"zscore": {"min_points": MIN_POINTS}}, **query},
            ],
        }
    )


async def test_warming_up_against_a_real_prometheus(
    prometheus_factory: Callable[..., Process], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="augur.poller")
    prom = prometheus_factory(samples=history(time.time() - 5))
    cfg = config(prom, tmp_path / "augur.db")
    async with running(cfg) as app:
        poller = app[POLLER]
        await asyncio.wait_for(poller.succeeded_once.wait(), 120)
        fresh, slow = (r.status for r in poller.runners)
        start = fresh.polls
        metric = app[REGISTRY].get_sample_value
        assert (fresh.seen, fresh.scored, fresh.warming) == (2, 1, 1)
        assert metric("augur_series_warming_up", {"query": "fresh"}) == 1
        remaining = metric("augur_series_warmup_remaining_seconds", {"query": "fresh"})
        assert remaining == fresh.remaining and 1 <= remaining <= 60
        # A zscore of 120 points: the young series waits for its missing points, a step each.
        assert (slow.seen, slow.scored, slow.warming) == (2, 1, 1)
        expected = (MIN_POINTS - YOUNG) * STEP
        assert abs(slow.remaining - expected) <= 2 * STEP, (slow.remaining, expected)

        listen = cfg.web.listen_address
        async with aiohttp.ClientSession() as s, s.get(f"http://{listen}/") as resp:
            page = await resp.text()
        assert "<td>fresh</td><td>2</td><td>1</td><td>1</td>" in page
        assert "<td>slow</td><td>2</td><td>1</td><td>1</td><td>1h" in page  # first score in

        polls = round(remaining)  # one poll a second
        await eventually(lambda: not fresh.warming, within=120)
        # Scored on the poll the first one said.
        assert fresh.polls - start == polls
        assert metric("augur_series_warming_up", {"query": "fresh"}) == 0
        assert metric("augur_series_warmup_remaining_seconds", {"query": "fresh"}) == 0
        assert metric("augur_series_scored", {"query": "fresh"}) == 2
        assert metric("augur_series_warming_up", {"query": "slow"}) == 1

    lines = {(r.getMessage(), getattr(r, "query", "")): r for r in caplog.records}
    assert lines[("warming_up", "fresh")].__dict__["series"] == 1
    # Said at the first poll; a minute or more may have passed since (a loaded machine).
    said = parse_duration(lines[("warming_up", "slow")].__dict__["first_score_in"])
    assert abs(said - expected) <= 2 * STEP, (said, expected)
    assert ("warmed_up", "fresh") in lines and ("warmed_up", "slow") not in lines
    assert sum(r.getMessage() == "warming_up" for r in caplog.records) == 2
