"""The Alerts dashboard (uid augur-alerts): the webhook, the enrichment, the outbox, the posts."""

from __future__ import annotations

from grafana import Json, Row, dashboard, query_variable, target, timeseries
from promql import increase, quantile, rate, sel
from variables import cluster, instance, job

AM = 'alertmanager=~"$alertmanager"'
BY_INSTANCE = "{{instance}}"


def alertmanager() -> Json:
    """The Alertmanager replicas augur posts to (`alertmanager.urls`)."""
    return query_variable(
        "alertmanager",
        "Alertmanager",
        f"label_values({sel('augur_alerts_posted_total')}, alertmanager)",
        description="An Alertmanager replica augur posts enriched alerts to.",
    )


def build() -> Json:
    """The Alerts dashboard."""
    i = 'instance=~"$instance"'
    webhook = Row(
        "Webhook",
        [
            timeseries(
                "Answers by code",
                "Webhook requests answered per second by HTTP status: 200 stored, 400/413 a "
                "bad body, 401 a wrong token, 408 a body too slow, 503 backpressure (Alertmanager "
                "retries).",
                "reqps",
                target(f"sum by (code) ({rate('augur_webhook_requests_total', i)})", "{{code}}"),
            ),
            timeseries(
                "Latency",
                "Time to answer a webhook request (validation and the durable outbox write; "
                "enrichment happens after the answer).",
                "s",
                target(quantile(0.5, "augur_webhook_duration_seconds", "job", i), "p50"),
                target(quantile(0.99, "augur_webhook_duration_seconds", "job", i), "p99"),
            ),
            timeseries(
                "Throttled by reason",
                "Requests answered 503 with Retry-After: inflight_bytes "
                "(webhook.max_inflight_bytes), backlog (webhook.max_backlog), outbox_full "
                "(outbox.max_alerts).",
                "reqps",
                target(
                    f"sum by (reason) ({rate('augur_webhook_throttled_total', i)})", "{{reason}}"
                ),
            ),
        ],
    )
    flow = Row(
        "Alerts",
        [
            timeseries(
                "Received, enriched, failed",
                "Alerts in webhook notifications (re-sent ones included), alerts enriched (once "
                "per incident of a source alert), and enrichments that failed (the alert still "
                "goes out with a minimal enrichment), per interval.",
                "none",
                target(f"sum({increase('augur_alerts_received_total', i)})", "received"),
                target(f"sum({increase('augur_alerts_enriched_total', i)})", "enriched"),
                target(f"sum({increase('augur_alert_enrich_failures_total', i)})", "enrich failed"),
                bars=True,
            ),
            timeseries(
                "Ignored by reason",
                "Received alerts not stored: already_enriched (augur's own, no loops), "
                "unknown_resolved (resolved, never seen firing), late_firing (a late replica).",
                "none",
                target(
                    f"sum by (reason) ({increase('augur_alerts_ignored_total', i)})", "{{reason}}"
                ),
                bars=True,
            ),
            timeseries(
                "Awaiting enrichment",
                "Alerts accepted and on disk, not yet enriched (so not yet sent), per process.",
                "none",
                target(sel("augur_alerts_awaiting_enrichment", i), BY_INSTANCE),
            ),
        ],
    )
    enrichment = Row(
        "Enrichment",
        [
            timeseries(
                "Enrichment time per batch",
                "Time the enricher took for one batch of accepted alerts, failures included.",
                "s",
                target(quantile(0.5, "augur_alert_enrichment_duration_seconds", "job", i), "p50"),
                target(quantile(0.99, "augur_alert_enrichment_duration_seconds", "job", i), "p99"),
                width=12,
            ),
            timeseries(
                "Stages, p99",
                "A batch's model stage (category, runbook; skipped for repeats) and prometheus "
                "stage (related series, the rule's reading). They run concurrently: the slower "
                "bounds the batch.",
                "s",
                target(
                    quantile(0.99, "augur_alert_enrichment_stage_seconds", "stage", i), "{{stage}}"
                ),
                width=12,
            ),
        ],
    )
    delivery = Row(
        "Delivery to Alertmanager",
        [
            timeseries(
                "Posted per replica",
                "Enriched alerts each Alertmanager replica accepted per second, re-posts "
                "included (firing alerts are re-posted every repost_interval).",
                "ops",
                target(
                    f"sum by (alertmanager) ({rate('augur_alerts_posted_total', i, AM)})",
                    "{{alertmanager}}",
                ),
            ),
            timeseries(
                "Failures per replica",
                "Posts that failed per second (network, timeout, 5xx: retried) and alerts a "
                "replica refused as invalid (400/422: parked, not retried).",
                "ops",
                target(
                    f"sum by (alertmanager) ({rate('augur_alert_post_failures_total', i, AM)})",
                    "failed {{alertmanager}}",
                ),
                target(
                    f"sum by (alertmanager) ({rate('augur_alerts_refused_total', i, AM)})",
                    "refused {{alertmanager}}",
                ),
            ),
            timeseries(
                "Alertmanager up",
                "1 while augur's posts to Alertmanager get answers, 0 while they fail.",
                "none",
                target(sel("augur_upstream_up", 'upstream="alertmanager"', i), BY_INSTANCE),
            ),
        ],
    )
    outbox = Row(
        "Outbox",
        [
            timeseries(
                "Outbox",
                "Alert states not yet delivered (one per alert and replica), alerts stored "
                "(awaiting enrichment, being delivered, or delivered and kept), and "
                "outbox.max_alerts, past which the webhook answers 503.",
                "none",
                target(sel("augur_outbox_pending", i), "pending {{instance}}"),
                target(sel("augur_outbox_alerts", i), "stored {{instance}}"),
                target(sel("augur_outbox_max_alerts", i), "max {{instance}}"),
                width=12,
            ),
            timeseries(
                "Outbox file size",
                "The outbox file and its write-ahead log on disk.",
                "bytes",
                target(sel("augur_outbox_bytes", i), BY_INSTANCE),
                width=12,
            ),
        ],
    )
    return dashboard(
        "augur-alerts",
        "augur / Alerts",
        "augur's alert enrichment: the webhook Alertmanager calls, the enrichment, the "
        "outbox and the posts back to every Alertmanager replica. Generated by "
        "scripts/dashboards/build.py.",
        [cluster(), job(), instance(), alertmanager()],
        [webhook, flow, enrichment, delivery, outbox],
    )
