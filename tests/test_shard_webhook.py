"""Any shard can enrich any alert: two real `augur run` shards, a real Prometheus scraping
both, and an alert on a series of shard 0 posted to shard 1's webhook comes out with that
series among its related anomalies. The scores an enrichment reads come from Prometheus, not
from the replica's own memory; this is what lets the webhook Service reach any replica."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from test_shard_e2e import scores
from waiting import eventually
from webhook_bodies import notification

from exporter.demo.procs import Process, Sample, free_port
from exporter.scoring.shard import Shard

pytestmark = pytest.mark.integration

HOSTS = [f"h{i:02d}" for i in range(8)]
STEP = 60.0


def labels(host: str) -> dict[str, str]:
    return {"instance": f"{host}:9100", "job": "node"}


# The host whose newest sample spikes: the first one shard 0 owns (and shard 1 does not).
SPIKED = next(h for h in HOSTS if Shard(2, 0).owns(labels(h)))


def history(now: float) -> list[Sample]:
    """An hour of a steady gauge per host; SPIKED's newest sample jumps far out of its band."""
    out = []
    for n, host in enumerate(HOSTS):
        for k in range(60):
            value = 10 + n + k % 3 + (50 if host == SPIKED and k == 59 else 0)
            out.append(Sample("shard_load", labels(host), now - 5 - STEP * (59 - k), value))
    return out


def prometheus_has(prom: Process, expr: str) -> bool:
    """Whether `expr` has a result in Prometheus now."""
    url = f"{prom.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as resp:
        return bool(json.load(resp)["data"]["result"])


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


async def test_a_shard_enriches_with_the_scores_of_another(
    prometheus_factory: Callable[..., Process],
    augur_run_argv: Callable[[Path, int], list[str]],
    tmp_path: Path,
) -> None:
    posted: list[dict[str, Any]] = []

    async def alertmanager(request: web.Request) -> web.Response:
        posted.extend(await request.json())
        return web.json_response({})

    # Stands in for Alertmanager's API: what augur posts back is all this test reads.
    capture = web.Application()
    capture.router.add_post("/api/v2/alerts", alertmanager)
    runner = web.AppRunner(capture)
    await runner.setup()
    capture_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", capture_port).start()

    ports = [free_port(), free_port()]
    prom = prometheus_factory(
        samples=history(time.time()),
        scrape_targets={f"augur{i}": f"127.0.0.1:{port}" for i, port in enumerate(ports)},
        scrape_interval="1s",
    )
    procs: list[asyncio.subprocess.Process] = []
    logs = []
    try:
        for index, port in enumerate(ports):
            cfg = tmp_path / f"augur-{index}.yaml"
            cfg.write_text(
                yaml.safe_dump(
                    {
                        "prometheus": {"url": prom.url},
                        "poll": {"interval": "2s"},
                        "state": {"path": str(tmp_path / f"augur-{index}.db")},
                        "alertmanager": {"urls": [f"http://127.0.0.1:{capture_port}"]},
                        "enrich": {"deadline": "5s", "related_settle": "0s"},
                        "queries": [
                            {
                                "name": "load",
                                "expr": "shard_load",
                                "detectors": ["zscore"],
                                "lookback": "1h",
                                "step": "1m",
                                "seasonality": "none",
                            }
                        ],
                    }
                )
            )
            log = (tmp_path / f"augur-{index}.log").open("w")
            logs.append(log)
            argv = [*augur_run_argv(cfg, port), "--shard.count", "2", "--shard.index", str(index)]
            env = {k: v for k, v in os.environ.items() if not k.startswith("AUGUR_")}
            procs.append(await asyncio.create_subprocess_exec(*argv, stderr=log, env=env))
        # Shard 0 scores SPIKED as anomalous, Prometheus has scraped it; shard 1 never scores it.
        spiked = f'augur_anomaly_score{{exported_instance="{SPIKED}:9100"}} >= 1'
        await eventually(functools.partial(asyncio.to_thread, prometheus_has, prom, spiked), 90)
        second = await eventually(
            functools.partial(asyncio.to_thread, scores, ports[1], "instance"), 60
        )
        assert second is not None  # eventually returns only what is truthy
        assert second["zscore"] and f"{SPIKED}:9100" not in second["zscore"]

        alert = {
            "labels": {"alertname": "HostHighLoad", "instance": f"{SPIKED}:9100"},
            "annotations": {"summary": f"load is high on {SPIKED}"},
            "startsAt": iso(time.time()),
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{ports[1]}/webhook", json=notification(alert)) as resp,
        ):
            assert resp.status == 200, await resp.text()
        enriched = await eventually(
            lambda: next((a for a in posted if a["labels"].get("augur_enriched")), None), 60
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 25)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for log in logs:
            log.close()
        await runner.cleanup()
    assert enriched is not None  # eventually returns only what is truthy
    related = enriched["annotations"].get("augur_related", "")
    assert f"{SPIKED}:9100" in related and "shard_load" in related, enriched["annotations"]
