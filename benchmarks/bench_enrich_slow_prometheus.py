"""Enrichment throughput when Prometheus answers slower than `enrich.deadline`, and fairness.

The alert loop as `augur run` builds it (`AlertLoop`: real text model on its own thread, the
real enricher, the SQLite outbox; no sender) enriches a backlog of alerts with new texts. The
enricher's Prometheus is a real one behind a proxy that holds every answer `--delay` seconds
(0 = no proxy): the question is how many alerts/s the worker drains while each batch waits out
its deadline. Then fairness: a `--huge`-alert group followed by a 1-alert group; how long the
small one waited to be enriched.

Only the loop's stable API is used, so the same script measures an older tree too:

    PYTHONPATH=. .venv/bin/python benchmarks/bench_enrich_slow_prometheus.py [--alerts 480]
    PYTHONPATH=/tmp/old-tree .venv/bin/python benchmarks/bench_enrich_slow_prometheus.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from exporter.alerts.loop import AlertLoop
from exporter.alerts.payloads import WebhookPayload, format_time
from exporter.config.alerts import AlertmanagerConfig, EnrichConfig, ModelConfig
from exporter.config.prometheus import PrometheusConfig
from exporter.config.root import Config
from exporter.demo.procs import Sample, free_port, start_prometheus

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "onnx"
HOSTS = 10


def group(name: str, size: int, seq: int) -> WebhookPayload:
    now = format_time(datetime.now(UTC))
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": name, "instance": f"host-{i % HOSTS}:9100", "n": str(i)},
            "annotations": {
                "summary": f"disk {seq}-{i} on host-{i % HOSTS} is filling up",
                "description": f"/var/lib/db{i} on host-{i % HOSTS}:9100 is at {90 + i % 10}% "
                f"and will be full in about {i % 7 + 1} hours ({seq}).",
            },
            "startsAt": now,
            "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=node_filesystem_avail_bytes",
        }
        for i in range(size)
    ]
    return WebhookPayload.model_validate(
        {
            "version": "4",
            "groupKey": name,
            "status": "firing",
            "receiver": "augur",
            "alerts": alerts,
        }
    )


async def slow_proxy(target: str, delay: float) -> tuple[web.AppRunner, str]:
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(delay)
        async with session.request(
            request.method, target + request.path_qs, data=body, headers=request.headers
        ) as resp:
            return web.Response(
                body=await resp.read(), status=resp.status, content_type=resp.content_type
            )

    async def close(app: web.Application) -> None:
        await session.close()

    app = web.Application()
    app.on_cleanup.append(close)
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


DRAIN_TIMEOUT_SECONDS = 900.0


async def drain(loop: AlertLoop) -> float:
    started = time.perf_counter()
    while await loop.outbox.awaiting_count():
        if time.perf_counter() - started > DRAIN_TIMEOUT_SECONDS:
            raise TimeoutError("the backlog did not drain")
        await asyncio.sleep(0.05)
    return time.perf_counter() - started


async def enriched_at(loop: AlertLoop, name: str, started: float) -> float:
    while True:
        rows = await loop.outbox.rows()
        if any(json.loads(r["labels"]).get("alertname") == name and r["enriched"] for r in rows):
            return time.perf_counter() - started
        await asyncio.sleep(0.05)


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    now = time.time()
    scores = [
        Sample(
            "augur_anomaly_score",
            {"query": "disk_io", "detector": "ensemble", "instance": f"host-{h}:9100"},
            now - 1200 + 15 * i,
            0.3 if i < 60 else 3.0,
        )
        for h in range(HOSTS)
        for i in range(80)
    ]
    prom = start_prometheus(tmp / "prom", samples=scores)
    proxy, url = (None, prom.url) if not args.delay else await slow_proxy(prom.url, args.delay)
    config = Config(
        prometheus=PrometheusConfig(url=url),
        alertmanager=AlertmanagerConfig(urls=["http://127.0.0.1:9"]),
        enrich=EnrichConfig(deadline=args.deadline),
        model=ModelConfig(dir=MODEL_DIR),
    )
    out: dict[str, Any] = {}
    try:
        loop = AlertLoop(config, CollectorRegistry(), outbox=tmp / "outbox.db", send=False)
        await loop.start()
        try:
            await loop.receiver.accept(group("Backlog", args.alerts, 1))
            seconds = await drain(loop)
            out["alerts_per_second"] = args.alerts / seconds
            started = time.perf_counter()
            await loop.receiver.accept(group("Huge", args.huge, 2))
            await loop.receiver.accept(group("Small", 1, 3))
            out["small_waited_seconds"] = await enriched_at(loop, "Small", started)
            out["huge_drained_seconds"] = await drain(loop) + out["small_waited_seconds"]
            notes = [json.loads(r["enrichment"] or "{}") for r in await loop.outbox.rows()]
            out["without_category"] = sum("category" in n.get("augur_missing", "") for n in notes)
        finally:
            await loop.stop()
    finally:
        if proxy is not None:
            await proxy.cleanup()
        prom.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=480, help="backlog to drain")
    parser.add_argument("--huge", type=int, default=800, help="the big group's alerts")
    parser.add_argument("--delay", type=float, default=1.0, help="Prometheus answers this late")
    parser.add_argument("--deadline", type=float, default=0.5, help="enrich.deadline")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load {os.getloadavg()}; {vars(args)}")
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    print(
        f"drained {args.alerts} alerts at {result['alerts_per_second']:.0f} alerts/s "
        f"(Prometheus {args.delay:g} s late, deadline {args.deadline:g} s); a 1-alert group "
        f"behind a {args.huge}-alert one enriched after {result['small_waited_seconds']:.1f} s "
        f"(the big one took {result['huge_drained_seconds']:.1f} s); "
        f"{result['without_category']} alerts without a category (model_timeout)"
    )


if __name__ == "__main__":
    main()
