"""Soak: the demo stack for N minutes, polling and alerts together; is augur still well?

Runs `augur demo` (real Prometheus, Alertmanager, the demo workload and `augur run` polling
its four queries every 15 s, with anomalies injected every 3 minutes) and, on top of the
demo's own alerts, a steady trickle of alerts posted to its Alertmanager the way Prometheus
does: a new one every `--every` seconds, firing for `--fire` seconds, re-posted every 30 s
while it fires, then resolved. Alertmanager routes each to augur, augur enriches it and posts
it back, and the demo's receiver logs what arrives (`enriched.jsonl`).

Every 30 s it samples augur's RSS (/proc/PID/status) and its metrics. At the end it checks
that every source alert Alertmanager held (the trickle and the demo's own) reached the
receiver enriched, and every trickle alert resolved before the last minute arrived resolved;
it stops the demo (SIGTERM) and counts augur's log lines at level warning and error. It
prints the RSS curve: start, min, max, end and the least-squares slope in MB per hour (after
the first `--warmup` minutes, while the model and the detectors settle).

    .venv/bin/python benchmarks/soak.py --minutes 30

The demo's directory (augur.log, enriched.jsonl, the configs) is kept under
/tmp/augur-soak-*/ for a look afterwards; the summary prints its path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from bench_load import proc_memory  # the sibling benchmark's, run from this folder
from prometheus_client.parser import text_string_to_metric_families

from exporter.alerts.payloads import format_time

SAMPLE_SECONDS = 30.0
REPOST_SECONDS = 30.0
AUGUR_LABELS = ("augur_enriched", "category")


def metrics(text: str, names: tuple[str, ...]) -> dict[str, float]:
    """The sum over label sets of each named sample."""
    out = dict.fromkeys(names, 0.0)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in out:
                out[s.name] += s.value
    return out


WATCHED = (
    "augur_alerts_received_total",
    "augur_alerts_enriched_total",
    "augur_alerts_posted_total",
    "augur_alert_post_failures_total",
    "augur_alert_enrich_failures_total",
    "augur_outbox_pending",
    "augur_alerts_awaiting_enrichment",
    "augur_polls_total",
    "augur_poll_failures_total",
    "augur_poll_overruns_total",
)


@dataclass
class Trickle:
    """One trickle alert, as Prometheus would send it."""

    seq: int
    starts: float
    resolve_at: float
    resolved: bool = False

    def labels(self) -> dict[str, str]:
        return {
            "alertname": "SoakTrickle",
            "seq": str(self.seq),
            "instance": f"app-{self.seq % 4}",
            "severity": "warning",
        }

    def body(self, now: float) -> dict[str, Any]:
        ends = now if self.resolved else now + 4 * REPOST_SECONDS
        kinds = ("memory usage", "disk space", "error rate", "request latency")
        return {
            "labels": self.labels(),
            "annotations": {
                "summary": f"{kinds[self.seq % 4]} on app-{self.seq % 4} is high (soak {self.seq})",
                "description": f"soak alert {self.seq}: the {kinds[self.seq % 4]} of "
                f"app-{self.seq % 4} crossed its threshold.",
            },
            "startsAt": format_time(datetime.fromtimestamp(self.starts, UTC)),
            "endsAt": format_time(datetime.fromtimestamp(ends, UTC)),
            "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=soak",
        }


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) in MB per hour."""
    if len(points) < 2:
        return float("nan")
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    sxy = sum((t - mx) * (v - my) for t, v in points)
    return 3600 * sxy / sxx if sxx else float("nan")


def _read_urls(parent: Path) -> dict[str, Any] | None:
    for path in parent.glob("augur-demo-*/demo-urls.json"):
        with contextlib.suppress(ValueError):
            info: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return info
    return None


async def find_demo(parent: Path, proc: asyncio.subprocess.Process) -> dict[str, Any]:
    """The demo's demo-urls.json, once it has written it (it is then running)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"augur demo exited with {proc.returncode}")
        found = await asyncio.to_thread(_read_urls, parent)
        if found is not None:
            return found
        await asyncio.sleep(1)
    raise TimeoutError("the demo did not start within 300 s")


def source_key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def enriched_key(labels: dict[str, str], source_has_category: bool) -> tuple[tuple[str, str], ...]:
    drop = {"augur_enriched"} | (set() if source_has_category else {"category"})
    return tuple(sorted((k, v) for k, v in labels.items() if k not in drop))


async def soak(args: argparse.Namespace, parent: Path) -> int:
    env = {**os.environ, "TMPDIR": str(parent)}
    demo_out = (parent / "demo.out").open("wb")
    demo = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "exporter.cli", "demo", "--keep"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=demo_out,
        stderr=demo_out,
        env=env,
    )
    try:
        info = await find_demo(parent, demo)
        return await measure(args, info, demo)
    finally:
        if demo.returncode is None:
            demo.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(demo.wait(), 60)
            except TimeoutError:
                demo.kill()
                await demo.wait()
        demo_out.close()


async def measure(
    args: argparse.Namespace, info: dict[str, Any], demo: asyncio.subprocess.Process
) -> int:
    pid = int(info["pids"]["augur"])
    am, augur = info["alertmanager"], info["augur"]  # augur: its /metrics URL
    workdir = Path(info["dir"])
    print(f"demo in {workdir}; augur pid {pid}; load average {os.getloadavg()}", flush=True)
    t0 = time.monotonic()
    end = t0 + 60 * args.minutes
    trickle: list[Trickle] = []
    sources: dict[tuple[tuple[str, str], ...], bool] = {}  # source labels -> has category
    samples: list[dict[str, Any]] = []
    next_sample = next_alert = next_repost = t0
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def post(alerts: list[Trickle]) -> None:
            if not alerts:
                return
            now = time.time()
            body = [a.body(now) for a in alerts]
            async with session.post(am + "/api/v2/alerts", json=body) as resp:
                resp.raise_for_status()

        while time.monotonic() < end:
            if demo.returncode is not None:
                print(f"the demo exited early with {demo.returncode}", flush=True)
                return 1
            now_m, now = time.monotonic(), time.time()
            if now_m >= next_alert:
                alert = Trickle(len(trickle), now, now + args.fire)
                trickle.append(alert)
                await post([alert])
                next_alert += args.every
            due = [a for a in trickle if not a.resolved and now >= a.resolve_at]
            for a in due:
                a.resolved = True
            await post(due)
            if now_m >= next_repost:
                await post([a for a in trickle if not a.resolved])
                next_repost += REPOST_SECONDS
            if now_m >= next_sample:
                rss, hwm = proc_memory(pid)
                values: dict[str, float] = {}
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(augur) as resp:
                        values = metrics(await resp.text(), WATCHED)
                params = {"filter": 'augur_enriched!="true"'}
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(am + "/api/v2/alerts", params=params) as resp:
                        for a in await resp.json():
                            sources[source_key(a["labels"])] = "category" in a["labels"]
                samples.append({"t": now_m - t0, "rss": rss, "hwm": hwm, **values})
                print(
                    f"{(now_m - t0) / 60:5.1f} min  RSS {rss:6.1f} MB  "
                    f"pending {values.get('augur_outbox_pending', float('nan')):.0f}  "
                    f"received {values.get('augur_alerts_received_total', float('nan')):.0f}  "
                    f"enriched {values.get('augur_alerts_enriched_total', float('nan')):.0f}  "
                    f"polls {values.get('augur_polls_total', float('nan')):.0f} "
                    f"(failed {values.get('augur_poll_failures_total', float('nan')):.0f})  "
                    f"load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
                next_sample += SAMPLE_SECONDS
            await asyncio.sleep(1)

        # The last alerts: re-post the firing ones and give the pipeline a minute.
        stop_posting = time.time()
        await post([a for a in trickle if not a.resolved])
        await asyncio.sleep(args.grace)
    enriched = workdir / "enriched.jsonl"
    firing: set[tuple[tuple[str, str], ...]] = set()
    resolved: set[tuple[tuple[str, str], ...]] = set()
    # Per incident: a series the demo disturbs again 24 minutes later fires again with the
    # same labels and a new startsAt, which is a new notification, not a duplicate.
    firing_count: Counter[tuple[tuple[tuple[str, str], ...], str]] = Counter()
    for line in enriched.read_text(encoding="utf-8").splitlines():
        alert = json.loads(line)
        labels = alert["labels"]
        has_category = sources.get(enriched_key(labels, True), False)
        key = enriched_key(labels, has_category)
        if alert["status"] == "firing":
            firing.add(key)
            firing_count[(key, str(alert.get("startsAt")))] += 1
        else:
            resolved.add(key)
    trickle_keys = [source_key(a.labels()) for a in trickle]
    missing_trickle = [k for k in trickle_keys if k not in firing]
    should_resolve = [
        source_key(a.labels()) for a in trickle if a.resolved and a.resolve_at < stop_posting - 60
    ]
    unresolved = [k for k in should_resolve if k not in resolved]
    demo_sources = [k for k in sources if dict(k).get("alertname") != "SoakTrickle"]
    missing_demo = [k for k in demo_sources if k not in firing]

    # Stop the demo (it SIGTERMs augur, bounded at 25 s) so the log is complete.
    demo.send_signal(signal.SIGTERM)
    t_stop = time.monotonic()
    await asyncio.wait_for(demo.wait(), 90)
    stop_seconds = time.monotonic() - t_stop
    levels: Counter[str] = Counter()
    bad: Counter[str] = Counter()
    for line in (workdir / "augur.log").read_text(encoding="utf-8", errors="replace").splitlines():
        found_level = re.search(r"\blevel=(\w+)", line)
        found_event = re.search(r"\bmsg=(\S+)", line)
        name = found_level.group(1) if found_level else "unparsed"
        levels[name] += 1
        if name in ("warning", "error", "critical", "unparsed"):
            bad[f"{name}:{found_event.group(1) if found_event else line[:80]}"] += 1

    rss_curve = [(s["t"], s["rss"]) for s in samples if s["rss"]]
    settled = [(t, v) for t, v in rss_curve if t >= 60 * args.warmup]
    last = samples[-1] if samples else {}
    print("\n== soak summary")
    print(f"  ran {args.minutes:g} min; {len(trickle)} trickle alerts (one every {args.every:g} s)")
    print(
        f"  RSS MB: start {rss_curve[0][1]:.1f}, min {min(v for _, v in rss_curve):.1f}, "
        f"max {max(v for _, v in rss_curve):.1f}, end {rss_curve[-1][1]:.1f}; peak (VmHWM) "
        f"{max(s['hwm'] for s in samples):.1f}"
    )
    print(
        f"  RSS slope: {slope_per_hour(rss_curve):+.1f} MB/h over the whole run, "
        f"{slope_per_hour(settled):+.1f} MB/h after the first {args.warmup:g} min"
    )
    print("  RSS curve (min: MB): " + " ".join(f"{t / 60:.0f}:{v:.0f}" for t, v in rss_curve))
    print(
        "  augur at the end: "
        + ", ".join(f"{k.removeprefix('augur_')} {v:.0f}" for k, v in last.items() if k in WATCHED)
    )
    print(
        f"  delivered: trickle {len(trickle) - len(missing_trickle)}/{len(trickle)} firing, "
        f"{len(should_resolve) - len(unresolved)}/{len(should_resolve)} resolved; the demo's "
        f"own alerts {len(demo_sources) - len(missing_demo)}/{len(demo_sources)}; "
        f"firing notifications beyond one per alert and incident: "
        f"{sum(n - 1 for n in firing_count.values())}"
    )
    for what, keys in (
        ("trickle", missing_trickle),
        ("resolved", unresolved),
        ("demo", missing_demo),
    ):
        for key in keys[:10]:
            print(f"    missing ({what}): {dict(key)}")
    print(f"  demo stopped in {stop_seconds:.1f} s; augur log lines by level: {dict(levels)}")
    for event, n in bad.most_common():
        print(f"    {n} x {event}")
    print(f"  load average at the end: {os.getloadavg()}; files: {workdir}")
    ok = not (missing_trickle or unresolved or missing_demo or bad.get("error", 0))
    ok = ok and not any(k.startswith("error:") for k in bad)
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=10.0, help="a new trickle alert every S")
    parser.add_argument("--fire", type=float, default=300.0, help="each fires this long, s")
    parser.add_argument("--warmup", type=float, default=5.0, help="minutes left out of the slope")
    parser.add_argument("--grace", type=float, default=60.0, help="wait after the last alert, s")
    args = parser.parse_args()
    parent = Path(tempfile.mkdtemp(prefix="augur-soak-"))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores (shared); files in {parent}")
    sys.exit(asyncio.run(soak(args, parent)))


if __name__ == "__main__":
    main()
