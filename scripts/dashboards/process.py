"""The "augur itself" dashboard (uid augur-self): is each augur process healthy and keeping up."""

from __future__ import annotations

from grafana import Json, Row, dashboard, stat, table, target, timeseries
from promql import RATE, increase, quantile, rate, sel
from variables import cluster, instance, job, query

P = 'instance=~"$instance"'
Q = 'query=~"$query"'
PER = "{{instance}} {{query}}"
BY_INSTANCE = "{{instance}}"


def build() -> Json:
    """The augur-itself dashboard."""
    fits = "sum by (query, detector) ({})"
    identity = Row(
        "Processes",
        [
            table(
                "Build, model, shard",
                "Each process's version and Python (augur_build_info, python_info), its text "
                "model (augur_model_info) and its share of the series (augur_shard_info).",
                "none",
                target(
                    f"max by (instance, version, python) ({sel('augur_build_info', P)})",
                    instant=True,
                ),
                target(
                    f"max by (instance, implementation, version) ({sel('python_info', P)})",
                    instant=True,
                ),
                target(
                    f"max by (instance, name, version, sha256) ({sel('augur_model_info', P)})",
                    instant=True,
                ),
                target(
                    f"max by (instance, index, count) ({sel('augur_shard_info', P)})", instant=True
                ),
                width=12,
                hide=("Time", "Value"),
            ),
            stat(
                "Config reload",
                "1 if the last configuration reload (SIGHUP or POST /-/reload) succeeded; 0 "
                "means augur runs on its previous config: its log says why.",
                "none",
                target(f"min({sel('augur_config_last_reload_successful', P)})"),
            ),
            stat(
                "Since last good reload",
                "Time since the configuration was last loaded successfully (at start or reload).",
                "s",
                target(
                    f"time() - min({sel('augur_config_last_reload_success_timestamp_seconds', P)})"
                ),
            ),
            stat(
                "Uptime",
                "Time since the youngest augur process started.",
                "s",
                target(f"time() - max({sel('process_start_time_seconds', P)})"),
            ),
        ],
    )
    upstreams = Row(
        "Upstreams",
        [
            timeseries(
                "Upstream up",
                "1 while the upstream answers, 0 while it is down (from the start until its first "
                "answer too).",
                "none",
                target(sel("augur_upstream_up", P), "{{instance}} {{upstream}}"),
                width=6,
            ),
            timeseries(
                "Since the upstream last answered",
                "Time since each upstream's last answer.",
                "s",
                target(
                    f"time() - {sel('augur_upstream_last_success_timestamp_seconds', P)}",
                    "{{instance}} {{upstream}}",
                ),
                width=6,
            ),
            timeseries(
                "Upstream failures by reason",
                "Calls that failed after their retries: connection, timeout, http, "
                "bad_response, too_large, api_error.",
                "ops",
                target(
                    f"sum by (upstream, reason) ({rate('augur_upstream_failures_total', P)})",
                    "{{upstream}} {{reason}}",
                ),
                width=12,
            ),
            timeseries(
                "Prometheus request latency",
                "Every HTTP call augur makes to Prometheus, by API endpoint: p50 and p99.",
                "s",
                target(
                    quantile(0.5, "augur_prometheus_request_duration_seconds", "endpoint", P),
                    "p50 {{endpoint}}",
                ),
                target(
                    quantile(0.99, "augur_prometheus_request_duration_seconds", "endpoint", P),
                    "p99 {{endpoint}}",
                ),
                width=12,
            ),
            timeseries(
                "Prometheus retries",
                "Requests to Prometheus retried after a 5xx, timeout or network error, per "
                "second, by endpoint.",
                "ops",
                target(
                    f"sum by (endpoint) ({rate('augur_prometheus_retries_total', P)})",
                    "{{endpoint}}",
                ),
                width=12,
            ),
        ],
    )
    polls = Row(
        "Scoring loop",
        [
            timeseries(
                "Poll duration",
                "Time to query, align, score and publish one query: p50 and p99.",
                "s",
                target(
                    quantile(0.5, "augur_poll_duration_seconds", "query", P, Q), "p50 {{query}}"
                ),
                target(
                    quantile(0.99, "augur_poll_duration_seconds", "query", P, Q), "p99 {{query}}"
                ),
            ),
            timeseries(
                "Polls and failures",
                "Poll cycles per second per query, and those that failed (Prometheus error, "
                "timeout, scoring error); cycles longer than poll.interval (overruns).",
                "ops",
                target(
                    f"sum by (instance, query) ({rate('augur_polls_total', P, Q)})", "polls " + PER
                ),
                target(
                    f"sum by (instance, query) ({rate('augur_poll_failures_total', P, Q)})",
                    "failed " + PER,
                ),
                target(
                    f"sum by (instance) ({rate('augur_poll_overruns_total', P)})",
                    "overruns {{instance}}",
                ),
            ),
            timeseries(
                "Since last successful poll",
                "Time since each query's last successful poll; more than a few poll intervals "
                "means augur is not scoring it.",
                "s",
                target(f"time() - {sel('augur_last_poll_timestamp_seconds', P, Q)}", PER),
            ),
            timeseries(
                "Series scored, warming up",
                "Series scored in the query's last successful poll, and series seen but not yet "
                "scored because their detectors still collect warm-up points.",
                "none",
                target(sel("augur_series_scored", P, Q), "scored " + PER),
                target(sel("augur_series_warming_up", P, Q), "warming up " + PER),
            ),
            timeseries(
                "Time until warmed up",
                "Time until the last warming-up series of each query gets its first score "
                "(0 when none is warming up).",
                "s",
                target(sel("augur_series_warmup_remaining_seconds", P, Q), PER),
            ),
            timeseries(
                "Series dropped (max_series)",
                "Series left unscored per interval because the query returned more than its "
                "max_series.",
                "none",
                target(
                    f"sum by (instance, query) ({increase('augur_series_dropped_total', P, Q)})",
                    PER,
                ),
                bars=True,
            ),
        ],
    )
    detectors = Row(
        "Detectors and memory",
        [
            timeseries(
                "Fits, failures, fallbacks",
                "Model fits completed (ARIMA), fits that raised or did not converge, and series "
                "put on a simpler fallback model, per interval.",
                "none",
                target(
                    fits.format(increase("augur_detector_fits_total", P, Q)),
                    "fits {{query}} {{detector}}",
                ),
                target(
                    fits.format(increase("augur_detector_fit_failures_total", P, Q)),
                    "failed {{query}} {{detector}}",
                ),
                target(
                    fits.format(increase("augur_detector_fallbacks_total", P, Q)),
                    "fallbacks {{query}} {{detector}}",
                ),
                bars=True,
            ),
            timeseries(
                "Fits pending",
                "Series whose model fit is queued or running in the fit workers.",
                "none",
                target(
                    sel("augur_detector_fits_pending", P, Q), "{{instance}} {{query}} {{detector}}"
                ),
            ),
            timeseries(
                "Look-back memory per query",
                "Memory held by each query's in-memory look-back (series x steps, float64).",
                "bytes",
                target(sel("augur_history_bytes", P, Q), PER),
            ),
        ],
    )
    model = Row(
        "Text model",
        [
            timeseries(
                "Inference time",
                "One call of the text model (a batch of alert texts): p50 and p99.",
                "s",
                target(
                    quantile(0.5, "augur_model_inference_seconds", "instance", P),
                    "p50 {{instance}}",
                ),
                target(
                    quantile(0.99, "augur_model_inference_seconds", "instance", P),
                    "p99 {{instance}}",
                ),
            ),
            timeseries(
                "Template cache hit ratio",
                "Alert texts answered from the template cache out of all texts looked up.",
                "percentunit",
                target(
                    f"sum by (instance) ({rate('augur_model_cache_hits_total', P)}) / "
                    f"(sum by (instance) ({rate('augur_model_cache_hits_total', P)}) + "
                    f"sum by (instance) ({rate('augur_model_cache_misses_total', P)}))",
                    BY_INSTANCE,
                ),
            ),
            timeseries(
                "Template cache entries",
                "Templates in the cache (model.cache_size at most).",
                "none",
                target(sel("augur_model_cache_entries", P), BY_INSTANCE),
            ),
        ],
    )
    runtime = Row(
        "Process",
        [
            timeseries(
                "CPU",
                "CPU time used per second (1 = one core).",
                "none",
                target(f"rate({sel('process_cpu_seconds_total', P)}{RATE})", BY_INSTANCE),
                width=6,
            ),
            timeseries(
                "Memory",
                "Resident memory (RSS) of each process, and virtual memory.",
                "bytes",
                target(sel("process_resident_memory_bytes", P), "rss {{instance}}"),
                target(sel("process_virtual_memory_bytes", P), "virtual {{instance}}"),
                width=6,
            ),
            timeseries(
                "Open files",
                "File descriptors open, and the limit.",
                "none",
                target(sel("process_open_fds", P), "open {{instance}}"),
                target(sel("process_max_fds", P), "max {{instance}}"),
                width=6,
            ),
            timeseries(
                "Python garbage collection",
                "Collections per second per generation, and objects collected per second.",
                "ops",
                target(
                    f"sum by (instance, generation) ({rate('python_gc_collections_total', P)})",
                    "collections gen {{generation}} {{instance}}",
                ),
                target(
                    f"sum by (instance) ({rate('python_gc_objects_collected_total', P)})",
                    "objects collected {{instance}}",
                ),
                target(
                    f"sum by (instance) ({rate('python_gc_objects_uncollectable_total', P)})",
                    "uncollectable {{instance}}",
                ),
                width=6,
            ),
            timeseries(
                "HTTP server refusals",
                "Connections to augur's server turned away (503) beyond web.max_connections, "
                "and requests answered 408 because the body did not arrive within "
                "web.read_timeout.",
                "ops",
                target(
                    f"sum by (instance) ({rate('augur_http_connections_refused_total', P)})",
                    "refused {{instance}}",
                ),
                target(
                    f"sum by (instance) ({rate('augur_http_request_timeouts_total', P)})",
                    "timed out {{instance}}",
                ),
                width=12,
            ),
            timeseries(
                "Storage damage and failures",
                "SQLite files (outbox, state) found damaged and replaced, and calls the volume "
                "refused (full, read-only), per interval.",
                "none",
                target(
                    f"sum by (instance, store) ({increase('augur_storage_corruptions_total', P)})",
                    "damaged {{store}} {{instance}}",
                ),
                target(
                    f"sum by (instance, store) ({increase('augur_storage_failures_total', P)})",
                    "failed {{store}} {{instance}}",
                ),
                width=12,
                bars=True,
            ),
        ],
    )
    return dashboard(
        "augur-self",
        "augur / augur itself",
        "The health of each augur process: upstreams, the scoring loop, detectors, the text "
        "model, CPU and memory. Generated by scripts/dashboards/build.py.",
        [cluster(), job(), instance(), query()],
        [identity, upstreams, polls, detectors, model, runtime],
    )
