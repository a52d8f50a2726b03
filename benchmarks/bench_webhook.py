"""Webhook to outbox: latency per group and sustained alerts/s, with the sender running.

augur's alert loop (webhook receiver, SQLite outbox with synchronous=FULL, sender) serves on a
loopback port and drains into a real Alertmanager; a separate load process posts webhook
notifications of new alerts (1 to 10 per group) on a fixed schedule, 50 groups/s by default,
so a slow answer cannot slow the offered load down. Then a closed-loop phase (8 requests in
flight) finds the ceiling. The enricher is a test double doing a fixed small amount of CPU
work per alert (about what tokenising an alert's text costs); the real model is not in it.

    .venv/bin/python benchmarks/bench_webhook.py [--rate 50] [--seconds 20] [--min-alerts 1]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from exporter.alerts.alertmanager import AlertmanagerSender, AlertMetrics
from exporter.alerts.models import (
    AlertmanagerConfig,
    Enrichment,
    WebhookAlert,
    WebhookConfig,
    format_time,
)
from exporter.alerts.outbox import Outbox
from exporter.alerts.webhook import WebhookReceiver
from exporter.procs import free_port, start_alertmanager

WORK_BYTES = 64 * 1024
"""sha256 over this many bytes per alert: ~0.07 ms of CPU here, the enricher double's work."""


class FixedWorkEnricherDouble:
    """Benchmark double of the enricher: a fixed amount of CPU work per alert, on the loop."""

    def __init__(self) -> None:
        self._blob = os.urandom(WORK_BYTES)

    async def enrich(self, alerts: Sequence[WebhookAlert]) -> list[Enrichment]:
        out = []
        for alert in alerts:
            digest = hashlib.sha256(self._blob + alert.labels["alertname"].encode()).hexdigest()
            out.append(
                Enrichment(
                    labels={"augur_enriched": "true", "category": "disk"},
                    annotations={"augur_category": "disk", "augur_summary": digest[:16]},
                )
            )
        return out


def group(seq: int, size: int) -> dict[str, Any]:
    now = format_time(datetime.now(UTC))
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": f"Bench{seq}", "instance": f"host-{i}:9100", "job": "node"},
            "annotations": {"summary": f"disk on host-{i} is filling up", "description": "x" * 200},
            "startsAt": now,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=node_filesystem_avail_bytes",
        }
        for i in range(size)
    ]
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="Bench{seq}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "augur",
        "groupLabels": {"alertname": f"Bench{seq}"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": alerts,
    }


async def load(url: str, rate: float, seconds: float, sizes: tuple[int, int], closed: int) -> None:
    """The load process: print one JSON line of (latency, alerts, status) per request."""
    rng = random.Random(1)
    results: list[tuple[float, int, int]] = []
    async with aiohttp.ClientSession() as session:

        async def send(seq: int, size: int) -> None:
            body = json.dumps(group(seq, size)).encode()
            t0 = time.perf_counter()
            async with session.post(url, data=body) as resp:
                await resp.read()
            results.append((time.perf_counter() - t0, size, resp.status))

        start = time.perf_counter()
        if closed:

            async def worker(w: int) -> None:
                seq = w * 10**6
                while time.perf_counter() - start < seconds:
                    seq += 1
                    await send(seq, rng.randint(*sizes))

            await asyncio.gather(*(worker(w + 1) for w in range(closed)))
        else:
            tasks = []
            n = int(rate * seconds)
            for seq in range(n):
                # Open loop: each request leaves at its scheduled time, answered or not.
                await asyncio.sleep(max(0.0, start + seq / rate - time.perf_counter()))
                tasks.append(asyncio.create_task(send(seq, rng.randint(*sizes))))
            await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    print(json.dumps({"elapsed": elapsed, "results": results}))


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


async def run_phase(url: str, args: argparse.Namespace, closed: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--load", url, "--rate", str(args.rate)]
    cmd += ["--seconds", str(args.seconds), "--max-alerts", str(args.max_alerts)]
    cmd += ["--min-alerts", str(args.min_alerts)]
    cmd += ["--closed", str(closed)]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    data: dict[str, Any] = json.loads(out)
    return data


async def bench(args: argparse.Namespace, tmp: Path) -> None:
    am = start_alertmanager(
        tmp / "am", {"route": {"receiver": "null"}, "receivers": [{"name": "null"}]}
    )
    try:
        registry = CollectorRegistry()
        metrics = AlertMetrics(registry)
        config = AlertmanagerConfig(urls=[am.url])
        outbox = await Outbox.open(tmp / "outbox.db", config.urls, time.time())
        sender = AlertmanagerSender(config, outbox, metrics)
        receiver = WebhookReceiver(
            WebhookConfig(), outbox, FixedWorkEnricherDouble(), metrics, on_accepted=sender.wake
        )
        server_times: list[float] = []

        async def timed(request: web.Request) -> web.StreamResponse:
            t0 = time.perf_counter()
            resp = await receiver.handle(request)
            server_times.append(time.perf_counter() - t0)
            return resp

        app = web.Application()
        app.router.add_post("/webhook", timed)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await sender.start()
        url = f"http://127.0.0.1:{port}/webhook"
        try:
            for label, closed in (("open loop", 0), ("closed loop, 8 in flight", 8)):
                server_times.clear()
                posted_before = metrics.posted.labels(am.url)._value.get()
                data = await run_phase(url, args, closed)
                results = data["results"]
                client = [r[0] for r in results]
                alerts = sum(r[1] for r in results)
                bad = sum(1 for r in results if r[2] != 200)
                posted = metrics.posted.labels(am.url)._value.get() - posted_before
                offered = f"{args.rate:g} groups/s offered" if not closed else "as fast as served"
                print(f"\n{label} ({offered}, {data['elapsed']:.1f} s):")
                print(f"  groups {len(results)}, alerts {alerts}, non-200 answers {bad}")
                print(
                    f"  sustained: {len(results) / data['elapsed']:.1f} groups/s, "
                    f"{alerts / data['elapsed']:.0f} alerts/s; posted to Alertmanager: {posted:.0f}"
                )
                for name, values in (("server", server_times), ("client", client)):
                    ms = [v * 1000 for v in values]
                    print(
                        f"  {name} latency ms: p50 {pct(ms, 50):.1f}  p99 {pct(ms, 99):.1f}  "
                        f"max {max(ms):.1f}"
                    )
        finally:
            await sender.stop()
            await runner.cleanup()
            await outbox.close()
    finally:
        am.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="groups per second offered")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--min-alerts", type=int, default=1, help="fewest alerts per group")
    parser.add_argument("--max-alerts", type=int, default=10, help="most alerts per group")
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--closed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        sizes = (args.min_alerts, args.max_alerts)
        asyncio.run(load(args.load, args.rate, args.seconds, sizes, args.closed))
        return
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, load {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(args, Path(tmp)))


if __name__ == "__main__":
    main()
