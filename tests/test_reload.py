"""`POST /-/reload` on augur's real app against a real Prometheus: the whole configuration is
read again from its file, unchanged queries keep their detectors and history, a removed query
leaves /metrics, a broken file changes nothing, and the endpoint sits behind basic auth."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from waiting import eventually

from exporter.app import METRICS, POLLER, WEB, build_app
from exporter.config.load import load
from exporter.config.root import Config
from exporter.demo.procs import Process, Sample, free_port
from exporter.reload import LIVE, RELOADER, pinned
from exporter.scoring.runner import QueryRunner
from exporter.web.server import make_runner, start_site

pytestmark = pytest.mark.integration

STEP = 60.0


def history(now: float) -> list[Sample]:
    """Two hours of two services' requests, errors and latency, one point a minute."""
    out = []
    for i in range(120):
        t = now - 5 - STEP * (119 - i)
        for n, svc in enumerate(("a", "b")):
            labels = {"service": svc}
            out.append(Sample("augur_test_requests", labels, t, 100 + 10 * n + (i % 7)))
            out.append(Sample("augur_test_errors", labels, t, 1 + n + (i % 3)))
            out.append(Sample("augur_test_latency", labels, t, 0.2 + 0.01 * (i % 5)))
    return out


def query(name: str, expr: str, detectors: list[str] | None = None) -> dict[str, Any]:
    detectors = detectors or ["zscore"]
    return {"name": name, "expr": expr, "lookback": "1h", "step": "1m", "detectors": detectors}


def write(path: Path, base: dict[str, Any], *queries: dict[str, Any], **more: Any) -> None:
    path.write_text(yaml.safe_dump({**base, **more, "queries": list(queries)}))


def families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def scored(text: str, query: str) -> bool:
    return any(
        labels.get("query") == query for labels, _ in families(text).get("augur_anomaly_score", [])
    )


@asynccontextmanager
async def serving(path: Path) -> AsyncIterator[tuple[web.Application, aiohttp.ClientSession]]:
    """augur's app on the file at `path`, reloading from it, and a session towards it."""
    config = load(path, environ={})
    app = build_app(config, load=lambda: load(path, environ={}))
    runner = make_runner(app, config)
    await runner.setup()
    await start_site(runner, config, app[WEB], app[METRICS].http_connections_refused.inc)
    host, port = config.web.host_port()
    try:
        async with aiohttp.ClientSession(base_url=f"http://{host}:{port}") as session:
            yield app, session
    finally:
        await runner.cleanup()


async def text(session: aiohttp.ClientSession, method: str, path: str) -> tuple[int, str]:
    async with session.request(method, path) as resp:
        return resp.status, await resp.text()


async def test_reload_swaps_queries_and_keeps_the_unchanged_ones(
    prometheus_factory: Callable[..., Process], tmp_path: Path
) -> None:
    prom = prometheus_factory(samples=history(time.time()))
    path = tmp_path / "augur.yaml"
    base = {
        "prometheus": {"url": prom.url, "timeout": "5s", "retries": 1},
        "poll": {"interval": "1s"},
        "state": {"path": str(tmp_path / "augur.db")},
        "web": {"listen_address": f"127.0.0.1:{free_port()}", "enable_lifecycle": True},
    }
    requests = query("requests", "augur_test_requests")
    write(path, base, requests, query("errors", "augur_test_errors"))
    async with serving(path) as (app, session):

        async def metrics() -> str:
            return (await text(session, "GET", "/metrics"))[1]

        first = await eventually(
            lambda: _both(metrics, "requests", "errors"), within=60
        )  # both queries scored
        start = families(first)["augur_config_last_reload_success_timestamp_seconds"][0][1]
        assert families(first)["augur_config_last_reload_successful"][0][1] == 1
        runner = next(r for r in app[POLLER].runners if r.config.name == "requests")
        feed = app[POLLER].feeds["requests"]
        assert feed.fetched is not None

        # errors removed, latency added, requests untouched
        write(path, base, requests, query("latency", "augur_test_latency"))
        status, answer = await text(session, "POST", "/-/reload")
        assert status == 200, answer
        assert "kept 1, changed 0, added 1 (latency), removed 1 (errors)" in answer
        now = await metrics()
        assert 'query="errors"' not in now  # gone at once: scores and augur's own series
        assert scored(now, "requests")
        assert families(now)["augur_config_last_reload_successful"][0][1] == 1
        assert families(now)["augur_config_last_reload_success_timestamp_seconds"][0][1] >= start
        kept = next(r for r in app[POLLER].runners if r.config.name == "requests")
        assert kept is runner and app[POLLER].feeds["requests"] is feed  # detectors, history
        await eventually(lambda: _both(metrics, "latency"), within=30)
        _, page = await text(session, "GET", "/")  # the landing page shows the live queries
        assert "<td>latency</td>" in page and "<td>errors</td>" not in page, page

        # A file that does not load changes nothing, and says why.
        path.write_text("queries: [\n")
        status, answer = await text(session, "POST", "/-/reload")
        assert status == 500 and "not valid YAML" in answer, answer
        now = await metrics()
        assert families(now)["augur_config_last_reload_successful"][0][1] == 0
        assert [r.config.name for r in app[POLLER].runners] == ["requests", "latency"]
        assert app[POLLER].runners[0] is runner

        # A changed query starts again on its own; the other keeps its state.
        latency = app[POLLER].runners[1]
        write(
            path,
            {**base, "poll": {"interval": "2s"}},  # applies live
            query("requests", "augur_test_requests", ["zscore", "ewma"]),
            query("latency", "augur_test_latency"),
            state={"path": str(tmp_path / "b.db")},
        )
        status, answer = await text(session, "POST", "/-/reload")
        assert status == 200, answer
        assert "kept 1, changed 1 (requests), added 0, removed 0" in answer
        assert "needs a restart to apply: state.path" in answer
        assert app[POLLER].runners[0] is not runner and app[POLLER].runners[1] is latency
        assert app[LIVE].config.state.path == tmp_path / "augur.db"  # the running one stays
        assert "Scored every 2s." in (await text(session, "GET", "/"))[1]  # the live settings
        await eventually(lambda: _detector(metrics, "requests", "ewma"), within=30)
        assert families(await metrics())["augur_config_last_reload_successful"][0][1] == 1

        assert (await text(session, "GET", "/-/reload"))[0] == 405


async def _both(metrics: Callable[[], Any], *queries: str) -> str:
    """The scrape once every one of `queries` is scored in it, else ""."""
    now: str = await metrics()
    return now if all(scored(now, q) for q in queries) else ""


async def _detector(metrics: Callable[[], Any], query: str, detector: str) -> bool:
    rows = families(await metrics()).get("augur_anomaly_score", [])
    return any(x.get("query") == query and x.get("detector") == detector for x, _ in rows)


async def test_reload_needs_basic_auth_when_it_is_on(
    prometheus_factory: Callable[..., Process], tmp_path: Path
) -> None:
    prom = prometheus_factory()
    password = "s3cret-reload"
    web_file = tmp_path / "web.yaml"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    web_file.write_text(yaml.safe_dump({"basic_auth_users": {"ops": hashed}}))
    path = tmp_path / "augur.yaml"
    base = {
        "prometheus": {"url": prom.url},
        "state": {"path": str(tmp_path / "augur.db")},
        "web": {
            "listen_address": f"127.0.0.1:{free_port()}",
            "config_file": str(web_file),
            "enable_lifecycle": True,
        },
    }
    write(path, base, query("up", "up"))
    async with serving(path) as (_, session):
        status, _ = await text(session, "POST", "/-/reload")
        assert status == 401
        auth = "Basic " + base64.b64encode(f"ops:{password}".encode()).decode()
        async with session.post("/-/reload", headers={"Authorization": auth}) as resp:
            assert resp.status == 200, await resp.text()
            assert "kept 1" in await resp.text()


def test_settings_a_reload_cannot_change_keep_their_running_values() -> None:
    old = Config.model_validate({"prometheus": {"url": "http://a:9090"}})
    new = Config.model_validate(
        {
            "prometheus": {"url": "http://b:9090"},
            "web": {"listen_address": "127.0.0.1:1", "external_url": "http://augur:9465"},
            "poll": {"interval": "10s", "workers": 4},
            "queries": [query("up", "up")],
        }
    )
    config, restart = pinned(old, new)
    assert restart == ["web.listen_address", "prometheus", "poll.workers"]
    assert config.prometheus == old.prometheus and config.web.listen_address == "0.0.0.0:9465"
    assert config.poll.workers == old.poll.workers
    # the rest is the new file's
    assert config.poll.interval == 10 and config.web.external_url == "http://augur:9465"
    assert [q.name for q in config.queries] == ["up"]
    assert pinned(old, old) == (old, [])


async def test_the_reload_endpoint_is_off_unless_enabled_and_a_burst_is_one_reload(
    prometheus_factory: Callable[..., Process], tmp_path: Path
) -> None:
    """As Prometheus's --web.enable-lifecycle: whoever reaches the port cannot make augur
    reload unless asked for; and requests arriving while a reload waits join it."""
    prom = prometheus_factory()
    path = tmp_path / "augur.yaml"
    base = {
        "prometheus": {"url": prom.url},
        "state": {"path": str(tmp_path / "augur.db")},
        "web": {"listen_address": f"127.0.0.1:{free_port()}"},
    }
    write(path, base, query("up", "up"))
    async with serving(path) as (app, session):
        status, answer = await text(session, "POST", "/-/reload")
        assert (status, answer) == (403, "Lifecycle API is not enabled.\n")
        reloader = app[RELOADER]
        loads: list[Config] = []
        read = reloader.load
        assert read is not None

        def counted() -> Config:  # counts the file reads
            loads.append(read())
            return loads[-1]

        reloader.load = counted
        async with reloader._lock:  # one reload in progress: the burst waits behind it
            burst = [reloader.start("http") for _ in range(50)]
        assert len({id(task) for task in burst}) == 1
        outcomes = await asyncio.gather(*burst)
        assert all(o.ok for o in outcomes) and len(loads) == 1
        await reloader.stop()
        refused = await reloader.start("http")
        assert not refused.ok and "shutting down" in refused.message


async def test_a_query_that_cannot_be_built_changes_nothing(
    prometheus_factory: Callable[..., Process], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new queries are built beside the running ones before anything is retired: a
    failure there leaves the running queries, their series and the configuration as they were
    (before, a changed query was retired first and the poller was left on closed runners)."""
    prom = prometheus_factory(samples=history(time.time()))
    path = tmp_path / "augur.yaml"
    base = {
        "prometheus": {"url": prom.url, "timeout": "5s", "retries": 1},
        "poll": {"interval": "1s"},
        "state": {"path": str(tmp_path / "augur.db")},
        "web": {"listen_address": f"127.0.0.1:{free_port()}", "enable_lifecycle": True},
    }
    write(path, base, query("requests", "augur_test_requests"))
    async with serving(path) as (app, session):
        runner = app[POLLER].runners[0]
        real = QueryRunner.build

        def build(q: Any) -> Any:
            if q.name == "broken":
                raise RuntimeError("no detector for you")
            return real(q)

        monkeypatch.setattr(QueryRunner, "build", staticmethod(build))
        write(
            path,
            base,
            query("requests", "augur_test_requests", ["ewma"]),  # changed: zscore leaves
            query("broken", "augur_test_errors"),
        )
        status, answer = await text(session, "POST", "/-/reload")
        assert status == 500 and "no detector for you" in answer, answer
        assert app[POLLER].runners == [runner]
        # The running detector's own series are still there (retiring it first removed them).
        _, now = await text(session, "GET", "/metrics")
        assert 'augur_incidents_opened_total{detector="zscore",query="requests"}' in now
        assert app[LIVE].config.queries[0].detectors == runner.config.detectors
