"""The demo workload: a few realistic series, with anomalies injected on a schedule.

Every value is a pure function of wall-clock time, quantised to the scrape resolution, with
noise drawn from a hash of (series, time bucket). So the history backfilled before Prometheus
starts and the values served live come from the same functions and join without a seam, and
a run can be replayed exactly. From the workload's `epoch` on, every `period` seconds the next
entry of `ROTATION` disturbs one series for about a minute; `demo_injected_anomaly` says which,
so a person or a test can check augur's scores against it. Before the epoch (the history a
demo backfills) nothing is disturbed.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.demo.procs import Sample

DAY = 86400.0
RESOLUTION = 15.0
"""Seconds per time bucket: the demo's scrape interval, so each scrape sees a fresh value."""
PERIOD = 180.0
"""Seconds between the starts of two injected anomalies."""

INJECTED = "demo_injected_anomaly"
HELP = {
    "demo_http_requests_per_second": "Requests served per second (demo workload).",
    "demo_http_request_duration_seconds": "99th percentile request latency (demo workload).",
    "demo_cpu_usage_ratio": "Share of CPU time busy, 0..1 (demo workload).",
    "demo_disk_used_ratio": "Share of the filesystem used, 0..1 (demo workload).",
    "demo_disk_io_utilization_ratio": "Share of time the disk was busy, 0..1 (demo workload).",
    "demo_http_errors_per_second": "Requests answered with a 5xx per second (demo workload).",
    INJECTED: "1 while the demo workload disturbs this series on purpose, else 0.",
}
"""The HELP text of each metric the workload serves."""

Labels = tuple[tuple[str, str], ...]
Kind = Literal["spike", "drop", "level_shift", "latency_jump", "fill_burst"]


def selector(metric: str, labels: Labels) -> str:
    """The PromQL selector of a series, e.g. `demo_cpu_usage_ratio{instance="app-2"}`."""
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"


@dataclass(frozen=True)
class Injection:
    """One entry of the rotation: which series is disturbed, how much and for how long."""

    metric: str
    labels: Labels
    kind: Kind
    amount: float
    """A factor for spike, drop and latency_jump; an offset for level_shift and fill_burst."""
    duration: float
    delay: float = 0.0
    """Seconds after its entry of the rotation starts that this one does (for effects)."""
    effects: tuple[Injection, ...] = ()
    """What this disturbance causes in turn, each `delay` seconds after it starts: a causal
    chain, whose enriched alerts should name this one as their likely cause."""

    def parts(self) -> tuple[Injection, ...]:
        """This injection and its effects, in the order they start."""
        return (self, *sorted(self.effects, key=lambda e: e.delay))

    @property
    def span(self) -> float:
        """Seconds from its start to the end of its last part."""
        return max(p.delay + p.duration for p in self.parts())

    @property
    def selector(self) -> str:
        """The disturbed series as a PromQL selector."""
        return selector(self.metric, self.labels)

    def apply(self, value: float) -> float:
        """The disturbed value."""
        if self.kind in ("level_shift", "fill_burst"):
            return value + self.amount
        return value * self.amount


CHECKOUT_HOST = (("instance", "app-1"), ("service", "checkout"))
"""The disk checkout runs on: its series carries the service it serves, as a target label would."""

ROTATION: tuple[Injection, ...] = (
    Injection("demo_http_requests_per_second", (("service", "search"),), "spike", 2.6, 60),
    Injection("demo_cpu_usage_ratio", (("instance", "app-2"),), "level_shift", 0.45, 60),
    # A causal chain: a disk burst on checkout's host slows checkout, which then fails more.
    Injection(
        "demo_disk_io_utilization_ratio",
        CHECKOUT_HOST,
        "level_shift",
        0.45,
        90,
        effects=(
            Injection(
                "demo_http_request_duration_seconds",
                (("service", "checkout"),),
                "latency_jump",
                4,
                60,
                delay=30,
            ),
            Injection(
                "demo_http_errors_per_second",
                (("service", "checkout"),),
                "spike",
                3.0,
                45,
                delay=45,
            ),
        ),
    ),
    Injection(
        "demo_disk_used_ratio",
        (("device", "sda1"), ("mountpoint", "/")),
        "fill_burst",
        0.12,
        60,
    ),
    Injection("demo_http_requests_per_second", (("service", "checkout"),), "drop", 0.25, 60),
    Injection("demo_cpu_usage_ratio", (("instance", "app-1"),), "level_shift", 0.45, 45),
    Injection("demo_http_request_duration_seconds", (("service", "auth"),), "latency_jump", 6, 45),
    Injection("demo_http_requests_per_second", (("service", "auth"),), "spike", 2.2, 45),
)
"""Eight entries, so a series is disturbed at most once every 24 minutes (the third a chain of
three series)."""


def _daily(t: float) -> float:
    """-1..1 over a day, peaking at 15:00 UTC like a business's traffic."""
    return math.sin(2 * math.pi * (t / DAY - 0.375))


def _requests(rps: float) -> Callable[[float, float], float]:
    return lambda t, z: max(0.0, rps * (1 + 0.35 * _daily(t)) * (1 + 0.04 * z))


def _latency(p99: float) -> Callable[[float, float], float]:
    # Latency noise is skewed upwards, hence multiplicative log-normal.
    return lambda t, z: p99 * (1 + 0.25 * _daily(t)) * math.exp(0.08 * z)


def _cpu(base: float) -> Callable[[float, float], float]:
    return lambda t, z: base + 0.12 * _daily(t) + 0.045 * z


def _busy(base: float) -> Callable[[float, float], float]:
    # A disk's busy share follows the traffic less than CPU does and is steadier.
    return lambda t, z: base + 0.06 * _daily(t) + 0.02 * z


def _disk(base: float, fill: float, cycle: float, phase: float) -> Callable[[float, float], float]:
    # A sawtooth: the disk fills by `fill` over `cycle` seconds, then a clean-up job empties it,
    # so it never reaches 100 % however long the demo runs.
    return lambda t, z: base + fill * (((t + phase) % cycle) / cycle) + 0.0004 * z


@dataclass(frozen=True)
class _Series:
    metric: str
    labels: Labels
    value: Callable[[float, float], float]
    ceiling: float = math.inf


SERIES: tuple[_Series, ...] = (
    *(
        _Series("demo_http_requests_per_second", (("service", name),), _requests(rps))
        for name, rps in (("checkout", 120.0), ("search", 340.0), ("auth", 210.0))
    ),
    *(
        _Series("demo_http_request_duration_seconds", (("service", name),), _latency(p99))
        for name, p99 in (("checkout", 0.32), ("search", 0.18), ("auth", 0.06))
    ),
    *(
        _Series("demo_cpu_usage_ratio", (("instance", name),), _cpu(base), ceiling=1.0)
        for name, base in (("app-1", 0.30), ("app-2", 0.36), ("app-3", 0.42))
    ),
    _Series("demo_disk_io_utilization_ratio", CHECKOUT_HOST, _busy(0.22), ceiling=1.0),
    _Series("demo_http_errors_per_second", (("service", "checkout"),), _requests(1.5)),
    _Series(
        "demo_disk_used_ratio",
        (("device", "sda1"), ("mountpoint", "/")),
        _disk(0.46, 0.18, 4 * 3600, 1800),
        ceiling=0.99,
    ),
    _Series(
        "demo_disk_used_ratio",
        (("device", "nvme0n1p1"), ("mountpoint", "/var/lib/postgresql")),
        _disk(0.58, 0.22, 6 * 3600, 9000),
        ceiling=0.99,
    ),
)
"""Every series the workload serves, with the function of (time, noise) that makes it."""


def _normal(key: str, bucket: int) -> float:
    """A standard normal draw that depends only on `key` and `bucket` (Box-Muller on a hash)."""
    digest = hashlib.blake2b(f"{key}|{bucket}".encode(), digest_size=16).digest()
    u1 = (int.from_bytes(digest[:8], "big") + 0.5) / 2**64
    u2 = int.from_bytes(digest[8:], "big") / 2**64
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2 * math.pi * u2)


class Workload:
    """The demo's series as functions of time, with anomalies starting at `epoch + k * period`
    for k = 0, 1, ...

    The series are normal before `epoch`: the history backfilled there is what augur learns
    normal from (its default detector calibrates each series on it), and a disturbance every
    24 minutes in it would make the injected anomalies part of that normal.
    """

    def __init__(
        self,
        *,
        epoch: float = 0.0,
        resolution: float = RESOLUTION,
        period: float = PERIOD,
        rotation: Sequence[Injection] = ROTATION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.epoch = epoch
        self.resolution = resolution
        self.period = period
        self.rotation = tuple(rotation)
        self.clock = clock

    def bucket(self, t: float) -> float:
        """The start of the time bucket holding `t`: all times in a bucket share one value."""
        return math.floor(t / self.resolution) * self.resolution

    def active(self, t: float) -> Injection | None:
        """The injection disturbing the workload at time `t`, if any."""
        b = self.bucket(t)
        if not self.rotation or b < self.epoch:
            return None
        k = math.floor((b - self.epoch) / self.period)
        entry = self.rotation[k % len(self.rotation)]
        return entry if b - (self.epoch + k * self.period) < entry.span else None

    def disturbed(self, t: float) -> tuple[Injection, ...]:
        """The parts of the active injection (it, its effects) disturbing their series at `t`."""
        b = self.bucket(t)
        entry = self.active(b)
        if entry is None:
            return ()
        start = self.epoch + math.floor((b - self.epoch) / self.period) * self.period
        return tuple(p for p in entry.parts() if 0 <= b - start - p.delay < p.duration)

    def next_injection(self, t: float) -> tuple[float, Injection]:
        """When the first injection starting at or after `t` starts, and which it is."""
        if not self.rotation:
            raise ValueError("the workload has no injections")
        k = max(0, math.ceil((t - self.epoch) / self.period))
        return self.epoch + k * self.period, self.rotation[k % len(self.rotation)]

    def current_or_next(self, t: float) -> tuple[float, Injection]:
        """The injection under way at `t`, else the next one, with the time it starts."""
        if self.active(t) is None:
            return self.next_injection(t)
        k = math.floor((self.bucket(t) - self.epoch) / self.period)
        return self.epoch + k * self.period, self.rotation[k % len(self.rotation)]

    def samples_at(self, t: float) -> list[Sample]:
        """Every series' value at `t`, stamped `t`: the same for live scrapes and history."""
        b = self.bucket(t)
        n = round(b / self.resolution)
        disturbed = {p.selector: p for p in self.disturbed(b)}
        out = []
        for s in SERIES:
            key = selector(s.metric, s.labels)
            value = s.value(b, _normal(key, n))
            if key in disturbed:
                value = disturbed[key].apply(value)
            value = min(max(value, 0.0), s.ceiling)
            out.append(Sample(s.metric, dict(s.labels), t, value))
        flagged = {id(p) for p in disturbed.values()}
        for entry in self.rotation:
            for part in entry.parts():
                labels = {"series": part.selector, "kind": part.kind}
                out.append(Sample(INJECTED, labels, t, 1.0 if id(part) in flagged else 0.0))
        return out

    def live(self) -> list[Sample]:
        """The values a scrape sees now."""
        return self.samples_at(self.clock())

    def history(
        self,
        start: float,
        end: float,
        step: float,
        extra_labels: Mapping[str, str] | None = None,
    ) -> list[Sample]:
        """Samples every `step` seconds from `start` to `end` inclusive, for backfilling.

        `extra_labels` are added where a series lacks them, as Prometheus adds target labels
        under `honor_labels: true`, so the history joins the scraped series.
        """
        extra = dict(extra_labels or {})
        out = []
        for i in range(math.floor((end - start) / step) + 1):
            for s in self.samples_at(start + i * step):
                labels = {**extra, **s.labels} if extra else s.labels
                out.append(Sample(s.name, labels, s.timestamp, s.value))
        return out


class WorkloadCollector(Collector):
    """Exposes the workload's current values, e.g.::

    demo_http_requests_per_second{service="checkout"} 131.4
    demo_cpu_usage_ratio{instance="app-2"} 0.83
    demo_injected_anomaly{kind="level_shift",series="demo_cpu_usage_ratio{instance=\\"app-2\\"}"} 1
    """

    def __init__(self, workload: Workload) -> None:
        self.workload = workload

    def collect(self) -> Iterator[Metric]:
        """One gauge family per metric name."""
        families: dict[str, tuple[GaugeMetricFamily, list[str]]] = {}
        for s in self.workload.live():
            if s.name not in families:
                names = list(s.labels)
                families[s.name] = (GaugeMetricFamily(s.name, HELP[s.name], labels=names), names)
            family, names = families[s.name]
            family.add_metric([s.labels[n] for n in names], s.value)
        for family, _ in families.values():
            yield family


WORKLOAD = web.AppKey("workload", Workload)
REGISTRY = web.AppKey("registry", CollectorRegistry)

_LANDING = """<!doctype html>
<html><head><meta charset="utf-8"><title>augur demo workload</title></head>
<body>
<h1>augur demo workload</h1>
<p><a href="metrics">Metrics</a></p>
<p>A new anomaly is injected every {period:g} s; the next: {kind} on <code>{series}</code>
at {when} UTC.</p>
</body></html>
"""


async def _landing(request: web.Request) -> web.Response:
    workload = request.app[WORKLOAD]
    when, entry = workload.next_injection(workload.clock())
    body = _LANDING.format(
        period=workload.period,
        kind=entry.kind,
        series=html.escape(entry.selector),
        when=time.strftime("%H:%M:%S", time.gmtime(when)),
    )
    return web.Response(text=body, content_type="text/html")


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def make_app(workload: Workload) -> web.Application:
    """The workload's web app: `/` describes the schedule, `/metrics` serves the values."""
    app = web.Application()
    registry = CollectorRegistry()
    registry.register(WorkloadCollector(workload))
    app[WORKLOAD] = workload
    app[REGISTRY] = registry
    app.router.add_get("/", _landing)
    app.router.add_get("/metrics", _metrics)
    return app


@contextlib.asynccontextmanager
async def serve(workload: Workload, host: str, port: int) -> AsyncIterator[str]:
    """Serve the workload on `host:port` in the running event loop; yields its base URL."""
    # No access log: Prometheus scrapes every 15 s and the lines would drown the demo's output.
    runner = web.AppRunner(make_app(workload), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
