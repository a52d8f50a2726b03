"""Entity extraction from English and Chinese alerts: labels, text, and the rule's PromQL."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest
from waiting import eventually

from exporter.text.entities import (
    MAX_VALUES,
    Entities,
    extract,
    is_chinese,
    split_host_port,
)
from exporter.text.promql import MetricCatalog, promql_metric_names, rule_expr

NODE_DISK = {
    "alertname": "NodeFilesystemAlmostOutOfSpace",
    "instance": "pg-1:9100",
    "job": "node",
    "device": "/dev/sda1",
    "mountpoint": "/var/lib/postgresql",
    "fstype": "ext4",
    "severity": "warning",
}
NODE_DISK_TEXT = (
    "Filesystem has less than 5% space left.",
    "Filesystem on /dev/sda1, mounted on /var/lib/postgresql, at pg-1:9100 has only 3.52% "
    "available space left and will be full in ~3 h.",
)


def test_node_exporter_disk_alert_from_labels_and_text() -> None:
    e = extract(NODE_DISK, NODE_DISK_TEXT)
    assert e.instance == ("pg-1:9100",)
    assert e.host == ("pg-1",)
    assert e.job == ("node",)
    assert e.device == ("/dev/sda1",)  # not again as a bare `sda1` from the text
    assert e.mountpoint == ("/var/lib/postgresql",)
    assert e.percentage == ("5%", "3.52%")
    assert e.duration == ("~3 h",)
    assert not e.pod and not e.ip and not e.url


def test_kube_pod_crashloop_alert() -> None:
    labels = {"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "api-7d9f8b-x2kq"}
    description = (
        'Pod shop/api-7d9f8b-x2kq (api) is in waiting state (reason: "CrashLoopBackOff") '
        "for 15 minutes; 1.05 times / 10 minutes."
    )
    e = extract(labels, ["Pod is crash looping.", description])
    assert e.pod == ("api-7d9f8b-x2kq",)
    assert e.namespace == ("shop",)
    assert e.duration == ("15 minutes", "10 minutes")
    assert not e.mountpoint  # the `/` of "times / 10 minutes" is no path
    assert not e.host  # "Pod is ..." names nothing


def test_pods_namespaces_and_services_from_text_alone() -> None:
    e = extract({}, ["Container api in pod shop/api-7d9f8b-x2kq restarted; service 'checkout'."])
    assert e.pod == ("api-7d9f8b-x2kq",)
    assert e.namespace == ("shop",)
    assert e.service == ("checkout",)


@pytest.mark.parametrize(
    ("labels", "field", "values"),
    [
        ({"exported_instance": "10.0.0.5:9100"}, "ip", ("10.0.0.5:9100",)),
        ({"instance": "[2001:db8::1]:9100"}, "ip", ("[2001:db8::1]:9100",)),
        (
            {"instance": "https://shop.example.com/health"},
            "url",
            ("https://shop.example.com/health",),
        ),
        ({"instance": "https://shop.example.com/health"}, "host", ("shop.example.com",)),
        ({"kubernetes_pod_name": "web-0", "exported_namespace": "prod"}, "pod", ("web-0",)),
        ({"kubernetes_node": "ip-10-0-1-23.ec2.internal"}, "node", ("ip-10-0-1-23.ec2.internal",)),
        ({"deployment": "billing", "container": "app"}, "workload", ("billing",)),
        ({"interface": "eth0", "mount_point": "/data"}, "device", ("eth0",)),
        ({"app_kubernetes_io_name": "checkout"}, "service", ("checkout",)),
    ],
)
def test_label_variants(labels: dict[str, str], field: str, values: tuple[str, ...]) -> None:
    assert getattr(extract(labels), field) == values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("服务器 CPU 使用率过高", {}),
        (
            "主机 web-03（10.0.0.5:9100）CPU 使用率 97%，已持续 10 分钟",
            {
                "host": ["web-03"],
                "ip": ["10.0.0.5:9100"],
                "percentage": ["97%"],
                "duration": ["10 分钟"],
            },
        ),
        ("磁盘空间不足，剩余 5%", {"percentage": ["5%"]}),
        (
            "服务器db01挂载点 /data 剩余 5%，预计3小时后写满，设备 /dev/nvme0n1p1",
            {
                "host": ["db01"],
                "device": ["/dev/nvme0n1p1"],
                "mountpoint": ["/data"],
                "duration": ["3小时"],
                "percentage": ["5%"],
            },
        ),
        (
            "证书即将过期：域名 shop.example.com 的证书将在 7 天后过期，探测地址 https://shop.example.com:443/health",
            {
                "host": ["shop.example.com"],
                "url": ["https://shop.example.com:443/health"],
                "duration": ["7 天"],
            },
        ),
        ("网卡eth0丢包率过高", {"device": ["eth0"]}),
        (
            "节点 k8s-node-3 上命名空间 payments 中的服务 gateway 延迟上升，Pod gateway-5f6d8c9b7-qw2rt 重启",
            {
                "node": ["k8s-node-3"],
                "pod": ["gateway-5f6d8c9b7-qw2rt"],
                "namespace": ["payments"],
                "service": ["gateway"],
            },
        ),
        ("挂载点 / 使用率 95%", {"mountpoint": ["/"], "percentage": ["95%"]}),
    ],
)
def test_chinese_text(text: str, expected: dict[str, list[str]]) -> None:
    assert is_chinese(text)
    assert extract({}, [text]).as_dict() == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Service 'checkout' on node k8s-node-3 returns HTTP 503 for 12% of requests",
            {"node": ["k8s-node-3"], "service": ["checkout"], "percentage": ["12%"]},
        ),
        (
            "High CPU usage on web-03: above 95% for 10m",
            {"host": ["web-03"], "percentage": ["95%"], "duration": ["10m"]},
        ),
        (
            "Connection refused to db.prod.example.com:5432 from 10.1.2.3",
            {
                "host": ["db.prod.example.com"],
                "ip": ["10.1.2.3"],
                "instance": ["db.prod.example.com:5432"],
            },
        ),
        ("Kubernetes API server latency is high; see config.yaml, e.g. the timeout", {}),
        (
            "Probe of [2001:db8::1]:443 and fe80::1 failed at 10:02",
            {"ip": ["[2001:db8::1]:443", "fe80::1"]},
        ),
        (
            "Disk sda of server Storage-7 has reallocated sectors",
            {"host": ["Storage-7"], "device": ["sda"]},
        ),
    ],
)
def test_english_text(text: str, expected: dict[str, list[str]]) -> None:
    assert not is_chinese(text)
    assert extract({}, [text]).as_dict() == expected


def test_metric_names_in_text_need_the_catalog_or_a_metric_shape() -> None:
    text = "node_load1 is high; see http_requests_total, pod_name and my_custom_thing."
    assert extract({}, [text]).metric == ("node_load1", "http_requests_total")
    known = {"my_custom_thing", "node_load1"}
    e = extract({}, [text], known_metric=lambda name: name in known)
    assert e.metric == ("node_load1", "my_custom_thing")


def test_metric_names_from_the_rule_are_kept_even_if_prometheus_lacks_them() -> None:
    e = extract(
        {},
        ["node_gone_total dropped"],
        expr="rate(node_gone_total[5m]) > 0",
        known_metric=lambda n: False,
    )
    assert e.metric == ("node_gone_total",)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (instance) (rate(node_cpu_seconds_total{mode!="idle", job=~"node.*"}[5m])) '
            "/ on(instance) group_left(nodename) node_uname_info > 0.9",
            ["node_cpu_seconds_total", "node_uname_info"],
        ),
        (
            '(node_filesystem_avail_bytes{fstype!=""} / node_filesystem_size_bytes * 100 < 5 and '
            "predict_linear(node_filesystem_avail_bytes[6h], 4*3600) < 0) and ON (instance, device, "
            "mountpoint) node_filesystem_readonly == 0",
            [
                "node_filesystem_avail_bytes",
                "node_filesystem_size_bytes",
                "node_filesystem_readonly",
            ],
        ),
        (
            "histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket[5m])) by (le, job)) "
            "> 0.5 offset 5m",
            ["http_request_duration_seconds_bucket"],
        ),
        (
            '{__name__="up", job="x"} == 0 or absent(up{job="y"}) or job:http_requests:rate5m @ start() > bool 3',
            ["up", "job:http_requests:rate5m"],
        ),
        (
            'rate(x[5m:1m]) # metric_in_comment\n + count_values("version", build_info) '
            '+ label_replace(up, "a", "$1", "b", "(.*)") + sum without (cpu) (node_cpu_guest_seconds_total)',
            ["x", "build_info", "up", "node_cpu_guest_seconds_total"],
        ),
        ('sum(rate(http_requests_total{status=~"5..', ["http_requests_total"]),  # cut short
        ("vector(1) + time() + inf", []),
        ("", []),
    ],
)
def test_promql_metric_names(expr: str, names: list[str]) -> None:
    assert promql_metric_names(expr) == names


def test_rule_expr_from_generator_url() -> None:
    expr = 'rate(node_cpu_seconds_total{mode="idle"}[5m]) < 0.1'
    url = f"http://prometheus:9090/graph?g0.expr={quote(expr)}&g0.tab=1"
    assert rule_expr(url) == expr
    assert rule_expr("http://prometheus:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1") == "up == 0"
    assert rule_expr("") == ""
    assert rule_expr("http://[::1") == ""  # unparsable
    assert rule_expr("https://grafana.example.com/alerting/list") == ""


def test_split_host_port() -> None:
    assert split_host_port("pg-1:9100") == ("pg-1", "9100")
    assert split_host_port("[::1]:80") == ("::1", "80")
    assert split_host_port("fe80::1") == ("fe80::1", "")
    assert split_host_port("pg-1") == ("pg-1", "")


# How fast extraction is on these inputs (it runs on the event loop) is measured by
# benchmarks/bench_entities.py; here only what it returns.
def test_bounded_on_huge_input() -> None:
    text = " ".join(f"web-{i}.example.com 10.0.{i // 250}.{i % 250} {i}%" for i in range(20_000))
    e = extract({}, [text] * 3)
    assert all(len(v) <= MAX_VALUES for v in e.as_dict().values())
    assert len(e.host) == MAX_VALUES and len(e.ip) == MAX_VALUES


@pytest.mark.parametrize("unit", ["a-", "a.", "a-1-", "1.", "a:", "/a", "on a-", "服务 ", "::a"])
def test_crafted_repetitions_stay_bounded(unit: str) -> None:
    e = extract({}, [unit * 5000])
    assert all(len(v) <= MAX_VALUES for v in e.as_dict().values())


def test_json_stays_valid_within_the_limit() -> None:
    e = Entities(
        host=tuple(f"h{i}-" + "x" * 150 for i in range(8)), pod=("api-0",), percentage=("5%",)
    )
    text = e.to_json(300)
    assert len(text) <= 300
    data = json.loads(text)
    assert data["pod"] == ["api-0"] and data["percentage"] == ["5%"] and len(data["host"]) < 8
    assert json.loads(Entities().to_json(10)) == {}
    assert json.loads(extract({"pod": "网关-0"}).to_json(100)) == {"pod": ["网关-0"]}


def test_machines_names_each_host_once_without_ports() -> None:
    e = extract(
        {"instance": "pg-1:9100", "node": "pg-1", "host": "10.0.0.5"},
        ["see https://x.example.com/a"],
    )
    assert e.machines() == ("pg-1", "10.0.0.5", "x.example.com")


class _Names:
    """A metric-name source that counts its calls and can be made to fail."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.calls = 0
        self.fail = False

    async def metric_names(self) -> list[str]:
        self.calls += 1
        if self.fail:
            raise ConnectionError("Prometheus is down")
        return self.names


async def test_metric_catalog_refreshes_in_the_background_after_its_ttl() -> None:
    now = [1000.0]
    source = _Names(["up", "node_load1"])
    catalog = MetricCatalog(source, ttl=60, clock=lambda: now[0])
    assert catalog.known("up") is None  # never waits: the first lookup starts a refresh
    await eventually(lambda: catalog.loaded)
    assert catalog.known("up") and catalog.known("nope") is False
    assert source.calls == 1
    source.names = ["up", "nope"]
    now[0] += 61
    assert catalog.known("nope") is False  # stale answer now, fresh one soon
    await eventually(lambda: catalog.known("nope"))
    assert source.calls == 2
    await catalog.close()


async def test_metric_catalog_keeps_the_old_list_when_prometheus_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    source = _Names(["up"])
    catalog = MetricCatalog(source, ttl=300, clock=lambda: now[0])
    await catalog.refresh()
    source.fail = True
    now[0] += 301
    await catalog.refresh()
    assert catalog.known("up") is True
    assert "metric_names_failed" in caplog.text
    calls = source.calls
    catalog.known("up")  # retried after 30 s, not on every lookup
    await asyncio.sleep(0)  # enough for a refresh task started by the lookup to call the source
    assert source.calls == calls
    await catalog.close()
