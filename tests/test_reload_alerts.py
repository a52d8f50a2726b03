"""A reload that changes `alertmanager.urls` restarts the alert loop on them: the next enriched
alert goes to the new Alertmanager and no longer to the old one; the model files are read again
(the same files: the serving model stays), and a model that no longer verifies fails the whole
reload (the queries of the same edit included)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from model_files import flip_byte
from test_reload import query, serving, text, write
from waiting import eventually
from webhook_bodies import notification

from exporter.app import ALERTS, POLLER
from exporter.demo.procs import Process, free_port
from exporter.reload import LIVE

pytestmark = pytest.mark.integration

NULL_ROUTE = {"route": {"receiver": "null"}, "receivers": [{"name": "null"}]}


def alert(name: str) -> dict[str, Any]:
    starts = datetime.fromtimestamp(time.time() - 60, UTC).isoformat().replace("+00:00", "Z")
    return {
        "labels": {"alertname": name, "instance": "node-1:9100"},
        "annotations": {"summary": "disk /var on node-1 is 97% full"},
        "startsAt": starts,
    }


async def enriched(am: Process) -> set[str]:
    """Names of the enriched alerts the Alertmanager holds."""
    async with aiohttp.ClientSession() as session:
        async with session.get(am.url + "/api/v2/alerts") as resp:
            alerts = await resp.json()
    return {a["labels"]["alertname"] for a in alerts if a["labels"].get("augur_enriched") == "true"}


async def test_a_new_alertmanager_url_takes_the_next_alert(
    prometheus_factory: Callable[..., Process],
    alertmanager_factory: Callable[..., Process],
    model_copy: Path,
    tmp_path: Path,
) -> None:
    prom = prometheus_factory()
    old_am, new_am = alertmanager_factory(NULL_ROUTE), alertmanager_factory(NULL_ROUTE)
    path = tmp_path / "augur.yaml"
    base = {
        "prometheus": {"url": prom.url},
        "state": {"path": str(tmp_path / "augur.db")},
        "web": {"listen_address": f"127.0.0.1:{free_port()}", "enable_lifecycle": True},
        "model": {"dir": str(model_copy)},
    }
    write(path, base, query("up", "up"), alertmanager={"urls": [old_am.url]})
    async with serving(path) as (app, session):
        first_model = app[ALERTS].model

        async def post(name: str) -> None:
            async with session.post("/webhook", json=notification(alert(name))) as resp:
                assert resp.status == 200, await resp.text()

        await post("DiskFullBefore")
        await eventually(lambda: _has(old_am, "DiskFullBefore"), within=60)

        write(path, base, query("up", "up"), alertmanager={"urls": [new_am.url]})
        status, answer = await text(session, "POST", "/-/reload")
        assert status == 200, answer
        assert f"alert loop restarted (Alertmanagers: {new_am.url})" in answer
        assert app[ALERTS].model is first_model  # its files, read again, are the same

        await post("DiskFullAfter")
        await eventually(lambda: _has(new_am, "DiskFullAfter"), within=60)
        assert "DiskFullAfter" not in await enriched(old_am)

        # A model that no longer verifies: nothing of the edit applies, the query neither.
        serving_model = app[ALERTS].model
        flip_byte(model_copy / "head.json")
        write(
            path, base, query("up", "up"), query("two", "up"), alertmanager={"urls": [new_am.url]}
        )
        status, answer = await text(session, "POST", "/-/reload")
        assert status == 500 and "the text model does not load" in answer, answer
        assert [r.config.name for r in app[POLLER].runners] == ["up"]
        assert app[ALERTS].model is serving_model and app[LIVE].config.alertmanager.urls == [
            new_am.url
        ]
        _, scrape = await text(session, "GET", "/metrics")
        assert "augur_config_last_reload_successful 0.0" in scrape
        await post("DiskFullLast")  # and the loop serves on
        await eventually(lambda: _has(new_am, "DiskFullLast"), within=60)

        # Enrichment turned off: Alertmanager's up gauge goes (it is not down, it is unused).
        _, scrape = await text(session, "GET", "/metrics")
        assert 'augur_upstream_up{upstream="alertmanager"} 1.0' in scrape
        write(path, base, query("up", "up"))
        status, answer = await text(session, "POST", "/-/reload")
        assert status == 200 and "alert enrichment turned off" in answer, answer
        _, scrape = await text(session, "GET", "/metrics")
        assert 'augur_upstream_up{upstream="alertmanager"}' not in scrape
        async with session.post("/webhook", json=notification(alert("Off"))) as resp:
            assert resp.status == 503  # retried by Alertmanager, as before enrichment was on


async def _has(am: Process, name: str) -> bool:
    return name in await enriched(am)
