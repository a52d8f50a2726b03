"""Incremental polling against the real Prometheus: first fill, steady-state cycle, full fetch.

The default query (`detectors: [ensemble]`, 5 m step, 3 d look-back = 864 points) over N
series backfilled with promtool (streamed to its OpenMetrics file, not held in memory), then
each measurement in a process of its own with the text model loaded (so its peak RSS is its
own and includes what a real augur holds):

- `incremental`: the first fill alone (time, peak RSS); the ensemble's bootstrap run to the
  end on the filled window; then `--cycles` cycles of augur's own `Poller.cycle()`, the clock
  one step further each (one new point per series), timed per phase (fetch = query_range and
  decode, write into the history, window, score, publish) and their peak RSS (VmHWM reset
  after the fill);
- `full`: the old cycle, same run, same data: `query_range` of the whole look-back, `align`,
  score, publish (the ensemble bootstrapped first on the same window).

    .venv/bin/python benchmarks/bench_history.py --series 1000 10000 [--points 864] [--cycles 3]
        [--modes incremental full] [--detectors ensemble]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from exporter.config.prometheus import PrometheusConfig
from exporter.config.queries import QueryConfig
from exporter.demo.procs import find_binary, start_prometheus
from exporter.detectors.ensemble import BOOTSTRAP_POINTS
from exporter.heap import release_freed_memory
from exporter.prometheus.client import PrometheusClient, make_session
from exporter.scoring.align import align
from exporter.scoring.board import ScoreBoard
from exporter.scoring.poller import Poller
from exporter.scoring.state import StateStore
from exporter.self_metrics import SelfMetrics
from exporter.text.classify import default_model_dir
from exporter.text.encoder import TextModel

STEP = 300.0


def write_samples(path: Path, n_series: int, n_points: int, end: float) -> int:
    """OpenMetrics text of n_series x n_points samples ending at `end`, written as generated."""
    rng = np.random.default_rng(1)
    ts = end - STEP * np.arange(n_points)[::-1]
    wave = 100 + 10 * np.sin(ts / 86400 * 2 * np.pi)
    stamps = [f"{t:.3f}" for t in ts]
    with path.open("w", encoding="utf-8") as out:
        out.write("# TYPE bench_metric gauge\n")
        for i in range(n_series):
            head = f'bench_metric{{instance="host-{i:05d}:9100",job="node"}} '
            values = wave + rng.normal(0, 2, n_points)
            out.writelines(f"{head}{v:.4f} {t}\n" for v, t in zip(values, stamps, strict=True))
        out.write("# EOF\n")
    return n_series * n_points


def vmhwm_mb(field: str = "VmHWM") -> float:
    """Peak resident memory of this process since the last `reset_peak` (or, with
    field="VmRSS", the current one), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := current RSS


def timed(phases: dict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` adding its wall time to `phases[name]` (sync or async)."""
    if asyncio.iscoroutinefunction(fn):

        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0

        return wrapped_async

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0

    return wrapped


async def child(
    mode: str, url: str, end: float, n: int, points: int, cycles: int, detectors: list[str]
) -> None:
    model = TextModel(default_model_dir())  # held, as augur holds it, for the RSS figures
    model_mb = vmhwm_mb()
    query = QueryConfig(
        name="bench",
        expr="bench_metric",
        lookback=STEP * (points - 1),
        step=STEP,
        max_series=n,
        detectors=detectors,
    )
    cfg = PrometheusConfig(url=url, timeout=600)
    executor = ThreadPoolExecutor(2)
    board = ScoreBoard()
    out: dict[str, Any] = {"mode": mode, "series": n, "points": points, "model_mb": model_mb}
    out["detectors"] = detectors
    async with make_session(cfg) as session:
        client = PrometheusClient.from_config(cfg, session, executor=executor)
        clock = [end - cycles * STEP]
        poller = Poller(
            [query],
            client,
            board,
            SelfMetrics(CollectorRegistry()),
            executor,
            interval=60,
            cpu_timeout=3600,
            clock=lambda: clock[0],
        )
        runner, feed = poller.runners[0], poller.feeds["bench"]
        # The ensemble bootstraps at most BOOTSTRAP_POINTS window points per call.
        warmup = math.ceil(n / max(1, BOOTSTRAP_POINTS // (points - 1))) + 1
        phases: dict[str, float] = {}
        if mode == "incremental":
            t0 = time.perf_counter()
            await feed.update(clock[0], poller._run_for(runner))
            out["fill_s"] = time.perf_counter() - t0
            out["fill_peak_mb"] = vmhwm_mb()
            out["after_fill_mb"] = vmhwm_mb("VmRSS")
            release_freed_memory()
            out["after_fill_trimmed_mb"] = vmhwm_mb("VmRSS")
            out["history_mb"] = feed.history.nbytes / 1e6
            with tempfile.TemporaryDirectory() as tmp:  # a restart's snapshot: size and time
                store = StateStore(Path(tmp) / "state.db")
                t0 = time.perf_counter()
                snap = feed.history.dump()
                assert snap is not None
                out["snapshot_mb"] = store.save_history("bench", feed.settings(), snap) / 1e6
                out["snapshot_s"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                loaded = store.load_history("bench", feed.settings())
                assert loaded is not None
                feed.history.load(loaded)
                out["restore_s"] = time.perf_counter() - t0
                store.close()
                del snap, loaded
            window = feed.history.window()
            for _ in range(warmup):
                runner.score(window)
            del window
            release_freed_memory()  # the steady state's own peak, not the warm-up's freed heap
            client.range_matrix = timed(phases, "fetch", client.range_matrix)  # type: ignore[method-assign]
            feed.history.write = timed(phases, "write", feed.history.write)  # type: ignore[method-assign]
            feed.history.window = timed(phases, "window", feed.history.window)  # type: ignore[method-assign]
            runner.score = timed(phases, "score", runner.score)  # type: ignore[method-assign]
            board.publish = timed(phases, "publish", board.publish)  # type: ignore[method-assign]
            reset_peak()
            totals, per_phase = [], []
            for _ in range(cycles):
                clock[0] += STEP
                phases.clear()
                t0 = time.perf_counter()
                report = await poller.cycle()
                totals.append(time.perf_counter() - t0)
                assert report.scored.get("bench") == n, report
                per_phase.append(dict(phases))
            out["cycle_s"] = statistics.median(totals)
            out["phases_s"] = {k: statistics.median(p[k] for p in per_phase) for k in per_phase[0]}
            out["peak_mb"] = vmhwm_mb()
        else:
            end_ = end
            start = end_ - query.lookback
            matrix = await client.range_matrix(query.expr, start, end_, STEP, max_series=n)
            window = align(matrix, start, end_, STEP)
            del matrix
            for _ in range(warmup):
                runner.score(window)
            del window
            release_freed_memory()
            reset_peak()
            totals = []
            for _ in range(2):
                t0 = time.perf_counter()
                t1 = time.perf_counter()
                matrix = await client.range_matrix(query.expr, start, end_, STEP, max_series=n)
                phases["fetch"] = time.perf_counter() - t1
                t1 = time.perf_counter()
                window = await asyncio.get_running_loop().run_in_executor(
                    executor, align, matrix, start, end_, STEP
                )
                del matrix
                phases["align"] = time.perf_counter() - t1
                t1 = time.perf_counter()
                estimates = await asyncio.get_running_loop().run_in_executor(
                    executor, runner.score, window
                )
                phases["score"] = time.perf_counter() - t1
                t1 = time.perf_counter()
                board.publish("bench", window.keys, estimates)
                phases["publish"] = time.perf_counter() - t1
                totals.append(time.perf_counter() - t0)
                del window, estimates
            out["cycle_s"] = statistics.median(totals)
            out["phases_s"] = dict(phases)
            out["peak_mb"] = vmhwm_mb()
    executor.shutdown()
    del model
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--points", type=int, default=864)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["incremental", "full"])
    parser.add_argument("--detectors", nargs="+", default=["ensemble"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--end", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(
            child(
                args.child,
                args.url,
                args.end,
                args.series[0],
                args.points,
                args.cycles,
                args.detectors,
            )
        )
        return
    for n in args.series:
        end = float(int(time.time() / STEP) * STEP) - STEP
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            src, data = Path(tmp) / "samples.om", Path(tmp) / "data"
            count = write_samples(src, n, args.points + args.cycles, end)
            data.mkdir()
            subprocess.run(
                [
                    find_binary("promtool"),
                    "tsdb",
                    "create-blocks-from",
                    "openmetrics",
                    str(src),
                    str(data),
                ],
                check=True,
                capture_output=True,
            )
            src.unlink()
            prom = start_prometheus(Path(tmp), timeout=600)
            print(
                f"{n} series: backfill + start {time.perf_counter() - t0:.0f} s ({count:,} samples)"
            )
            try:
                for mode in args.modes:
                    argv = [sys.executable, __file__, "--child", mode, "--url", prom.url]
                    argv += ["--end", str(end), "--series", str(n), "--points", str(args.points)]
                    argv += ["--cycles", str(args.cycles), "--detectors", *args.detectors]
                    print(f"  load average before: {os.getloadavg()[0]:.2f}")
                    done = subprocess.run(argv, check=True, capture_output=True, text=True)
                    print("  " + done.stdout.strip().splitlines()[-1], flush=True)
            finally:
                prom.stop()


if __name__ == "__main__":
    main()
