"""What `augur demo` runs: its augur queries, alert rules, Alertmanager routing, scrape jobs.

Kept apart from `exporter.demo` (which starts and stops the processes) so the demo's
configuration reads in one place and the tests can check it without starting anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

SCRAPE_INTERVAL = 15.0
HISTORY_SECONDS = 6 * 3600.0
FIRST_ANOMALY_AFTER = 30.0
"""At most this long from start-up to the first injected anomaly, so augur shows it soon."""
WORKLOAD_TARGET = {"job": "workload", "instance": "demo-workload"}
"""The workload's target labels, which the backfilled history carries too."""
URLS_FILE = "demo-urls.json"
ENRICHED_LOG = "enriched.jsonl"


# The filters are what a user would tune for these series: each keeps the workload's normal
# noise under the threshold (checked over a simulated day) and the injected anomalies above.
# `metric` keeps the series' metric name on its score, for the alert's text and for augur.
QUERIES_YAML = """\
- {name: http_requests, expr: demo_http_requests_per_second, labels: [metric, instance, service],
   min_relative_deviation: 0.2}
- {name: http_latency_p99, expr: demo_http_request_duration_seconds,
   labels: [metric, instance, service], direction: up, min_relative_deviation: 0.4}
- {name: cpu_usage, expr: demo_cpu_usage_ratio, labels: [metric, instance], direction: up,
   min_deviation: 0.2}
- {name: disk_used, expr: demo_disk_used_ratio, labels: [metric, instance, device, mountpoint],
   direction: up, min_deviation: 0.03}
"""

# AugurAnomaly takes the highest score of the two detectors: one alert per series, not two
# saying the same. Its summary is plain language because augur classifies the alert by it.
# The other two rules are what a team writes by hand, on the workload itself: they fire on the
# latency jump and the disk fill burst, so enriched alerts of other categories show up too.
RULES_YAML = """\
groups:
  - name: augur-demo
    rules:
      - alert: AugurAnomaly
        expr: max without (detector) (augur_anomaly_score) >= 1
        for: 0s
        labels:
          severity: warning
        annotations:
          summary: '{{ $labels.metric }} {{ if $labels.service }}of service
            {{ $labels.service }}{{ else if $labels.mountpoint }}of {{ $labels.mountpoint }}
            on {{ $labels.device }}{{ else }}on {{ $labels.instance }}{{ end }} is anomalous:
            score {{ printf "%.1f" $value }}'
          description: 'augur scores the series {{ $labels.metric }} with
            {{ range $k, $v := $labels }}{{ if not (eq $k "__name__" "alertname" "query"
            "metric" "job" "severity") }}{{ $k }}="{{ $v }}" {{ end }}{{ end }}(query
            {{ $labels.query }}) at {{ printf "%.2f" $value }}: far outside the band it expects
            from the last hour (1 or more is anomalous).'
      - alert: HighRequestLatency
        expr: demo_http_request_duration_seconds > 0.8
        labels:
          severity: page
        annotations:
          summary: 'p99 latency of {{ $labels.service }} is {{ humanizeDuration $value }},
            above 800 ms'
          description: '1 in 100 requests to {{ $labels.service }} on {{ $labels.instance }}
            takes longer than {{ humanizeDuration $value }}; it should stay under 800 ms.'
      - alert: DiskWillFillIn1Hour
        expr: predict_linear(demo_disk_used_ratio[2m], 3600) > 1
        labels:
          severity: page
        annotations:
          summary: 'Filesystem {{ $labels.mountpoint }} on {{ $labels.device }} will be full
            within an hour at this rate'
          description: 'At the rate of the last 2 minutes, {{ $labels.mountpoint }}
            ({{ $labels.device }}) on {{ $labels.instance }} runs out of space within an hour.'
"""

# Routed as docs/alertmanager.md says: originals to augur's webhook and only there, what augur
# posts back (augur_enriched="true") on to the team's receiver, here the demo's own.
ALERTMANAGER_YAML = """\
route:
  receiver: "null"
  group_by: [alertname]
  routes:
    - receiver: augur
      matchers: ['augur_enriched!="true"']
      group_by: ['...']
      group_wait: 0s
      group_interval: 10s
      repeat_interval: 1m
      continue: false
    - receiver: demo
      matchers: ['augur_enriched="true"']
      group_by: ['...']
      group_wait: 0s
      group_interval: 10s
      repeat_interval: 1h
receivers:
  - name: "null"
  - name: augur
    webhook_configs:
      - url: {augur}/webhook
        send_resolved: true
  - name: demo
    webhook_configs:
      - url: {receiver}
        send_resolved: true
"""


def alertmanager_config(augur_url: str, receiver_url: str) -> dict[str, Any]:
    """The demo's alertmanager.yml (parsed): to augur's webhook, enriched to the receiver."""
    out: dict[str, Any] = yaml.safe_load(
        ALERTMANAGER_YAML.format(augur=augur_url, receiver=receiver_url)
    )
    return out


def scrape_configs(workload_port: int, augur_port: int) -> list[dict[str, Any]]:
    """Prometheus's scrape jobs: the workload and augur itself."""

    # honor_labels keeps the series' own `instance` (the CPU series name their host with it)
    # and lets augur's scores keep the labels of the series they score.
    def job(name: str, port: int, **labels: str) -> dict[str, Any]:
        targets = [{"targets": [f"127.0.0.1:{port}"], "labels": labels}]
        return {"job_name": name, "honor_labels": True, "static_configs": targets}

    return [
        job("workload", workload_port, instance=WORKLOAD_TARGET["instance"]),
        job("augur", augur_port),
    ]


def queries() -> list[dict[str, Any]]:
    """The demo's augur queries, as in the `queries:` list of augur.yml (detectors aside)."""
    out: list[dict[str, Any]] = yaml.safe_load(QUERIES_YAML)
    return out


def augur_config(
    prometheus_url: str, listen_address: str, state_path: Path, alertmanager_url: str
) -> dict[str, Any]:
    """The augur configuration the demo runs with (a parsed augur.yml)."""
    step = f"{SCRAPE_INTERVAL:g}s"
    common = {"detectors": ["zscore", "ewma"], "lookback": "1h", "step": step}
    return {
        "prometheus": {"url": prometheus_url, "timeout": "10s"},
        "poll": {"interval": step},
        "web": {"listen_address": listen_address},
        "state": {"path": str(state_path)},
        "queries": [{**q, **common} for q in queries()],
        "alertmanager": {"urls": [alertmanager_url]},
        # Prometheus, augur and the model share the machine's cores here: a longer deadline
        # than the default keeps "related series unknown" out of the demo's alerts. Nearly all
        # demo series share one instance and a new one is disturbed every 3 minutes, so the
        # default 15 minutes before an alert would call the previous, unrelated disturbances
        # related; one minute keeps to what coincides.
        "enrich": {"deadline": "2s", "related_before": "1m"},
    }
