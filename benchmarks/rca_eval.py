"""Does `augur_related` find the cause? Scripted incidents with known causes, through the real
enricher and a real Prometheus. Prints; asserts nothing.

    PYTHONPATH=. .venv/bin/python benchmarks/rca_eval.py [--incidents 24] [--seeds 0 1 2 3 4]
        [--blips 0.0] [--unscored 0.0] [--table]
    PYTHONPATH=. .venv/bin/python benchmarks/rca_eval.py --demo 24

For each seed, `--incidents` incidents are generated (numpy, seeded) and their augur scores
backfilled into a fresh Prometheus with promtool. An incident is a causal chain on one service:
the cause (a disk, CPU, memory or database series sharing the service's host, pod or namespace)
crosses 1 first; the alerting series (the service's latency) crosses 1 to 8 steps later; the
alert starts 30 s before to 60 s after that (rules and augur do not cross together); effects
(errors, saturation of the same service) cross 1 to 6 steps after the alerting series, often
stronger. Distractors: the alert's metric on another host, anomalous before the cause; another
host's series, anomalous before the cause; with `--blips P`, each of the service's other
series gets, with probability P, one isolated noise sample >= 1 before the cause (the hard case
for a ranking by first crossing); with `--unscored P`, a rule's own series is, with
probability P, not scored by augur (then "likely cause" is judged against the alert's start).
Half the alerts are a rule's (labels of the service, the
latency metric in `g0.expr`), half augur's own `AugurAnomaly` on the latency series. Peaks and
delays are drawn, not tuned: no constant here was chosen by looking at the figures.

With `--demo N` the incidents are instead the demo workload's own causal chain (a disk burst on
checkout's host, its latency 30 s later, its errors 45 s later), N demos started ~17 minutes
apart (so other noise), scored by the demo's queries with the shipped default detector as
`augur demo` scores them, enriched with the demo's enrichment settings.

Printed: the cause ranked first and in the top 3 (of `augur_related`, up to 10 lines), how
often "likely cause" was claimed for a series that crossed 1 at or after the alerting series
(must be 0), how often the true cause was called "likely cause", and a per-incident table.
Results are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import aiohttp
import numpy as np

from exporter.alerts.enrich import AlertEnricher
from exporter.alerts.payloads import WebhookAlert
from exporter.alerts.related import Related
from exporter.backtest.command import Setup, score_series
from exporter.backtest.inputs import InputSeries
from exporter.config.alerts import REPO_MODEL_DIR, EnrichConfig
from exporter.config.root import Config
from exporter.demo.config import FIRST_ANOMALY_AFTER, HISTORY_SECONDS, augur_config
from exporter.demo.procs import Sample, start_prometheus
from exporter.demo.workload import ROTATION, Workload, selector
from exporter.prometheus.client import PrometheusClient
from exporter.text import TextModel

STEP = 15
LATENCY = "demo_http_request_duration_seconds"
CAUSES = (
    ("node_disk_io_time_seconds_total", "host"),
    ("node_cpu_seconds_total", "host"),
    ("container_memory_working_set_bytes", "pod"),
    ("pg_stat_activity_max_tx_duration", "namespace"),
)
"""(metric, what it shares with the service): a node metric of its host, one of its pod, a
database of its namespace."""
EFFECTS = ("demo_http_errors_ratio", "demo_http_inflight_requests")


@dataclass
class Incident:
    """One generated incident: its series, which is the cause, the alert."""

    n: int
    series: dict[str, tuple[dict[str, str], float, float]] = field(default_factory=dict)
    """role -> (labels, onset, peak); onset is when the score first reaches 1."""
    blips: dict[str, float] = field(default_factory=dict)
    """role -> time of a one-sample noise crossing before the cause."""
    starts: float = 0.0
    own_alert: bool = False
    shares: str = ""
    """What the cause shares with the alert's service: host, pod or namespace."""
    unscored: bool = False
    """augur does not score the alert's own series (its rule reads a metric augur ignores)."""
    samples: list[Sample] = field(default_factory=list)

    def name(self, role: str) -> str:
        """The series' name as `augur_related` writes it."""
        labels = self.series[role][0]
        return Related(labels, 0.0, 0.0).name()

    def crossed(self, role: str) -> float:
        """When the series' score first reached 1 (its onset, or an earlier blip)."""
        return min(self.series[role][1], self.blips.get(role, np.inf))


def generate(
    n: int, rng: np.random.Generator, t0: float, now: float, blips: float, unscored: float
) -> Incident:
    """One causal chain with its distractors, its scores sampled every STEP."""
    inc = Incident(n)
    host, ns, pod = f"host-{n}", f"ns-{n}", f"svc{n}-7f9c-{n:03d}"
    service = {"instance": f"{host}:8080", "service": f"svc-{n}", "namespace": ns, "pod": pod}
    metric, shares = CAUSES[int(rng.integers(len(CAUSES)))]
    inc.shares = shares
    cause_labels = {
        "host": {"instance": f"{host}:9100"},
        "pod": {"namespace": ns, "pod": pod, "container": "app"},
        "namespace": {"namespace": ns, "pod": f"pg-{n}-0", "service": f"pg-{n}"},
    }[shares]
    own_onset = t0 + STEP * int(rng.integers(-4, 5))
    cause_onset = own_onset - STEP * int(rng.integers(1, 9))
    inc.starts = own_onset + float(rng.uniform(-30, 60))
    inc.own_alert = n % 2 == 1

    def peak(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi))

    inc.series["cause"] = (
        {**cause_labels, "metric": metric, "query": "cause"},
        cause_onset,
        peak(1.2, 6),
    )
    inc.series["own"] = (
        {**service, "metric": LATENCY, "query": "latency"},
        own_onset,
        peak(1.2, 10),
    )
    for i, effect in enumerate(EFFECTS):
        onset = own_onset + STEP * int(rng.integers(1, 7))
        inc.series[f"effect{i}"] = (
            {**service, "metric": effect, "query": effect},
            onset,
            peak(1.2, 20),
        )
    early = cause_onset - STEP * int(rng.integers(1, 20))
    other = f"host-x{n}:8080"
    inc.series["elsewhere"] = (
        {"instance": other, "metric": LATENCY, "query": "latency"},
        early,
        peak(1.2, 20),
    )
    inc.series["unrelated"] = (
        {"instance": other, "metric": "node_load1", "query": "load"},
        early,
        peak(1.2, 20),
    )
    inc.unscored = not inc.own_alert and rng.random() < unscored
    for role in ("own", "effect0", "effect1"):
        if rng.random() < blips and not (role == "own" and inc.unscored):
            inc.blips[role] = cause_onset - STEP * int(rng.integers(1, 20))
    times = np.arange(now - 3600, now - 60, STEP)
    for role, (labels, onset, top) in inc.series.items():
        if role == "own" and inc.unscored:
            continue
        noise = np.abs(rng.normal(0.35, 0.15, len(times)))
        values = np.where(
            times >= onset, top * rng.uniform(0.8, 1.0, len(times)), np.minimum(noise, 0.95)
        )
        values[times == inc.blips.get(role, -1)] = peak(1.0, 3)
        inc.samples += [
            Sample("augur_anomaly_score", {**labels, "detector": "zscore"}, float(t), float(v))
            for t, v in zip(times, values, strict=True)
        ]
    return inc


@dataclass(frozen=True)
class Row:
    """What became of one incident."""

    n: int
    alert: str
    shares: str
    lead: int
    rank: int | None
    claimed: bool
    wrong: list[str]
    blips: int
    first: str
    missing: str


def demo_enrich_config() -> EnrichConfig:
    """The enrichment settings `augur demo` runs with (related_before 1m: see demo/config.py)."""
    doc = augur_config("http://127.0.0.1:9", "127.0.0.1:9", Path("augur.db"), "http://127.0.0.1:7")
    return Config.model_validate(doc).enrich.model_copy(update={"max_related": 10})


def demo_incidents(count: int, now: float) -> list[Incident]:
    """The demo's causal chain, `count` times: demos started ~17 min apart (other noise), their
    chain scored by the demo's own queries (the shipped default detector, causally, from the
    6 h backfilled), each run's series renamed apart (`checkout-<n>`, `app-1-<n>`)."""
    k_chain, chain = next((i, e) for i, e in enumerate(ROTATION) if e.effects)
    doc = augur_config("http://127.0.0.1:9", "127.0.0.1:9", Path("augur.db"), "http://127.0.0.1:7")
    queries = {q.expr: q for q in Config.model_validate(doc).queries}
    roles = dict(zip(("cause", "own", "effect0"), chain.parts(), strict=True))
    out = []
    for n in range(count):
        start = now - 1500 - k_chain * 180 - n * 997.0
        workload = Workload(epoch=Workload().bucket(start + FIRST_ANOMALY_AFTER))
        slot = workload.epoch + k_chain * workload.period
        live = workload.bucket(start)
        times = np.arange(live - STEP - HISTORY_SECONDS, slot + chain.span + 300, STEP)
        values: dict[str, list[float]] = {p.selector: [] for p in roles.values()}
        for t in times.tolist():
            for smp in workload.samples_at(t):
                key = selector(smp.name, tuple(smp.labels.items()))
                if key in values:
                    values[key].append(smp.value)
        inc = Incident(n, own_alert=n % 2 == 1, shares="service (demo)")
        stamps = tuple(f"{t:.0f}" for t in times)
        for role, part in roles.items():
            q = queries[part.metric]
            series = InputSeries(part.selector, stamps, times, np.array(values[part.selector]))
            score = score_series(Setup(q.name, q, "ensemble"), series).score[0]
            labels = {"job": "augur", "instance": f"demo-workload-{n}", **dict(part.labels)}
            labels |= {"service": f"checkout-{n}", "query": q.name, "metric": part.metric}
            if labels["instance"] == "app-1":
                labels["instance"] = f"app-1-{n}"
            shown = (times >= live) & np.isfinite(score)
            crossed = times[shown & (score >= 1) & (times >= slot - 900)]
            onset = float(crossed[0]) if len(crossed) else np.inf
            inc.series[role] = (labels, onset, float(np.nanmax(score[shown])))
            inc.samples += [
                Sample(
                    "augur_anomaly_score", {**labels, "detector": "ensemble"}, float(t), float(v)
                )
                for t, v in zip(times[shown], score[shown], strict=True)
            ]
        inc.starts = inc.series["own"][1]  # AugurAnomaly fires at the incident's first score
        out.append(inc)
    return out


def alert_of(inc: Incident) -> WebhookAlert:
    """A rule's HighLatency on the service, or augur's own alert on its latency series."""
    labels, _, _ = inc.series["own"]
    if inc.own_alert:
        alert_labels, url = {"alertname": "AugurAnomaly", **labels}, ""
        text = f"{LATENCY} is anomalous on {labels['instance']}"
    else:
        keep = ("instance", "service", "namespace", "pod")
        alert_labels = {"alertname": "HighLatency", **{k: labels[k] for k in keep if k in labels}}
        expr = f'{LATENCY}{{service="{labels["service"]}"}} > 0.5'
        url, text = f"http://prometheus:9090/graph?g0.expr={quote(expr)}", "p99 latency is high"
    return WebhookAlert(
        status="firing",
        labels=alert_labels,
        annotations={"summary": text},
        startsAt=datetime.fromtimestamp(inc.starts, UTC),
        generatorURL=url,
    )


def read_lines(text: str) -> list[tuple[str, str]]:
    """(kind, series name) per ranked line of `augur_related`."""
    out = []
    for line in text.splitlines():
        kind, sep, rest = line.partition(": ")
        if sep and " anomalous since " in rest:
            out.append((kind, rest.split(" anomalous since ")[0]))
    return out


async def run_seed(
    seed: int, count: int, blips: float, unscored: float, model: TextModel
) -> list[Row]:
    """Generate, backfill, enrich; one row per incident."""
    rng = np.random.default_rng(seed)
    now = time.time() // STEP * STEP
    t0 = now - 1800
    incidents = [generate(n, rng, t0, now, blips, unscored) for n in range(count)]
    cfg = EnrichConfig(deadline=30.0, max_related=10)
    return await evaluate(incidents, now, cfg, model)


async def evaluate(
    incidents: list[Incident], now: float, cfg: EnrichConfig, model: TextModel
) -> list[Row]:
    """Backfill the incidents' scores into a fresh Prometheus, enrich their alerts; the rows."""
    with tempfile.TemporaryDirectory(prefix="augur-rca-") as tmp:
        prom = start_prometheus(Path(tmp), samples=[s for i in incidents for s in i.samples])
        try:
            async with aiohttp.ClientSession() as session:
                client = PrometheusClient(session, prom.url, retries=1, max_concurrency=8)
                enricher = AlertEnricher(model, client, cfg, clock=lambda: now)
                await enricher.start()
                try:
                    out = await enricher.enrich([alert_of(i) for i in incidents])
                finally:
                    await enricher.close()
        finally:
            prom.stop()
    rows = []
    for inc, e in zip(incidents, out, strict=True):
        lines = read_lines(e.annotations["augur_related"])
        names = [name for _, name in lines]
        cause = inc.name("cause")
        own_crossed = inc.crossed("own")
        by_name = {inc.name(r): r for r in inc.series}
        wrong = [
            name
            for kind, name in lines
            if kind == "likely cause" and (r := by_name.get(name)) and inc.crossed(r) >= own_crossed
        ]
        rows.append(
            Row(
                n=inc.n,
                alert="augur" if inc.own_alert else "rule",
                shares=inc.shares,
                lead=int((own_crossed - inc.series["cause"][1]) // STEP),
                rank=names.index(cause) + 1 if cause in names else None,
                claimed=("likely cause", cause) in lines,
                wrong=wrong,
                blips=len(inc.blips),
                first=lines[0][1] if lines else "-",
                missing=e.annotations.get("augur_missing", ""),
            )
        )
    return rows


def report(seed: int, rows: list[Row], table: bool) -> tuple[float, float, int]:
    """Print one seed's figures (and table); returns (top-1 %, top-3 %, wrong claims)."""
    n = len(rows)
    top1 = sum(r.rank == 1 for r in rows) / n * 100
    top3 = sum(r.rank is not None and r.rank <= 3 for r in rows) / n * 100
    wrong = sum(len(r.wrong) for r in rows)
    claimed = sum(r.claimed for r in rows) / n * 100
    print(
        f"{'the demo' if seed < 0 else f'seed {seed}'}: {n} incidents: "
        f"cause ranked first {top1:.0f} %, top 3 {top3:.0f} %, "
        f"called 'likely cause' {claimed:.0f} %, 'likely cause' claimed for a series that "
        f"crossed at or after the alerting one: {wrong}"
    )
    if table:
        print(
            f"  {'#':>3} {'alert':5} {'cause shares':12} {'lead':>4} {'rank':>4} "
            f"{'claimed':7} blips  first line"
        )
        for r in rows:
            missing = f"  MISSING {r.missing}" if r.missing else ""
            print(
                f"  {r.n:>3} {r.alert:5} {r.shares:12} {r.lead:>4} {r.rank or '-':>4} "
                f"{r.claimed!s:7} {r.blips:>5}  {r.first}{missing}"
            )
    return top1, top3, wrong


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=24)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--blips", type=float, default=0.0, help="chance of an early noise blip")
    parser.add_argument(
        "--unscored", type=float, default=0.0, help="chance a rule's own series is not scored"
    )
    parser.add_argument(
        "--demo", type=int, default=0, help="instead: this many runs of the demo's chain"
    )
    parser.add_argument("--table", action="store_true", help="print every incident")
    args = parser.parse_args()
    model = TextModel(REPO_MODEL_DIR, threads=1)
    if args.demo:
        now = time.time() // STEP * STEP
        incidents = demo_incidents(args.demo, now)
        report(-1, await evaluate(incidents, now, demo_enrich_config(), model), True)
        return
    figures = []
    for seed in args.seeds:
        rows = await run_seed(seed, args.incidents, args.blips, args.unscored, model)
        figures.append(report(seed, rows, args.table or seed == args.seeds[0]))
    if len(figures) > 1:
        top1s, top3s, wrongs = zip(*figures, strict=True)
        print(
            f"over {len(figures)} seeds x {args.incidents} incidents "
            f"(blips {args.blips:g}, unscored {args.unscored:g}): "
            f"top 1 mean {statistics.mean(top1s):.1f} % "
            f"(min {min(top1s):.0f}, max {max(top1s):.0f}), "
            f"top 3 mean {statistics.mean(top3s):.1f} % (min {min(top3s):.0f}), "
            f"wrong 'likely cause' claims {sum(wrongs)}"
        )


if __name__ == "__main__":
    asyncio.run(main())
