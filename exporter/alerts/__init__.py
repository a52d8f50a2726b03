"""Alert enrichment: Alertmanager's webhook in, enriched alerts out to every replica.

`models` is the contract between the webhook and the enricher, the only module imported here;
the loop's settings are in `exporter.config.alerts`.
"""

from exporter.alerts.payloads import Enricher, Enrichment, WebhookAlert, WebhookPayload

__all__ = ["Enricher", "Enrichment", "WebhookAlert", "WebhookPayload"]
