"""The alert loop's self-metrics, shared by the webhook, the enrichment worker and the sender."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exporter.text.encoder import CATEGORIES

NO_CATEGORY = "none"
"""`augur_alerts_enriched_total{category}` of an alert the enricher could not classify."""


class AlertMetrics:
    """The alert loop's self-metrics, registered on the given registry.

    Sample::

        augur_alerts_received_total 12.0
        augur_alerts_enriched_total{category="disk"} 4.0
        augur_alerts_posted_total{alertmanager="http://am-0:9093"} 9.0
        augur_alert_post_failures_total{alertmanager="http://am-1:9093"} 3.0
        augur_outbox_pending 3.0
        augur_alerts_awaiting_enrichment 0.0
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "augur_alerts_received",
            "Alerts received in webhook notifications, re-sent and duplicate ones included.",
            registry=registry,
        )
        self.ignored = Counter(
            "augur_alerts_ignored",
            "Received alerts not stored: already_enriched (augur's own, no loops), "
            "unknown_resolved (resolved, never seen firing), late_firing (a late replica).",
            ["reason"],
            registry=registry,
        )
        self.enriched = Counter(
            "augur_alerts_enriched",
            "Alerts enriched and made sendable in the outbox, once per incident of a source "
            f"alert, by the category augur gave it ({NO_CATEGORY}: the enricher failed).",
            ["category"],
            registry=registry,
        )
        for category in (*CATEGORIES, NO_CATEGORY):
            self.enriched.labels(category)
        self.enrich_failures = Counter(
            "augur_alert_enrich_failures",
            "Alerts stored with a minimal enrichment because the enricher failed or timed out.",
            registry=registry,
        )
        self.posted = Counter(
            "augur_alerts_posted",
            "Enriched alerts the Alertmanager replica accepted, re-posts included.",
            ["alertmanager"],
            registry=registry,
        )
        self.post_failures = Counter(
            "augur_alert_post_failures",
            "Enriched alerts whose post failed (network, timeout, 5xx: retried) or that the "
            "replica refused as invalid (not retried).",
            ["alertmanager"],
            registry=registry,
        )
        self.pending = Gauge(
            "augur_outbox_pending",
            "Alert states in the outbox not yet delivered, one per alert and replica.",
            registry=registry,
        )
        self.awaiting = Gauge(
            "augur_alerts_awaiting_enrichment",
            "Alerts accepted by the webhook and on disk, not yet enriched (so not yet sent).",
            registry=registry,
        )
        self.enrich_duration = Histogram(
            "augur_alert_enrichment_duration_seconds",
            "Time the enricher took for one batch of accepted alerts (failures included).",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.enrich_stage = Histogram(
            "augur_alert_enrichment_stage_seconds",
            "Time of one stage of an enrichment batch: model (category and runbook) or "
            "prometheus (related series, the rule's reading). They run concurrently.",
            ["stage"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.webhook_requests = Counter(
            "augur_webhook_requests",
            "Webhook requests answered, by HTTP status code.",
            ["code"],
            registry=registry,
        )
        self.webhook_duration = Histogram(
            "augur_webhook_duration_seconds",
            "Time to answer a webhook request: validation and the durable outbox write "
            "(enrichment happens after the answer).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.webhook_throttled = Counter(
            "augur_webhook_throttled",
            "Webhook requests answered 503 with Retry-After for backpressure: inflight_bytes "
            "(webhook.max_inflight_bytes), backlog (webhook.max_backlog) or outbox_full "
            "(outbox.max_alerts).",
            ["reason"],
            registry=registry,
        )
        self.refused = Counter(
            "augur_alerts_refused",
            "Enriched alerts an Alertmanager replica refused as invalid (400/422), after "
            "posting one by one; parked in the outbox with the reason, not retried.",
            ["alertmanager"],
            registry=registry,
        )
        for reason in ("inflight_bytes", "backlog", "outbox_full"):
            self.webhook_throttled.labels(reason)
        for reason in ("already_enriched", "unknown_resolved", "late_firing"):
            self.ignored.labels(reason)
        for stage in ("model", "prometheus"):
            self.enrich_stage.labels(stage)

    def init_replicas(self, urls: Iterable[str]) -> None:
        """Create the per-replica children so they start at 0."""
        for url in urls:
            self.posted.labels(url)
            self.post_failures.labels(url)
            self.refused.labels(url)
