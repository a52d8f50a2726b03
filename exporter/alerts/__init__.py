"""Alert enrichment: Alertmanager's webhook in, enriched alerts out to every replica.

`models` is the contract between the webhook and the enricher and holds the settings; it is
the only module imported here, so that `exporter.config` can import the settings cheaply.
"""

from exporter.alerts.models import (
    AlertmanagerConfig,
    Enricher,
    Enrichment,
    WebhookAlert,
    WebhookConfig,
    WebhookPayload,
)

__all__ = [
    "AlertmanagerConfig",
    "Enricher",
    "Enrichment",
    "WebhookAlert",
    "WebhookConfig",
    "WebhookPayload",
]
