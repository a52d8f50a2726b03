"""One full poll cycle against the real Prometheus: 2,000 series x 720 points.

Backfills the history with promtool, starts Prometheus on a free loopback port, then times
augur's cycle (now incremental: see bench_history.py) and the old whole-window cycle phase by
phase (query_range + JSON decode, align, score with zscore and ewma, publish); also the cost
of rendering /metrics afterwards.

    .venv/bin/python benchmarks/bench_poll.py [--series 2000] [--points 720] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from exporter.config.prometheus import PrometheusConfig
from exporter.config.queries import QueryConfig
from exporter.demo.procs import Sample, start_prometheus
from exporter.prometheus.client import PrometheusClient, make_session
from exporter.scoring.align import align
from exporter.scoring.board import ScoreBoard, ScoreCollector
from exporter.scoring.poller import Poller
from exporter.scoring.runner import QueryRunner
from exporter.self_metrics import SelfMetrics

STEP = 15.0


def samples(n_series: int, n_points: int, end: float) -> list[Sample]:
    rng = np.random.default_rng(1)
    ts = end - STEP * np.arange(n_points)[::-1]
    values = 100 + 10 * np.sin(ts / 3600)[None, :] + rng.normal(0, 2, (n_series, n_points))
    out: list[Sample] = []
    for i in range(n_series):
        labels = {"instance": f"host-{i:05d}:9100", "job": "node"}
        out.extend(
            Sample("bench_metric", labels, float(t), float(v))
            for t, v in zip(ts, values[i], strict=True)
        )
    return out


def median_ms(times: list[float]) -> str:
    return f"{statistics.median(times) * 1000:8.1f} ms"


async def bench(prom_url: str, n_series: int, n_points: int, repeat: int, end: float) -> None:
    query = QueryConfig(
        name="bench",
        expr="bench_metric",
        lookback=STEP * (n_points - 1),
        step=STEP,
        detectors=["zscore", "ewma"],
        max_series=n_series,
    )
    cfg = PrometheusConfig(url=prom_url, timeout=120)
    executor = ThreadPoolExecutor(2)
    registry = CollectorRegistry()
    board = ScoreBoard()
    registry.register(ScoreCollector(board))
    metrics = SelfMetrics(registry)
    async with make_session(cfg) as session:
        client = PrometheusClient.from_config(cfg, session, executor=executor)
        # Freeze the clock at the end of the backfilled history so every repetition sees
        # the same 2,000 x 720 window.
        poller = Poller(
            [query],
            client,
            board,
            metrics,
            executor,
            interval=60,
            cpu_timeout=120,
            clock=lambda: end,
        )
        runner = QueryRunner.build(query)
        phases: dict[str, list[float]] = {
            k: [] for k in ("cycle", "query", "align", "score", "publish", "render")
        }
        for _ in range(repeat):
            t0 = time.perf_counter()
            report = await poller.cycle()
            phases["cycle"].append(time.perf_counter() - t0)
            assert report.scored.get("bench") == n_series, report

            t0 = time.perf_counter()
            matrix = await client.query_range(query.expr, end - query.lookback, end, STEP)
            phases["query"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            window = align(matrix, end - query.lookback, end, STEP)
            phases["align"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            estimates = runner.score(window)
            phases["score"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            board.publish("bench", window.keys, estimates)
            phases["publish"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            body = generate_latest(registry)
            phases["render"].append(time.perf_counter() - t0)
        # What compression costs on loopback: the same request asking for gzip and for none.
        encodings: dict[str, list[float]] = {"gzip": [], "identity": []}
        form = {
            "query": query.expr,
            "start": str(end - query.lookback),
            "end": str(end),
            "step": str(STEP),
        }
        for _ in range(repeat):
            for encoding, times in encodings.items():
                t0 = time.perf_counter()
                async with session.post(
                    prom_url + "/api/v1/query_range",
                    data=form,
                    headers={"Accept-Encoding": encoding},
                ) as resp:
                    size = len(await resp.read())  # decompressed size
                times.append(time.perf_counter() - t0)
    executor.shutdown()
    points = window.values.size
    print(f"series x points: {len(window.keys)} x {window.values.shape[1]} = {points:,} points")
    # The poller keeps a history now: its first cycle fills it, the others (same clock) fetch
    # the newest columns again; the old whole-window cycle is query + align + score + publish.
    print(f"Poller.cycle (first fills the history, then incremental): {median_ms(phases['cycle'])}")
    for phase in ("query", "align", "score", "publish"):
        print(f"  {phase:<8} {median_ms(phases[phase])}")
    for encoding, times in encodings.items():
        print(f"raw query_range over HTTP, Accept-Encoding {encoding:<8}: {median_ms(times)}")
    print(f"  (the answer is {size / 1e6:.0f} MB of JSON)")
    print(
        f"render /metrics ({len(body) / 1e6:.1f} MB, {4 * 2 * n_series:,} samples): "
        f"{median_ms(phases['render'])}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--points", type=int, default=720)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    end = float(int(time.time() / STEP) * STEP) - 60
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        data = samples(args.series, args.points, end)
        prom = start_prometheus(Path(tmp), samples=data)
        print(
            f"backfill + start of Prometheus: {time.perf_counter() - t0:.1f} s "
            f"({len(data):,} samples)"
        )
        try:
            asyncio.run(bench(prom.url, args.series, args.points, args.repeat, end))
        finally:
            prom.stop()


if __name__ == "__main__":
    main()
