"""A real stack for the dashboards' queries: two `augur run`, the Prometheus they score, a real
Alertmanager, and a second Prometheus scraping both augurs every second.

What it makes happen, so that every panel has something to show: a spiked series (a score
>= 1, an incident), an ARIMA query with a forecast horizon (fits, forecasts), an alert through
the webhook that is enriched by the real text model and posted to the real Alertmanager and to
a dead replica (posts and per-replica failures), an alert augur already enriched (ignored), and
an outage of the scored Prometheus (retries, upstream down, failed polls). The two augurs score
the same series, as two copies beside an HA Prometheus pair do, so the dashboards' counts can
be checked not to double.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from waiting import wait_until
from webhook_bodies import notification

from exporter.demo.procs import Process, Sample, free_port, start_alertmanager, start_prometheus

HOSTS = ("h0", "h1", "h2", "h3")
SPIKED = "h0"
"""The host whose newest point is far outside its band, in both queries: `load` (zscore) and
`disk` (zscore and ARIMA, with a forecast horizon)."""
STEP = 60.0
CLUSTER = "test"
JOB = "augur"
QUERIES = [
    {
        "name": "load",
        "expr": "dash_load",
        "detectors": ["zscore"],
        "lookback": "2h",
        "step": "1m",
        "seasonality": "none",
    },
    {
        "name": "disk",
        "expr": "dash_disk_used_ratio",
        "detectors": {"zscore": {}, "arima": {"trend": "c", "min_points": 30}},
        "lookback": "2h",
        "step": "1m",
        "seasonality": "none",
        "horizons": ["10m"],
    },
]


def history(now: float) -> list[Sample]:
    """Two hours per minute: four steady loads and a filling disk; h0's newest points jump."""
    out = []
    for k in range(120):
        t = now - 5 - STEP * (119 - k)
        for n, host in enumerate(HOSTS):
            spike = 80 if host == SPIKED and k == 119 else 0
            out.append(Sample("dash_load", {"host": host}, t, 10 + n + k % 3 + spike))
        disk = 0.4 + 0.002 * k + 0.001 * (k % 2) + (0.3 if k == 119 else 0)
        out.append(Sample("dash_disk_used_ratio", {"host": "h0"}, t, disk))
    return out


@dataclass
class Stack:
    """The running stack: the Prometheus that scrapes augur, and what the test needs to know."""

    monitor: Process
    started: float
    augurs: list[str]
    """Each augur's `instance` label (host:port)."""
    dead_alertmanager: str

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query on the monitoring Prometheus."""
        form = {"query": expr, "time": str(at or time.time())}
        return list(self.api("/api/v1/query", form))

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """A range query, as Grafana sends a graph panel's."""
        form = {"query": expr, "start": str(start), "end": str(end), "step": str(step)}
        return list(self.api("/api/v1/query_range", form))

    def label_values(self, label: str, match: str, start: float, end: float) -> list[str]:
        """What Grafana's `label_values(match, label)` asks: the label's values on `match`."""
        form = {"match[]": match, "start": str(start), "end": str(end)}
        return list(self.api(f"/api/v1/label/{label}/values", form))

    def api(self, path: str, form: dict[str, str]) -> Any:
        """A Prometheus API call; its `data` (the result for queries)."""
        url = f"{self.monitor.url}{path}?{urllib.parse.urlencode(form)}"
        with urllib.request.urlopen(url, timeout=30) as resp:
            data = json.load(resp)["data"]
        return data["result"] if isinstance(data, dict) else data

    def has(self, expr: str) -> bool:
        """Whether `expr` has a result on the monitoring Prometheus now."""
        return bool(self.query(expr))


def _augur(config: dict[str, Any], workdir: Path, name: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    path = workdir / f"{name}.yaml"
    config = {**config, "state": {"path": str(workdir / f"{name}.db")}}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    argv = [sys.executable, "-m", "exporter.cli", "run", "--config", str(path)]
    argv += ["--web.listen-address", f"127.0.0.1:{port}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUGUR_")}
    with (workdir / f"{name}.log").open("wb") as log:
        return subprocess.Popen(argv, stderr=log, env=env), port


def _post(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 200


@contextmanager
def running(workdir: Path) -> Iterator[Stack]:
    """Start everything, make the events above happen, yield; stop everything."""
    with ExitStack() as stack:
        data = start_prometheus(workdir / "data", samples=history(time.time()))
        stack.callback(data.stop)
        am = start_alertmanager(
            workdir / "am", {"route": {"receiver": "null"}, "receivers": [{"name": "null"}]}
        )
        stack.callback(am.stop)
        dead = f"http://127.0.0.1:{free_port()}"
        base: dict[str, Any] = {
            "prometheus": {"url": data.url, "timeout": "5s"},
            "poll": {"interval": "2s"},
            "queries": QUERIES,
        }
        alerting = {
            **base,
            "alertmanager": {"urls": [am.url, dead], "repost_interval": "5s"},
            "enrich": {"deadline": "2s"},
        }
        ports = []
        for name, config in (("augur-a", alerting), ("augur-b", base)):
            proc, port = _augur(config, workdir, name)
            stack.callback(_stop, proc)
            ports.append(port)
        targets = [f"127.0.0.1:{p}" for p in ports]
        scrape = {"targets": targets, "labels": {"cluster": CLUSTER}}
        monitor = start_prometheus(
            workdir / "monitor",
            scrape_interval="1s",
            extra_config={"scrape_configs": [{"job_name": JOB, "static_configs": [scrape]}]},
        )
        stack.callback(monitor.stop)
        s = Stack(monitor, time.time(), targets, dead)
        wait_until(lambda: len(s.query("augur_anomaly_score >= 1")) >= 4, 120)
        wait_until(lambda: s.has("augur_forecast_value") and s.has("augur_model_info"), 120)
        alert: dict[str, Any] = {
            "labels": {"alertname": "HostHighLoad", "host": SPIKED, "severity": "warning"},
            "annotations": {"summary": f"load on {SPIKED} is far above normal"},
            "startsAt": "2026-01-01T00:00:00Z",
        }
        # An alert augur itself posted, come back through a route: ignored, not enriched again.
        own: dict[str, Any] = {
            "labels": {"alertname": "Echo", "augur_enriched": "true"},
            "annotations": {},
            "startsAt": alert["startsAt"],
        }
        _post(f"http://{targets[0]}/webhook", notification(alert, own))
        wait_until(lambda: s.has("augur_alerts_posted_total > 0"), 90)
        wait_until(lambda: s.has(f'augur_alert_post_failures_total{{alertmanager="{dead}"}} > 0'))
        # An outage of the scored Prometheus: retries, failed polls, upstream down, then back.
        data.stop()
        wait_until(lambda: len(s.query('augur_upstream_up{upstream="prometheus"} == 0')) == 2)
        wait_until(lambda: s.has("augur_prometheus_retries_total > 0"))
        data.restart("/-/ready")
        wait_until(lambda: len(s.query('augur_upstream_up{upstream="prometheus"} == 1')) == 2)
        time.sleep(5)  # a few more scrapes of the recovered augurs
        yield s


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(25)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
