"""Load on the real processes: augur's webhook at R alerts/s, and what reaches the receiver.

Everything is real: `augur run` as a subprocess with the shipped ONNX model, a real
Prometheus holding augur scores for the alerts' hosts (so the related-series look-ups do real
work), two real Alertmanager replicas whose route sends `augur_enriched="true"` to a counting
webhook receiver in this process. A load process of its own posts webhook notifications of
new alerts (groups of 10, every alert a new fingerprint and a new text, so the model's cache
never answers) on a fixed schedule, R alerts/s for D seconds, as Alertmanager would: a failed
post is retried until augur answers 200, and only then is the group *accepted*.

Per rate it prints accepted, enriched, delivered (distinct alerts that reached the final
receiver through each replica, and that each replica holds by `GET /api/v2/alerts`),
duplicates (an alert notified twice by one replica), the webhook's latency as the client saw
it, augur's peak RSS (VmHWM), the backlog curve (`augur_alerts_awaiting_enrichment` and
`augur_outbox_pending` sampled every second, condensed) and how long the backlog took to
drain after the load stopped. Each rate gets a fresh augur and fresh Alertmanagers.

`--kill` SIGKILLs augur half-way through the load and restarts it at once on the same port
and outbox, as a crash and a supervisor would: nothing accepted may be lost, and the receiver
must not be notified twice.

    .venv/bin/python benchmarks/bench_load.py --rates 50,100,200 --seconds 60
    .venv/bin/python benchmarks/bench_load.py --rates 100 --seconds 60 --kill

Over 400 lines because it is one experiment: the load process, the bare baseline server, the
receiver, augur as a process, the sampler and the report only make sense together.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from exporter.alerts.payloads import format_time
from exporter.demo.procs import Process, Sample, free_port, start_alertmanager, start_prometheus

HOSTS = 10
GROUP = 10
DRAIN_TIMEOUT_SECONDS = 900.0
RETRY_SECONDS = 0.25
"""How soon the load process re-posts a group augur did not accept (Alertmanager: backoff)."""
STOP_BOUND_SECONDS = 25.0


# --- the load process ------------------------------------------------------------------------


def group(prefix: str, seq: int) -> dict[str, Any]:
    """A webhook notification of GROUP new alerts; every text differs (no model cache hits)."""
    now = format_time(datetime.now(UTC))
    name = f"{prefix}G{seq}"
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": name, "instance": f"host-{i}:9100", "job": "node"},
            "annotations": {
                "summary": f"disk on host-{i} is filling up ({name})",
                "description": f"/var/lib/postgresql on host-{i}:9100 is at {80 + seq % 20}% "
                f"and will be full in about {seq % 97 + 1} minutes; writes grew {seq}% since "
                "the last deploy.",
            },
            "startsAt": now,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=node_filesystem_avail_bytes",
        }
        for i in range(GROUP)
    ]
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "augur",
        "groupLabels": {"alertname": name},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": alerts,
    }


async def load(url: str, prefix: str, rate: float, seconds: float, give_up: float) -> None:
    """Post `rate` alerts/s for `seconds`; print one JSON object with every group's outcome.

    Each group: [seq, sent (s after start), latency of the answer that was 200 (s),
    attempts, accepted, wall-clock time of that answer]. Open loop: a group leaves at its
    time whatever happened before.
    """
    groups_per_second = rate / GROUP
    results: list[tuple[int, float, float, int, bool, float]] = []
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        start = time.perf_counter()

        async def send(seq: int) -> None:
            body = json.dumps(group(prefix, seq)).encode()
            sent = time.perf_counter() - start
            attempts = 0
            deadline = time.perf_counter() + give_up
            while True:
                attempts += 1
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                if status == 200:
                    results.append(
                        (seq, sent, time.perf_counter() - t0, attempts, True, time.time())
                    )
                    return
                if time.perf_counter() > deadline:
                    results.append((seq, sent, 0.0, attempts, False, 0.0))
                    return
                await asyncio.sleep(RETRY_SECONDS)

        tasks = []
        for seq in range(int(groups_per_second * seconds)):
            await asyncio.sleep(max(0.0, start + seq / groups_per_second - time.perf_counter()))
            tasks.append(asyncio.create_task(send(seq)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    print(json.dumps({"elapsed": elapsed, "groups": results}))


# --- the final receiver ----------------------------------------------------------------------


@dataclass
class Receiver:
    """The team's receiver behind both replicas: counts firing notifications per alert."""

    url: str = ""
    # (replica, alertname, instance) -> firing notifications of it
    firing: dict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    first: dict[tuple[str, str, str], float] = field(default_factory=dict)
    """When each alert first arrived firing, wall clock."""
    notifications: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.notifications += 1
        for alert in body["alerts"]:
            if alert["status"] == "firing":
                labels = alert["labels"]
                key = (body["externalURL"], labels["alertname"], labels.get("instance", ""))
                self.firing[key] += 1
                self.first.setdefault(key, time.time())
        return web.Response(text="ok")

    def delivered(self, replica: str, prefix: str) -> tuple[int, int]:
        """(distinct alerts of this run notified by `replica`, notifications beyond the first)."""
        counts = [
            n
            for (r, name, _), n in self.firing.items()
            if r == replica and name[: len(prefix)] == prefix
        ]
        return len(counts), sum(n - 1 for n in counts)


def am_config(receiver_url: str) -> dict[str, Any]:
    """Originals (none come here) to nobody; augur's enriched copies to the receiver."""
    return {
        "route": {
            "receiver": "nobody",
            "group_by": ["..."],
            "group_wait": "0s",
            "group_interval": "5s",
            "repeat_interval": "1h",
            "routes": [{"receiver": "receiver", "matchers": ['augur_enriched="true"']}],
        },
        "receivers": [
            {"name": "nobody"},
            {
                "name": "receiver",
                "webhook_configs": [{"url": receiver_url, "send_resolved": False}],
            },
        ],
    }


def scores_history(now: float) -> list[Sample]:
    """augur's anomaly scores for the load's hosts: what the enricher's look-ups find."""
    return [
        Sample(
            "augur_anomaly_score",
            {"query": "disk_io", "detector": "ensemble", "instance": f"host-{h}:9100"},
            now - 1200 + 15 * i,
            0.3 if i < 60 else 3.0 + h / 10,
        )
        for h in range(HOSTS)
        for i in range(80)
    ]


# --- augur as a real process -----------------------------------------------------------------


class Augur:
    """`augur run` as a subprocess; restartable on the same port and outbox."""

    def __init__(self, workdir: Path, prometheus: str, replicas: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "augur.yml"
        self.log_path = workdir / "augur.log"
        doc = {
            "prometheus": {"url": prometheus},
            "state": {"path": str(workdir / "augur.db")},
            # The load sends each alert once; Alertmanager would re-send it every minute. A long
            # resolve timeout keeps an alert still queued behind a backlog from resolving first.
            "alertmanager": {"urls": replicas, "resolve_timeout": "1h"},
        }
        self.config.write_text(yaml.safe_dump(doc), encoding="utf-8")
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        argv = [sys.executable, "-m", "exporter.cli", "run", "--config", str(self.config)]
        argv += ["--web.listen-address", f"127.0.0.1:{self.port}", "--log.format", "json"]
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
            )
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"augur exited with {self.proc.returncode}: {self.log_path}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(self.url + "/-/ready") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise TimeoutError(f"augur not ready after 120 s: {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()

    async def stop(self) -> float:
        """SIGTERM; the seconds augur took to exit (SIGKILL after the 25 s bound and more)."""
        assert self.proc is not None
        if self.proc.returncode is not None:
            return 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), STOP_BOUND_SECONDS + 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        return time.monotonic() - t0

    def log_levels(self) -> dict[str, int]:
        """How many lines of augur's log were at each level (warning and error matter)."""
        counts: dict[str, int] = defaultdict(int)
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                counts[str(json.loads(line).get("level"))] += 1
            except ValueError:
                counts["unparsed"] += 1
        return dict(counts)

    def log_events(self, level: str) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("level") == level:
                    counts[str(entry.get("event"))] += 1
        return dict(counts)


def proc_memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB; (0, 0) once it is gone."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in values:
                values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


@dataclass
class Tick:
    """One second's sample of augur."""

    t: float
    rss: float
    hwm: float
    metrics: dict[str, float]


def parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = s.name
            if s.labels:
                key += "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}"
            out[key] = s.value
    return out


async def sampler(augur: Augur, ticks: list[Tick], t0: float, stop: asyncio.Event) -> None:
    """Every second: augur's memory and its alert metrics (none while it is down)."""
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not stop.is_set():
            rss, hwm = proc_memory(augur.pid)
            metrics: dict[str, float] = {}
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(augur.url + "/metrics") as resp:
                    metrics = parse_metrics(await resp.text())
            ticks.append(Tick(time.monotonic() - t0, rss, hwm, metrics))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


def counter_total(ticks: list[Tick], name: str) -> float:
    """A counter's increase over the run, across restarts (each life starts again at 0)."""
    total = prev = 0.0
    for tick in ticks:
        value = tick.metrics.get(name)
        if value is None:
            continue
        total += value - prev if value >= prev else value
        prev = value
    return total


def pct(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


async def held_by(session: aiohttp.ClientSession, am: Process, prefix: str) -> int:
    """How many distinct enriched alerts of this run a replica holds (GET /api/v2/alerts)."""
    params = {"filter": 'augur_enriched="true"'}
    async with session.get(am.url + "/api/v2/alerts", params=params) as resp:
        alerts = await resp.json()
    return len(
        {
            (a["labels"]["alertname"], a["labels"].get("instance"))
            for a in alerts
            if a["labels"]["alertname"].startswith(prefix)
        }
    )


def curve(ticks: list[Tick], name: str, every: float) -> str:
    """A metric every `every` seconds, as `t:value` pairs (`-` while augur was not answering)."""
    out = []
    next_t = 0.0
    for tick in ticks:
        if tick.t >= next_t:
            value = tick.metrics.get(name)
            out.append(f"{tick.t:.0f}:{'-' if value is None else f'{value:.0f}'}")
            next_t = tick.t + every
    return " ".join(out)


async def run_rate(
    rate: float, args: argparse.Namespace, tmp: Path, receiver: Receiver, prom: Process
) -> dict[str, Any]:
    """One rate: fresh replicas and a fresh augur, the load, the drain, the counts."""
    workdir = tmp / f"rate-{rate:g}{'-kill' if args.kill else ''}"
    prefix = f"L{rate:g}{'K' if args.kill else ''}-"
    ams = [start_alertmanager(workdir / f"am-{i}", am_config(receiver.url)) for i in range(2)]
    augur = Augur(workdir, prom.url, [am.url for am in ams])
    try:
        await augur.start()
        t0 = time.monotonic()
        ticks: list[Tick] = []
        stop_sampling = asyncio.Event()
        sampling = asyncio.create_task(sampler(augur, ticks, t0, stop_sampling))
        cmd = [sys.executable, __file__, "--load", augur.url + "/webhook", "--prefix", prefix]
        cmd += ["--rates", str(rate), "--seconds", str(args.seconds)]
        loader = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
        killed_at = restarted_in = None
        if args.kill:
            await asyncio.sleep(args.seconds / 2)
            killed_at = time.monotonic() - t0
            await augur.kill()
            t_kill = time.monotonic()
            await augur.start()
            restarted_in = time.monotonic() - t_kill
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
            # The restarted process has a new pid: sample that one from now on.
            sampling = asyncio.create_task(sampler(augur, ticks, t0, stop_sampling))
        out, _ = await loader.communicate()
        load_end = time.monotonic() - t0
        data = json.loads(out)
        groups = data["groups"]
        accepted = GROUP * sum(1 for g in groups if g[4])
        refused_groups = sum(1 for g in groups if not g[4])

        # The drain: until every accepted alert reached the receiver through both replicas.
        drain_start = time.monotonic()
        urls = [am.url for am in ams]
        while time.monotonic() - drain_start < DRAIN_TIMEOUT_SECONDS:
            if all(receiver.delivered(u, prefix)[0] >= accepted for u in urls):
                break
            await asyncio.sleep(0.5)
        drained_in = time.monotonic() - drain_start
        # A few more seconds: a late duplicate (a re-post notified again) would show now.
        await asyncio.sleep(args.settle)
        stop_sampling.set()
        await sampling
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            held = [await held_by(session, am, prefix) for am in ams]
        pending_before_stop = ticks[-1].metrics.get("augur_outbox_pending", float("nan"))
        stop_seconds = await augur.stop()
        latencies = [1000 * g[2] for g in groups if g[4]]
        # Accepted (augur's 200) to the receiver, per alert and replica: enrichment, the
        # outbox, Alertmanager's routing and its notification.
        accepted_at = {f"{prefix}G{g[0]}": g[5] for g in groups if g[4]}
        end_to_end = [
            t - accepted_at[name]
            for (_, name, _), t in receiver.first.items()
            if name in accepted_at
        ]
        # augur's own histogram: the answer's time inside augur (the last life's, with --kill).
        last = next((t.metrics for t in reversed(ticks) if t.metrics), {})
        count = last.get("augur_webhook_duration_seconds_count", 0.0)
        within = {
            ms: last.get(f"augur_webhook_duration_seconds_bucket{{le={ms / 1000}}}", 0.0)
            / max(count, 1.0)
            for ms in (5, 10, 25, 50)
        }
        retried = sum(1 for g in groups if g[3] > 1)
        delivered = [receiver.delivered(u, prefix) for u in urls]
        result = {
            "rate": rate,
            "offered": GROUP * len(groups),
            "accepted": accepted,
            "refused_groups": refused_groups,
            "retried_groups": retried,
            "load_seconds": data["elapsed"],
            "received_total": counter_total(ticks, "augur_alerts_received_total"),
            "enriched_total": counter_total(ticks, "augur_alerts_enriched_total"),
            "enrich_failures": counter_total(ticks, "augur_alert_enrich_failures_total"),
            "delivered": [d[0] for d in delivered],
            "duplicates": [d[1] for d in delivered],
            "held_by_replicas": held,
            "latency_ms": {
                "p50": pct(latencies, 50),
                "p99": pct(latencies, 99),
                "max": max(latencies, default=float("nan")),
            },
            "server_within_ms": within,
            "end_to_end_s": {
                "p50": pct(end_to_end, 50),
                "p99": pct(end_to_end, 99),
                "max": max(end_to_end, default=float("nan")),
            },
            "peak_rss_mb": max((t.hwm for t in ticks), default=0.0),
            "rss_end_mb": next((t.rss for t in reversed(ticks) if t.rss), 0.0),
            "backlog_peak": max(
                (t.metrics.get("augur_alerts_awaiting_enrichment", 0) for t in ticks), default=0
            ),
            "pending_peak": max(
                (t.metrics.get("augur_outbox_pending", 0) for t in ticks), default=0
            ),
            "load_end": load_end,
            "drained_in": drained_in,
            "pending_at_end": pending_before_stop,
            "stop_seconds": stop_seconds,
            "killed_at": killed_at,
            "restarted_in": restarted_in,
            "awaiting_curve": curve(ticks, "augur_alerts_awaiting_enrichment", args.curve_every),
            "pending_curve": curve(ticks, "augur_outbox_pending", args.curve_every),
            "log_levels": augur.log_levels(),
            "warnings": augur.log_events("warning"),
            "errors": augur.log_events("error"),
        }
        if args.kill:
            # Webhook latencies across a kill measure the restart, not the webhook.
            result["note"] = "latency of the answers that were 200, kill window included"
        return result
    finally:
        if augur.proc is not None and augur.proc.returncode is None:
            augur.proc.kill()
            await augur.proc.wait()
        for am in ams:
            am.stop()


def report(r: dict[str, Any]) -> str:
    e2e = r["end_to_end_s"]
    lat, dl, dup, held = r["latency_ms"], r["delivered"], r["duplicates"], r["held_by_replicas"]
    head = f"\n== {r['rate']:g} alerts/s for {r['load_seconds']:.1f} s"
    if r["killed_at"] is not None:
        head += f" (SIGKILL at {r['killed_at']:.1f} s, ready again in {r['restarted_in']:.1f} s)"
    lines = [
        head,
        f"  offered {r['offered']}, accepted {r['accepted']} (groups retried "
        f"{r['retried_groups']}, never accepted {r['refused_groups']})",
        f"  augur: received {r['received_total']}, enriched {r['enriched_total']}"
        f" (minimal enrichment: {r['enrich_failures']})",
        f"  delivered to the receiver via replica 0/1: {dl[0]} / {dl[1]}; duplicates "
        f"{dup[0]} / {dup[1]}; held by the replicas (GET /api/v2/alerts): {held[0]} / {held[1]}",
        f"  webhook latency (client, ms): p50 {lat['p50']:.1f}  p99 {lat['p99']:.1f}  "
        f"max {lat['max']:.1f}",
        "  augur's own webhook histogram: "
        + ", ".join(f"{100 * v:.1f} % within {k} ms" for k, v in r["server_within_ms"].items()),
        f"  accepted to the receiver (s, per alert and replica): p50 {e2e['p50']:.2f}  "
        f"p99 {e2e['p99']:.2f}  max {e2e['max']:.2f}",
        f"  augur peak RSS (VmHWM) {r['peak_rss_mb']:.0f} MB, "
        f"RSS at the end {r['rss_end_mb']:.0f} MB",
        f"  backlog peak: awaiting enrichment {r['backlog_peak']:.0f}, outbox pending "
        f"{r['pending_peak']:.0f}; load ended at {r['load_end']:.0f} s, everything at the "
        f"receiver {r['drained_in']:.1f} s later",
        f"  outbox pending before stop {r['pending_at_end']:.0f}; "
        f"SIGTERM to exit {r['stop_seconds']:.1f} s",
        f"  awaiting enrichment (t s: n): {r['awaiting_curve']}",
        f"  outbox pending      (t s: n): {r['pending_curve']}",
        f"  log lines by level: {r['log_levels']}; warnings {r['warnings']}; errors {r['errors']}",
    ]
    if "note" in r:
        lines.append(f"  ({r['note']})")
    return "\n".join(lines)


async def echo(port: int) -> None:
    """The baseline's server: reads each notification as JSON and answers 200, nothing else."""

    async def handle(request: web.Request) -> web.Response:
        await request.json()
        return web.Response(text="ok")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/webhook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def baseline(rate: float, seconds: float) -> dict[str, float]:
    """The same load against a bare aiohttp server in its own process: the noise floor of the
    client, loopback and scheduler on this machine at this moment."""
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--echo", str(port), stdin=asyncio.subprocess.DEVNULL
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.post(f"http://127.0.0.1:{port}/webhook", json={}):
                        break
                await asyncio.sleep(0.1)
        cmd = [sys.executable, __file__, "--load", f"http://127.0.0.1:{port}/webhook"]
        cmd += ["--prefix", "B-", "--rates", str(rate), "--seconds", str(seconds)]
        loader = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
        out, _ = await loader.communicate()
    finally:
        server.kill()
        await server.wait()
    latencies = [1000 * g[2] for g in json.loads(out)["groups"] if g[4]]
    return {"p50": pct(latencies, 50), "p99": pct(latencies, 99), "max": max(latencies)}


async def bench(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    receiver = Receiver()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    prom = start_prometheus(tmp / "prom", samples=scores_history(time.time()))
    results = []
    try:
        for rate in args.rates:
            print(f"load average before {rate:g} alerts/s: {os.getloadavg()}", flush=True)
            base = await baseline(rate, args.baseline_seconds) if args.baseline_seconds else None
            result = await run_rate(rate, args, tmp, receiver, prom)
            result["baseline_latency_ms"] = base
            if base is not None:
                print(
                    f"  baseline, a bare aiohttp server in its own process at the same rate just "
                    f"before ({args.baseline_seconds:g} s), ms: p50 {base['p50']:.1f}  "
                    f"p99 {base['p99']:.1f}  max {base['max']:.1f}",
                    flush=True,
                )
            result["loadavg_after"] = os.getloadavg()
            print(report(result), flush=True)
            print(f"  load average after: {result['loadavg_after']}", flush=True)
            results.append(result)
    finally:
        prom.stop()
        await runner.cleanup()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="50,100,200", help="alerts/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=60.0, help="load per rate")
    parser.add_argument("--kill", action="store_true", help="SIGKILL augur half-way, restart")
    parser.add_argument("--settle", type=float, default=10.0, help="wait for late duplicates")
    parser.add_argument("--curve-every", type=float, default=10.0, help="backlog curve step, s")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--baseline-seconds", type=float, default=20.0, help="the bare server's run (0: none)"
    )
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--echo", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="L", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo:
        asyncio.run(echo(args.echo))
        return
    if args.load:
        asyncio.run(load(args.load, args.prefix, float(args.rates), args.seconds, 120.0))
        return
    args.rates = [float(r) for r in args.rates.split(",")]
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cores (shared), "
        f"load average {os.getloadavg()}"
    )
    with tempfile.TemporaryDirectory(prefix="augur-load-") as tmp:
        results = asyncio.run(bench(args, Path(tmp)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    lost = any(min(r["delivered"]) < r["accepted"] for r in results)
    dups = any(sum(r["duplicates"]) for r in results)
    sys.exit(1 if lost or dups else 0)


if __name__ == "__main__":
    main()
