"""The Overview dashboard (uid augur-overview): what is anomalous now, and the alerts enriched."""

from __future__ import annotations

from grafana import Json, Row, dashboard, stat, table, target, timeseries
from promql import REPLICA, anomalous, increase, open_incidents, per_shard, rate, score, sel
from variables import cluster, job, query

Q = 'query=~"$query"'
SERIES_LINK = [
    {
        "title": "Open this series",
        "url": "/d/augur-series/augur-series?${__url_time_range}&${datasource:queryparam}"
        "&var-query=${__data.fields.query}",
    }
]


def build() -> Json:
    """The Overview dashboard."""
    now = Row(
        "Now",
        [
            stat(
                "Anomalous series",
                "Series whose highest score over their detectors reached 1 in the last "
                "interval: augur's one meaning of anomalous on every augur dashboard.",
                "none",
                target(f"count({anomalous(Q)}) or vector(0)"),
                red=1,
            ),
            stat(
                "Open incidents",
                "Series with an incident open (augur_anomaly_incident >= 1 on any detector): "
                "what the shipped AugurAnomaly alert fires on. An incident stays open until "
                "the series has been back in its band for the query's `recovery`.",
                "none",
                target(f"count({open_incidents(Q)}) or vector(0)"),
                red=1,
            ),
            stat(
                "Series scored",
                "Series scored in each query's last successful poll, added up over shards "
                "and counted once for copies of the same augur.",
                "none",
                target(f"sum({per_shard(sel('augur_series_scored', Q), 'query')})"),
            ),
            stat(
                "Highest score",
                "The highest score of any series in the last interval; 1 and above is anomalous.",
                "none",
                target(f"max({score(Q)})"),
                red=1,
            ),
            stat(
                "augur processes up",
                "augur processes Prometheus scraped successfully at its last scrape "
                "(`up`), out of those it scrapes.",
                "none",
                target(f"sum({sel('up')})"),
            ),
            stat(
                "Alerts enriched",
                "Alerts enriched per interval, all augur processes together.",
                "none",
                target(f"sum({increase('augur_alerts_enriched_total')})"),
            ),
        ],
    )
    anomalies = Row(
        "Anomalies",
        [
            timeseries(
                "Anomalous series per query",
                "Series anomalous (highest score over detectors >= 1) at any poll within each "
                "point's interval, per query; 0 for a query with none.",
                "none",
                target(
                    f"count by (query) ({anomalous(Q)}) "
                    f"or (count by (query) (max without (detector, {REPLICA}) "
                    f"({sel('augur_anomaly_score', Q)})) * 0)",
                    "{{query}}",
                ),
                width=12,
                stack=True,
            ),
            timeseries(
                "Highest score per query",
                "The highest score of any series of each query per interval. The red area "
                "is anomalous (>= 1).",
                "none",
                target(f"max by (query) ({score(Q)})", "{{query}}"),
                width=12,
                red_line=1,
            ),
            table(
                "Top 20 scores now",
                "The 20 highest-scoring series over the last interval, one row per detector. "
                "Click a score to open the Series dashboard on its query.",
                "none",
                target(f"sort_desc(topk(20, {score(Q)}))", instant=True),
                width=24,
                links=SERIES_LINK,
            ),
        ],
    )
    incidents = Row(
        "Incidents",
        [
            timeseries(
                "Open incidents per query",
                "Series with an incident open, per query.",
                "none",
                target(f"count by (query) ({open_incidents(Q)})", "{{query}}"),
                stack=True,
            ),
            timeseries(
                "Incidents opened and escalated",
                "Incidents opened (a series' first score >= 1 after it had recovered) and "
                "escalated (an open incident got `escalation` times worse) per interval, "
                "per query and detector.",
                "none",
                target(
                    per_shard(increase("augur_incidents_opened_total", Q), "query, detector"),
                    "opened {{query}} {{detector}}",
                ),
                target(
                    per_shard(increase("augur_incidents_escalated_total", Q), "query, detector"),
                    "escalated {{query}} {{detector}}",
                ),
                bars=True,
            ),
            timeseries(
                "Age of the oldest open incident",
                "How long the oldest open incident of each query has been open.",
                "s",
                target(
                    "time() - min by (query) "
                    f"({sel('augur_anomaly_incident_start_timestamp_seconds', Q)})",
                    "{{query}}",
                ),
            ),
        ],
    )
    alerts = Row(
        "Alert enrichment",
        [
            timeseries(
                "Alerts received, enriched, posted",
                "Alerts the webhook accepted, enriched, and posted to Alertmanager (summed "
                "over replicas) per second. Details on the Alerts dashboard.",
                "ops",
                target(f"sum({rate('augur_alerts_received_total')})", "received"),
                target(f"sum({rate('augur_alerts_enriched_total')})", "enriched"),
                target(f"sum({rate('augur_alerts_posted_total')})", "posted"),
                target(f"sum({rate('augur_alert_enrich_failures_total')})", "enrich failed"),
                width=12,
            ),
            timeseries(
                "Webhook answers by code",
                "The webhook's answers per second by HTTP status: 200 accepted, 4xx a bad "
                "request or token, 503 backpressure (Alertmanager retries).",
                "reqps",
                target(f"sum by (code) ({rate('augur_webhook_requests_total')})", "{{code}}"),
                width=12,
            ),
            timeseries(
                "Enriched alerts by category",
                "Alerts enriched per interval by the category augur's text model gave them "
                "(`none`: the enricher failed), all augur processes together.",
                "none",
                target(
                    f"sum by (category) ({increase('augur_alerts_enriched_total')})",
                    "{{category}}",
                ),
                width=24,
            ),
        ],
    )
    return dashboard(
        "augur-overview",
        "augur / Overview",
        "What augur finds anomalous now, its incidents and the alerts it enriches. "
        "Generated by scripts/dashboards/build.py.",
        [cluster(), job(), query()],
        [now, anomalies, incidents, alerts],
    )
