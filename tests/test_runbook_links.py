"""The runbook an enriched alert links: augur's own page, the operator's base URL, the rule's own.

`augur_runbook` names the runbook and links it; `runbook_url`, which Alertmanager templates and
paging integrations read, is set when the alert has none. The real text model picks the
runbook; no Prometheus is needed (the alerts name nothing to look up).
"""

from __future__ import annotations

import argparse
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from model_files import MODEL_DIR

from exporter.alerts.enrich import AlertEnricher
from exporter.alerts.payloads import Enrichment, WebhookAlert
from exporter.config.alerts import EnrichConfig
from exporter.config.base import ConfigError
from exporter.config.flags import add_arguments, load_config
from exporter.config.load import load
from exporter.config.root import Config, WebConfig
from exporter.prometheus.client import PrometheusClient
from exporter.text import TextModel

LATENCY_EN = "Latency high: slow responses"
Enrich = Callable[..., Awaitable[Enrichment]]


def _alert(summary: str, **annotations: str) -> WebhookAlert:
    return WebhookAlert(
        status="firing",
        labels={"alertname": "HighLatency"},
        annotations={"summary": summary, **annotations},
        startsAt=datetime.now(UTC),
    )


SLOW = _alert("p99 request latency is above 800 ms: responses are slow")
SLOW_ZH = _alert("接口 p99 响应延迟超过 800 毫秒，请求变慢")


@pytest.fixture(scope="module")
def model() -> Iterator[TextModel]:
    yield TextModel(MODEL_DIR, threads=1)


@pytest.fixture
async def enrich(model: TextModel) -> AsyncIterator[Enrich]:
    """Enrich one alert with an enricher made of these settings (and `external_url`)."""
    session = aiohttp.ClientSession()
    pool = ThreadPoolExecutor(1)
    made: list[AlertEnricher] = []

    async def run(alert: WebhookAlert, external_url: str | None = None, **cfg: Any) -> Enrichment:
        client = PrometheusClient(session, "http://127.0.0.1:1", retries=0)
        enricher = AlertEnricher(
            model, client, EnrichConfig(**cfg), executor=pool, external_url=external_url
        )
        made.append(enricher)
        await enricher.start()
        (out,) = await enricher.enrich([alert])
        return out

    yield run
    for enricher in made:
        await enricher.close()
    pool.shutdown()
    await session.close()


MATCH = r"\(match [01]\.\d\d\)"


async def test_the_link_is_augurs_own_page_in_the_alerts_language(enrich: Enrich) -> None:
    notes = (await enrich(SLOW, "https://augur.example/")).annotations
    link = "https://augur.example/runbooks/latency?lang=en"
    assert re.fullmatch(
        f"{re.escape(LATENCY_EN)} — {re.escape(link)} {MATCH}", notes["augur_runbook"]
    )
    assert notes["runbook_url"] == link
    notes = (await enrich(SLOW_ZH, "https://augur.example/sub")).annotations
    assert "https://augur.example/sub/runbooks/latency?lang=zh (match" in notes["augur_runbook"]
    assert notes["runbook_url"] == "https://augur.example/sub/runbooks/latency?lang=zh"


async def test_runbook_base_url_still_wins(enrich: Enrich) -> None:
    notes = (
        await enrich(
            SLOW, "https://augur.example", runbook_base_url="https://git.example.com/ops/runbooks"
        )
    ).annotations
    link = "https://git.example.com/ops/runbooks/latency.en.md"
    assert f"{LATENCY_EN} — {link} (match" in notes["augur_runbook"]
    assert notes["runbook_url"] == link


async def test_the_rules_own_runbook_ranks_first(enrich: Enrich) -> None:
    own = "https://wiki.example.com/checkout-latency"
    alert = _alert(SLOW.annotations["summary"], runbook_url=own)
    notes = (await enrich(alert, "https://augur.example")).annotations
    assert notes["augur_runbook"].startswith(
        f"the rule's runbook: {own}; also: {LATENCY_EN} — "
        "https://augur.example/runbooks/latency?lang=en (match "
    )
    assert "runbook_url" not in notes  # the alert's own is kept, not overwritten
    # Nothing of augur's fits: only the rule's own.
    odd = _alert("zzzz qqqq 12345", runbook_url=own)
    notes = (await enrich(odd, "https://augur.example", runbook_min_score=1.9)).annotations
    assert notes["augur_runbook"] == f"the rule's runbook: {own}"


async def test_a_file_path_is_never_made_a_runbook_url(enrich: Enrich) -> None:
    notes = (await enrich(SLOW)).annotations  # no external URL: the file's path
    assert notes["augur_runbook"].startswith(f"{LATENCY_EN} — /")
    assert "latency.en.md (match" in notes["augur_runbook"]
    assert "runbook_url" not in notes


def test_external_url_setting_flag_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WebConfig(external_url="https://augur.example/x/").external() == (
        "https://augur.example/x"
    )
    assert WebConfig(listen_address="10.0.0.5:9000").external() == "http://10.0.0.5:9000"
    assert WebConfig().external() == f"http://{socket.gethostname()}:9465"
    for bad in (
        "augur.example",
        "ftp://augur.example",
        "https://u:p@augur.example",
        "http://a/?x=1",
    ):
        with pytest.raises(ValueError, match=r"web\.external_url"):
            Config.model_validate(
                {"prometheus": {"url": "http://p:9090"}, "web": {"external_url": bad}}
            )
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--prometheus.url", "http://p:9090", "--web.external-url", "https://flag.example"]
    )
    config = load_config(args)
    assert config is not None and config.web.external() == "https://flag.example"
    env = {"AUGUR_PROMETHEUS_URL": "http://p:9090", "AUGUR_WEB_EXTERNAL_URL": "https://env.example"}
    assert load(None, environ=env).web.external() == "https://env.example"
    with pytest.raises(ConfigError, match=r"web\.external_url"):
        load(None, environ={**env, "AUGUR_WEB_EXTERNAL_URL": "nope"})
