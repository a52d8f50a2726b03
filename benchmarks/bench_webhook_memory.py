"""Resident memory per webhook body in flight: what a 3.5 MB notification costs augur.

A server process runs the alert loop's webhook as `augur run` builds it (`AlertLoop`, real
SQLite outbox; no enrichment, no sender: the answer never waits on them). This process posts
`--concurrent` bodies of `--mb` MB at once, `--rounds` times, and reads the server's peak RSS
(VmHWM) against its RSS before: the growth per body in flight is the figure. Bodies are new
alerts each round (each is stored), ~0.4 KB of labels and annotations per alert. The server
runs in /tmp, so `PYTHONPATH` decides which tree it imports.

Only the loop's stable API is used, so an older tree is measured the same way:

    PYTHONPATH=. .venv/bin/python benchmarks/bench_webhook_memory.py [--mb 3.5] [--concurrent 4]
    PYTHONPATH=/tmp/old-tree .venv/bin/python benchmarks/bench_webhook_memory.py
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

MODEL_DIR = str(Path(__file__).resolve().parents[1] / "models" / "onnx")


def body(mb: float, seq: int) -> bytes:
    alerts: list[dict[str, Any]] = []
    size = 0
    while size < mb * 1_000_000:
        i = len(alerts)
        alert = {
            "status": "firing",
            "labels": {
                "alertname": f"Mem{seq}",
                "instance": f"host-{i}:9100",
                "job": "node",
                "mountpoint": f"/var/lib/data{i}",
                "severity": "warning",
            },
            "annotations": {
                "summary": f"disk on host-{i} is filling up",
                "description": "x" * 100,
            },
            "startsAt": "2024-05-01T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=node_filesystem_avail_bytes",
            "fingerprint": f"{seq:08x}{i:08x}",
        }
        size += len(json.dumps(alert))
        alerts.append(alert)
    return json.dumps(
        {
            "version": "4",
            "groupKey": f"mem{seq}",
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "augur",
            "alerts": alerts,
        }
    ).encode()


SERVER = """
import asyncio, sys
from pathlib import Path
from aiohttp import web
from prometheus_client import CollectorRegistry
from exporter.alerts.loop import AlertLoop
from exporter.config.alerts import AlertmanagerConfig, ModelConfig, WebhookConfig
from exporter.config.prometheus import PrometheusConfig
from exporter.config.root import Config

async def main() -> None:
    webhook = {"max_body_bytes": 16 << 20}
    if "max_backlog" in WebhookConfig.model_fields:  # nothing is enriched here: no backpressure
        webhook["max_backlog"] = 10**9
    config = Config(
        prometheus=PrometheusConfig(url="http://127.0.0.1:1"),
        alertmanager=AlertmanagerConfig(urls=["http://127.0.0.1:9"]),
        webhook=WebhookConfig(**webhook),
        model=ModelConfig(dir=Path(sys.argv[3])),
    )
    loop = AlertLoop(
        config, CollectorRegistry(), outbox=Path(sys.argv[2]), enrich=False, send=False
    )
    app = web.Application(client_max_size=16 << 20)
    app.cleanup_ctx.append(loop.cleanup_ctx)
    app.router.add_post("/webhook", loop.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1])).start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


async def post_all(url: str, bodies: list[bytes]) -> list[int]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:

        async def one(data: bytes) -> int:
            async with session.post(url, data=io.BytesIO(data)) as resp:
                await resp.read()
                return resp.status

        return list(await asyncio.gather(*(one(b) for b in bodies)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=3.5)
    parser.add_argument("--concurrent", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from exporter.demo.procs import free_port

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(port), str(Path(tmp) / "outbox.db"), MODEL_DIR],
            stdout=subprocess.PIPE,
            env=os.environ,
            cwd=tempfile.gettempdir(),  # not the current directory's exporter: PYTHONPATH's
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
            url = f"http://127.0.0.1:{port}/webhook"
            # A warm-up round, so imports and caches are not counted as per-body memory.
            asyncio.run(post_all(url, [body(0.1, 0)]))
            time.sleep(0.5)
            base = status_kb(server.pid, "VmRSS")
            statuses: list[int] = []
            started = time.perf_counter()
            for r in range(args.rounds):
                bodies = [
                    body(args.mb, 1 + r * args.concurrent + c) for c in range(args.concurrent)
                ]
                statuses += asyncio.run(post_all(url, bodies))
            seconds = time.perf_counter() - started
            peak = status_kb(server.pid, "VmHWM")
        finally:
            server.terminate()
            server.wait(10)
    size = len(body(args.mb, 1)) / 1e6
    per_body = (peak - base) / 1024 / args.concurrent
    print(
        f"{args.concurrent} bodies of {size:.2f} MB in flight at once, {args.rounds} rounds, "
        f"answers {sorted(set(statuses))}: RSS {base / 1024:.0f} MB before, peak "
        f"{peak / 1024:.0f} MB: {per_body:.0f} MB per body in flight "
        f"({per_body / size:.0f}x its size); {seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
