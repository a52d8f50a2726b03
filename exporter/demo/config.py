"""What `augur demo` runs: its augur queries, alert rules, Alertmanager routing, scrape jobs.

Kept apart from `exporter.demo.stack` (which starts and stops the processes) so the demo's
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


# Every query runs augur's shipped default detector (the ensemble: no `detectors` below), with
# no deviation filter: tests/test_demo_detection.py checks that it flags every injected anomaly
# and nothing else. `direction: up` is what a user means for latency, CPU and a filling disk: a
# drop is good news there. `metric` keeps the series' metric name on its score and incident,
# for the alert's text and for augur.
QUERIES_YAML = """\
- {name: http_requests, expr: demo_http_requests_per_second, labels: [metric, instance, service]}
- {name: http_latency_p99, expr: demo_http_request_duration_seconds,
   labels: [metric, instance, service], direction: up}
- {name: cpu_usage, expr: demo_cpu_usage_ratio, labels: [metric, instance], direction: up}
- {name: disk_used, expr: demo_disk_used_ratio, labels: [metric, instance, device, mountpoint],
   direction: up}
- {name: disk_io, expr: demo_disk_io_utilization_ratio, labels: [metric, instance, service],
   direction: up}
- {name: http_errors, expr: demo_http_errors_per_second, labels: [metric, instance, service],
   direction: up}
"""

# AugurAnomaly is the shipped rule (deploy/k8s/base/augur-prometheusrule.yaml) in the demo's
# words: it fires while augur has an incident open on a series, from its first score >= 1 until
# it is back in its band, so each injected anomaly is one alert; the `stage` label makes an
# incident that gets much worse one more. Its summary is plain language because augur
# classifies the alert by it; the value is the stage, not a score, so neither text quotes it
# as one. The other two rules are what a team writes by hand, on the workload itself: they
# fire on the latency jump and the disk fill burst, so enriched alerts of other categories
# show up too.
RULES_YAML = """\
groups:
  - name: augur-demo
    rules:
      - alert: AugurAnomaly
        expr: max without (detector) (augur_anomaly_incident) >= 1
        for: 0s
        labels:
          severity: warning
          stage: "{{ $value }}"
        annotations:
          summary: '{{ $labels.metric }} {{ if $labels.service }}of service
            {{ $labels.service }}{{ else if $labels.mountpoint }}of {{ $labels.mountpoint }}
            on {{ $labels.device }}{{ else }}on {{ $labels.instance }}{{ end }} is
            anomalous{{ if ge $value 2.0 }} and has got much worse{{ end }}'
          description: 'augur opened an incident on the series {{ $labels.metric }} with
            {{ range $k, $v := $labels }}{{ if not (eq $k "__name__" "alertname" "query"
            "metric" "job" "severity") }}{{ $k }}="{{ $v }}" {{ end }}{{ end }}(query
            {{ $labels.query }}): it went far outside the band augur expects from its recent
            history. Stage {{ $value }}: 1 when opened, one more each time it got much worse.
            The alert resolves once the series is back in its band.'
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
    """The demo's augur queries, as in the `queries:` list of augur.yml (step and the settings
    every query shares aside)."""
    out: list[dict[str, Any]] = yaml.safe_load(QUERIES_YAML)
    return out


def augur_config(
    prometheus_url: str, listen_address: str, state_path: Path, alertmanager_url: str
) -> dict[str, Any]:
    """The augur configuration the demo runs with (a parsed augur.yml)."""
    step = f"{SCRAPE_INTERVAL:g}s"
    common = {
        "step": step,
        # The default ensemble's level member reads a band of 2,000 points behind its last
        # 2 x relearn (2 h: 480 points at 15 s), 10h24m with a refresh period: a look-back
        # under 2 h starves it (it never scores) and 12 h gives it every point it reads.
        # The ensemble scores from the first poll on the 6 h backfilled: it bootstraps its
        # calibration from the window's last 400 points (the level member, whose 480
        # re-learning points are more, calibrates over its first 100 polls meanwhile).
        "lookback": "12h",
        # One incident per injection: each disturbance lasts about a minute and a series is
        # disturbed again 24 minutes later, so the default recovery (1 h) would keep one
        # incident, and one alert, open for the whole demo. Two minutes back in band closes
        # it after each disturbance while a score that dips below 1 during one does not.
        "recovery": "2m",
    }
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
