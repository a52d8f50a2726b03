"""augur's own health at /metrics: polls, Prometheus calls, the text model, storage, build,
and the process itself (`process_*`, `python_*`, as every Python exporter has them).

Both loops record here (the scoring loop its polls, the alert loop its model calls), so it
sits beside them and imports neither.
"""

from __future__ import annotations

import platform
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from exporter import __version__
from exporter.text.cache import CacheMetrics


class StorageMetrics:
    """The SQLite files' health: damage found, calls the volume refused, the outbox's size.

    A sample of what it exposes::

        augur_storage_corruptions_total{store="outbox"} 1.0
        augur_storage_failures_total{store="state"} 0.0
        augur_outbox_alerts 1200.0
        augur_outbox_max_alerts 100000.0
        augur_outbox_bytes 770048.0
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.corruptions = Counter(
            "augur_storage_corruptions",
            "SQLite files found damaged (corrupt, truncated, a newer augur's), moved aside to "
            "<name>.corrupt-<time> and replaced by an empty one; store is outbox or state.",
            ["store"],
            registry=registry,
        )
        self.failures = Counter(
            "augur_storage_failures",
            "Calls on a SQLite file that failed without damage: volume full, read-only, I/O "
            "error (outbox writes failing this way answer the webhook 503).",
            ["store"],
            registry=registry,
        )
        self.outbox_alerts = Gauge(
            "augur_outbox_alerts",
            "Alerts stored in the outbox (awaiting enrichment, being delivered, or delivered "
            "and kept for alertmanager.outbox_retention).",
            registry=registry,
        )
        self.outbox_max_alerts = Gauge(
            "augur_outbox_max_alerts",
            "outbox.max_alerts: past it the webhook refuses new alerts (503, retried).",
            registry=registry,
        )
        self.outbox_bytes = Gauge(
            "augur_outbox_bytes",
            "Size of the outbox file and its write-ahead log on disk.",
            registry=registry,
        )


UPSTREAMS = ("prometheus", "alertmanager")
"""The `upstream` label's values: where augur reads series, where it posts alerts."""

_PROMETHEUS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class SelfMetrics:
    """augur's own health metrics, registered on the given registry.

    A sample of the process's own series (prometheus_client's collectors)::

        process_resident_memory_bytes 2.1e+08
        process_cpu_seconds_total 12.3
        python_info{implementation="CPython",major="3",minor="12",...} 1.0
        python_gc_collections_total{generation="0"} 310.0
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        # The process's CPU, memory, file descriptors and start time, the interpreter, and
        # its garbage collector: what a dashboard of augur itself draws.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self.storage = StorageMetrics(registry)
        self.polls = Counter(
            "augur_polls", "Poll cycles attempted per query.", ["query"], registry=registry
        )
        self.poll_failures = Counter(
            "augur_poll_failures",
            "Poll cycles per query that failed (Prometheus error, timeout, scoring error).",
            ["query"],
            registry=registry,
        )
        self.poll_duration = Histogram(
            "augur_poll_duration_seconds",
            "Time to query, align, score and publish one query.",
            ["query"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.last_poll = Gauge(
            "augur_last_poll_timestamp_seconds",
            "Unix time of the query's last successful poll.",
            ["query"],
            registry=registry,
        )
        self.series_scored = Gauge(
            "augur_series_scored",
            "Series of the query scored in its last successful poll.",
            ["query"],
            registry=registry,
        )
        self.series_warming_up = Gauge(
            "augur_series_warming_up",
            "Series of the query seen in its last successful poll but not scored yet because "
            "their detectors are still collecting warm-up points.",
            ["query"],
            registry=registry,
        )
        self.series_warmup_remaining = Gauge(
            "augur_series_warmup_remaining_seconds",
            "Estimated seconds until the last warming-up series of the query gets its first "
            "score (0 when none is warming up, NaN when its detectors cannot tell).",
            ["query"],
            registry=registry,
        )
        self.history_bytes = Gauge(
            "augur_history_bytes",
            "Memory held by the query's in-memory look-back (series x steps, float64), which "
            "spares each poll a fetch of the whole look-back.",
            ["query"],
            registry=registry,
        )
        self.series_dropped = Counter(
            "augur_series_dropped",
            "Series left unscored because the query returned more than max_series.",
            ["query"],
            registry=registry,
        )
        self.incidents_opened = Counter(
            "augur_incidents_opened",
            "Incidents opened (a series' first score >= 1 after it had recovered).",
            ["query", "detector"],
            registry=registry,
        )
        self.incidents_escalated = Counter(
            "augur_incidents_escalated",
            "Open incidents that got worse (a score >= escalation x the one that opened it).",
            ["query", "detector"],
            registry=registry,
        )
        self.overruns = Counter(
            "augur_poll_overruns",
            "Poll cycles that took longer than the poll interval (the next one was delayed).",
            registry=registry,
        )
        self.prometheus_retries = Counter(
            "augur_prometheus_retries",
            "Requests to Prometheus that were retried after a 5xx, timeout or network error.",
            ["endpoint"],
            registry=registry,
        )
        self.prometheus_request_duration = Histogram(
            "augur_prometheus_request_duration_seconds",
            "Time of each HTTP request augur made to Prometheus (every attempt, failed ones "
            "included; the answer read, not yet decoded), by API endpoint.",
            ["endpoint"],
            buckets=_PROMETHEUS_BUCKETS,
            registry=registry,
        )
        for endpoint in ("/api/v1/query", "/api/v1/query_range"):
            self.prometheus_request_duration.labels(endpoint)
        self.model_info = Gauge(
            "augur_model_info",
            "The alert-text model in use; always 1.",
            ["name", "version", "sha256"],
            registry=registry,
        )
        self.model_cache = CacheMetrics(registry)
        self.model_inference = Histogram(
            "augur_model_inference_seconds",
            "Time of one call of the text model (a batch of alert texts), encoder and head.",
            buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        # --- upstreams (issue 12): whether augur gets answers; one block, kept together ---
        self.upstream_up = Gauge(
            "augur_upstream_up",
            "1 if the upstream's last calls got an answer, 0 while it is down, unreachable, "
            "timing out, failing with 5xx or not answering as its API (0 until it first answers).",
            ["upstream"],
            registry=registry,
        )
        self.upstream_failures = Counter(
            "augur_upstream_failures",
            "Calls to an upstream that failed after their retries, by reason: connection, "
            "timeout, http (5xx or a page not from its API), bad_response, too_large, api_error.",
            ["upstream", "reason"],
            registry=registry,
        )
        self.upstream_last_success = Gauge(
            "augur_upstream_last_success_timestamp_seconds",
            "Unix time of the upstream's last answer.",
            ["upstream"],
            registry=registry,
        )
        # Down until it answers, so the gauge is there from the first scrape (Alertmanager's
        # once the alert loop is set up to post to it: `upstream_answered`).
        self.upstream_up.labels("prometheus").set(0)
        for reason in ("connection", "timeout", "http", "bad_response", "too_large", "api_error"):
            self.upstream_failures.labels("prometheus", reason)
        # --- end of upstreams ---
        self.http_connections_refused = Counter(
            "augur_http_connections_refused",
            "Connections to augur's own server answered 503 and closed because "
            "web.max_connections were open.",
            registry=registry,
        )
        self.http_request_timeouts = Counter(
            "augur_http_request_timeouts",
            "Requests to augur's own server answered 408 because their body did not arrive "
            "within web.read_timeout.",
            registry=registry,
        )
        self.build_info = Gauge(
            "augur_build_info",
            "augur's version; always 1.",
            ["version", "python"],
            registry=registry,
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.shard_info = Gauge(
            "augur_shard_info",
            "This replica's share of every query's series: those whose label-set hash modulo "
            "count is index (exporter/scoring/shard.py); always 1.",
            ["index", "count"],
            registry=registry,
        )
        self.set_shard(0, 1)

    def prometheus_retried(self, endpoint: str) -> None:
        """A request to Prometheus's `endpoint` is retried (the client's `on_retry`)."""
        self.prometheus_retries.labels(endpoint).inc()

    def prometheus_requested(self, endpoint: str, seconds: float) -> None:
        """A request to Prometheus's `endpoint` took `seconds` (the client's `on_request`)."""
        self.prometheus_request_duration.labels(endpoint).observe(seconds)

    def upstream_answered(self, upstream: str, up: bool) -> None:
        """Whether `upstream` (one of `UPSTREAMS`) answers now; an answer is its last success."""
        self.upstream_up.labels(upstream).set(1 if up else 0)
        if up:
            self.upstream_last_success.labels(upstream).set(time.time())

    def set_shard(self, index: int, count: int) -> None:
        """Say which shard this process is (`augur_shard_info{index="0",count="1"}` alone)."""
        self.shard_info.clear()
        self.shard_info.labels(str(index), str(count)).set(1)

    def init_query(self, query: str) -> None:
        """Create the query's children so counters start at 0 rather than appearing later."""
        self.polls.labels(query)
        self.poll_failures.labels(query)
        self.series_dropped.labels(query)
        self.poll_duration.labels(query)

    def init_detector(self, query: str, detector: str) -> None:
        """Create the (query, detector) children of the incident counters at 0."""
        self.incidents_opened.labels(query, detector)
        self.incidents_escalated.labels(query, detector)
