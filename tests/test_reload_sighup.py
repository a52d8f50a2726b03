"""SIGHUP reloads the whole configuration of the real `augur run`: a changed query set is scored
from then on and the old query's series leave /metrics; a broken file keeps the old one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from test_reload import families, history, query, scored, write
from waiting import wait_until

from exporter.demo.procs import Process, free_port

pytestmark = pytest.mark.integration


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text: str = resp.read().decode()
    return text


def without(text: str, needle: str) -> str:
    return "" if needle in text else text


def events(log: Path) -> list[dict[str, object]]:
    out = []
    for line in log.read_text().splitlines():
        record = json.loads(line)
        record["name"] = record.get("msg", record.get("event"))
        out.append(record)
    return out


def test_sighup_reloads_the_queries_and_a_broken_file_keeps_them(
    prometheus_factory: Callable[..., Process],
    augur_run_argv: Callable[[Path, int], list[str]],
    tmp_path: Path,
) -> None:
    prom = prometheus_factory(samples=history(time.time()))
    port = free_port()
    cfg = tmp_path / "augur.yaml"
    base = {
        "prometheus": {"url": prom.url, "timeout": "5s", "retries": 1},
        "poll": {"interval": "1s"},
        "state": {"path": str(tmp_path / "augur.db")},
    }
    requests = query("requests", "augur_test_requests")
    write(cfg, base, requests, query("errors", "augur_test_errors"))
    log_path = tmp_path / "augur.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        augur_run_argv(cfg, port),
        stderr=log,
        env={k: v for k, v in os.environ.items() if not k.startswith("AUGUR_")},
    )
    try:
        wait_until(lambda: scored(text := scrape(port), "requests") and scored(text, "errors"))

        write(cfg, base, requests, query("latency", "augur_test_latency"))
        proc.send_signal(signal.SIGHUP)
        after = wait_until(lambda: without(scrape(port), 'query="errors"'))
        assert scored(after, "requests")
        wait_until(lambda: scored(scrape(port), "latency"))

        cfg.write_text("prometheus: {url: [not a url\n")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: any(e["name"] == "config_reload_failed" for e in events(log_path)))
        now = scrape(port)
        assert families(now)["augur_config_last_reload_successful"][0][1] == 0
        assert scored(now, "requests") and scored(now, "latency")
        assert proc.poll() is None

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(25) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    records = events(log_path)
    reloaded = [e for e in records if e["name"] == "config_reloaded"]
    assert len(reloaded) == 1 and reloaded[0]["trigger"] == "SIGHUP"
    assert "added 1 (latency), removed 1 (errors)" in str(reloaded[0]["applied"])
    failed = next(e for e in records if e["name"] == "config_reload_failed")
    assert "not valid YAML" in str(failed["error"]) and str(cfg) in str(failed["error"])
