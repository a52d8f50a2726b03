"""How long `exporter.assistant.answer.run` takes per intent against a real Prometheus.

Run from the repository root: `PYTHONPATH=.:tests .venv/bin/python
benchmarks/bench_assistant_answer.py [--rounds N]`. Backfills the assistant's test world
(tests/assistant_world.py: 8 hosts, 10 pods, 10 services, augur's series; 6 h at 60 s) into a
real Prometheus, then times `run` for every intent, the discovery cache warm (as in a serving
augur) and cold (a new client per question). The same-run baseline is one instant query of `up`
with the same client: `run` over that is what the assistant adds to the query round trips.
Results are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from assistant_world import all_samples

from exporter.assistant.answer import NotAvailable, run
from exporter.assistant.catalog import CATALOG
from exporter.demo.procs import start_prometheus
from exporter.prometheus.client import PrometheusClient

SLOTS = {
    "host_cpu": {"host": "web-01"},
    "host_memory": {"host": "db-01"},
    "host_disk": {"host": "db-01"},
    "service_availability": {"service": "payments"},
    "anomalies_in_range": {"range": "24h"},
    "alerts_fired_in_range": {"range": "24h"},
    "changed_around": {"time": "-3h"},
}


def _ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms"


async def _measure(url: str, end: float, rounds: int) -> None:
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        client = PrometheusClient(session, url, retries=0)
        base: list[float] = []
        warm: dict[str, list[float]] = {}
        cold: list[float] = []
        names = [n for n in CATALOG if n != "related_anomalies"]
        for _ in range(rounds):
            for name in names:
                # The baseline interleaved with the runs, so both see the same load and caches.
                started = time.perf_counter()
                await client.query("up", end)
                base.append(time.perf_counter() - started)
                started = time.perf_counter()
                await run(CATALOG[name], SLOTS.get(name, {}), "en", client, end)
                warm.setdefault(name, []).append(time.perf_counter() - started)
            fresh = PrometheusClient(session, url, retries=0)
            started = time.perf_counter()
            await run(CATALOG["host_cpu"], {"host": "web-01"}, "en", fresh, end)
            cold.append(time.perf_counter() - started)
    every = [v for values in warm.values() for v in values]
    medians = {n: statistics.median(v) for n, v in warm.items()}
    slowest = sorted(medians, key=medians.__getitem__, reverse=True)[:3]
    base_median = statistics.median(base)
    print(f"baseline instant query `up`: {_ms(base)}")
    print(f"run, all {len(names)} intents, cache warm: {_ms(every)}")
    print(f"  ratio to the baseline (median): {statistics.median(every) / base_median:.1f}")
    print("  slowest: " + ", ".join(f"{n} {medians[n] * 1000:.1f} ms" for n in slowest))
    print(f"run host_cpu, cache cold (4 label lists first): {_ms(cold)}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    """Backfill, start Prometheus, measure, stop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    end = float(int(time.time()) // 60 * 60)
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_prometheus(Path(tmp) / "prom", samples=all_samples(end))
        try:
            asyncio.run(_measure(proc.url, end, args.rounds))
        except NotAvailable as exc:  # pragma: no cover - the world has every family
            raise SystemExit(str(exc)) from None
        finally:
            proc.stop()


if __name__ == "__main__":
    main()
