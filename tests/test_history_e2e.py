"""The incremental poller scores exactly what a full fetch of the look-back would.

Two scorers over the same real Prometheus: augur's `Poller` (the history, fed only the new
columns) and a full `query_range` of the whole look-back on the same grid, aligned and scored
by a fresh runner, as augur did before. Every window, score, expected value and band must
match. First over history backfilled with promtool, with a clock walking through it at poll
times between step boundaries (series appear, vanish, have gaps, and the clock jumps past the
look-back once: a refill); then over live samples Prometheus scrapes while the test polls,
with explicit timestamps so each poll and its full fetch see the same data: the step in
progress changes from poll to poll, a series delivers its samples a step late, one appears.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from waiting import eventually

from exporter.config.prometheus import PrometheusConfig
from exporter.config.queries import QueryConfig
from exporter.demo.procs import Process, Sample, free_port
from exporter.detectors import Estimate, Window
from exporter.prometheus.client import PrometheusClient, PrometheusError, make_session
from exporter.scoring.align import align
from exporter.scoring.board import ScoreBoard
from exporter.scoring.history import grid_width, tick_at
from exporter.scoring.poller import Poller
from exporter.scoring.runner import QueryRunner
from exporter.scoring.state import StateStore
from exporter.self_metrics import SelfMetrics

pytestmark = pytest.mark.integration

SCRAPE = 15.0
STEP = 60.0
SPAN = 3 * 3600.0


def history(end: float) -> list[Sample]:
    """12 steady series, 2 that start half-way, 1 that stops, 1 with gaps."""
    rng = np.random.default_rng(7)
    start = end - SPAN
    ts = np.arange(start, end + 1, SCRAPE)
    out: list[Sample] = []

    def series(name: str, times: np.ndarray, level: float) -> None:
        values = level + 5 * np.sin(times / 900) + rng.normal(0, 1, len(times))
        out.extend(
            Sample("hist_metric", {"instance": name}, float(t), float(v))
            for t, v in zip(times, values, strict=True)
        )

    for i in range(12):
        series(f"steady-{i:02d}", ts, 10 * i)
    series("late-a", ts[ts >= start + SPAN / 2], 7)
    series("late-b", ts[ts >= start + SPAN * 0.7], 9)
    series("gone", ts[ts <= start + SPAN * 0.55], 3)
    series("gappy", ts[(ts // 600) % 3 != 1], 5)
    return out


async def test_incremental_scores_equal_full_fetch(
    prometheus_factory: Callable[..., Process],
) -> None:
    end = float(int(time.time() / STEP) * STEP) - 120
    prom = prometheus_factory(samples=history(end))
    query = QueryConfig(
        name="h",
        expr="hist_metric",
        lookback=1800,
        step=STEP,
        detectors={"ensemble": {"warmup": 5}, "zscore": {}},
    )
    now = end - SPAN + 2400.0
    clock = [now]
    cfg = PrometheusConfig(url=prom.url, timeout=30)
    with ThreadPoolExecutor(2) as executor:
        async with make_session(cfg) as session:
            client = PrometheusClient.from_config(cfg, session, executor=executor)
            poller, seen = _recording_poller(query, client, executor, clock)
            full = QueryRunner.build(query)
            polls = 0
            fetch = client.range_matrix
            while clock[0] < end:
                if 20 <= polls < 26 or polls == 60:  # Prometheus fails after the advance
                    client.range_matrix = _failing  # type: ignore[method-assign]
                    assert (await poller.cycle()).errors
                    client.range_matrix = fetch  # type: ignore[method-assign]
                else:
                    await _compare(poller, full, client, query, clock[0], seen)
                polls += 1
                # Between step boundaries, several polls a step, and one jump past the look-back.
                clock[0] += 2100.0 if polls == 40 else 47.0
    assert polls > 100
    keys = {dict(k)["instance"] for _, w, _ in seen for k in w.keys}
    assert {"late-a", "late-b", "gone", "gappy"} <= keys
    assert "gone" not in {dict(k)["instance"] for k in seen[-1][1].keys}  # expired


async def test_a_series_past_max_series_gets_its_history_when_room_opens(
    prometheus_factory: Callable[..., Process],
) -> None:
    """`a` stops, `c` is past `max_series` until `a` leaves the look-back: then `c` gets a
    row and its older columns, the window a full fetch capped the same way returns."""
    end = float(int(time.time() / STEP) * STEP) - 120
    ts = np.arange(end - SPAN, end + 1, SCRAPE)
    rng = np.random.default_rng(5)
    data = [
        Sample("cap_metric", {"instance": name}, float(t), float(rng.normal(5, 1)))
        for name in ("a", "b", "c")
        for t in (ts[ts <= end - SPAN + 3600] if name == "a" else ts)
    ]
    prom = prometheus_factory(samples=data)
    query = QueryConfig(
        name="cap",
        expr="cap_metric",
        lookback=1800,
        step=STEP,
        max_series=2,
        detectors={"ensemble": {"warmup": 5}},
    )
    clock = [end - SPAN + 2400.0]
    cfg = PrometheusConfig(url=prom.url, timeout=30)
    with ThreadPoolExecutor(2) as executor:
        async with make_session(cfg) as session:
            client = PrometheusClient.from_config(cfg, session, executor=executor)
            poller, seen = _recording_poller(query, client, executor, clock)
            full = QueryRunner.build(query)
            while clock[0] < end - SPAN + 7200:
                await _compare(poller, full, client, query, clock[0], seen)
                clock[0] += 47.0
    names = [[dict(k)["instance"] for k in w.keys] for _, w, _ in seen]
    assert names[0] == ["a", "b"] and names[-1] == ["b", "c"]
    assert np.isfinite(seen[-1][1].values[1]).all()  # c's whole look-back, not just new points


async def test_a_restart_with_a_recent_snapshot_fetches_only_the_gap(
    prometheus_factory: Callable[..., Process], tmp_path: Path
) -> None:
    """A poller snapshots its history and detectors; a new one restores them and fetches only
    the columns since, then scores what a full fetch scores (to float32 rounding)."""
    end = float(int(time.time() / STEP) * STEP) - 120
    prom = prometheus_factory(samples=history(end))
    query = QueryConfig(
        name="h",
        expr="hist_metric",
        lookback=1800,
        step=STEP,
        detectors={"ensemble": {"warmup": 5}},
    )
    clock = [end - SPAN + 5000.0]
    cfg = PrometheusConfig(url=prom.url, timeout=30)
    store = StateStore(tmp_path / "state.db")
    with ThreadPoolExecutor(2) as executor:
        async with make_session(cfg) as session:
            client = PrometheusClient.from_config(cfg, session, executor=executor)
            first, seen = _recording_poller(query, client, executor, clock, store)
            full = QueryRunner.build(query)
            for _ in range(5):
                await _compare(first, full, client, query, clock[0], seen)
                clock[0] += 47.0
            assert await first.snapshot() >= 2  # the ensemble's state, its incidents, the history
            clock[0] += 600.0  # down for ten minutes
            ranges: list[tuple[float, float]] = []
            second, seen = _recording_poller(query, client, executor, clock, store)
            fetch = client.range_matrix

            async def recording(expr: str, start: float, end: float, *a: Any, **k: Any) -> Any:
                ranges.append((start, end))
                return await fetch(expr, start, end, *a, **k)

            client.range_matrix = recording  # type: ignore[method-assign]
            assert await second.restore() >= 2
            assert second.feeds["h"].complete  # the history came from the snapshot
            await _compare(second, full, client, query, clock[0], seen, rtol=1e-5)
            client.range_matrix = fetch  # type: ignore[method-assign]
    store.close()
    ranges.pop()  # the full fetch _compare made after the poller's cycle
    gap = tick_at(clock[0], STEP) - tick_at(clock[0] - 600 - 47, STEP)
    assert ranges and min(a for a, _ in ranges) >= (tick_at(clock[0], STEP) - gap - 1) * STEP
    assert sum(round((b - a) / STEP) + 1 for a, b in ranges) <= gap + 2
    print(f"refetched after the restart: {ranges}")


async def test_series_another_shard_owns_are_never_decoded(
    prometheus_factory: Callable[..., Process],
) -> None:
    end = float(int(time.time() / STEP) * STEP) - 120
    prom = prometheus_factory(samples=history(end))
    query = QueryConfig(
        name="h", expr="hist_metric", lookback=1800, step=STEP, max_series=5, detectors=["zscore"]
    )
    asked: list[str] = []

    def owns(labels: Mapping[str, str]) -> bool:
        asked.append(labels["instance"])
        return labels["instance"].startswith("steady-0")

    cfg = PrometheusConfig(url=prom.url, timeout=30)
    registry = CollectorRegistry()
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
                cpu_timeout=60,
                clock=lambda: end,
                owns=owns,
            )
            for _ in range(2):
                report = await poller.cycle()
    # steady-00..09 are this shard's: 5 kept (max_series), 5 counted as dropped; the other
    # shard's series were asked about, never decoded, kept or counted.
    assert report.scored == {"h": 5}
    keys = poller.feeds["h"].history.keys
    assert [dict(k)["instance"] for k in keys] == [f"steady-0{i}" for i in range(5)]
    assert "late-a" in asked
    assert registry.get_sample_value("augur_series_dropped_total", {"query": "h"}) == 10
    assert (registry.get_sample_value("augur_history_bytes", {"query": "h"}) or 0) > 0


async def _failing(*args: Any, **kwargs: Any) -> Any:
    raise PrometheusError("down for this poll", error_type="connection", retryable=True)


Seen = list[tuple[float, Window, dict[str, Estimate]]]


def _recording_poller(
    query: QueryConfig,
    client: PrometheusClient,
    executor: ThreadPoolExecutor,
    clock: list[float],
    store: StateStore | None = None,
) -> tuple[Poller, Seen]:
    """A poller on `clock[0]` that records every window it scores and the estimates."""
    poller = Poller(
        [query],
        client,
        ScoreBoard(),
        SelfMetrics(CollectorRegistry()),
        executor,
        interval=60,
        cpu_timeout=60,
        clock=lambda: clock[0],
        store=store,
    )
    runner, seen = poller.runners[0], []
    score = runner.score

    def recording(window: Window) -> dict[str, Estimate]:
        estimates = score(window)
        seen.append((clock[0], window, estimates))
        return estimates

    runner.score = recording  # type: ignore[method-assign]
    return poller, seen


async def _compare(
    poller: Poller,
    full: QueryRunner,
    client: PrometheusClient,
    query: QueryConfig,
    now: float,
    seen: Seen,
    rtol: float = 0.0,
) -> None:
    """One incremental cycle at `now`, then a full fetch on the same grid: the same scores."""
    report = await poller.cycle()
    assert not report.errors, report
    t, window, estimates = seen[-1]
    assert t == now
    end = tick_at(now, query.step) * query.step
    start = end - (grid_width(query.lookback, query.step) - 1) * query.step
    matrix = await client.range_matrix(
        query.expr, start, end, query.step, max_series=query.max_series
    )
    expected = align(matrix, start, end, query.step)
    assert window.keys == expected.keys, now
    np.testing.assert_array_equal(window.timestamps, expected.timestamps)
    if rtol:
        np.testing.assert_allclose(window.values, expected.values, rtol=rtol, equal_nan=True)
    else:
        np.testing.assert_array_equal(window.values, expected.values, err_msg=str(now))
    # float32 rounding of a restored history moves scores near 0 by more than a ratio says.
    _assert_same(estimates, full.score(expected), max(rtol * 100, 1e-12), rtol * 100)
    # Compared for real: past the warm-up, most series score a finite value.
    if len(seen) > 10:
        for name, est in estimates.items():
            assert np.isfinite(est.score).sum() >= len(window.keys) // 2, name


def _assert_same(
    got: Mapping[str, Estimate], want: Mapping[str, Estimate], rtol: float, atol: float
) -> None:
    assert got.keys() == want.keys()
    for name in got:
        for field in ("score", "expected", "lower", "upper"):
            a, b = getattr(got[name], field), getattr(want[name], field)
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True, err_msg=name)


LIVE_STEP = 5.0


async def test_incremental_scores_equal_full_fetch_on_live_samples(
    prometheus_factory: Callable[..., Process],
) -> None:
    now = time.time()
    rng = np.random.default_rng(11)
    backfilled = [
        Sample(
            "live_metric",
            {"instance": f"s{i}", "job": "live"},
            float(t),
            float(rng.normal(10 * i, 1)),
        )
        for i in range(4)
        for t in np.arange(now - 900, now - 60, LIVE_STEP)
    ]
    exposed: dict[str, tuple[float, float]] = {}  # instance -> (value, unix seconds)

    async def metrics(_: web.Request) -> web.Response:
        lines = [
            f'live_metric{{instance="{name}"}} {v} {round(t * 1000)}'
            for name, (v, t) in exposed.items()
        ]
        return web.Response(text="\n".join(lines) + "\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner_ = web.AppRunner(app)
    await runner_.setup()
    port = free_port()
    await web.TCPSite(runner_, "127.0.0.1", port).start()
    scrape = {
        "job_name": "live",
        "honor_labels": True,
        "scrape_interval": "500ms",
        "scrape_timeout": "400ms",
        "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
    }
    prom = prometheus_factory(samples=backfilled, extra_config={"scrape_configs": [scrape]})
    query = QueryConfig(
        name="live",
        expr="live_metric",
        lookback=300,
        step=LIVE_STEP,
        detectors={"ensemble": {"warmup": 5}},
    )
    cfg = PrometheusConfig(url=prom.url, timeout=30)
    try:
        with ThreadPoolExecutor(2) as executor:
            async with make_session(cfg) as session:
                client = PrometheusClient.from_config(cfg, session, executor=executor)
                clock = [time.time()]
                poller, seen = _recording_poller(query, client, executor, clock)
                full = QueryRunner.build(query)
                for k in range(24):
                    t = time.time()
                    for i in range(4):
                        exposed[f"s{i}"] = (float(rng.normal(10 * i, 1)), t)
                    # A series whose samples arrive a step late: within the refetched overlap.
                    exposed["late"] = (float(k), t - LIVE_STEP)
                    if k >= 12:
                        exposed["new"] = (float(rng.normal(3, 1)), t)
                    await _ingested(client, exposed)
                    clock[0] = t + 0.3
                    await _compare(poller, full, client, query, clock[0], seen)
                    await asyncio.sleep(1.2)  # several polls a step, the step in progress
    finally:
        await runner_.cleanup()
    assert {"late", "new"} <= {dict(k)["instance"] for k in seen[-1][1].keys}


async def _ingested(client: PrometheusClient, exposed: dict[str, tuple[float, float]]) -> None:
    """Wait until Prometheus has scraped the newest sample of every exposed series."""
    want = {name: round(t, 3) for name, (_, t) in exposed.items()}

    async def check() -> bool:
        result = await client.query("timestamp(live_metric)", time.time() + 1)
        got = {s["metric"]["instance"]: round(float(s["value"][1]), 3) for s in result.result}
        return got == want

    await eventually(check, within=20)
