"""Alertmanager replicas failing under a trickle of alerts, and augur stopped mid-flight.

Everything is a real process: `augur run` (the shipped model, a real Prometheus to poll), two
real Alertmanager replicas whose route sends originals to augur's webhook and augur's enriched
copies (`augur_enriched="true"`) to a capture receiver standing in for the team. The test
plays Prometheus: it posts a new source alert to every live replica every second or two and
re-posts the firing ones, as Prometheus's resend does.

What must hold, whatever fails: every alert augur accepted reaches the capture receiver through
every replica, and through each replica exactly once. `tests/test_alert_pipeline.py` covers one
replica down with augur's loop in-process; `tests/test_restart.py` covers augur's own state
across restarts. Each test here takes 1-2 minutes (`OUTAGE_SECONDS` of the faults).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from waiting import eventually
from webhook_bodies import notification

from exporter.alerts.payloads import format_time
from exporter.demo.procs import Process, free_port

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = 60.0
"""How long the replicas stay down: many of augur's backoff periods (capped at 2 s here)."""
REPOST = "2s"
STOP_BOUND_SECONDS = 25.0


@dataclass
class Capture:
    """The team's receiver behind both replicas: firing notifications per (replica, alert)."""

    url: str = ""
    firing: Counter[tuple[str, str]] = field(default_factory=Counter)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        for alert in body["alerts"]:
            if alert["status"] == "firing":
                self.firing[(body["externalURL"], alert["labels"]["alertname"])] += 1
        return web.Response(text="ok")

    def seen(self, replica: Process) -> dict[str, int]:
        """Alert name -> how many times `replica` notified it firing."""
        return {name: n for (url, name), n in self.firing.items() if url == replica.url}


@pytest.fixture
async def capture() -> AsyncIterator[Capture]:
    cap = Capture()
    app = web.Application()
    app.router.add_post("/", cap.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    cap.url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    yield cap
    await runner.cleanup()


def am_config(augur_url: str, capture_url: str) -> dict[str, Any]:
    """docs/alertmanager.md's routing with short timers: originals to augur, copies onwards."""
    return {
        "route": {
            "receiver": "nobody",
            "group_by": ["..."],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
            "routes": [
                {
                    "receiver": "augur",
                    "matchers": ['augur_enriched!="true"'],
                    "repeat_interval": "1m",
                    "continue": False,
                },
                {"receiver": "capture", "matchers": ['augur_enriched="true"']},
            ],
        },
        "receivers": [
            {"name": "nobody"},
            {"name": "augur", "webhook_configs": [{"url": augur_url + "/webhook"}]},
            {"name": "capture", "webhook_configs": [{"url": capture_url}]},
        ],
    }


class Augur:
    """`augur run` as a real process on a fixed port and state file, restartable."""

    def __init__(self, argv: list[str], log_path: Path, url: str) -> None:
        self.argv, self.log_path, self.url = argv, log_path, url
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
            )
        proc = self.proc

        async def ready() -> bool:
            assert proc.returncode is None, self.log_path.read_text()[-2000:]
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with aiohttp.ClientSession() as s, s.get(self.url + "/-/ready") as resp:
                    return resp.status == 200
            return False

        await eventually(ready, within=90)

    async def metrics(self) -> dict[str, float]:
        """augur's /metrics, each sample summed over its label sets."""
        async with aiohttp.ClientSession() as s, s.get(self.url + "/metrics") as resp:
            text = await resp.text()
        out: dict[str, float] = defaultdict(float)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[sample.name] += sample.value
        return dict(out)

    async def terminate(self) -> tuple[float, int]:
        """SIGTERM: (seconds until augur exited, its exit code)."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), STOP_BOUND_SECONDS + 20)
        return time.monotonic() - t0, code

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    def log_lines(self, level: str) -> list[str]:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return [line for line in text.splitlines() if f'"level": "{level}"' in line]


@dataclass
class Stack:
    augur: Augur
    replicas: list[Process]
    capture: Capture


@pytest.fixture
async def stack(
    prometheus_factory: Callable[..., Process],
    alertmanager_factory: Callable[..., Process],
    augur_run_argv: Callable[[Path, int], list[str]],
    capture: Capture,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    prom = prometheus_factory()
    port = free_port()
    config = am_config(f"http://127.0.0.1:{port}", capture.url)
    replicas = [alertmanager_factory(config), alertmanager_factory(config)]
    doc = {
        "prometheus": {"url": prom.url},
        "poll": {"interval": "5s"},
        "state": {"path": str(tmp_path / "augur.db")},
        "alertmanager": {
            "urls": [r.url for r in replicas],
            "repost_interval": REPOST,
            "resolve_timeout": "1h",
            "timeout": "2s",
            "backoff_base": "200ms",
            "backoff_max": "2s",
        },
    }
    path = tmp_path / "augur.yml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    augur = Augur(augur_run_argv(path, port), tmp_path / "augur.log", f"http://127.0.0.1:{port}")
    await augur.start()
    yield Stack(augur, replicas, capture)
    await augur.close()


def source(name: str, starts: float) -> dict[str, Any]:
    """A source alert as Prometheus posts it (firing, endsAt a few resends ahead)."""
    return {
        "labels": {"alertname": name, "instance": "db-1:9100", "severity": "warning"},
        "annotations": {
            "summary": f"disk on db-1 is filling up ({name})",
            "description": "/var/lib/postgresql on db-1:9100 is 93% full.",
        },
        "startsAt": format_time(datetime.fromtimestamp(starts, UTC)),
        "endsAt": format_time(datetime.fromtimestamp(time.time() + 60, UTC)),
    }


class Prometheus:
    """The test's stand-in for Prometheus: a new alert every `every` s, all re-sent each second."""

    def __init__(self, replicas: list[Process], prefix: str, every: float) -> None:
        self.replicas, self.prefix, self.every = replicas, prefix, every
        self.alerts: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        next_new = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                if time.monotonic() >= next_new:
                    self.alerts[f"{self.prefix}{len(self.alerts)}"] = time.time()
                    next_new += self.every
                body = [source(name, starts) for name, starts in self.alerts.items()]
                for replica in self.replicas:  # a replica that is down just misses it
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with session.post(replica.url + "/api/v2/alerts", json=body):
                            pass
                await asyncio.sleep(1.0)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> list[str]:
        """Stop adding alerts (after the next new one); the names of all alerts sent."""
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return list(self.alerts)


async def delivered_once_everywhere(
    s: Stack, names: list[str], twice_allowed: tuple[Process, list[str]] | None = None
) -> None:
    """Wait until every replica notified every alert, then hold augur to exactly once.

    `twice_allowed`: a replica that crashed, and the alerts it had notified before: it lost
    its notification log, so it may notify those once more (and no more than that).
    """

    def complete() -> bool:
        return all(set(names) <= set(s.capture.seen(r)) for r in s.replicas)

    await eventually(complete, within=60)
    # A few more re-posts (every 2 s): time for a replica to notify anything twice.
    await asyncio.sleep(6)
    for replica in s.replicas:
        seen = s.capture.seen(replica)
        again = twice_allowed[1] if twice_allowed and twice_allowed[0] is replica else []
        wrong = {n: c for n, c in seen.items() if c != 1 and not (n in again and c == 2)}
        assert wrong == {}, f"{replica.url} notified these more than once: {wrong}"


async def held(replica: Process) -> set[str]:
    """The names of the enriched alerts a replica holds (GET /api/v2/alerts)."""
    params = {"filter": 'augur_enriched="true"'}
    async with (
        aiohttp.ClientSession() as s,
        s.get(replica.url + "/api/v2/alerts", params=params) as resp,
    ):
        return {a["labels"]["alertname"] for a in await resp.json()}


@pytest.mark.parametrize("how", ["stopped", "crashed"])
async def test_one_replica_down_for_a_minute_gets_everything_once_when_back(
    stack: Stack, how: str
) -> None:
    live, down = stack.replicas
    prom = Prometheus(stack.replicas, "OneDown", every=2.0)
    prom.start()
    await asyncio.sleep(6)
    notified_before = list(stack.capture.seen(down))
    if how == "stopped":
        down.stop()  # SIGTERM: Alertmanager snapshots its notification log on the way out
    else:
        down.kill()  # SIGKILL: the log since its last snapshot (every 15 min) is gone
    outage_start = time.monotonic()
    during = len(prom.alerts)
    # The live replica is not held up by the dead one: each new alert reaches the receiver
    # through it while the other is down.
    pending_seen = 0.0
    while time.monotonic() - outage_start < OUTAGE_SECONDS:
        await asyncio.sleep(5)
        pending_seen = max(pending_seen, (await stack.augur.metrics())["augur_outbox_pending"])
        newest = list(prom.alerts)[-4]
        assert newest in stack.capture.seen(live), f"{newest} held up behind the dead replica"
    assert len(prom.alerts) - during >= OUTAGE_SECONDS / 2 - 2
    assert pending_seen >= len(prom.alerts) - during - 3  # the dead replica's share waits
    await asyncio.to_thread(down.restart, "/-/ready")
    await asyncio.sleep(6)
    names = await prom.stop()
    # After a crash the replica has lost the alerts and its notification log: augur's
    # re-posts bring the alerts back, and the replica notifies the ones it had notified
    # before once more. That is Alertmanager's doing (clustered replicas would restore the
    # log from a peer); everything accepted during the outage is still notified once.
    twice = (down, notified_before) if how == "crashed" else None
    await delivered_once_everywhere(stack, names, twice)
    if how == "crashed":
        assert notified_before and all(stack.capture.seen(down)[n] == 2 for n in notified_before)
    metrics = await stack.augur.metrics()
    assert metrics["augur_alerts_enriched_total"] == len(names)
    await eventually(lambda: _pending_is_zero(stack.augur), within=30)
    assert stack.augur.log_lines("error") == []


async def _pending_is_zero(augur: Augur) -> bool:
    return (await augur.metrics())["augur_outbox_pending"] == 0


async def test_both_replicas_down_outbox_holds_everything_and_drains(stack: Stack) -> None:
    prom = Prometheus(stack.replicas, "Before", every=2.0)
    prom.start()
    await asyncio.sleep(6)
    before = await prom.stop()
    await eventually(lambda: all(set(before) <= set(stack.capture.seen(r)) for r in stack.replicas))
    for replica in stack.replicas:
        replica.stop()
    # Both replicas down. Alerts still reach augur: here from a third party playing an
    # Alertmanager augur cannot reach (a one-way partition), as augur sees a notification.
    during: list[str] = []
    pending: list[float] = []
    t0 = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() - t0 < OUTAGE_SECONDS:
            name = f"During{len(during)}"
            body = notification(source(name, time.time()))
            async with session.post(stack.augur.url + "/webhook", json=body) as resp:
                assert resp.status == 200
            during.append(name)
            pending.append((await stack.augur.metrics())["augur_outbox_pending"])
            await asyncio.sleep(2)
    # The outbox holds them: one pending delivery per alert and replica, rising throughout.
    await asyncio.sleep(2)
    waiting = (await stack.augur.metrics())["augur_outbox_pending"]
    assert waiting == 2 * len(during), (waiting, len(during))
    assert pending == sorted(pending) and pending[-1] > pending[0]
    for replica in stack.replicas:
        await asyncio.to_thread(replica.restart, "/-/ready")
    # Back: augur (backing off at most 2 s) re-posts everything it holds, and the re-posts of
    # what was delivered before the outage restore those alerts too (Alertmanager keeps alerts
    # in memory only). Each is notified once per replica: the notification log survived.
    await delivered_once_everywhere(stack, [*before, *during])
    for replica in stack.replicas:  # and each replica holds all of them again
        assert set(before + during) <= await held(replica)
    await eventually(lambda: _pending_is_zero(stack.augur), within=30)
    metrics = await stack.augur.metrics()
    assert metrics["augur_alerts_enriched_total"] == len(before) + len(during)
    assert stack.augur.log_lines("error") == []


async def test_sigterm_with_alerts_in_flight_exits_in_bound_and_loses_nothing(
    stack: Stack,
) -> None:
    groups, size = 30, 10
    names = [f"Burst{g}x{i}" for g in range(groups) for i in range(size)]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for g in range(groups):
            body = notification(*(source(n, time.time()) for n in names[g * size : (g + 1) * size]))
            async with session.post(stack.augur.url + "/webhook", json=body) as resp:
                assert resp.status == 200
    # The model enriches some 50-80 alerts/s on these cores: most of the burst is still
    # waiting for it (the gauges lag by up to a second; the counter does not).
    enriched = (await stack.augur.metrics())["augur_alerts_enriched_total"]
    assert enriched < len(names), "nothing was in flight: the burst is too small for this machine"
    seconds, code = await stack.augur.terminate()
    assert seconds <= STOP_BOUND_SECONDS and code == 0, (seconds, code)
    await stack.augur.start()  # same port, same state file
    await delivered_once_everywhere(stack, names)
    assert stack.augur.log_lines("error") == []
