"""What the Enricher learns of one alert, from which its annotations and summary are written.

`enrich.py` fills the `Facts` in, `summary.py` and the annotations read them; a `Reason` says,
in both languages, why a part is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.alerts.payloads import WebhookAlert
from exporter.alerts.related import Reading, Related
from exporter.text.encoder import Classification
from exporter.text.entities import Entities
from exporter.text.knowledge import RunbookMatch

Reason = tuple[str, str]
"""Why something is missing, in English and in Chinese."""
Understood = tuple[Classification, RunbookMatch | None]
"""The text model's verdict on an alert's text, and the runbook picked for it."""


@dataclass
class Facts:
    """What enrichment learned of one alert; its annotations and summary are written from it."""

    alert: WebhookAlert
    text: str
    zh: bool
    entities: Entities
    expr: str
    understood: Understood | None = None
    related: list[Related] | None = None
    reading: Reading | None = None
    missing: dict[str, Reason] = field(default_factory=dict)
    expr_not_run: str = ""
    """Why the rule's expression is shown but not run in Prometheus (the g0.expr policy)."""
