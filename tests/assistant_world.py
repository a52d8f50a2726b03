"""Backfill data for the assistant's tests: node_exporter, cAdvisor, kube-state-metrics, HTTP and
augur series over the contract's world (models/data/ask-world.json), with known answers.

Known answers: web-01 is the hottest CPU (93 %), then db-01 (71 %); db-01 uses the most memory
(90 %); db-01's /data is 95 % full and shrinking (full in about 2 h); worker-03 rebooted 30
minutes ago and is a NotReady node; inventory's target is down; payments has the highest error
ratio (8 %), frontend the most traffic, search the slowest p99; checkout-* restarts and was
OOM-killed and uses the most pod CPU (payments-* only long before); search-* is throttled and
not ready; inventory-* is Pending (migrate-*, a finished Job, is not ready but Succeeded); the
payments deployment misses a replica; augur scores search's latency anomalous now (an open
incident) and payments' errors were anomalous from 3 h to 2.5 h ago.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from exporter.demo.procs import Sample

WORLD_FILE = Path(__file__).resolve().parents[1] / "models" / "data" / "ask-world.json"
WORLD: dict[str, Any] = {
    "hosts": ["web-01", "web-02", "db-01", "db-02", "cache-01", "worker-01", "worker-02", "worker-03"],
    "host_port": 9100,
    "services": ["checkout", "payments", "search", "frontend", "auth", "inventory"],
    "namespaces": ["default", "shop", "payments", "monitoring", "kube-system"],
    "pods": {
        "shop": ["checkout-7d9f8b6c5-xk2lp", "frontend-5c8d7f9b4-q8wzt", "search-6b7c8d9f5-m2n4p"],
        "payments": ["payments-84c6d5f7b-r7t2k", "auth-7f6e5d4c3-h3j5k"],
        "default": ["inventory-5d4c3b2a1-z9y8x"],
        "monitoring": ["prometheus-0", "augur-0"],
        "kube-system": ["coredns-5d78c9869d-abcde"],
    },
    "alerts": [
        "HighErrorRate", "HighLatency", "DiskWillFillIn4Hours", "HostHighCpuLoad", "HostOutOfMemory",
        "PodCrashLooping", "KubeDeploymentReplicasMismatch", "TargetDown", "AnomalousSeries",
    ],
}  # fmt: skip
HOURS = 6
STEP = 60
BUSY = {"web-01": 0.93, "db-01": 0.71, "web-02": 0.40, "worker-01": 0.35}
MEMORY_USED = {"db-01": 0.90, "cache-01": 0.80}
ERRORS = {"payments": 0.08, "checkout": 0.01}
TRAFFIC = {"frontend": 120.0, "search": 60.0, "checkout": 30.0}
LATENCY = {"search": 0.8}
GiB = 1024**3
NODES = ("worker-01", "worker-02", "worker-03")


def world() -> dict[str, Any]:
    """The shared world: the file when the questions helper wrote it, else the same literal."""
    if WORLD_FILE.exists():
        loaded: dict[str, Any] = json.loads(WORLD_FILE.read_text(encoding="utf-8"))
        return loaded
    return WORLD


def _times(end: float) -> list[float]:
    last = end - end % STEP
    return [last - i * STEP for i in range(HOURS * 3600 // STEP, -1, -1)]


def _series(name: str, labels: dict[str, str], times: list[float], f: Any) -> Iterator[Sample]:
    for t in times:
        yield Sample(name, labels, t, float(f(t)))


def node_samples(end: float, *, legacy: bool = False) -> Iterator[Sample]:
    """node_exporter's series and `up` for every host, up to `end`; with `legacy` memory as old
    kernels report it (MemFree, Buffers, Cached: no MemAvailable)."""
    w = world()
    times = _times(end)
    t0 = times[0]
    for host in w["hosts"]:
        inst = {"instance": f"{host}:{w['host_port']}", "job": "node"}
        busy = BUSY.get(host, 0.1)
        for cpu in ("0", "1"):
            for mode, share in (("idle", 1 - busy), ("user", busy * 0.7), ("system", busy * 0.3)):
                labels = {**inst, "cpu": cpu, "mode": mode}
                yield from _series(
                    "node_cpu_seconds_total", labels, times, lambda t, s=share: s * (t - t0)
                )
        used = MEMORY_USED.get(host, 0.3)
        yield from _series("node_memory_MemTotal_bytes", inst, times, lambda t: 16 * GiB)
        mem = "node_memory_MemAvailable_bytes"
        parts = [(mem, 1.0)]
        if legacy:
            parts = [
                (f"node_memory_{p}_bytes", k)
                for p, k in (("MemFree", 0.5), ("Buffers", 0.1), ("Cached", 0.4))
            ]
        for name, share in parts:
            yield from _series(
                name,
                inst,
                times,
                lambda t, k=(1 - used) * share: k * 16 * GiB,
            )
        for mount in ("/", "/data"):
            fs = {
                **inst,
                "device": "sda1" if mount == "/" else "sdb1",
                "fstype": "ext4",
                "mountpoint": mount,
            }
            if host == "db-01" and mount == "/data":
                # 95 % full at the end, losing 2.5 GiB an hour: full in two hours.
                avail = lambda t: 5 * GiB + 2.5 * GiB * (end - t) / 3600  # noqa: E731
            else:
                avail = lambda t: 60 * GiB  # noqa: E731
            yield from _series("node_filesystem_size_bytes", fs, times, lambda t: 100 * GiB)
            yield from _series("node_filesystem_avail_bytes", fs, times, avail)
        for n, name in ((1, "node_load1"), (5, "node_load5")):
            yield from _series(name, inst, times, lambda t, k=n, b=busy: b * 2 + k * 0.01)
        for device, rx in (("eth0", 5e6 if host == "cache-01" else 1e6), ("lo", 9e9)):
            dev = {**inst, "device": device}
            yield from _series(
                "node_network_receive_bytes_total", dev, times, lambda t, r=rx: r * (t - t0)
            )
            yield from _series(
                "node_network_transmit_bytes_total", dev, times, lambda t, r=rx: r / 2 * (t - t0)
            )
        boot = end - 1800 if host == "worker-03" else t0 - 86400 * 10
        yield from _series("node_boot_time_seconds", inst, times, lambda t, b=boot: b)
        yield from _series("up", inst, times, lambda t: 1)
        yield from _series("scrape_duration_seconds", inst, times, lambda t: 0.02)
    down = {"job": "inventory", "instance": "inventory:8080"}
    yield from _series("up", down, times, lambda t: 0)
    yield from _series("scrape_duration_seconds", down, times, lambda t: 10.0)


def _pods() -> Iterator[tuple[str, str, str, str]]:
    """(namespace, pod, container, node) of every pod of the world."""
    for i, (ns, pods) in enumerate(sorted(world()["pods"].items())):
        for j, pod in enumerate(pods):
            yield ns, pod, pod.split("-")[0], NODES[(i + j) % len(NODES)]


def kube_samples(end: float, cadvisor: bool = True) -> Iterator[Sample]:
    """cAdvisor's (unless `cadvisor` is False) and kube-state-metrics' series."""
    times = _times(end)
    t0 = times[0]
    for ns, pod, container, node in _pods():
        c = {"namespace": ns, "pod": pod, "container": container}
        if cadvisor:
            cores = 1.5 if container == "checkout" else 0.1
            at = {**c, "node": node}
            yield from _series(
                "container_cpu_usage_seconds_total", at, times, lambda t, k=cores: k * (t - t0)
            )
            mem = 3 * GiB if container == "search" else 0.25 * GiB
            yield from _series("container_memory_working_set_bytes", at, times, lambda t, m=mem: m)
            yield from _series(
                "container_cpu_cfs_periods_total", at, times, lambda t: 10 * (t - t0)
            )
            throttled = 3.0 if container == "search" else 0.0
            yield from _series(
                "container_cpu_cfs_throttled_periods_total",
                at,
                times,
                lambda t, r=throttled: r * (t - t0),
            )
        restarts = (lambda t: (t - t0) // 1800) if container == "checkout" else (lambda t: 0)
        yield from _series("kube_pod_container_status_restarts_total", c, times, restarts)
        # payments was OOM-killed before the world began: its reason stays, it never restarts.
        if container in ("checkout", "payments"):
            oom = {**c, "reason": "OOMKilled"}
            yield from _series(
                "kube_pod_container_status_last_terminated_reason", oom, times, lambda t: 1
            )
        p = {"namespace": ns, "pod": pod}
        for condition in ("true", "false"):
            ready = container != "search" and container != "inventory"
            value = float(ready == (condition == "true"))
            yield from _series(
                "kube_pod_status_ready", {**p, "condition": condition}, times, lambda t, v=value: v
            )
        for phase in ("Pending", "Running", "Failed"):
            now_in = "Pending" if container == "inventory" else "Running"
            value = float(phase == now_in)
            yield from _series(
                "kube_pod_status_phase", {**p, "phase": phase}, times, lambda t, v=value: v
            )
        d = {"namespace": ns, "deployment": container}
        missing = 1 if container == "payments" else 0
        yield from _series("kube_deployment_spec_replicas", d, times, lambda t: 2)
        yield from _series(
            "kube_deployment_status_replicas_available", d, times, lambda t, m=missing: 2 - m
        )
    # A finished Job's pod: Succeeded, and not ready for good, as kube-state-metrics says.
    done = {"namespace": "default", "pod": "migrate-29410-q7w2e"}
    yield from _series("kube_pod_status_phase", {**done, "phase": "Succeeded"}, times, lambda t: 1)
    yield from _series("kube_pod_status_ready", {**done, "condition": "false"}, times, lambda t: 1)
    for node in NODES:
        for condition, bad in (("Ready", node == "worker-03"), ("MemoryPressure", False)):
            for status in ("true", "false"):
                good = condition == "Ready"
                value = float((status == "true") == (good != bad))
                labels = {"node": node, "condition": condition, "status": status}
                yield from _series(
                    "kube_node_status_condition", labels, times, lambda t, v=value: v
                )


def http_samples(
    end: float,
    extra_services: tuple[str, ...] = (),
    *,
    legacy: bool = False,
    named_by: tuple[str, ...] = ("service", "job"),
) -> Iterator[Sample]:
    """http_requests_total{service,code} and the request-duration histogram of every service
    (with `legacy`, precomputed quantile gauges instead, as summaries export them); the service's
    name is in each label of `named_by` (only `job` where no relabelling added `service`)."""
    times = _times(end)
    t0 = times[0]
    for service in [*world()["services"], *extra_services]:
        name = dict.fromkeys(named_by, service)
        rate = TRAFFIC.get(service, 10.0)
        bad = ERRORS.get(service, 0.0)
        # As client libraries do, a code appears once it was answered: no 500 series if none.
        for code, share in (("200", 1 - bad), ("500", bad))[: 2 if bad else 1]:
            labels = {**name, "code": code}
            yield from _series(
                "http_requests_total", labels, times, lambda t, r=rate * share: r * (t - t0)
            )
        mean = LATENCY.get(service, 0.05)
        if legacy:  # an exponential latency's quantile q is -mean * ln(1 - q)
            for q in ("0.95", "0.99"):
                labels = {**name, "quantile": q}
                p = -mean * math.log(1 - float(q))
                yield from _series("http_request_duration_seconds", labels, times, lambda t, v=p: v)
            continue
        for le in ("0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"):
            below = 1.0 if le == "+Inf" else 1 - math.exp(-float(le) / mean)
            labels = {**name, "le": le}
            yield from _series(
                "http_request_duration_seconds_bucket",
                labels,
                times,
                lambda t, k=rate * below: k * (t - t0),
            )


def augur_samples(end: float) -> Iterator[Sample]:
    """augur's own series: search's latency anomalous now, payments' errors 3 h to 2.5 h ago."""
    times = _times(end)
    t0 = times[0]
    search = {"query": "latency", "detector": "zscore", "metric": "http_p99", "service": "search"}
    errors = {
        "query": "errors",
        "detector": "zscore",
        "metric": "http_errors",
        "service": "payments",
    }
    calm = {"query": "traffic", "detector": "zscore", "metric": "http_rps", "service": "frontend"}
    yield from _series(
        "augur_anomaly_score", search, times, lambda t: 2.5 if t > end - 1800 else 0.3
    )
    yield from _series(
        "augur_anomaly_score",
        errors,
        times,
        lambda t: 1.8 if end - 3 * 3600 <= t <= end - 9000 else 0.2,
    )
    yield from _series("augur_anomaly_score", calm, times, lambda t: 0.1)
    yield from _series(
        "augur_anomaly_incident", search, times, lambda t: 1 if t > end - 1800 else 0
    )
    yield from _series("augur_anomaly_incident", calm, times, lambda t: 0)
    start = end - 1800 - (end - 1800) % STEP + STEP
    yield from _series(
        "augur_anomaly_incident_start_timestamp_seconds", search, times, lambda t: start
    )
    disk = {"query": "disk", "horizon": "4h", "metric": "disk_used_ratio", "instance": "db-01:9100"}
    yield from _series("augur_forecast_value", disk, times, lambda t: 0.99)
    for category, per_hour in (("latency", 4), ("errors", 2), ("capacity", 1)):
        yield from _series(
            "augur_alerts_enriched_total",
            {"category": category},
            times,
            lambda t, k=per_hour: k * (t - t0) / 3600,
        )
    yield from _series("augur_last_poll_timestamp_seconds", {}, times, lambda t: t - 5)
    yield from _series("augur_series_scored", {}, times, lambda t: 3)
    yield from _series("augur_series_warming_up", {}, times, lambda t: 0)
    firing = {"alertstate": "firing"}
    cpu = {
        "alertname": "HostHighCpuLoad",
        "severity": "warning",
        "instance": "web-01:9100",
        **firing,
    }
    yield from _series("ALERTS", cpu, times, lambda t: 1)
    hot = {"alertname": "HighErrorRate", "severity": "critical", "service": "payments", **firing}
    yield from _series("ALERTS", hot, [t for t in times if t > end - 3600], lambda t: 1)
    disk_alert = {
        "alertname": "DiskWillFillIn4Hours",
        "severity": "warning",
        "instance": "db-01:9100",
        **firing,
    }
    yield from _series(
        "ALERTS",
        disk_alert,
        [t for t in times if end - 3 * 3600 <= t <= end - 2 * 3600],
        lambda t: 1,
    )


def all_samples(
    end: float,
    *,
    cadvisor: bool = True,
    legacy: bool = False,
    extra_services: tuple[str, ...] = (),
    named_by: tuple[str, ...] = ("service", "job"),
) -> list[Sample]:
    """Every series of the world up to `end`: cAdvisor's left out when `cadvisor` is False, the
    second-choice families (MemFree+Buffers+Cached, quantile gauges) used when `legacy`; HTTP
    series name their service in the labels `named_by`."""
    return [
        *node_samples(end, legacy=legacy),
        *kube_samples(end, cadvisor=cadvisor),
        *http_samples(end, extra_services, legacy=legacy, named_by=named_by),
        *augur_samples(end),
    ]
