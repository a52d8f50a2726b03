"""What the Enricher learns of one alert, from which its annotations and summary are written.

`enrich.py` fills the `Facts` in, `summary.py` and the annotations read them; a `Reason` says,
in both languages, why a part is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.alerts.band import Band
from exporter.alerts.payloads import WebhookAlert, bound
from exporter.alerts.related import Reading, Related
from exporter.prometheus.client import PrometheusError
from exporter.text.encoder import Classification
from exporter.text.entities import Entities
from exporter.text.knowledge import RunbookMatch

Reason = tuple[str, str]
"""Why something is missing, in English and in Chinese."""
Understood = tuple[Classification, RunbookMatch | None]
"""The text model's verdict on an alert's text, and the runbook picked for it."""


def prometheus_reason(exc: BaseException | None, deadline: float) -> Reason:
    """Why Prometheus gave nothing: no answer before the deadline, unreachable, or its error."""
    if exc is None:
        return (
            f"Prometheus did not answer within {deadline:g} s",
            f"Prometheus 在 {deadline:g} 秒内未响应",
        )
    if isinstance(exc, PrometheusError) and exc.error_type in ("connection", "timeout"):
        return "Prometheus is unreachable", "无法连接 Prometheus"
    return f"Prometheus failed: {exc}", f"Prometheus 出错：{exc}"


def failure(doing: str, exc: BaseException) -> str:
    """What failed, cut to a few hundred characters (exceptions can quote input)."""
    return bound(f"{doing} failed: {type(exc).__name__}: {exc}", 300)


@dataclass
class Facts:
    """What enrichment learned of one alert; its annotations and summary are written from it."""

    alert: WebhookAlert
    text: str
    zh: bool
    entities: Entities
    expr: str
    rule_metrics: tuple[str, ...] = ()
    """The metric names the rule's expression reads: their scored series are candidates too."""
    understood: Understood | None = None
    related: list[Related] | None = None
    reading: Reading | None = None
    band: Band | None = None
    """The alerting series' value against the band augur expected, when augur scores it."""
    missing: dict[str, Reason] = field(default_factory=dict)
    expr_not_run: str = ""
    """Why the rule's expression is shown but not run in Prometheus (the g0.expr policy)."""
