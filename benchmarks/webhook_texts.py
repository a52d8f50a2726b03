"""The real model's webhook loads (bench_webhook.py): alert texts of a storm, or all distinct."""

from __future__ import annotations

STORM_RULES: tuple[tuple[str, str, str], ...] = (
    (
        "PodCrashLooping",
        "Pod {pod} in namespace {ns} is crash looping",
        "Container app of pod {pod} restarted 3 times in the last 10 minutes (CrashLoopBackOff).",
    ),
    (
        "TargetDown",
        "Target {ip}:9100 is down",
        "node-exporter on {ip}:9100 ({ns}) has not answered Prometheus scrapes for 5 minutes.",
    ),
    (
        "KubeNodeNotReady",
        "Node {node} is NotReady",
        "The kubelet on {node} stopped posting its status; pods of {ns} on it are being evicted.",
    ),
    (
        "DiskWillFillIn4Hours",
        "Disk on {host} will fill within 4 hours",
        "/var/lib/postgresql of {ns} on {host} falls steadily while writes to the database grow.",
    ),
    (
        "HighErrorRate",
        "High 5xx rate on the ingress of {ns} for {pod}",
        "More than 5% of requests to {pod} answer with HTTP 500 errors over the last 5 minutes.",
    ),
)
"""The storm's rules: five templates, each alert naming an instance never named before."""
_K8S = "bcdfghjklmnpqrstvwxz2456789"
_WORDS = (
    "amber apple arctic autumn badger basil beacon birch bison blossom breeze canyon cedar cherry "
    "clover cobalt comet coral cotton crane daisy delta dune eagle ember falcon fern flint forest "
    "garnet ginger glacier granite harbor hazel heron indigo island ivory jade juniper kestrel "
    "lagoon lantern lemon lilac linen lotus maple marble meadow mint mosaic nectar nova oak ocean "
    "olive onyx orchid otter pearl pebble pepper pine plum poppy prairie quartz raven reef river "
    "robin saffron sage salmon sequoia shadow silver sparrow spruce summit thistle tiger topaz "
    "tulip velvet violet walnut willow winter wolf zephyr"
).split()


def _k8s(n: int, width: int) -> str:
    return "".join(_K8S[(n // len(_K8S) ** k) % len(_K8S)] for k in range(width))


def alert_text(texts: str, rule: int, n: int) -> tuple[str, str, str]:
    """(alertname, summary, description) of alert number `n` of a load; no two are equal.

    storm: only the instance (pod, address, node, host) differs within a rule; distinct: the
    namespace is a word triple of its own too, so no two alerts share a template.
    """
    name, summary, description = STORM_RULES[rule % len(STORM_RULES)]
    words = len(_WORDS)
    ns = "shop"
    if texts == "distinct":
        ns = "-".join(_WORDS[(n // words**k) % words] for k in range(3))
    fill = {
        "ns": ns,
        "pod": f"checkout-api-{_k8s(n // 7, 10)}-{_k8s(n, 5)}",
        "ip": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}",
        "node": f"node-{n}",
        "host": f"db{n}.prod.example.com",
    }
    return name, summary.format(**fill), description.format(**fill)
