"""Each intent's PromQL, with alternatives per metric family (the first family present wins).

Hosts, services and scraping live here; Kubernetes in `templates_kube`, augur's own series and
alerts in `templates_augur`. docs/assistant.md lists every query.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from exporter.assistant.labels import Bound, sel
from exporter.assistant.template import Query, Template, Value, t
from exporter.assistant.templates_augur import AUGUR
from exporter.assistant.templates_kube import KUBE

FS = 'fstype!~"tmpfs|overlay|squashfs|ramfs|nsfs",mountpoint!~"/(run|var/lib/docker|boot/efi).*"'
"""Filesystems people mean by disk: not memory-backed, not container layers."""
CPU_BUSY = t("CPU busy", "CPU 使用率")
MEM_USED = t("memory used", "内存使用率")
DISK_USED = t("used", "已用")


def _cpu(b: Bound) -> str:
    idle = (
        f"rate(node_cpu_seconds_total{sel(b.host_sel(), 'mode=' + chr(34) + 'idle' + chr(34))}[5m])"
    )
    return f"100 * (1 - avg by (instance) ({idle}))"


def _mem_available(b: Bound) -> str:
    s = sel(b.host_sel())
    return f"100 * (1 - node_memory_MemAvailable_bytes{s} / node_memory_MemTotal_bytes{s})"


def _mem_free(b: Bound) -> str:
    s = sel(b.host_sel())
    free = (
        f"node_memory_MemFree_bytes{s} + node_memory_Buffers_bytes{s} + node_memory_Cached_bytes{s}"
    )
    return f"100 * (1 - ({free}) / node_memory_MemTotal_bytes{s})"


def _disk(b: Bound) -> str:
    s = sel(b.host_sel(), FS)
    return f"100 * (1 - node_filesystem_avail_bytes{s} / node_filesystem_size_bytes{s})"


def _topk(inner: Value, default: int = 5) -> Value:
    return Value(inner.column, inner.unit, lambda b: f"topk({b.k(default)}, {inner.build(b)})")


_CPU = Value(CPU_BUSY, "percent", _cpu)
_MEM = Value(MEM_USED, "percent", _mem_available)
_MEM_OLD = Value(MEM_USED, "percent", _mem_free)
_DISK = Value(DISK_USED, "percent", _disk)
_NODE_CPU = ("node_cpu_seconds_total",)
_NODE_MEM = ("node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes")
_NODE_MEM_OLD = (
    "node_memory_MemFree_bytes",
    "node_memory_Buffers_bytes",
    "node_memory_Cached_bytes",
    "node_memory_MemTotal_bytes",
)
_NODE_FS = ("node_filesystem_avail_bytes", "node_filesystem_size_bytes")
_DISK_KEYS = ("instance", "mountpoint")


def _node(
    needs: tuple[str, ...], keys: tuple[str, ...], *values: Value, asc: bool = False
) -> Query:
    return Query("node_exporter", needs, keys, values, asc)


def _net(direction: str) -> Value:
    def build(b: Bound) -> str:
        s = sel(b.host_sel(), 'device!~"lo|veth.*|docker.*|cali.*|flannel.*|cni.*"')
        return f"sum by (instance) (rate(node_network_{direction}_bytes_total{s}[5m]))"

    return Value(
        t(
            f"{direction}d" if direction == "receive" else "sent",
            "入" if direction == "receive" else "出",
        ),
        "bytes/s",
        build,
    )


def _fill(b: Bound) -> str:
    s = sel(b.host_sel(), FS)
    horizon = b.range_seconds or 86400
    shrinking = f"clamp_min(-deriv(node_filesystem_avail_bytes{s}[1h]), 1e-9)"
    eta = f"node_filesystem_avail_bytes{s} / {shrinking}"
    return f"{eta} < {horizon:.0f}"


def _all(b: Bound, total: str, s: str, r: str) -> str:
    return f"sum by ({b.service_label}) (rate({total}{s}[{r}]))"


def _http(total: str, code: str) -> tuple[Value, Value, Value]:
    """Error ratio, request rate and success ratio over one request counter, per service in the
    label `answer` found on it (`Bound.service_label`)."""

    def by(b: Bound) -> str:
        return b.service_label

    def errors(b: Bound) -> str:
        r, s = b.rng("5m"), sel(b.svc_sel())
        bad = sel(b.svc_sel(), f'{code}=~"5.."')
        every = _all(b, total, s, r)
        # A service that never answered 5xx has no such series: `or ... * 0` gives it 0 %.
        return f"(sum by ({by(b)}) (rate({total}{bad}[{r}])) or {every} * 0) / {every}"

    def rate(b: Bound) -> str:
        return f"sum by ({by(b)}) (rate({total}{sel(b.svc_sel())}[{b.rng('5m')}]))"

    def ok(b: Bound) -> str:
        r, s = b.rng("1h"), sel(b.svc_sel())
        good = sel(b.svc_sel(), f'{code}!~"5.."')
        return f"sum by ({by(b)}) (rate({total}{good}[{r}]))" + f" / {_all(b, total, s, r)}"

    return (
        Value(t("errors", "错误率"), "ratio", errors),
        Value(t("requests/s", "请求/秒"), "rate", rate),
        Value(t("success", "成功率"), "ratio", ok),
    )


_PROM_HTTP = _http("http_requests_total", "code")
_SPRING_HTTP = _http("http_server_requests_seconds_count", "status")


def _http_alts(i: int) -> tuple[Query, ...]:
    return (
        Query("HTTP metrics", ("http_requests_total",), ("service",), (_PROM_HTTP[i],)),
        Query(
            "HTTP metrics",
            ("http_server_requests_seconds_count",),
            ("service",),
            (_SPRING_HTTP[i],),
        ),
    )


def _hist(q: float, bucket: str) -> Value:
    def build(b: Bound) -> str:
        by = b.service_label
        return f"histogram_quantile({q}, sum by ({by}, le) (rate({bucket}{sel(b.svc_sel())}[5m])))"

    return Value(t(f"p{q * 100:.0f}", f"p{q * 100:.0f}"), "seconds", build)


def _gauge(q: float, name: str) -> Value:
    def build(b: Bound) -> str:
        by = b.service_label
        return f"max by ({by}) ({name}{sel(b.svc_sel(), f'quantile={chr(34)}{q}{chr(34)}')})"

    return Value(t(f"p{q * 100:.0f}", f"p{q * 100:.0f}"), "seconds", build)


def _latency(family: str, name: str, gauge: bool) -> Query:
    make = _gauge if gauge else _hist
    return Query(family, (name,), ("service",), (make(0.99, name), make(0.95, name)))


_BASE: dict[str, Template] = {
    "top_cpu_hosts": Template(
        (_node(_NODE_CPU, ("instance",), _topk(_CPU)),),
        t("{key} uses the most CPU: {value}", "{key} 的 CPU 使用率最高:{value}"),
        t("No host reports CPU usage now.", "当前没有主机上报 CPU 使用率。"),
    ),
    "top_memory_hosts": Template(
        (
            _node(_NODE_MEM, ("instance",), _topk(_MEM)),
            _node(_NODE_MEM_OLD, ("instance",), _topk(_MEM_OLD)),
        ),
        t("{key} uses the most memory: {value}", "{key} 的内存使用率最高:{value}"),
        t("No host reports memory now.", "当前没有主机上报内存。"),
    ),
    "top_disk_usage": Template(
        (_node(_NODE_FS, _DISK_KEYS, _topk(_DISK)),),
        t("The fullest filesystem is {key}: {value} used", "最满的文件系统是 {key}:已用 {value}"),
        t("No filesystem is reported now.", "当前没有文件系统数据。"),
    ),
    "host_cpu": Template(
        (_node(_NODE_CPU, ("instance",), _CPU),),
        t("{key} CPU usage is {value}", "{key} 的 CPU 使用率为 {value}"),
        t("That host reports no CPU usage now.", "该主机当前没有 CPU 数据。"),
    ),
    "host_memory": Template(
        (_node(_NODE_MEM, ("instance",), _MEM), _node(_NODE_MEM_OLD, ("instance",), _MEM_OLD)),
        t("{key} uses {value} of its memory", "{key} 的内存使用率为 {value}"),
        t("That host reports no memory now.", "该主机当前没有内存数据。"),
    ),
    "host_disk": Template(
        (_node(_NODE_FS, _DISK_KEYS, _DISK),),
        t(
            "{key} is the fullest filesystem of the host: {value} used",
            "该主机最满的是 {key}:已用 {value}",
        ),
        t("That host reports no filesystem now.", "该主机当前没有文件系统数据。"),
    ),
    "host_load": Template(
        (
            _node(
                ("node_load1", "node_load5"),
                ("instance",),
                Value(
                    t("load 1m", "1 分钟负载"), "number", lambda b: f"node_load1{sel(b.host_sel())}"
                ),
                Value(
                    t("load 5m", "5 分钟负载"), "number", lambda b: f"node_load5{sel(b.host_sel())}"
                ),
            ),
        ),
        t("{key} has the highest load: {value}", "{key} 的负载最高:{value}"),
        t("No host reports its load now.", "当前没有主机上报负载。"),
    ),
    "host_network": Template(
        (
            _node(
                ("node_network_receive_bytes_total", "node_network_transmit_bytes_total"),
                ("instance",),
                _net("receive"),
                _net("transmit"),
            ),
        ),
        t("{key} receives the most: {value}", "{key} 的入流量最大:{value}"),
        t("No host reports network traffic now.", "当前没有主机上报网络流量。"),
    ),
    "host_uptime": Template(
        (
            _node(
                ("node_boot_time_seconds",),
                ("instance",),
                Value(
                    t("up for", "已运行"),
                    "age",
                    # The latest boot first: sorted by boot time, the shortest uptime leads.
                    lambda b: f"node_boot_time_seconds{sel(b.host_sel())}",
                ),
            ),
        ),
        t("{key} restarted most recently: up for {value}", "{key} 最近重启过:已运行 {value}"),
        t("No host reports its boot time.", "没有主机上报启动时间。"),
    ),
    "targets_down": Template(
        (
            Query(
                "Prometheus",
                ("up",),
                ("job", "target"),
                (Value(t("", ""), "", lambda b: "up == 0"),),
            ),
        ),
        t("{n} scrape target(s) are down, first {key}", "有 {n} 个抓取目标宕掉,首先是 {key}"),
        t("No scrape target is down.", "没有宕掉的抓取目标。"),
        rows=20,
    ),
    "disk_fill_forecast": Template(
        (_node(_NODE_FS, _DISK_KEYS, Value(t("full in", "写满还需"), "seconds", _fill), asc=True),),
        t("{key} fills up first: in {value}", "{key} 最先写满:约 {value}"),
        t(
            "No disk fills up within that time at its current pace.",
            "按当前速度,该时间内没有磁盘会写满。",
        ),
    ),
    "error_rate_by_service": Template(
        _http_alts(0),
        t("{key} has the highest error ratio: {value}", "{key} 的错误率最高:{value}"),
        t("No service reports requests.", "没有服务上报请求。"),
    ),
    "request_rate_by_service": Template(
        _http_alts(1),
        t("{key} serves the most traffic: {value}", "{key} 的流量最大:{value}"),
        t("No service reports requests.", "没有服务上报请求。"),
    ),
    "latency_by_service": Template(
        (
            _latency("HTTP histograms", "http_request_duration_seconds_bucket", False),
            _latency("HTTP histograms", "http_server_requests_seconds_bucket", False),
            _latency("HTTP quantile gauges", "http_request_duration_seconds", True),
        ),
        t("{key} is the slowest: p99 {value}", "{key} 最慢:p99 {value}"),
        t("No service reports latency.", "没有服务上报延迟。"),
    ),
    "service_availability": Template(
        _http_alts(2),
        t("{key} answered {value} of requests without a 5xx", "{key} 的成功率(非 5xx)为 {value}"),
        t("That service had no requests in that time.", "该服务在这段时间内没有请求。"),
    ),
    "scrape_health": Template(
        (
            Query(
                "Prometheus",
                ("up", "scrape_duration_seconds"),
                ("job",),
                (
                    Value(t("targets", "目标数"), "count", lambda b: "count by (job) (up)"),
                    Value(t("up", "在线"), "count", lambda b: "sum by (job) (up)"),
                    Value(
                        t("scrape time", "抓取耗时"),
                        "seconds",
                        lambda b: "avg by (job) (scrape_duration_seconds)",
                    ),
                ),
            ),
        ),
        t(
            "{n} jobs; {key} has the most targets: {value}",
            "共 {n} 个 job;{key} 的目标最多:{value}",
        ),
        t("Prometheus scrapes nothing.", "Prometheus 没有抓取任何目标。"),
        rows=20,
    ),
}

TEMPLATES: Mapping[str, Template] = MappingProxyType({**_BASE, **KUBE, **AUGUR})
"""Every intent's template by name (related_anomalies reads Alertmanager: see `related`)."""
