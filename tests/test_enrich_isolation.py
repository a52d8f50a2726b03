"""Each alert is enriched on its own, and the rule's expression is run only when trusted.

The real enricher on the shipped model and a real Prometheus (a stand-in server only where
Prometheus must answer something malformed).
"""

# ruff: noqa: F811 - the fixtures imported from test_enrich are parameters here

from __future__ import annotations

import io
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from test_enrich import (
    CRASHLOOP,
    DISK_EN,
    DISK_EXPR,
    PG,
    T0,
    alert,
    check_valid,
    enricher_for,  # noqa: F401 - a fixture, used by name
    executor,  # noqa: F401 - a fixture, used by name
    model,  # noqa: F401 - a fixture, used by name
    prom,  # noqa: F401 - a fixture, used by name
)

from exporter.alerts.enrich import AlertEnricher
from exporter.alerts.payloads import WebhookAlert
from exporter.demo.procs import Process
from exporter.logs import LogfmtFormatter, RepeatFilter

Make = Callable[..., Awaitable[AlertEnricher]]
ServerFactory = Callable[..., Awaitable[TestServer]]


def _disk(name: str, **changes: Any) -> WebhookAlert:
    base = alert(
        {"alertname": name, "mountpoint": "/var/lib/postgresql", **PG},
        f"Filesystem on pg-1 ({name}) has less than 20% space left.",
        expr=DISK_EXPR,
    )
    return base.model_copy(update=changes)


async def test_a_start_in_year_one_spoils_nothing_of_its_batch(
    prom: Process, enricher_for: Make
) -> None:
    enricher = await enricher_for(prom.url)
    batch = [_disk(f"Disk{i}") for i in range(15)]
    batch.insert(7, _disk("YearOne", startsAt=datetime(1, 1, 1, tzinfo=UTC)))
    out = await enricher.enrich(batch)
    assert len(out) == 16
    for i, e in enumerate(out):
        check_valid(e.labels, e.annotations)
        if i != 7:
            assert e.labels["category"] == "disk"
            assert "augur_missing" not in e.annotations, e.annotations
            assert e.annotations["augur_related"].startswith(
                "likely cause: node_disk_io_time_seconds_total"
            )
    # The odd one is still classified and sent with what could be written; the rest is named.
    odd = out[7]
    assert odd.labels["category"] == "disk" and "disk.en.md" in odd.annotations["augur_runbook"]
    assert "out of range" in odd.annotations["augur_missing"]


async def test_a_malformed_answer_spoils_only_its_own_alert(
    aiohttp_server: ServerFactory, enricher_for: Make
) -> None:
    async def answer(request: web.Request) -> web.Response:
        if request.path.endswith("/__name__/values"):
            return web.json_response({"status": "success", "data": ["up"]})
        query = (await request.post())["query"]
        good = [{"metric": {"instance": "other:9100"}, "values": [[T0, "1"]]}]
        # The crash-looping pod's related series come back as garbage.
        result: Any = [{"metric": 7, "values": "x"}] if "api-7d9f8b" in str(query) else good
        return web.json_response(
            {"status": "success", "data": {"resultType": "matrix", "result": result}}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    server = await aiohttp_server(app)
    enricher = await enricher_for(str(server.make_url("")))
    disk, crash = await enricher.enrich([DISK_EN, CRASHLOOP])
    for e in (disk, crash):
        check_valid(e.labels, e.annotations)
    assert (disk.labels["category"], crash.labels["category"]) == ("disk", "availability")
    assert "related" not in disk.annotations.get("augur_missing", "")
    # The client refuses the malformed answer (it is not the API's shape), for this alert only.
    missing = crash.annotations["augur_missing"]
    assert missing.startswith("related: Prometheus failed: "), missing
    assert "the answer is not what the API returns" in missing
    assert "availability-crashloop.en.md" in crash.annotations["augur_runbook"]


async def test_the_rule_expression_runs_only_when_trusted(
    prom: Process, enricher_for: Make
) -> None:
    foreign = f"http://evil.example:9090/graph?g0.expr={DISK_EXPR}"
    unauthenticated = _disk("Foreign", generatorURL=foreign)
    authenticated = _disk("Token", generatorURL=foreign, augur_authenticated=True)
    own = _disk("Own")  # generatorURL on 127.0.0.1, the configured Prometheus's host
    enricher = await enricher_for(prom.url)
    shown, run, ours = await enricher.enrich([unauthenticated, authenticated, own])
    last = shown.annotations["augur_related"].splitlines()[-1]
    assert last.startswith(
        "rule expression not run (the webhook was not authenticated and evil.example:9090 is "
        "not a trusted generator host (enrich.trusted_generator_hosts)): node_filesystem_avail"
    )
    assert "threshold" not in shown.annotations["augur_summary"]
    for e in (run, ours):
        assert e.annotations["augur_related"].splitlines()[-1].startswith("rule expression: ")
        assert "below the 20 % threshold" in e.annotations["augur_summary"]

    trusting = await enricher_for(prom.url, trusted_generator_hosts=["evil.example"])
    (listed,) = await trusting.enrich([unauthenticated])
    assert listed.annotations["augur_related"].splitlines()[-1].startswith("rule expression: ")


async def test_a_rule_expression_over_max_expr_series_gives_no_reading(
    prom: Process, enricher_for: Make
) -> None:
    enricher = await enricher_for(prom.url, max_expr_series=1)
    wide = _disk("Wide", generatorURL="http://127.0.0.1:9090/graph?g0.expr=augur_anomaly_score")
    (out,) = await enricher.enrich([wide])
    assert "expression: the rule expression gave " in out.annotations["augur_missing"]
    assert "more than enrich.max_expr_series (1)" in out.annotations["augur_missing"]


async def test_prometheus_down_prints_a_bounded_number_of_warnings(
    prom: Process, enricher_for: Make
) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(LogfmtFormatter())
    handler.addFilter(RepeatFilter())  # as `augur run` sets logging up
    augur = logging.getLogger("augur")
    augur.addHandler(handler)
    try:
        enricher = await enricher_for(prom.url)
        prom.stop()
        for i in range(30):  # 30 batches of 16, each asking for related series and the rule
            await enricher.enrich([_disk(f"Down{i}-{j}", instance=f"h{j}:9100") for j in range(16)])
    finally:
        augur.removeHandler(handler)
    lines = out.getvalue().splitlines()
    # Unfiltered: a prometheus_retry per query and an alerts_enriched per batch (92 here).
    assert 1 <= len(lines) <= 5, lines
