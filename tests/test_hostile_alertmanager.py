"""Whatever labels the webhook accepts, what augur posts back is valid for a real Alertmanager.

Hostile but acceptable alerts go through the real webhook, outbox, worker and sender into a
real Alertmanager (the installed 0.25: classic label names, UTF-8 values, URI generator URLs);
`GET /api/v2/alerts` must then list every one of them, and nothing may be refused.
"""

# ruff: noqa: F811 - the fixtures imported from test_alert_pipeline are parameters here

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from test_alert_pipeline import (
    Augur,
    Capture,
    KindEnricherDouble,
    am_config,
    augurs,  # noqa: F401 - a fixture, used by name
    capture,  # noqa: F401 - a fixture, used by name
    enriched_in,
    session,  # noqa: F401 - a fixture, used by name
    source,
)
from waiting import eventually
from webhook_bodies import notification

from exporter.alerts.outbox import Record
from exporter.alerts.payloads import format_time
from exporter.demo.procs import Process, free_port

HOSTILE_LABELS: list[dict[str, str]] = [
    {"huge": "v" * 200_000},
    {"unicode": "磁盘 💥 ÿ \u200b\ufeff", "__reserved": "x", "_": "underscore"},
    {"controls": "\x00\x01\x7f\ttab\nnewline\r", "quotes": "\"'`\\{}=~!"},
    {"promql": 'x{a="b"} or vector(1)', "html": "<script>alert(1)</script>"},
]
GENERATOR_URLS = [
    "http://[::1",  # not a URL at all
    "http://x/%zz",  # a bad escape, which Go's url.Parse refuses
    "http://x/\x01ctl",
    "http://host:notaport/",
    "http://ok.example/graph?g0.expr=" + "a" * 50_000,
    "javascript:alert(1)",
    "http://a^b/",
    "http://münchen.de/graph",
    "http://[::1]:9090/graph?g0.expr=up%7B%7D",
    "",
]


async def test_hostile_but_accepted_alerts_all_reach_alertmanager(
    alertmanager_factory: Callable[..., Process],
    capture: Capture,
    augurs: list[Augur],
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    port = free_port()
    am = alertmanager_factory(am_config(f"http://127.0.0.1:{port}", capture.url))
    augur = await Augur.start(port, tmp_path / "outbox.db", [am.url], KindEnricherDouble())
    augurs.append(augur)
    now = time.time()
    alerts: list[dict[str, Any]] = []
    for i, labels in enumerate(HOSTILE_LABELS):
        alert = source(f"Hostile{i}", now)
        alert["labels"].update(labels)
        alert["annotations"] = {**labels, "description": "d" * 300_000}
        alerts.append(alert)
    for i, url in enumerate(GENERATOR_URLS):
        alerts.append({**source(f"Url{i}", now), "generatorURL": url})
    # One notification: one batch to Alertmanager, where one bad alert refuses the batch.
    body = io.BytesIO(json.dumps(notification(*alerts)).encode())
    async with session.post(augur.url + "/webhook", data=body) as resp:
        assert resp.status == 200, await resp.text()
    names = {a["labels"]["alertname"] for a in alerts}

    async def all_in() -> bool:
        return {a["labels"]["alertname"] for a in await enriched_in(session, am)} >= names

    try:
        await eventually(all_in, within=30)
    except AssertionError:
        errors = [
            (json.loads(r["labels"])["alertname"], d["last_error"])
            for r in await augur.outbox.rows()
            for d in r["deliveries"].values()
            if d["last_error"]
        ]
        raise AssertionError(f"refused: {errors}") from None
    stored = {a["labels"]["alertname"]: a for a in await enriched_in(session, am)}
    for alert in alerts:
        got = stored[alert["labels"]["alertname"]]
        assert {
            k: v for k, v in got["labels"].items() if k not in ("augur_enriched", "category")
        } == {k: v for k, v in alert["labels"].items() if v != ""}
    labels = {"alertmanager": am.url}
    assert augur.registry.get_sample_value("augur_alerts_refused_total", labels) == 0
    assert augur.registry.get_sample_value("augur_alert_post_failures_total", labels) == 0


async def test_an_alert_refused_for_its_generator_url_is_repaired_and_delivered(
    alertmanager_factory: Callable[..., Process],
    capture: Capture,
    augurs: list[Augur],
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    am = alertmanager_factory(am_config("http://127.0.0.1:1", capture.url))
    augur = await Augur.start(free_port(), tmp_path / "outbox.db", [am.url], KindEnricherDouble())
    augurs.append(augur)
    starts = format_time(datetime.now(UTC))

    def record(name: str, url: str) -> Record:
        labels = {"alertname": name, "augur_enriched": "true"}
        return Record(name, starts, "firing", None, labels, {}, {"augur_summary": "x"}, url)

    # Written past the webhook's check, as a URL only Go's parser refuses would be.
    await augur.outbox.accept(
        [record("Good", "http://ok.example/"), record("BadUrl", "http://x/%zz")], time.time()
    )
    augur.sender.wake()

    async def both() -> list[dict[str, Any]] | None:
        got = await enriched_in(session, am)
        return got if {a["labels"]["alertname"] for a in got} == {"Good", "BadUrl"} else None

    urls = {a["labels"]["alertname"]: a.get("generatorURL", "") for a in await eventually(both)}
    assert urls == {"Good": "http://ok.example/", "BadUrl": ""}
    labels = {"alertmanager": am.url}
    assert augur.registry.get_sample_value("augur_alerts_refused_total", labels) == 1
