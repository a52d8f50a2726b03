"""The intents `augur ask` can answer: each names the slots it reads and a title per language.

The names are a contract shared with the matcher, the labelled questions and the report; a name
is never renamed, only added. The PromQL behind each intent lives in `templates`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

SLOTS = ("host", "service", "namespace", "pod", "range", "topk", "time", "alert")
"""Every slot an intent may read; what each holds is described in docs/assistant.md."""


@dataclass(frozen=True)
class Intent:
    """One question augur can answer, with the slots it can use and those it needs."""

    name: str
    slots: tuple[str, ...]
    required: tuple[str, ...]
    title: Mapping[str, str]


def _intent(name: str, slots: str, required: str, en: str, zh: str) -> Intent:
    used, needed = tuple(slots.split()), tuple(required.split())
    assert set(needed) <= set(used) <= set(SLOTS), name
    return Intent(name, used, needed, MappingProxyType({"en": en, "zh": zh}))


_ALL = (
    _intent(
        "top_cpu_hosts", "topk", "", "Hosts with the highest CPU usage", "CPU 使用率最高的主机"
    ),
    _intent("top_memory_hosts", "topk", "", "Hosts using the most memory", "内存使用最多的主机"),
    _intent("top_disk_usage", "topk host", "", "Fullest filesystems", "磁盘使用率最高的文件系统"),
    _intent("host_cpu", "host", "host", "CPU usage of one host", "某台主机的 CPU 使用率"),
    _intent("host_memory", "host", "host", "Memory of one host", "某台主机的内存"),
    _intent("host_disk", "host", "host", "Disk space of one host", "某台主机的磁盘空间"),
    _intent("host_load", "host", "", "Load average", "系统负载"),
    _intent("host_network", "host", "", "Network traffic in and out", "网络流量(入/出)"),
    _intent("host_uptime", "host", "", "Uptime and recent reboots", "运行时间与最近重启"),
    _intent("targets_down", "", "", "Scrape targets that are down", "宕掉的抓取目标"),
    _intent("disk_fill_forecast", "range host", "", "Disks that fill up soon", "即将写满的磁盘"),
    _intent(
        "error_rate_by_service",
        "service range",
        "",
        "Error (5xx) ratio per service",
        "各服务的错误率(5xx)",
    ),
    _intent(
        "request_rate_by_service",
        "service range",
        "",
        "Requests per second per service",
        "各服务的请求量(每秒)",
    ),
    _intent(
        "latency_by_service",
        "service",
        "",
        "p99 / p95 latency per service",
        "各服务的 p99/p95 延迟",
    ),
    _intent(
        "service_availability",
        "service range",
        "service",
        "Success ratio of one service",
        "某个服务的可用性(成功率)",
    ),
    _intent("top_pod_cpu", "namespace topk", "", "Pods using the most CPU", "CPU 使用最多的 Pod"),
    _intent(
        "top_pod_memory", "namespace topk", "", "Pods using the most memory", "内存使用最多的 Pod"
    ),
    _intent("pod_restarts", "namespace range", "", "Pods restarting", "重启的 Pod"),
    _intent(
        "pods_not_ready",
        "namespace",
        "",
        "Pods not ready, pending or failed",
        "未就绪/挂起/失败的 Pod",
    ),
    _intent(
        "deployments_unavailable",
        "namespace",
        "",
        "Deployments missing replicas",
        "副本不足的 Deployment",
    ),
    _intent("oom_killed", "namespace range", "", "Containers OOM-killed", "被 OOM 杀掉的容器"),
    _intent("cpu_throttling", "namespace", "", "Containers CPU-throttled", "CPU 被限流的容器"),
    _intent(
        "nodes_not_ready",
        "",
        "",
        "Kubernetes nodes not Ready or under pressure",
        "未就绪或有压力的 Kubernetes 节点",
    ),
    _intent(
        "anomalous_now",
        "service host",
        "",
        "What augur finds anomalous now",
        "augur 当前发现的异常",
    ),
    _intent(
        "anomalies_in_range", "range", "range", "What was anomalous in a period", "一段时间内的异常"
    ),
    _intent("open_incidents", "", "", "augur incidents open now", "augur 当前未关闭的事件"),
    _intent(
        "forecast_of", "host service", "", "Where watched series are heading", "监控序列的预测走向"
    ),
    _intent("alerts_firing", "", "", "Alerts firing now", "当前正在触发的告警"),
    _intent(
        "alerts_fired_in_range",
        "range",
        "range",
        "Alerts that fired in a period",
        "一段时间内触发过的告警",
    ),
    _intent(
        "alerts_by_category", "range", "", "Enriched alerts by category", "按类别统计的增强告警"
    ),
    _intent("changed_around", "time", "time", "What changed around a time", "某个时间点前后的变化"),
    _intent(
        "related_anomalies", "alert", "alert", "Related anomalies of an alert", "某条告警的相关异常"
    ),
    _intent("augur_status", "", "", "augur's own state", "augur 自身的状态"),
    _intent(
        "scrape_health", "", "", "Targets and scrape durations per job", "各 job 的目标数与抓取耗时"
    ),
)

CATALOG: Mapping[str, Intent] = MappingProxyType({i.name: i for i in _ALL})
"""Every intent by name, in the order the catalogue lists them."""
