"""Named entities of an ops alert: what it touches (hosts, pods, devices, metrics) and its facts.

Entities come from three places: the alert's labels (the most reliable), the text of its summary
and description in English or Chinese, and the metric names of the rule's PromQL, which
Alertmanager passes along in `generatorURL`'s `g0.expr`. Every list is deduplicated and bounded.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from urllib.parse import urlsplit

from exporter.text.promql import promql_metric_names

MAX_VALUES = 8
"""Values kept per entity type; the first found win (labels, then the rule, then the text)."""
MAX_VALUE_CHARS = 200
MAX_TEXT_CHARS = 4000
"""Longer texts are cut before extraction, so a huge description costs bounded time."""


@dataclass(frozen=True, slots=True)
class Entities:
    """What an alert touches, by entity type; every tuple deduplicated, at most MAX_VALUES long."""

    host: tuple[str, ...] = ()
    ip: tuple[str, ...] = ()
    instance: tuple[str, ...] = ()
    node: tuple[str, ...] = ()
    pod: tuple[str, ...] = ()
    namespace: tuple[str, ...] = ()
    service: tuple[str, ...] = ()
    job: tuple[str, ...] = ()
    container: tuple[str, ...] = ()
    workload: tuple[str, ...] = ()
    device: tuple[str, ...] = ()
    mountpoint: tuple[str, ...] = ()
    url: tuple[str, ...] = ()
    metric: tuple[str, ...] = ()
    duration: tuple[str, ...] = ()
    percentage: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, list[str]]:
        """The non-empty types in declaration order: what the `augur_entities` JSON holds."""
        return {f.name: list(v) for f in fields(self) if (v := getattr(self, f.name))}

    def to_json(self, limit: int) -> str:
        """`as_dict` as compact JSON of at most `limit` characters: values are dropped to fit."""
        data = self.as_dict()
        while True:
            text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
            if len(text) <= limit or not data:
                return text
            longest = max(data, key=lambda k: sum(len(v) for v in data[k]))
            data[longest].pop()
            data = {k: v for k, v in data.items() if v}

    def machines(self) -> tuple[str, ...]:
        """Host names and addresses without ports: what names one machine across label sets."""
        out = dict.fromkeys([*self.host, *self.node])
        for address in (*self.ip, *self.instance):
            out.setdefault(split_host_port(address)[0])
        return tuple(h for h in out if h and "/" not in h)


TYPES = tuple(f.name for f in fields(Entities))

_LABEL_TABLE = """
instance: instance exported_instance target
host: host hostname host_name server machine fqdn
node: node nodename node_name kubernetes_node exported_node
pod: pod pod_name kubernetes_pod_name exported_pod
namespace: namespace kubernetes_namespace exported_namespace
service: service service_name svc exported_service app app_kubernetes_io_name
job: job exported_job
container: container container_name exported_container
workload: deployment statefulset daemonset replicaset cronjob job_name
device: device disk interface iface nic
mountpoint: mountpoint mount_point mount
url: url target_url
"""
LABEL_TYPES: Mapping[str, str] = {
    name: kind.strip()
    for kind, _, names in (line.partition(":") for line in _LABEL_TABLE.strip().splitlines())
    for name in names.split()
}
"""Label name -> entity type, for the names node-exporter, kube-state-metrics and others use."""

# ASCII-only word edges: Chinese characters count as \w in Python, so `网卡eth0` has no \b.
_L = r"(?<![A-Za-z0-9_])"
_R = r"(?![A-Za-z0-9_])"
# Names never start inside another name: without this, `a-a-a-…` is tried from every `a`,
# which is quadratic in the length of the text.
_N = r"(?<![A-Za-z0-9_.-])"
_URL = re.compile(r"https?://[^\s\"'<>`，。；）、]+", re.IGNORECASE)
_IPV4 = re.compile(
    _L + r"(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?::\d{1,5})?" + _R
)
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]+\](?::\d{1,5})?|" + _L + r"[0-9A-Fa-f]*:[0-9A-Fa-f:.]+" + _R)
_PATH = re.compile(r"(?<![A-Za-z0-9_.:/~-])(?:/[A-Za-z0-9._@-]+)+/?")
_FS_ROOT = re.compile(r"/(?:var|data\d*|home|mnt|media|boot|srv|opt|tmp|usr|run|export|backup)\b")
_DEVICE = re.compile(
    _L + r"(sd[a-z]{1,2}\d*|vd[a-z]\d*|xvd[a-z]\d*|nvme\d+n\d+(?:p\d+)?|md\d+|dm-\d+|"
    r"eth\d+|ens\d+|enp\d+s\d+(?:f\d+)?|eno\d+|bond\d+|wlan\d+)" + _R
)
# A Deployment's pod is <name>-<replicaset hash>-<suffix>; the hash holds a digit, words do not.
_POD = re.compile(
    _N + r"([a-z0-9](?:[a-z0-9-]*[a-z0-9])?-(?=[a-z]{0,9}\d)[a-z0-9]{5,10}-[a-z0-9]{4,5})" + _R
)
_FQDN = re.compile(
    _N + r"((?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,12})(:\d{1,5})?" + _R
)
_FILE_SUFFIXES = frozenset(
    "yaml yml json log conf cfg ini md txt py go sh gz tar zip sql toml xml html js service "
    "socket timer pem crt key csr so io".split()
)
_IDENT = re.compile(r"(?<![A-Za-z0-9_:.$/-])([A-Za-z_:][A-Za-z0-9_:]*_[A-Za-z0-9_:]+)" + _R)
_METRIC_SHAPE = re.compile(
    r"^(?:node|kube|kubelet|container|process|go|http|grpc|prometheus|alertmanager|augur|apiserver"
    r"|etcd|coredns|nginx|mysql|pg|redis|probe|windows|jvm|kafka)_|_(?:total|seconds|bytes|ratio"
    r"|count|sum|bucket|info|percent|celsius|volts|amperes|joules|errors|requests)$"
)
_PERCENT = re.compile(r"(?<![A-Za-z0-9_.])(\d+(?:\.\d+)?)\s?[%％]")
_DURATION = re.compile(
    r"(?<![A-Za-z0-9_.])~?\d+(?:\.\d+)?\s?(?:ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|"
    r"h|hrs?|hours?|d|days?|w|weeks?|毫秒|秒钟?|分钟|个?小时|天|周|个月)(?![A-Za-z0-9_])"
)
# CJK unified ideographs, extension A and the compatibility block: what makes a text Chinese.
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_OPEN_QUOTES = "\"'`“「"

# A keyword, then a name. The name must still look like one (see `_plausible`): after "on" or
# "service" an English sentence usually goes on with an ordinary word.
_NAME = r"\s*[:=：]?\s*[\"'`“「]?(?P<v>[A-Za-z0-9][A-Za-z0-9._:/-]*[A-Za-z0-9])"
_CONTEXT = tuple(
    (re.compile(_L + f"(?:{keywords})" + _NAME, re.IGNORECASE), kind)
    for keywords, kind in (
        ("pods?|容器组", "pod"),
        ("namespace|命名空间", "namespace"),
        ("services?|服务", "service"),
        ("containers?|容器", "container"),
        ("nodes?|节点", "node"),
        ("hosts?|hostname|servers?|machine|instance|at|on|from|主机|服务器|机器|实例|在", "host"),
        ("device|disk|interface|nic|设备|磁盘|网卡", "device"),
    )
)
_MOUNT_CONTEXT = re.compile(
    r"(?:mounted on|mountpoint|mount point|filesystem|挂载点|文件系统|分区|目录)\s*[:：]?\s*"
    r"(/[^\s,;，。；：:）)]*)",
    re.IGNORECASE,
)
_HOSTNAME = re.compile(r"[A-Za-z][A-Za-z0-9.-]*(?::\d{1,5})?")
_STOPWORDS = frozenset(
    "a an the is are was be been has have had not no and or of in on at to for with by from "
    "this that it its all any some high low up down out over under unavailable ready running "
    "failed failing usage level quota memory cpu disk time more less than above below".split()
)


def split_host_port(address: str) -> tuple[str, str]:
    """`pg-1:9100` -> (`pg-1`, `9100`); `[::1]:80` -> (`::1`, `80`); a bare host has port ""."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, rest.removeprefix(":")
    if address.count(":") == 1:
        host, _, port = address.partition(":")
        if port.isdigit():
            return host, port
    return address, ""


def is_ip(host: str) -> bool:
    """Whether `host` (without a port) is an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_chinese(text: str) -> bool:
    """Whether the text is written in Chinese, judged by its script (it holds Han characters)."""
    return bool(_HAN.search(text))


def language_of(text: str) -> str:
    """`zh` for text written in Chinese, `en` otherwise: the one rule for evaluation and runtime."""
    return "zh" if is_chinese(text) else "en"


class _Bag:
    """Ordered, deduplicated, bounded values per entity type."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, None]] = {t: {} for t in TYPES}
        self.seen: set[str] = set()

    def add(self, kind: str, value: str) -> None:
        value = " ".join(value.split())[:MAX_VALUE_CHARS]
        if kind == "mountpoint" and value.startswith("/dev/"):
            kind = "device"
        bucket = self.values[kind]
        if value and value not in bucket and len(bucket) < MAX_VALUES:
            bucket[value] = None
        self.seen.add(value.lower())

    def add_address(self, kind: str, value: str) -> None:
        """An instance, host or node value, plus the host, IP or URL inside it."""
        if _URL.fullmatch(value):  # blackbox probes name their target by URL
            self.add("url", value)
            value = urlsplit(value).hostname or ""
            kind = "host"
        self.add(kind, value)
        host = split_host_port(value)[0]
        if is_ip(host):
            self.add("ip", value)
        elif kind == "instance":
            self.add("host", host)

    def build(self) -> Entities:
        return Entities(**{t: tuple(v) for t, v in self.values.items()})


def _plausible(kind: str, value: str, keyword: str, quoted: bool) -> bool:
    """Whether the token after a keyword is a name rather than the sentence's next word."""
    if value.lower() in _STOPWORDS:
        return False
    has_mark = any(c in value for c in "0123456789-.")
    if kind in ("host", "node"):
        return has_mark and bool(_HOSTNAME.fullmatch(value))
    if kind in ("pod", "device"):
        return has_mark
    # Namespaces, services, containers are plain words: take them when quoted, marked, or after
    # a Chinese keyword (Chinese text does not go on in English words).
    return quoted or has_mark or "_" in value or is_chinese(keyword)


def _blank(pattern: re.Pattern[str], text: str) -> str:
    return pattern.sub(lambda m: " " * len(m.group()), text)


def _from_text(bag: _Bag, text: str, known_metric: Callable[[str], bool | None]) -> None:
    text = text[:MAX_TEXT_CHARS]
    # URLs and addresses first, then blanked, so their paths and parts are not read again.
    for match in _URL.finditer(text):
        url = match.group().rstrip(".,;:!?)]}")
        bag.add("url", url)
        if host := urlsplit(url).hostname:
            bag.add("ip" if is_ip(host) else "host", host)
    text = _blank(_URL, text)
    for pattern in (_IPV4, _IPV6):
        for match in pattern.finditer(text):
            if is_ip(split_host_port(match.group())[0]):
                bag.add("ip", match.group())
        text = _blank(pattern, text)
    for match in _POD.finditer(text):
        bag.add("pod", match.group(1))
    for match in _MOUNT_CONTEXT.finditer(text):
        bag.add("mountpoint", match.group(1))
    for pattern, kind in _CONTEXT:
        for match in pattern.finditer(text):
            value = match.group("v").rstrip(".:")
            keyword = text[match.start() : match.start("v")]
            if kind == "pod" and value.count("/") == 1:  # kube-mixin writes namespace/pod
                namespace, _, value = value.partition("/")
                bag.add("namespace", namespace)
            if value.lower() in bag.seen or "/" in value:
                continue
            if not _plausible(kind, value, keyword, keyword.rstrip()[-1:] in _OPEN_QUOTES):
                continue
            if ":" in value:
                bag.add_address("instance", value)
            else:
                bag.add(kind, value)
    for match in _PATH.finditer(text):
        path = match.group().rstrip(".")
        if path.startswith("/dev/") or _FS_ROOT.match(path):
            bag.add("mountpoint", path)
    for match in _DEVICE.finditer(text):
        if f"/dev/{match.group(1)}" not in bag.seen:
            bag.add("device", match.group(1))
    for match in _FQDN.finditer(text):
        name = match.group(1)
        if name.lower() in bag.seen or name.rsplit(".", 1)[1].lower() in _FILE_SUFFIXES:
            continue
        if match.group(2):  # with a port: an endpoint
            bag.add_address("instance", match.group())
        else:
            bag.add("host", name)
    for match in _IDENT.finditer(text):
        verdict = known_metric(match.group(1))
        if verdict or (verdict is None and _METRIC_SHAPE.search(match.group(1))):
            bag.add("metric", match.group(1))
    for match in _PERCENT.finditer(text):
        bag.add("percentage", match.group(1) + "%")
    for match in _DURATION.finditer(text):
        bag.add("duration", match.group())


def extract(
    labels: Mapping[str, str],
    texts: Iterable[str] = (),
    *,
    expr: str = "",
    known_metric: Callable[[str], bool | None] = lambda name: None,
) -> Entities:
    """Entities from the labels, the metric names of the PromQL `expr`, then the texts.

    `known_metric(name)` says whether Prometheus has a metric of that name, None when it is not
    known yet; then only names shaped like metrics are taken from the text. The names in `expr`
    are kept either way: they are what the rule evaluates.
    """
    bag = _Bag()
    for name, value in labels.items():
        kind = LABEL_TYPES.get(name)
        if kind in ("instance", "host", "node"):
            bag.add_address(kind, value)
        elif kind is not None:
            bag.add(kind, value)
    for metric in promql_metric_names(expr):
        bag.add("metric", metric)
    for text in texts:
        if text:
            _from_text(bag, text, known_metric)
    return bag.build()
