"""What a configuration reload costs, against what a restart costs, in one run.

augur's real app (`build_app`, served on a loopback port) against a real Prometheus holding
`--series` series per query with an hour of history, `--queries` queries scored every 2 s and
the alert loop on (its Alertmanager is never reached: no alert is sent). Timed: the start until
listening (the baseline: what a restart costs before scoring resumes, the model load included),
then, `--rounds` times each, `POST /-/reload` answered after

- `same`: the file unchanged (the model files are read again, the queries are kept);
- `one_query`: one query's detectors changed (that query restarts, the others are kept);
- `alertmanager`: `alertmanager.urls` changed (the loop restarted on the serving model, whose
  files are verified again);
- `model_dir`: `model.dir` moved between two copies of the model (a new model loaded beside the
  serving one, then the loop restarted): what a changed model costs.

Also the RSS peak above the RSS before each reload (two models are held while one loads), and
for `one_query` how long the changed query takes to be scored again. Prints one line per
measurement and a summary; ratios are to the start measured in the same run.

    .venv/bin/python benchmarks/bench_reload.py [--queries 10] [--series 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from exporter.app import METRICS, WEB, build_app
from exporter.config.alerts import REPO_MODEL_DIR
from exporter.config.load import load
from exporter.demo.procs import Sample, free_port, start_prometheus
from exporter.web.server import make_runner, start_site


def rss_mb() -> float:
    """This process's RSS in MB, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PeakRss:
    """The highest RSS seen while the block runs, sampled every 5 ms in a thread."""

    def __enter__(self) -> PeakRss:
        self.peak = rss_mb()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def samples(queries: int, series: int, now: float) -> list[Sample]:
    return [
        Sample(f"bench_q{q}", {"instance": f"i{s}"}, now - 5 - 60 * (59 - i), 100 + s + i % 7)
        for q in range(queries)
        for s in range(series)
        for i in range(60)
    ]


def config(
    prom: str, port: int, tmp: Path, queries: int, detectors: list[str], am: str, model: Path
) -> dict[str, Any]:
    qs: list[dict[str, Any]] = [
        {"name": f"q{q}", "expr": f"bench_q{q}", "lookback": "1h", "step": "1m"}
        for q in range(queries)
    ]
    for q in qs:
        q["detectors"] = ["zscore"]  # the default ensemble would warm up for 100 points
    qs[0]["detectors"] = detectors
    return {
        "prometheus": {"url": prom},
        "poll": {"interval": "2s"},
        "state": {"path": str(tmp / "augur.db")},
        "web": {"listen_address": f"127.0.0.1:{port}", "enable_lifecycle": True},
        "alertmanager": {"urls": [am]},
        "model": {"dir": str(model)},
        "queries": qs,
    }


async def scored(session: aiohttp.ClientSession, query: str, within: float = 120.0) -> None:
    """Return once `query` has a score at /metrics."""
    for _ in range(int(within / 0.05)):
        async with session.get("/metrics") as resp:
            lines = (await resp.text()).splitlines()
        if any(x.startswith("augur_anomaly_score{") and f'query="{query}"' in x for x in lines):
            return
        await asyncio.sleep(0.05)
    raise SystemExit(f"{query} not scored within {within} s")


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="augur-bench-reload-"))
    prom = start_prometheus(tmp / "prom", samples=samples(args.queries, args.series, time.time()))
    path = tmp / "augur.yaml"
    port = free_port()
    ams = ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    models = [tmp / "model-a", tmp / "model-b"]
    for copy in models:
        shutil.copytree(REPO_MODEL_DIR, copy)

    def write(detectors: list[str], am: str, model: Path) -> None:
        data = config(prom.url, port, tmp, args.queries, detectors, am, model)
        path.write_text(yaml.safe_dump(data))

    try:
        write(["zscore"], ams[0], models[0])
        started = time.perf_counter()
        cfg = load(path, environ={})
        app = build_app(cfg, load=lambda: load(path, environ={}))
        runner = make_runner(app, cfg)
        await runner.setup()
        await start_site(runner, cfg, app[WEB], app[METRICS].http_connections_refused.inc)
        start = time.perf_counter() - started
        print(f"start until listening: {start:.3f} s, RSS {rss_mb():.1f} MB")
        times: dict[str, list[float]] = {
            name: [] for name in ("same", "one_query", "alertmanager", "model_dir")
        }
        peaks: dict[str, list[float]] = {name: [] for name in times}
        kept: dict[str, list[float]] = {name: [] for name in times}
        rescored: list[float] = []
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as session:
            await scored(session, f"q{args.queries - 1}")
            detectors, am, model = ["zscore"], ams[0], models[0]
            for _ in range(args.rounds):
                for name in times:
                    if name == "one_query":
                        detectors = ["ewma"] if detectors == ["zscore"] else ["zscore"]
                    elif name == "alertmanager":
                        am = ams[1] if am == ams[0] else ams[0]
                    elif name == "model_dir":
                        model = models[1] if model == models[0] else models[0]
                    write(detectors, am, model)
                    before = rss_mb()
                    t0 = time.perf_counter()
                    with PeakRss() as peak:
                        async with session.post("/-/reload") as resp:
                            answer = await resp.text()
                    seconds = time.perf_counter() - t0
                    assert resp.status == 200, answer
                    times[name].append(seconds)
                    peaks[name].append(peak.peak - before)
                    kept[name].append(rss_mb() - before)
                    print(
                        f"{name}: {seconds:.3f} s, RSS peak +{peak.peak - before:.1f} MB, "
                        f"after {rss_mb() - before:+.1f} MB"
                    )
                    if name == "one_query":
                        await scored(session, "q0")
                        rescored.append(time.perf_counter() - t0)
        await runner.cleanup()
    finally:
        prom.stop()
    print(f"\n{args.queries} queries x {args.series} series, {args.rounds} rounds")
    print(f"start (baseline): {start:.3f} s")
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"reload {name}: median {median:.3f} s ({median / start:.2f} x start), "
            f"RSS peak +{max(peaks[name]):.1f} MB, after {statistics.median(kept[name]):+.1f} MB"
        )
    print(f"one_query: changed query scored again {statistics.median(rescored):.3f} s after")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
