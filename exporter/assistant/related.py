"""related_anomalies: the `augur_related` annotation augur wrote on an alert, from Alertmanager.

The alert name was validated against Prometheus's `alertname` values; it reaches Alertmanager
only as a quoted, escaped matcher in the `filter` parameter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp

from exporter.assistant.errors import NoData, NotAvailable
from exporter.assistant.labels import Bound, promql_string

if TYPE_CHECKING:
    from exporter.config.alerts import AlertmanagerConfig

TIMEOUT_SECONDS = 5.0
COLUMNS = {"en": ["alert", "labels", "related anomaly"], "zh": ["告警", "标签", "相关异常"]}


def alertmanager_session(
    config: AlertmanagerConfig | None, url: str, timeout: float = TIMEOUT_SECONDS
) -> aiohttp.ClientSession:
    """A session that reads `url` as the sender posts to it: with the configured authorization
    and TLS when `url` is one of the config's replicas (another URL gets no credentials)."""
    headers: dict[str, str] = {}
    connector = None
    if config is not None and url.rstrip("/") in {u.rstrip("/") for u in config.urls}:
        authorization = config.authorization()
        if authorization is not None:
            headers["Authorization"] = authorization
        connector = aiohttp.TCPConnector(ssl=config.tls.context())
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout), headers=headers, connector=connector
    )


async def _alerts(
    url: str, alert: str, config: AlertmanagerConfig | None = None
) -> list[dict[str, Any]]:
    params = {"filter": f"alertname={promql_string(alert)}", "active": "true", "silenced": "true"}
    try:
        async with alertmanager_session(config, url) as session:
            async with session.get(url.rstrip("/") + "/api/v2/alerts", params=params) as resp:
                resp.raise_for_status()
                body: list[dict[str, Any]] = await resp.json()
                return body
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise NotAvailable(f"cannot read alerts from Alertmanager at {url}: {exc}") from None


async def related_anomalies(
    bound: Bound,
    lang: str,
    alertmanager_url: str | None,
    alertmanager: AlertmanagerConfig | None = None,
) -> tuple[list[str], list[list[str]], str]:
    """Columns, rows and the sentence for the alert's related anomalies (read with
    `alertmanager`'s credentials and TLS when given)."""
    if alertmanager_url is None:
        raise NotAvailable(
            "related anomalies are read from Alertmanager: give its URL (alertmanager.url)"
        )
    assert bound.alert is not None  # a required slot: bind refused its absence
    rows: list[list[str]] = []
    for alert in await _alerts(alertmanager_url, bound.alert, alertmanager):
        labels = alert.get("labels", {})
        shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
        for line in str(alert.get("annotations", {}).get("augur_related", "")).splitlines():
            if line.strip():
                rows.append([bound.alert, shown, line.strip()])
    if not rows:
        said = {
            "en": f"augur noted no related anomaly for {bound.alert}.",
            "zh": f"augur 没有为 {bound.alert} 记录相关异常。",
        }
        raise NoData(said[lang], [])
    said = {
        "en": f"{bound.alert} has {len(rows)} related anomaly line(s), first: {rows[0][2]}.",
        "zh": f"{bound.alert} 有 {len(rows)} 条相关异常:{rows[0][2]}。",
    }
    return COLUMNS[lang], rows[:20], said[lang]
