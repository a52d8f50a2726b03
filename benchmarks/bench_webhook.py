"""Webhook to outbox: latency per group, sustained alerts/s, and how fast enrichment drains.

augur's alert loop as `augur run` builds it (`AlertLoop`: webhook receiver, SQLite outbox
with synchronous=FULL, enrichment worker, sender) serves on a loopback port and drains into a
real Alertmanager; a separate load process posts webhook notifications of new alerts (1 to 10
per group) on a fixed schedule, 50 groups/s by default, so a slow answer cannot slow the
offered load down.
The webhook answers once the group is on disk; the worker enriches behind it, so after the
load the benchmark waits for the enrichment backlog to drain and reports its rate.

By default the enricher is a test double doing a fixed small amount of CPU work per alert,
and a closed-loop phase (8 requests in flight) follows to find the webhook's ceiling. With
`--real-model` it is the loop's own AlertEnricher: the shipped ONNX model (models/onnx) on
the loop's model thread, the shipped runbooks and a real Prometheus holding augur scores for
the alerts' hosts. No alert's text repeats an earlier one, so the enricher's cache of exact
texts never answers, and each load runs once per `--cache-sizes` (0 is the model without its
template cache: the code before it), in turn in one process, so the figures compare:

- *storm*: Alertmanager's groups in a real storm, few rules (STORM_RULES templates) x many
  instances, each alert naming a pod, node, address or host never named before;
- *distinct*: the same rules, each alert's service named by a word triple never used before, so
  every text is a template of its own: the template cache cannot answer, the honest floor.

    .venv/bin/python benchmarks/bench_webhook.py [--rate 50] [--seconds 20] [--min-alerts 1]
    .venv/bin/python benchmarks/bench_webhook.py --real-model [--seconds 10] [--cache-sizes 0,2048]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from webhook_texts import STORM_RULES, alert_text  # the sibling module, run from this folder

from exporter.alerts.loop import AlertLoop
from exporter.alerts.outbox import Outbox
from exporter.alerts.payloads import (
    Enricher,
    Enrichment,
    WebhookAlert,
    format_time,
)
from exporter.alerts.worker import BATCH as worker_batch
from exporter.config.alerts import AlertmanagerConfig, ModelConfig
from exporter.config.prometheus import PrometheusConfig
from exporter.config.root import Config
from exporter.demo.procs import Sample, free_port, start_alertmanager, start_prometheus
from exporter.text.cache import CacheMetrics
from exporter.text.reload import ReloadableModel

HOSTS = 10
DRAIN_TIMEOUT_SECONDS = 600.0
BATCH_SECONDS = "augur_alert_enrichment_duration_seconds"

WORK_BYTES = 64 * 1024
"""sha256 over this many bytes per alert: ~0.07 ms of CPU here, the enricher double's work."""


class FixedWorkEnricherDouble:
    """Benchmark double of the enricher: a fixed amount of CPU work per alert, on the loop."""

    def __init__(self) -> None:
        self._blob = os.urandom(WORK_BYTES)

    async def enrich(self, alerts: Sequence[WebhookAlert]) -> list[Enrichment]:
        out = []
        for alert in alerts:
            digest = hashlib.sha256(self._blob + alert.labels["alertname"].encode()).hexdigest()
            out.append(
                Enrichment(
                    labels={"augur_enriched": "true", "category": "disk"},
                    annotations={"augur_category": "disk", "augur_summary": digest[:16]},
                )
            )
        return out


def load_profiler(**settings: Any) -> Any:
    """pyinstrument's `Profiler`: a tool for benchmarks only, not a dependency of augur."""
    try:
        module = importlib.import_module("pyinstrument")
    except ImportError:
        raise SystemExit("profiling needs pyinstrument: pip install pyinstrument") from None
    return module.Profiler(**settings)


def group(seq: int, size: int, texts: str = "") -> dict[str, Any]:
    now = format_time(datetime.now(UTC))
    if texts:  # the real model's loads: one rule per group, as Alertmanager groups by alertname
        named = [alert_text(texts, seq, seq * 100 + i) for i in range(size)]
        alertname = named[0][0]
    else:
        alertname = f"Bench{seq}"
        named = [
            (
                alertname,
                f"disk on host-{i} is filling up",
                f"/var/lib/postgresql on host-{i}:9100 is at {90 + i % 10}% and will be full in "
                f"about {seq % 7 + 1} hours; node_filesystem_avail_bytes falls steadily while "
                "writes to the database grow.",
            )
            for i in range(size)
        ]
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": alertname, "instance": f"host-{i}:9100", "job": "node"},
            "annotations": {"summary": summary, "description": description},
            "startsAt": now,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=node_filesystem_avail_bytes",
        }
        for i, (_, summary, description) in enumerate(named)
    ]
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alertname}",seq="{seq}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "augur",
        "groupLabels": {"alertname": alertname},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": alerts,
    }


async def load(
    url: str, rate: float, seconds: float, sizes: tuple[int, int], closed: int, texts: str
) -> None:
    """The load process: print one JSON line of (latency, alerts, status) per request."""
    rng = random.Random(1)
    results: list[tuple[float, int, int]] = []
    async with aiohttp.ClientSession() as session:

        async def send(seq: int, size: int) -> None:
            body = json.dumps(group(seq, size, texts)).encode()
            t0 = time.perf_counter()
            async with session.post(url, data=body) as resp:
                await resp.read()
            results.append((time.perf_counter() - t0, size, resp.status))

        start = time.perf_counter()
        if closed:

            async def worker(w: int) -> None:
                seq = w * 10**6
                while time.perf_counter() - start < seconds:
                    seq += 1
                    await send(seq, rng.randint(*sizes))

            await asyncio.gather(*(worker(w + 1) for w in range(closed)))
        else:
            tasks = []
            n = int(rate * seconds)
            for seq in range(n):
                # Open loop: each request leaves at its scheduled time, answered or not.
                await asyncio.sleep(max(0.0, start + seq / rate - time.perf_counter()))
                tasks.append(asyncio.create_task(send(seq, rng.randint(*sizes))))
            await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    print(json.dumps({"elapsed": elapsed, "results": results}))


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


async def run_phase(
    url: str, args: argparse.Namespace, closed: int, texts: str = ""
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--load", url, "--rate", str(args.rate), "--texts", texts]
    cmd += ["--seconds", str(args.seconds), "--max-alerts", str(args.max_alerts)]
    cmd += ["--min-alerts", str(args.min_alerts)]
    cmd += ["--closed", str(closed)]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    data: dict[str, Any] = json.loads(out)
    return data


def scores_history(now: float) -> list[Sample]:
    """augur's anomaly scores for the benchmark's hosts: what the enricher's look-ups find."""
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


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """One sample's value from the registry, 0 when it is not exported (yet)."""
    return registry.get_sample_value(name, labels) or 0.0


async def drain(outbox: Outbox, registry: CollectorRegistry) -> tuple[int, float]:
    """Wait until nothing awaits enrichment; (alerts enriched meanwhile, seconds)."""
    before = sample(registry, "augur_alerts_enriched_total")
    started = time.perf_counter()
    deadline = started + DRAIN_TIMEOUT_SECONDS
    while time.perf_counter() < deadline:
        if not await outbox.awaiting_count():
            break
        await asyncio.sleep(0.1)
    enriched = sample(registry, "augur_alerts_enriched_total") - before
    return int(enriched), time.perf_counter() - started


def histogram_sum_count(registry: CollectorRegistry, name: str) -> tuple[float, float]:
    """(sum, count) of an unlabelled histogram."""
    return sample(registry, name + "_sum"), sample(registry, name + "_count")


async def bench(args: argparse.Namespace, tmp: Path) -> None:
    am = start_alertmanager(
        tmp / "am", {"route": {"receiver": "null"}, "receivers": [{"name": "null"}]}
    )
    try:
        if args.real_model:
            # The loop's own enricher on the shipped model, asking a real Prometheus.
            prom = start_prometheus(tmp / "prom", samples=scores_history(time.time()))
            summary: list[str] = []
            try:
                for size in (int(x) for x in args.cache_sizes.split(",")):
                    where = tmp / f"cache-{size}"
                    where.mkdir()
                    summary += await serve_and_measure(args, where, am.url, prom.url, None, size)
            finally:
                prom.stop()
            print(f"\nsummary (load {os.getloadavg()}):")
            print(
                "| model.cache_size | load | overall alerts/s | template cache hits "
                "| webhook p99 server / client ms |"
            )
            print("|---|---|---|---|---|")
            print("\n".join(summary))
        else:
            await serve_and_measure(
                args, tmp, am.url, "http://127.0.0.1:1", FixedWorkEnricherDouble()
            )
    finally:
        am.stop()


async def serve_and_measure(
    args: argparse.Namespace,
    tmp: Path,
    am_url: str,
    prom_url: str,
    enricher: Enricher | None,
    cache_size: int = 0,
) -> list[str]:
    """Serve the loop and run the phases; a summary table row per phase (real model)."""
    registry = CollectorRegistry()
    config = Config(
        prometheus=PrometheusConfig(url=prom_url),
        alertmanager=AlertmanagerConfig(urls=[am_url]),
        model=ModelConfig(
            workers=args.model_workers, threads=args.model_threads, cache_size=cache_size
        ),
    )
    model = None
    if enricher is None:  # the model as the loop loads it, with the template cache if asked
        model = ReloadableModel(
            config.model.dir,
            threads=config.model.threads,
            cache_size=cache_size,
            cache_metrics=CacheMetrics(registry),
        )
    loop = AlertLoop(
        config,
        registry,
        model=model,
        enricher=enricher,
        outbox=tmp / "outbox.db",
        batch=args.batch,
    )
    server_times: list[float] = []

    async def timed(request: web.Request) -> web.StreamResponse:
        t0 = time.perf_counter()
        resp = await loop.handle(request)
        server_times.append(time.perf_counter() - t0)
        return resp

    app = web.Application()
    app.cleanup_ctx.append(loop.cleanup_ctx)
    app.router.add_post("/webhook", timed)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    outbox = loop.outbox
    url = f"http://127.0.0.1:{port}/webhook"
    phases = [("open loop", 0, "")]
    if args.real_model:
        phases = [(f"{texts} load", 0, texts) for texts in args.loads.split(",")]
    else:
        phases.append(("closed loop", 8, ""))
    mode = (
        f"real AlertEnricher (shipped model, real Prometheus), model.cache_size {cache_size}"
        if args.real_model
        else ("enricher double (fixed CPU work per alert)")
    )
    print(f"\nenricher: {mode}")
    rows = []
    profiler = load_profiler(async_mode="disabled", interval=0.001) if args.profile else None
    if profiler is not None:
        profiler.start()
    try:
        for label, closed, texts in phases:
            hits_before = sample(registry, "augur_model_cache_hits_total")
            misses_before = sample(registry, "augur_model_cache_misses_total")
            server_times.clear()
            posted_before = sample(registry, "augur_alerts_posted_total", alertmanager=am_url)
            enriched_before = sample(registry, "augur_alerts_enriched_total")
            batch_before = histogram_sum_count(registry, BATCH_SECONDS)
            data = await run_phase(url, args, closed, texts)
            results = data["results"]
            client = [r[0] for r in results]
            alerts = sum(r[1] for r in results)
            bad = sum(1 for r in results if r[2] != 200)
            during = sample(registry, "augur_alerts_enriched_total") - enriched_before
            backlog = await outbox.awaiting_count()
            drained, drain_seconds = await drain(outbox, registry)
            total_enriched = sample(registry, "augur_alerts_enriched_total") - enriched_before
            total_seconds = data["elapsed"] + drain_seconds
            batch_after = histogram_sum_count(registry, BATCH_SECONDS)
            batches = batch_after[1] - batch_before[1]
            batch_ms = 1000 * (batch_after[0] - batch_before[0]) / max(batches, 1)
            await asyncio.sleep(1.0)  # the sender posts the last enriched alerts
            posted = sample(registry, "augur_alerts_posted_total", alertmanager=am_url)
            posted -= posted_before
            offered = (
                f"{args.rate:g} groups/s offered"
                if not closed
                else (f"{closed} in flight, as fast as served")
            )
            print(f"\n{label} ({offered}, {data['elapsed']:.1f} s):")
            print(f"  groups {len(results)}, alerts {alerts}, non-200 answers {bad}")
            print(
                f"  webhook sustained: {len(results) / data['elapsed']:.1f} groups/s, "
                f"{alerts / data['elapsed']:.0f} alerts/s"
            )
            p99 = []
            for name, values in (("server", server_times), ("client", client)):
                ms = [v * 1000 for v in values]
                p99.append(pct(ms, 99))
                print(
                    f"  webhook-to-outbox {name} latency ms: p50 {pct(ms, 50):.1f}  "
                    f"p99 {pct(ms, 99):.1f}  max {max(ms):.1f}"
                )
            print(
                f"  enriched during the load: {during:.0f} ({during / data['elapsed']:.0f} "
                f"alerts/s); backlog at its end: {backlog}"
            )
            print(
                f"  backlog drained: {drained} alerts in {drain_seconds:.1f} s "
                f"({drained / max(drain_seconds, 1e-9):.0f} alerts/s); overall "
                f"{total_enriched / total_seconds:.0f} alerts/s enriched"
            )
            print(
                f"  enricher: {batches:.0f} batches of up to {args.batch}, {batch_ms:.0f} ms each "
                f"on average, {sample(registry, 'augur_alert_enrich_failures_total'):.0f} alerts "
                f"sent on with a minimal enrichment; posted to Alertmanager: {posted:.0f} "
                "(re-posts included)"
            )
            hits = sample(registry, "augur_model_cache_hits_total") - hits_before
            misses = sample(registry, "augur_model_cache_misses_total") - misses_before
            if texts:
                rules = f"{len(STORM_RULES)} templates" if texts == "storm" else "all distinct"
                answered = f"{hits:.0f} of {hits + misses:.0f}" if cache_size else "off"
                rows.append(
                    f"| {cache_size} | {texts} ({rules}) | {total_enriched / total_seconds:.0f} | "
                    f"{answered} | {p99[0]:.1f} / {p99[1]:.1f} |"
                )
                print(f"  template cache: {hits:.0f} hits, {misses:.0f} misses")
        if args.real_model:
            # The two stages of a batch run concurrently: the slower one bounds it.
            stages = []
            for stage in ("model", "prometheus"):
                total, count = (
                    sample(registry, f"augur_alert_enrichment_stage_seconds_{part}", stage=stage)
                    for part in ("sum", "count")
                )
                stages.append(
                    f"{stage} {1000 * total / max(count, 1):.0f} ms mean over {count:.0f}"
                )
            print("  stages per batch (concurrent): " + ", ".join(stages))
    finally:
        await runner.cleanup()
        if profiler is not None:
            profiler.stop()
            text = profiler.output_text(unicode=False, color=False, show_all=False)
            (Path(args.profile).parent / f"{Path(args.profile).name}-{cache_size}.txt").write_bytes(
                text.encode()
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="groups per second offered")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--min-alerts", type=int, default=1, help="fewest alerts per group")
    parser.add_argument("--max-alerts", type=int, default=10, help="most alerts per group")
    parser.add_argument(
        "--real-model",
        action="store_true",
        help="enrich with the real AlertEnricher (shipped model, real Prometheus)",
    )
    parser.add_argument(
        "--batch", type=int, default=worker_batch, help="alerts per enricher call (worker)"
    )
    parser.add_argument("--model-workers", type=int, default=2, help="model.workers")
    parser.add_argument("--model-threads", type=int, default=1, help="model.threads")
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--closed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--texts", default="", help=argparse.SUPPRESS)
    parser.add_argument(
        "--cache-sizes",
        default="0,2048",
        help="model.cache_size values run in turn with --real-model (0: no template cache)",
    )
    parser.add_argument(
        "--profile",
        metavar="PREFIX",
        help="pyinstrument profile of the serving thread (event loop) to PREFIX-<cache size>.txt",
    )
    parser.add_argument(
        "--loads", default="storm,distinct", help="the real model's loads, in order"
    )
    args = parser.parse_args()
    if args.load:
        sizes = (args.min_alerts, args.max_alerts)
        asyncio.run(load(args.load, args.rate, args.seconds, sizes, args.closed, args.texts))
        return
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, load {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(args, Path(tmp)))


if __name__ == "__main__":
    main()
