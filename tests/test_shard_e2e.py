"""Two real `augur run` processes, shards 0 and 1 of 2, against one real Prometheus: together
they export every series' score exactly once. And the extra headers and URL parameters reach
the upstream on every request."""

from __future__ import annotations

import functools
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from waiting import wait_until

from exporter.config.load import load
from exporter.demo.procs import Process, Sample, free_port
from exporter.prometheus.client import PrometheusClient, make_session
from exporter.scoring.shard import Shard

pytestmark = pytest.mark.integration

HOSTS = [f"h{i:02d}" for i in range(24)]
SECRET = "tenant-key-5f1c"
STEP = 60.0


def history(now: float) -> list[Sample]:
    """An hour of a gauge per host, steady with a little wobble: enough for zscore to score."""
    out = []
    for n, host in enumerate(HOSTS):
        for k in range(60):
            t = now - 5 - STEP * (59 - k)
            out.append(Sample("shard_load", {"host": host, "job": "node"}, t, 10 + n + k % 3))
    return out


def scores(port: int, label: str = "host") -> dict[str, dict[str, str]] | None:
    """The `label` values this augur exports a score for (by detector), once it has polled;
    None before that, and while it is not listening yet (loading its model on a busy machine)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except ConnectionRefusedError:
        return None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            return None
        raise
    families = {f.name: f for f in text_string_to_metric_families(text)}
    polled = families.get("augur_last_poll_timestamp_seconds")
    if polled is None or not any(s.value > 0 for s in polled.samples):
        return None
    out: dict[str, dict[str, str]] = {}
    for sample in families["augur_anomaly_score"].samples:
        out.setdefault(sample.labels["detector"], {})[sample.labels[label]] = "scored"
    info = families["augur_shard_info"].samples
    out["shard"] = {"index": info[0].labels["index"], "count": info[0].labels["count"]}
    return out


def test_two_shards_export_every_series_exactly_once(
    prometheus_factory: Callable[..., Process],
    augur_run_argv: Callable[[Path, int], list[str]],
    tmp_path: Path,
) -> None:
    prom = prometheus_factory(samples=history(time.time()))
    secret = tmp_path / "tenant-key"
    secret.write_text(f"{SECRET}\n")
    procs: list[tuple[subprocess.Popen[bytes], int]] = []
    logs = []
    try:
        for index in (0, 1):
            cfg = tmp_path / f"augur-{index}.yaml"
            cfg.write_text(
                yaml.safe_dump(
                    {
                        "prometheus": {
                            "url": prom.url,
                            # A real Prometheus ignores both: what Mimir and Thanos need must
                            # not break it (that they arrive is the next test's business).
                            "headers": {"X-Scope-OrgID": "team-a"},
                            "header_files": {"X-Tenant-Key": str(secret)},
                            "params": {"partial_response": "false"},
                        },
                        "poll": {"interval": "2s"},
                        "state": {"path": str(tmp_path / f"augur-{index}.db")},
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
            port = free_port()
            log = (tmp_path / f"augur-{index}.log").open("w")
            logs.append(log)
            argv = [*augur_run_argv(cfg, port), "--shard.count", "2", "--shard.index", str(index)]
            argv += ["--log.level", "debug"]
            env = {k: v for k, v in os.environ.items() if not k.startswith("AUGUR_")}
            procs.append((subprocess.Popen(argv, stderr=log, env=env), port))
        exported: list[dict[str, dict[str, str]]] = []
        for _, port in procs:
            found = wait_until(functools.partial(scores, port))
            assert found is not None  # wait_until returns only what is truthy
            exported.append(found)
        for proc, _ in procs:
            proc.terminate()
            assert proc.wait(25) == 0
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    for index in (0, 1):
        text = (tmp_path / f"augur-{index}.log").read_text()
        assert "polling" in text and SECRET not in text  # debug logs, and no secret header
    assert [e["shard"] for e in exported] == [
        {"index": "0", "count": "2"},
        {"index": "1", "count": "2"},
    ]
    first, second = (set(e["zscore"]) for e in exported)
    assert first and second, "each shard scores some of the 24 hosts"
    assert not first & second, f"scored twice: {sorted(first & second)}"
    assert first | second == set(HOSTS), f"never scored: {sorted(set(HOSTS) - first - second)}"
    # Each owns what the hash says it owns: the split is the documented one, not any split.
    owner = Shard(2, 0)
    assert first == {h for h in HOSTS if owner.owns({"host": h, "job": "node"})}


async def test_headers_and_params_reach_the_upstream(tmp_path: Path) -> None:
    """A real Prometheus ignores headers it does not know, so a recording server stands in
    for Mimir and Thanos here: it is the only way to see what augur sent."""
    seen: list[tuple[str, dict[str, str], dict[str, str]]] = []

    async def api(request: web.Request) -> web.Response:
        seen.append((request.path, dict(request.headers), dict(request.query)))
        data: object
        if request.path.endswith("query_range"):
            data = {"resultType": "matrix", "result": []}
        elif request.path.endswith("/values"):
            data = ["node"]
        else:
            data = {"resultType": "scalar", "result": [0, "1"]}
        return web.json_response({"status": "success", "data": data})

    app = web.Application()
    app.router.add_route("*", "/prometheus/api/v1/{endpoint:.+}", api)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    secret = tmp_path / "tenant"
    secret.write_text("tenant-b\n")
    try:
        path = tmp_path / "augur.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "prometheus": {
                        "url": f"http://127.0.0.1:{port}/prometheus",
                        "headers": {"X-Scope-OrgID": "team-a"},
                        "header_files": {"X-Other-Tenant": str(secret)},
                        "params": {"partial_response": False, "dedup": True},
                        "bearer_token_file": str(secret),
                    }
                }
            )
        )
        cfg = load(path, environ={}).prometheus
        async with make_session(cfg) as session:
            client = PrometheusClient.from_config(cfg, session)
            await client.query_range("up", 0, 600, 60)  # the scoring loop's call (POST)
            await client.query("up")  # an instant query, as the enricher sends
            await client.label_values("job")  # a GET
    finally:
        await runner.cleanup()
    assert len(seen) == 3
    for path_, headers, query in seen:
        assert headers.get("X-Scope-OrgID") == "team-a", path_
        assert headers.get("X-Other-Tenant") == "tenant-b", path_
        assert headers.get("Authorization") == "Bearer tenant-b", path_
        assert query.get("partial_response") == "false", path_
        assert query.get("dedup") == "true", path_
