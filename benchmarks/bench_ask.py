"""Latency of one `augur ask` against a real Prometheus, with a bare instant query as baseline.

A real Prometheus on loopback holds an hour of node_exporter's CPU and memory series, `up` and
`http_requests_total` over the test world (models/data/ask-world.json: 8 hosts, 6 services).
Timed, `--rounds` times each over a fixed mix of English and Chinese questions (four answered by
the catalogue, one with no data, one out of scope):

- `baseline`: `PrometheusClient.query("up")`, the cheapest thing augur can ask Prometheus;
- `ask_warm`: `ask()` with the known label values cached (what the web API does within
  KNOWN_TTL_SECONDS): embed the question, match, fill slots, run the catalogue's queries;
- `ask_cold`: `ask()` reading the known label values from Prometheus first (9 label requests).

The phrasings' embeddings are built once before timing (they are cached per model). Prints the
median and p95 of each and the ratio of the medians to the baseline's.

`--slots` times slot filling alone (no Prometheus, no model): `slots.mentioned` then
`slots.fill`, as matching calls them, over the same questions with the known label values of a
large cluster (20k pods, 3k instances, 300 services, 50 namespaces, 200 alerts; the first call
on a new snapshot builds its index and is counted) against the test world's as baseline.

    .venv/bin/python benchmarks/bench_ask.py [--rounds 20] [--slots]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from exporter.assistant import slots
from exporter.assistant.ask import KnownLabels, ask
from exporter.assistant.match import index
from exporter.demo.procs import Sample, start_prometheus
from exporter.prometheus.client import PrometheusClient
from exporter.text.classify import default_model_dir
from exporter.text.encoder import TextModel

WORLD = Path(__file__).resolve().parents[1] / "models" / "data" / "ask-world.json"
QUESTIONS = (
    "which scrape targets are down?",
    "哪些服务器 CPU 使用率过高?",
    "how much memory is db-01 using",
    "过去 2 小时 checkout 的错误率",
    "how much traffic does each service get",
    "明天天气怎么样",
)


def world_samples(now: float) -> list[Sample]:
    """An hour of minutely samples over the world's hosts and services."""
    world = json.loads(WORLD.read_text(encoding="utf-8"))
    out = []
    for i in range(60):
        t = now - 60 * i
        for host in world["hosts"]:
            node = {"job": "node", "instance": f"{host}:9100"}
            out.append(Sample("up", node, t, 1.0))
            for mode, per_second in (("idle", 0.7), ("user", 0.3)):
                labels = {**node, "cpu": "0", "mode": mode}
                out.append(Sample("node_cpu_seconds_total", labels, t, 1e6 + per_second * t))
            out.append(Sample("node_memory_MemTotal_bytes", node, t, 16e9))
            out.append(Sample("node_memory_MemAvailable_bytes", node, t, 6e9 + 1e6 * i))
        for svc in world["services"]:
            labels = {"job": svc, "service": svc, "code": "200"}
            out.append(Sample("http_requests_total", labels, t, 6000.0 - 100 * i))
    return out


async def timed(rounds: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    """Milliseconds of each of `rounds` calls."""
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        await call()
        out.append((time.perf_counter() - start) * 1000)
    return out


def p95(values: list[float]) -> float:
    """The 95th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def main(rounds: int) -> None:
    """Run the three measurements and print them."""
    model = TextModel(default_model_dir())
    index(model)
    with tempfile.TemporaryDirectory(prefix="bench-ask-") as tmp:
        prom = start_prometheus(Path(tmp) / "prometheus", samples=world_samples(time.time()))
        try:
            async with aiohttp.ClientSession() as session:
                client = PrometheusClient(session, prom.url)
                known = KnownLabels(client, ttl=3600)
                await known.get()
                results: dict[str, list[float]] = {"baseline": [], "ask_warm": [], "ask_cold": []}
                for question in QUESTIONS:

                    def warm(q: str = question) -> Awaitable[object]:
                        return ask(q, model, client, known=known)

                    def cold(q: str = question) -> Awaitable[object]:
                        return ask(q, model, client)

                    results["baseline"] += await timed(rounds, lambda: client.query("up"))
                    results["ask_warm"] += await timed(rounds, warm)
                    results["ask_cold"] += await timed(rounds, cold)
        finally:
            prom.stop()
    base = statistics.median(results["baseline"])
    for name, values in results.items():
        median = statistics.median(values)
        print(
            f"{name:<9} n={len(values):<4} median {median:7.1f} ms  p95 {p95(values):7.1f} ms  "
            f"ratio {median / base:6.1f}x baseline"
        )


def large_known() -> slots.Known:
    """Known label values of a large cluster, read as from Prometheus's label values."""
    return slots.known_from_labels(
        {
            "instance": [f"node-{i:04d}.prod.example:9100" for i in range(3000)],
            "service": [f"svc-{i:03d}" for i in range(300)] + ["checkout"],
            "namespace": [f"team-{i:02d}" for i in range(50)],
            "pod": [f"svc-{i % 300:03d}-{i:05d}-abcde" for i in range(20000)],
            "alertname": [f"Alert{i:03d}Firing" for i in range(200)],
        }
    )


def bench_slots(rounds: int) -> None:
    """Time slot filling with the test world's known values and with a large cluster's."""
    results: dict[str, list[float]] = {"slots_world": [], "slots_large": []}
    for _ in range(rounds):
        # A fresh snapshot each round, as KnownLabels refreshes: its first ask builds the index.
        for name, known in (
            ("slots_world", slots.load_world(WORLD)),
            ("slots_large", large_known()),
        ):
            for question in QUESTIONS:
                start = time.perf_counter()
                slots.mentioned(question, known)
                slots.fill(question, ("host", "service", "pod", "range"), known)
                results[name].append((time.perf_counter() - start) * 1000)
    base = statistics.median(results["slots_world"])
    for name, values in results.items():
        median = statistics.median(values)
        print(
            f"{name:<11} n={len(values):<4} median {median:8.2f} ms  p95 {p95(values):8.2f} ms  "
            f"ratio {median / base:7.1f}x world"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="calls per question and kind")
    parser.add_argument("--slots", action="store_true", help="time slot filling only")
    args = parser.parse_args()
    if args.slots:
        bench_slots(args.rounds)
    else:
        asyncio.run(main(args.rounds))
