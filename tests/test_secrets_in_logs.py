"""No secret in augur's logs, `/metrics` or error answers, with every secret set and failing.

The real `augur run` (JSON logs on stderr, every line kept) with: a Prometheus that wants
basic auth given the wrong password (its polls get 401), a real Alertmanager that wants basic
auth plus an unreachable replica, the webhook's token (sent wrong, then right), and augur's own
`basic_auth_users` (a scrape with the wrong password, then the right one). Then every log
line, the exposition and every error body are searched for each secret, also base64-encoded
as it travels in a Basic header.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import yaml
from webhook_bodies import notification

from exporter.demo.procs import Process, find_binary, free_port

pytestmark = pytest.mark.integration

PROM_PASSWORD_RIGHT = "prom-right-Q7x"
PROM_PASSWORD_GIVEN = "prom-wrong-Z9k"  # what augur is configured with: Prometheus says 401
AM_PASSWORD = "am-pass-R4w"
WEBHOOK_TOKEN = "hook-token-M2v"
WEB_PASSWORD = "scrape-pass-T8p"
WEB_HASH = bcrypt.hashpw(WEB_PASSWORD.encode(), bcrypt.gensalt(4)).decode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def secrets() -> dict[str, str]:
    plain = {
        "prometheus password": PROM_PASSWORD_GIVEN,
        "alertmanager password": AM_PASSWORD,
        "webhook token": WEBHOOK_TOKEN,
        "web user's password": WEB_PASSWORD,
        "web user's hash": WEB_HASH,
    }
    encoded = {
        "prometheus Basic header": basic("augur", PROM_PASSWORD_GIVEN).split()[1],
        "alertmanager Basic header": basic("augur", AM_PASSWORD).split()[1],
        "web Basic header": basic("scraper", WEB_PASSWORD).split()[1],
    }
    return plain | encoded


def start_alertmanager_with_auth(workdir: Path) -> Process:
    workdir.mkdir()
    port = free_port()
    (workdir / "am.yml").write_text(
        yaml.safe_dump({"route": {"receiver": "null"}, "receivers": [{"name": "null"}]})
    )
    users = {"augur": bcrypt.hashpw(AM_PASSWORD.encode(), bcrypt.gensalt(4)).decode()}
    (workdir / "web.yml").write_text(yaml.safe_dump({"basic_auth_users": users}))
    argv = [
        find_binary("alertmanager"),
        f"--config.file={workdir / 'am.yml'}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        f"--web.config.file={workdir / 'web.yml'}",
    ]
    log_path = workdir / "alertmanager.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    request = urllib.request.Request(
        url + "/-/ready", headers={"Authorization": basic("augur", AM_PASSWORD)}
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log_path.read_text()
        try:
            with urllib.request.urlopen(request, timeout=1) as resp:
                if resp.status == 200:
                    return Process(url, port, proc, workdir, argv, log_path)
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise TimeoutError("alertmanager not ready")


async def wait_until(
    condition: Callable[[], Any], what: str, log: Path, limit: float = 120
) -> None:
    async def loop() -> None:
        while True:
            if await condition():
                return
            await asyncio.sleep(0.2)

    try:
        await asyncio.wait_for(loop(), limit)
    except TimeoutError:
        tail = (await asyncio.to_thread(log.read_text, errors="replace"))[-3000:]
        raise AssertionError(f"gave up waiting for {what}; augur's log ends:\n{tail}") from None


async def test_no_secret_leaks(
    tmp_path: Path,
    prometheus_factory: Callable[..., Process],
    augur_run_argv: Callable[[Path, int], list[str]],
) -> None:
    prom_hash = bcrypt.hashpw(PROM_PASSWORD_RIGHT.encode(), bcrypt.gensalt(4)).decode()
    prom = prometheus_factory(
        web_config={"basic_auth_users": {"augur": prom_hash}},
        probe_auth=("augur", PROM_PASSWORD_RIGHT),
    )
    am = await asyncio.to_thread(start_alertmanager_with_auth, tmp_path / "am")
    unreachable = f"http://127.0.0.1:{free_port()}"
    files = {
        "prom-password": PROM_PASSWORD_GIVEN,
        "am-password": AM_PASSWORD,
        "webhook-token": WEBHOOK_TOKEN,
    }
    for name, value in files.items():
        (tmp_path / name).write_text(value + "\n")
    (tmp_path / "web.yml").write_text(yaml.safe_dump({"basic_auth_users": {"scraper": WEB_HASH}}))
    port = free_port()
    config = tmp_path / "augur.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "prometheus": {
                    "url": prom.url,
                    "timeout": "2s",
                    "retries": 0,
                    "basic_auth": {
                        "username": "augur",
                        "password_file": str(tmp_path / "prom-password"),
                    },
                },
                "poll": {"interval": "1s"},
                "state": {"path": str(tmp_path / "augur.db")},
                "web": {"config_file": str(tmp_path / "web.yml")},
                "webhook": {"bearer_token_file": str(tmp_path / "webhook-token")},
                "alertmanager": {
                    "urls": [am.url, unreachable],
                    "timeout": "2s",
                    "backoff_base": "1s",
                    "backoff_max": "2s",
                    "basic_auth": {
                        "username": "augur",
                        "password_file": str(tmp_path / "am-password"),
                    },
                },
                "log": {"level": "debug"},
            }
        )
    )
    stderr_path = tmp_path / "augur.stderr"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(  # noqa: ASYNC220 (started once; output goes to a file)
            augur_run_argv(config, port),
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    base = f"http://127.0.0.1:{port}"
    answers: list[str] = []
    scraper = {"Authorization": basic("scraper", WEB_PASSWORD)}
    try:
        async with aiohttp.ClientSession() as session:

            async def metrics() -> str:
                try:
                    async with session.get(base + "/metrics", headers=scraper) as resp:
                        return await resp.text() if resp.status == 200 else ""
                except aiohttp.ClientError:
                    return ""

            async def polls_failed() -> bool:
                return "augur_poll_failures_total{" in await metrics() and any(
                    line.startswith("augur_poll_failures_total{") and not line.endswith(" 0.0")
                    for line in (await metrics()).splitlines()
                )

            await wait_until(polls_failed, "a poll refused by Prometheus (401)", stderr_path)
            # Wrong credentials of every kind: the answers are kept and searched too.
            for path, headers in (
                ("/metrics", {"Authorization": basic("scraper", "nope")}),
                ("/metrics", {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}),
                ("/", {}),
            ):
                async with session.get(base + path, headers=headers) as resp:
                    assert resp.status == 401
                    answers.append(await resp.text())
            wrong = {"Authorization": f"Bearer {WEBHOOK_TOKEN}x"}
            body = notification(
                {
                    "labels": {"alertname": "DiskFull", "instance": "node-1:9100"},
                    "annotations": {"summary": "disk /var on node-1 is 97% full"},
                    "startsAt": datetime.fromtimestamp(time.time() - 60, UTC).isoformat(),
                }
            )
            async with session.post(base + "/webhook", json=body, headers=wrong) as resp:
                assert resp.status == 401
                answers.append(await resp.text())
            right = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
            async with session.post(base + "/webhook", json=body, headers=right) as resp:
                assert resp.status == 200, await resp.text()

            am_auth = {"Authorization": basic("augur", AM_PASSWORD)}

            async def delivered() -> bool:
                async with session.get(am.url + "/api/v2/alerts", headers=am_auth) as resp:
                    alerts = await resp.json()
                return any(a["labels"].get("augur_enriched") == "true" for a in alerts)

            await wait_until(
                delivered, "the enriched alert at the Alertmanager with basic auth", stderr_path
            )

            async def unreachable_failed() -> bool:
                return any(
                    line.startswith("augur_alert_post_failures_total{")
                    and unreachable in line
                    and not line.endswith(" 0.0")
                    for line in (await metrics()).splitlines()
                )

            await wait_until(
                unreachable_failed, "a failed post to the unreachable replica", stderr_path
            )
            exposition = await metrics()
            async with session.get(base + "/", headers=scraper) as resp:
                assert resp.status == 200
                landing = await resp.text()
            assert "Anomaly scores" in landing
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        am.stop()
    log = stderr_path.read_text(encoding="utf-8", errors="replace")
    assert '"event": "poll_failed"' in log or "poll_failed" in log  # the 401 was logged
    assert "401" in log
    haystacks = {
        "log": log,
        "/metrics": exposition,
        "landing page": landing,
        "error answers": "\n".join(answers),
    }
    for what, secret in secrets().items():
        for where, text in haystacks.items():
            assert secret not in text, f"the {what} appears in the {where}"
