"""Kubernetes intents: cAdvisor's container series and kube-state-metrics' object states."""

from __future__ import annotations

from exporter.assistant.labels import Bound, sel
from exporter.assistant.template import Query, Template, Value, t

_POD = ("namespace", "pod")
_CONTAINER = ("namespace", "pod", "container")
_REAL = 'container!="",container!="POD"'
"""cAdvisor's pod-level and pause-container series would count a pod twice."""


def _cadvisor(needs: tuple[str, ...], keys: tuple[str, ...], *values: Value) -> Query:
    return Query("cAdvisor", needs, keys, values)


def _ksm(needs: tuple[str, ...], keys: tuple[str, ...], *values: Value) -> Query:
    return Query("kube-state-metrics", needs, keys, values)


def _pod_cpu(b: Bound) -> str:
    cpu = f"rate(container_cpu_usage_seconds_total{sel(b.ns_sel(), _REAL)}[5m])"
    return f"topk({b.k()}, sum by (namespace, pod) ({cpu}))"


def _pod_mem(b: Bound) -> str:
    memory = f"container_memory_working_set_bytes{sel(b.ns_sel(), _REAL)}"
    return f"topk({b.k()}, sum by (namespace, pod) ({memory}))"


def _restarts(b: Bound) -> str:
    s = sel(b.ns_sel())
    restarts = f"kube_pod_container_status_restarts_total{s}[{b.rng('1h')}]"
    return f"sum by (namespace, pod) (increase({restarts})) > 0"


def _not_ready(b: Bound) -> str:
    phase = sel(b.ns_sel(), 'phase=~"Pending|Failed|Unknown"')
    ready = sel(b.ns_sel(), 'condition="false"')
    done = sel(b.ns_sel(), 'phase="Succeeded"')
    # A completed Job's pod is not ready for good; it is finished, not failing.
    ready_sum = (
        f"sum by (namespace, pod) (kube_pod_status_ready{ready}) > 0"
        f" unless on (namespace, pod) kube_pod_status_phase{done} == 1"
    )
    not_ready = f'label_replace({ready_sum}, "phase", "NotReady", "", "")'
    phases = f"sum by (namespace, pod, phase) (kube_pod_status_phase{phase}) > 0"
    return f"{phases} or on (namespace, pod) {not_ready}"


def _missing(b: Bound) -> str:
    s = sel(b.ns_sel())
    return (
        f"sum by (namespace, deployment) (kube_deployment_spec_replicas{s})"
        f" - sum by (namespace, deployment) (kube_deployment_status_replicas_available{s}) > 0"
    )


def _oom(b: Bound) -> str:
    s = sel(b.ns_sel(), 'reason="OOMKilled"')
    r = b.rng("24h")
    last = f"kube_pod_container_status_last_terminated_reason{s}"
    # The reason stays until the next termination: only a restart within the range makes the
    # OOM kill one of that range, not weeks old.
    restarted = f"increase(kube_pod_container_status_restarts_total{sel(b.ns_sel())}[{r}]) > 0"
    return (
        f"sum by (namespace, pod, container) (max_over_time({last}[{r}])) > 0"
        f" and on (namespace, pod, container) {restarted}"
    )


def _oom_events(b: Bound) -> str:
    s = sel(b.ns_sel(), _REAL)
    events = f"container_oom_events_total{s}[{b.rng('24h')}]"
    return f"sum by (namespace, pod, container) (increase({events})) > 0"


def _throttled(b: Bound) -> str:
    s = sel(b.ns_sel(), _REAL)
    by = "sum by (namespace, pod, container)"
    return (
        f"{by} (rate(container_cpu_cfs_throttled_periods_total{s}[5m]))"
        f" / {by} (rate(container_cpu_cfs_periods_total{s}[5m])) > 0.01"
    )


def _nodes(b: Bound) -> str:
    ready = 'kube_node_status_condition{condition="Ready",status!="true"} == 1'
    pressure = (
        'kube_node_status_condition{condition=~".*Pressure|NetworkUnavailable",status="true"} == 1'
    )
    return f"max by (node, condition, status) ({ready} or {pressure})"


_NONE = t("", "")

KUBE: dict[str, Template] = {
    "top_pod_cpu": Template(
        (
            _cadvisor(
                ("container_cpu_usage_seconds_total",),
                _POD,
                Value(t("CPU", "CPU"), "cores", _pod_cpu),
            ),
        ),
        t("{key} uses the most CPU: {value}", "{key} 的 CPU 使用最多:{value}"),
        t("No pod reports CPU usage.", "没有 Pod 上报 CPU 使用。"),
    ),
    "top_pod_memory": Template(
        (
            _cadvisor(
                ("container_memory_working_set_bytes",),
                _POD,
                Value(t("memory", "内存"), "bytes", _pod_mem),
            ),
        ),
        t("{key} uses the most memory: {value}", "{key} 的内存使用最多:{value}"),
        t("No pod reports memory.", "没有 Pod 上报内存。"),
    ),
    "pod_restarts": Template(
        (
            _ksm(
                ("kube_pod_container_status_restarts_total",),
                _POD,
                Value(t("restarts", "重启次数"), "count", _restarts),
            ),
        ),
        t("{key} restarted the most: {value} times", "{key} 重启最多:{value} 次"),
        t("No pod restarted in that time.", "这段时间内没有 Pod 重启。"),
    ),
    "pods_not_ready": Template(
        (
            _ksm(
                ("kube_pod_status_phase", "kube_pod_status_ready"),
                (*_POD, "phase"),
                Value(_NONE, "", _not_ready),
            ),
        ),
        t("{n} pod(s) are not ready, first {key}", "有 {n} 个 Pod 未就绪,首先是 {key}"),
        t("Every pod is ready.", "所有 Pod 都已就绪。"),
        rows=20,
    ),
    "deployments_unavailable": Template(
        (
            _ksm(
                ("kube_deployment_spec_replicas", "kube_deployment_status_replicas_available"),
                ("namespace", "deployment"),
                Value(t("missing replicas", "缺少副本"), "count", _missing),
            ),
        ),
        t("{key} misses {value} replica(s)", "{key} 缺少 {value} 个副本"),
        t("Every deployment has its replicas.", "所有 Deployment 的副本都齐全。"),
        rows=20,
    ),
    "oom_killed": Template(
        (
            _ksm(
                (
                    "kube_pod_container_status_last_terminated_reason",
                    "kube_pod_container_status_restarts_total",
                ),
                _CONTAINER,
                Value(_NONE, "", _oom),
            ),
            _cadvisor(
                ("container_oom_events_total",),
                _CONTAINER,
                Value(t("OOM kills", "OOM 次数"), "count", _oom_events),
            ),
        ),
        t("{n} container(s) were OOM-killed, first {key}", "有 {n} 个容器被 OOM 杀掉,首先是 {key}"),
        t("No container was OOM-killed in that time.", "这段时间内没有容器被 OOM 杀掉。"),
        rows=20,
    ),
    "cpu_throttling": Template(
        (
            _cadvisor(
                ("container_cpu_cfs_throttled_periods_total", "container_cpu_cfs_periods_total"),
                _CONTAINER,
                Value(t("throttled", "被限流"), "ratio", _throttled),
            ),
        ),
        t("{key} is the most throttled: {value} of periods", "{key} 被限流最多:{value} 的周期"),
        t("No container is CPU-throttled.", "没有容器被 CPU 限流。"),
    ),
    "nodes_not_ready": Template(
        (
            _ksm(
                ("kube_node_status_condition",),
                ("node", "condition", "status"),
                Value(_NONE, "", _nodes),
            ),
        ),
        t(
            "{n} node condition(s) need attention, first {key}",
            "有 {n} 个节点状况需要关注,首先是 {key}",
        ),
        t("Every node is Ready and under no pressure.", "所有节点都已就绪且无压力。"),
        rows=20,
    ),
}
"""Kubernetes intents' templates by name."""
