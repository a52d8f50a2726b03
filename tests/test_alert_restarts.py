"""`augur run` stopped mid-load against a real Alertmanager: nothing lost, nobody notified twice.

Alertmanager routes a stream of source alerts to the real `augur run` (the shipped text model,
its outbox on disk) and augur's enriched copies to a receiver that counts notifications per
alert. Part way through, augur gets SIGTERM (it must exit 0 within its 25 s budget) or
SIGKILL (no shutdown at all) while Alertmanager keeps notifying it; then it starts again on
the same outbox. Every source alert must reach the receiver enriched exactly once: what augur
answered 200 for was on disk, what it did not answer Alertmanager retried, and re-posts after
the restart merge into the alert Alertmanager already has.
(tests/test_alert_pipeline.py kills augur after a single 200; this is the loaded case.)
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from test_alert_pipeline import am_config, source
from waiting import eventually

from exporter.demo.procs import Process, free_port

pytestmark = pytest.mark.integration

WAVES, PER_WAVE = 10, 20
SIGNAL_AFTER_WAVE = 3


class Receiver:
    """The humans' webhook receiver: counts firing notifications of each enriched alert."""

    def __init__(self) -> None:
        self.firing: Counter[str] = Counter()
        self.resolved: Counter[str] = Counter()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        for alert in body["alerts"]:
            if alert["labels"].get("augur_enriched") == "true":
                counts = self.firing if alert["status"] == "firing" else self.resolved
                counts[alert["labels"]["alertname"]] += 1
        return web.Response(text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    rec.url = f"http://127.0.0.1:{port}/"
    yield rec
    await runner.cleanup()


async def scrape(session: aiohttp.ClientSession, port: int, name: str) -> float:
    try:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            text = await resp.text()
    except aiohttp.ClientError:
        return 0.0
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{.*}})? (\S+)$", text, re.M))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_stopped_mid_load_loses_nothing_and_notifies_once(
    alertmanager_factory: Callable[..., Process],
    augur_run_argv: Callable[[Path, int], list[str]],
    receiver: Receiver,
    tmp_path: Path,
    sig: signal.Signals,
) -> None:
    port = free_port()
    am = alertmanager_factory(am_config(f"http://127.0.0.1:{port}", receiver.url))
    cfg = tmp_path / "augur.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                # Not needed: enrichment's Prometheus calls fail fast and it goes on.
                "prometheus": {"url": "http://127.0.0.1:1", "retries": 0},
                "poll": {"interval": "1h"},
                "state": {"path": str(tmp_path / "augur.db")},
                # Enriched copies are posted with endsAt 3 intervals ahead: a restart shorter
                # than that leaves them firing in Alertmanager (longer, they resolve and fire
                # again: two notifications, which is the design, not a duplicate).
                "alertmanager": {"urls": [am.url], "repost_interval": "10s"},
                "enrich": {"deadline": "1s"},
            }
        )
    )
    log = (tmp_path / "augur.log").open("ab")

    async def spawn() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *augur_run_argv(cfg, port),
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    names = [f"Load{w}x{i}" for w in range(WAVES) for i in range(PER_WAVE)]
    started = time.time() - 60
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def wave(w: int) -> None:
            alerts = [source(n, started) for n in names[w * PER_WAVE : (w + 1) * PER_WAVE]]
            async with session.post(am.url + "/api/v2/alerts", json=alerts) as resp:
                assert resp.status == 200, await resp.text()

        proc = await spawn()
        try:
            await eventually(lambda: scrape(session, port, "augur_build_info"), within=120)
            for w in range(SIGNAL_AFTER_WAVE):
                await wave(w)
            # Mid-load: augur has taken some of it, and the next waves are on their way.
            await eventually(lambda: scrape(session, port, "augur_alerts_received_total"))
            proc.send_signal(sig)
            for w in range(SIGNAL_AFTER_WAVE, WAVES):
                await wave(w)
                await asyncio.sleep(0.1)
            # SIGTERM: a clean exit inside the pod's budget; SIGKILL: no shutdown at all.
            code = await asyncio.wait_for(proc.wait(), 25)
            assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL)

            proc = await spawn()
            await eventually(lambda: set(receiver.firing) == set(names), within=120)
            # Until augur re-posted everything twice (every 10 s): time for anyone to be
            # notified twice, had they been going to.
            await eventually(lambda: _posted_at_least(session, port, 2 * len(names)), within=60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            log.close()
    twice = {name: n for name, n in receiver.firing.items() if n != 1}
    assert twice == {}, twice
    assert receiver.resolved == Counter()  # nothing resolved while augur was away


async def _posted_at_least(session: aiohttp.ClientSession, port: int, n: int) -> bool:
    return await scrape(session, port, "augur_alerts_posted_total") >= n
