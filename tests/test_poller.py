"""The scoring loop's scheduling: no blocking of the event loop, no stacked cycles."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from exporter.config.prometheus import PrometheusConfig
from exporter.config.queries import QueryConfig
from exporter.demo.procs import Process, Sample
from exporter.detectors import Estimate, Window
from exporter.prometheus.client import PrometheusClient, make_session
from exporter.scoring.board import ScoreBoard
from exporter.scoring.poller import CycleReport, Poller
from exporter.self_metrics import SelfMetrics

pytestmark = pytest.mark.integration

STEP = 15.0


def wide_history(series: int, points: int, end: float) -> list[Sample]:
    rng = np.random.default_rng(3)
    ts = end - STEP * np.arange(points)[::-1]
    values = 50 + rng.normal(0, 1, (series, points))
    return [
        Sample("wide_metric", {"instance": f"h{i:04d}"}, float(t), float(v))
        for i in range(series)
        for t, v in zip(ts, values[i], strict=True)
    ]


async def test_cpu_work_stays_off_the_event_loop(
    prometheus_factory: Callable[..., Process], caplog: pytest.LogCaptureFixture
) -> None:
    """With asyncio's debug mode on, no callback may hold the loop for long.

    1,000 series x 720 points: decoding the 10 MB answer and aligning it take hundreds of
    milliseconds each, so running either on the loop would be reported here.
    """
    end = float(int(time.time() / STEP) * STEP) - 60
    prom = prometheus_factory(samples=wide_history(1000, 720, end))
    # zscore and ewma: the point is decoding and aligning off the loop; the default ensemble
    # takes ~50 s on 1,000 x 720 on a busy 2-core machine, past any sensible cpu_timeout.
    query = QueryConfig(
        name="wide",
        expr="wide_metric",
        lookback=STEP * 719,
        step=STEP,
        detectors=["zscore", "ewma"],
    )
    cfg = PrometheusConfig(url=prom.url, timeout=60)
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.25
    caplog.set_level(logging.WARNING, logger="asyncio")
    with ThreadPoolExecutor(2) as executor:
        async with make_session(cfg) as session:
            client = PrometheusClient.from_config(cfg, session, executor=executor)
            board = ScoreBoard()
            poller = Poller(
                [query],
                client,
                board,
                SelfMetrics(CollectorRegistry()),
                executor,
                interval=60,
                cpu_timeout=60,
                clock=lambda: end,
            )
            report = await poller.cycle()
    loop.set_debug(False)
    assert report.scored == {"wide": 1000}, report
    slow = [
        r.getMessage() for r in caplog.records if r.name == "asyncio" and "took" in r.getMessage()
    ]
    assert not slow, slow


async def test_overrunning_cycles_are_counted_not_stacked(
    prometheus_factory: Callable[..., Process],
) -> None:
    end = time.time() - 5
    prom = prometheus_factory(samples=wide_history(20, 240, end))
    query = QueryConfig(name="q", expr="wide_metric", lookback=STEP * 239, step=STEP)
    cfg = PrometheusConfig(url=prom.url, timeout=10)
    registry = CollectorRegistry()
    metrics = SelfMetrics(registry)
    in_flight = 0
    most = 0
    five_done = asyncio.Event()
    with ThreadPoolExecutor(2) as executor:
        async with make_session(cfg) as session:
            client = PrometheusClient.from_config(cfg, session, executor=executor)
            poller = Poller(
                [query], client, ScoreBoard(), metrics, executor, interval=0.01, cpu_timeout=10
            )
            original = poller.cycle

            async def tracked() -> CycleReport:
                nonlocal in_flight, most
                in_flight += 1
                most = max(most, in_flight)
                try:
                    # Every cycle outlasts the 10 ms interval, whatever the machine's speed.
                    await asyncio.sleep(0.05)
                    return await original()
                finally:
                    in_flight -= 1
                    if poller.cycles >= 5:
                        five_done.set()

            poller.cycle = tracked  # type: ignore[method-assign]
            task = asyncio.create_task(poller.run())
            await asyncio.wait_for(five_done.wait(), 60)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert most == 1
    overruns = registry.get_sample_value("augur_poll_overruns_total")
    assert overruns is not None and overruns >= 4  # every cycle but possibly the one cancelled


async def test_a_timed_out_scoring_call_is_not_entered_again_until_it_returns(
    prometheus_factory: Callable[..., Process],
) -> None:
    """A call that outlasts cpu_timeout runs on in its thread; the query's next cycles are
    skipped (and counted as failures) rather than entering its detectors beside it."""
    end = time.time() - 5
    prom = prometheus_factory(samples=wide_history(3, 40, end))
    query = QueryConfig(name="q", expr="wide_metric", lookback=STEP * 39, step=STEP)
    cfg = PrometheusConfig(url=prom.url, timeout=10)
    registry = CollectorRegistry()
    release = threading.Event()
    inside = 0
    most = 0
    calls = 0
    lock = threading.Lock()
    with ThreadPoolExecutor(2) as executor:
        async with make_session(cfg) as session:
            client = PrometheusClient.from_config(cfg, session, executor=executor)
            poller = Poller(
                [query],
                client,
                ScoreBoard(),
                SelfMetrics(registry),
                executor,
                interval=60,
                cpu_timeout=0.2,
            )
            (runner,) = poller.runners
            score = runner.score

            def held_score(window: Window) -> dict[str, Estimate]:
                nonlocal inside, most, calls
                with lock:
                    inside += 1
                    calls += 1
                    most = max(most, inside)
                try:
                    if calls == 1:
                        release.wait(30)  # the first call outlasts cpu_timeout by far
                    return score(window)
                finally:
                    with lock:
                        inside -= 1

            runner.score = held_score  # type: ignore[method-assign]
            first = await poller.cycle()
            assert first.errors == {"q": "scoring took longer than poll.cpu_timeout"}
            for _ in range(3):  # the call is still running: skipped, not entered again
                report = await poller.cycle()
                assert "runs on: skipped" in report.errors["q"], report
            assert calls == 1
            failures = registry.get_sample_value("augur_poll_failures_total", {"query": "q"})
            assert failures == 4
            release.set()
            await asyncio.wait_for(asyncio.wrap_future(runner.in_flight), 10)  # type: ignore[arg-type]
            report = await poller.cycle()
    assert "q" in report.scored and not report.errors, report  # entered again, and done
    assert (calls, most) == (2, 1)
