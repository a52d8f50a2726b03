"""Storage faults while augur serves: the app `augur run` builds, and `augur run` itself.

The outbox damaged under the running app (the webhook answers 503 once at most, then 200, on
a fresh outbox, counted), the outbox's bound and a full volume answered with 503 and recovered
without a restart; `augur run` started on a state snapshot and an outbox both cut in half:
it moves them aside, says so, turns ready and scores, instead of the crash loop; and `augur
run` on a read-only state volume: exit 1 saying so.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from serving import running
from test_daemon import history
from test_storage_faults import PAGE, fill, filled_outbox, half, tmpfs
from waiting import wait_until
from webhook_bodies import notification

from exporter.alerts.loop import outbox_path
from exporter.config.root import Config
from exporter.demo.procs import Process, free_port
from exporter.scoring.state import StateStore

pytestmark = pytest.mark.integration


def alert(i: int, size: int = 200) -> dict[str, Any]:
    return {
        "labels": {"alertname": f"Disk{i}", "instance": "pg-1:9100"},
        "annotations": {"summary": "disk almost full " + "x" * size},
        "startsAt": "2026-12-04T22:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": f"{i:016x}",
    }


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, str]:
    async with session.post(url + "/webhook", json=body) as resp:
        return resp.status, await resp.text()


def sample(text: str, name: str, labels: str = "") -> float | None:
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def overwrite_live(path: Path) -> None:
    """Garbage over pages 2.. of the live file, after a checkpoint (see test_storage_faults)."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with path.open("r+b") as f:
        f.seek(PAGE)
        f.write(os.urandom(path.stat().st_size - PAGE))


async def test_outbox_faults_while_serving_answer_503_and_recover_without_restart(
    tmp_path: Path,
) -> None:
    port = free_port()
    # Room for the WAL to grow to its checkpoint (4 MB) until the test fills the rest.
    with tmpfs(tmp_path / "volume", "16m") as volume:
        cfg = Config.model_validate(
            {
                "prometheus": {"url": "http://127.0.0.1:1", "retries": 0},  # not needed here
                "poll": {"interval": "1h"},
                "web": {"listen_address": f"127.0.0.1:{port}"},
                "state": {"path": str(volume / "augur.db")},
                "alertmanager": {"urls": ["http://127.0.0.1:1"]},  # posts fail and are retried
                "enrich": {"deadline": "1s"},
                "outbox": {"max_alerts": 120},
            }
        )
        url = f"http://127.0.0.1:{port}"
        async with running(cfg), aiohttp.ClientSession() as session:
            assert (await post(session, url, notification(*map(alert, range(100)))))[0] == 200
            await asyncio.to_thread(overwrite_live, outbox_path(cfg))
            # The worker or the sender may meet the damage first; then the webhook never sees
            # it. Either way no more than one 503 (which Alertmanager retries), then 200.
            answers = [await post(session, url, notification(alert(1000)))]
            if answers[0][0] != 200:
                answers.append(await post(session, url, notification(alert(1000))))
            assert [status for status, _ in answers] in ([200], [503, 200]), answers
            assert "damaged" in answers[0][1] or answers[0][0] == 200
            async with session.get(url + "/metrics") as resp:
                text = await resp.text()
            assert sample(text, "augur_storage_corruptions_total", '{store="outbox"}') == 1.0
            assert sample(text, "augur_outbox_alerts") == 1.0  # the fresh outbox, honestly
            assert len(list(volume.glob("augur-outbox.db.corrupt-*"))) >= 1

            # The bound: 1 stored + 120 new > 120, refused whole; a smaller group fits.
            status, body = await post(session, url, notification(*map(alert, range(2000, 2120))))
            assert status == 503 and "outbox.max_alerts = 120" in body
            assert (await post(session, url, notification(*map(alert, range(2000, 2010)))))[
                0
            ] == 200

            # The volume fills up: 503 saying so; space returns: 200, no restart.
            filler = await asyncio.to_thread(fill, volume)
            status, body = await post(session, url, notification(alert(3000, size=300_000)))
            assert status == 503 and "the volume is full" in body
            await asyncio.to_thread(filler.unlink)
            assert (await post(session, url, notification(alert(3000, size=300_000))))[0] == 200
            async with session.get(url + "/metrics") as resp:
                text = await resp.text()
            assert sample(text, "augur_webhook_throttled_total", '{reason="outbox_full"}') == 1.0
            failures = sample(text, "augur_storage_failures_total", '{store="outbox"}')
            assert failures is not None and failures >= 1
            assert sample(text, "augur_storage_corruptions_total", '{store="outbox"}') == 1.0


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        text: str = resp.read().decode()
        return text


def ready(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as resp:
        return bool(resp.status == 200)


def scoring(port: int) -> str:
    """The scrape once the query's series are scored, else ""."""
    text = metrics_text(port)
    return text if sample(text, "augur_series_scored", '{query="requests"}') else ""


def cut_state(path: Path) -> None:
    store = StateStore(path)
    for i in range(40):
        store.save(f"q{i}", "ensemble", 1, "x", {"series": list(range(300))})
    store.close()
    half(path)


def test_augur_run_on_half_truncated_files_starts_fresh_turns_ready_and_scores(
    prometheus_factory: Callable[..., Process],
    augur_run_argv: Callable[[Path, int], list[str]],
    tmp_path: Path,
) -> None:
    """The issue's crash loop: both files cut in half used to make every start exit 1."""
    prom = prometheus_factory(samples=history(time.time(), days=0.2))
    state = tmp_path / "augur.db"
    cut_state(state)
    outbox = tmp_path / "augur-outbox.db"
    asyncio.run(filled_outbox(outbox, 300))
    half(outbox)
    port = free_port()
    cfg = tmp_path / "augur.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "prometheus": {"url": prom.url},
                "poll": {"interval": "2s"},
                "state": {"path": str(state)},
                "queries": [
                    {
                        "name": "requests",
                        "expr": "augur_test_requests",
                        "lookback": "2h",
                        "step": "1m",
                        "detectors": ["zscore"],
                    }
                ],
                "alertmanager": {"urls": ["http://127.0.0.1:1"]},
            }
        )
    )
    proc = subprocess.Popen(
        augur_run_argv(cfg, port),
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_until(lambda: ready(port), within=120)
        text = wait_until(lambda: scoring(port))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(25) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        proc.stderr.close()
    assert sample(text, "augur_storage_corruptions_total", '{store="state"}') == 1.0
    assert sample(text, "augur_storage_corruptions_total", '{store="outbox"}') == 1.0
    assert "augur_anomaly_score{" in text
    lines = [json.loads(line) for line in err.splitlines() if line.strip().startswith("{")]
    damaged = {line["store"]: line for line in lines if line["event"] == "storage_damaged"}
    assert set(damaged) == {"state", "outbox"}
    for line in damaged.values():
        assert line["level"] == "error" and ".corrupt-" in line["moved_to"]
    assert "repeat_interval" in damaged["outbox"]["lost"]
    assert "writable" not in err  # not the old misleading advice
    assert len(list(tmp_path.glob("augur.db.corrupt-*"))) >= 1


def test_augur_run_on_a_read_only_state_volume_exits_1_saying_so(
    augur_run_argv: Callable[[Path, int], list[str]], tmp_path: Path
) -> None:
    """Not damage: nothing to move aside, and only whoever owns the volume can fix it."""
    with tmpfs(tmp_path / "volume") as volume:
        subprocess.run(["mount", "-o", "remount,ro", str(volume)], check=True)
        cfg = tmp_path / "augur.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "prometheus": {"url": "http://127.0.0.1:1", "retries": 0},
                    "state": {"path": str(volume / "augur.db")},
                }
            )
        )
        done = subprocess.run(
            augur_run_argv(cfg, free_port()), capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 1, done.stderr
    assert f"cannot open the state database {volume / 'augur.db'}" in done.stderr
    assert "the file or its volume is read-only" in done.stderr
