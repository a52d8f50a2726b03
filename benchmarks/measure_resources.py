"""Measure augur's memory and CPU for sizing the pod's requests and limits.

Backfills SERIES series of history into a real Prometheus (promtool), runs `augur run` against
it as a separate process with two queries of SERIES/2 series each (zscore + ewma), scrapes its
/metrics every 15 s as Prometheus would, and reads the process's peak RSS (VmHWM), its RSS and
its CPU time from /proc. deploy/k8s/README.md records the figures this printed.

    .venv/bin/python benchmarks/measure_resources.py --series 2000 --lookback 3h --step 15s \
        --interval 15s --duration 120
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from exporter.config.durations import parse_duration
from exporter.demo.procs import Sample, free_port, start_prometheus

SCRAPE_EVERY = 15.0


def history(n_series: int, lookback: float, step: float, end: float) -> list[Sample]:
    """A daily-ish sine plus noise for every series, one point per step, up to `end`."""
    n_points = int(lookback / step) + 40  # a little more than the look-back, for the whole run
    ts = end - step * np.arange(n_points)[::-1]
    rng = np.random.default_rng(1)
    values = 100 + 10 * np.sin(ts / 3600)[None, :] + rng.normal(0, 2, (n_series, n_points))
    out: list[Sample] = []
    for i in range(n_series):
        labels = {"instance": f"host-{i:05d}:9100", "job": "node", "shard": "ab"[i % 2]}
        out.extend(
            Sample("bench_metric", labels, float(t), float(v))
            for t, v in zip(ts, values[i], strict=True)
        )
    return out


def config(prom_url: str, args: argparse.Namespace, state: Path) -> str:
    """augur's configuration: one query per shard, each SERIES/2 series."""
    queries = "".join(
        f"""  - name: shard_{shard}
    expr: bench_metric{{shard="{shard}"}}
    lookback: {args.lookback}
    step: {args.step}
    detectors: [zscore, ewma]
    max_series: {args.series}
"""
        for shard in "ab"
    )
    return (
        f"prometheus:\n  url: {prom_url}\npoll:\n  interval: {args.interval}\n  workers: 2\n"
        f"state:\n  path: {state}\nqueries:\n{queries}"
    )


class Probe:
    """Reads a process's CPU time and memory from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.tick = os.sysconf("SC_CLK_TCK")

    def cpu_seconds(self) -> float:
        """User + system CPU time so far."""
        stat = Path(f"/proc/{self.pid}/stat").read_text(encoding="ascii")
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.tick

    def kib(self, key: str) -> int:
        """A VmXXX line of /proc/PID/status, in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: bytes = resp.read()
        return body


def measure(args: argparse.Namespace, work: Path) -> None:
    step = parse_duration(args.step)
    end = float(int(time.time() / step) * step) + 300  # history reaches past the whole run
    t0 = time.perf_counter()
    samples = history(args.series, parse_duration(args.lookback), step, end)
    prom = start_prometheus(work / "prometheus", samples=samples)
    print(f"Prometheus ready in {time.perf_counter() - t0:.0f} s ({len(samples):,} samples)")
    del samples
    port = free_port()
    cfg = work / "augur.yaml"
    cfg.write_text(config(prom.url, args, work / "augur.db"), encoding="utf-8")
    argv = [sys.executable, "-m", "exporter.cli", "run", "--config", str(cfg)]
    argv += ["--web.listen-address", f"127.0.0.1:{port}"]
    base = f"http://127.0.0.1:{port}"
    with (work / "augur.log").open("wb") as log_file:
        proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)
    probe = Probe(proc.pid)
    started = prev_t = time.monotonic()
    prev_cpu = peak_cpu = 0.0
    last_scrape = -SCRAPE_EVERY
    scrape_bytes = 0
    rss: list[int] = []
    try:
        while time.monotonic() - started < args.duration:
            time.sleep(1)
            now = time.monotonic()
            if proc.poll() is not None:
                raise SystemExit(f"augur exited with {proc.returncode}: see {work}/augur.log")
            if now - last_scrape >= SCRAPE_EVERY:
                last_scrape = now
                try:
                    scrape_bytes = len(fetch(base + "/metrics"))
                except OSError as exc:
                    print(f"scrape failed: {exc}")
            cpu = probe.cpu_seconds()
            peak_cpu = max(peak_cpu, (cpu - prev_cpu) / (now - prev_t))
            prev_cpu, prev_t = cpu, now
            rss.append(probe.kib("VmRSS"))
        cpu, elapsed, hwm = probe.cpu_seconds(), time.monotonic() - started, probe.kib("VmHWM")
        exposition = fetch(base + "/metrics").decode()
    finally:
        proc.terminate()
        proc.wait(30)
        prom.stop()
    print(" ".join(argv[1:]))
    print(
        f"elapsed {elapsed:.0f} s, CPU {cpu:.1f} s: {cpu / elapsed:.3f} cores on average, "
        f"{peak_cpu:.2f} in the busiest second"
    )
    print(f"VmHWM {hwm / 1024:.0f} MiB, VmRSS median {sorted(rss)[len(rss) // 2] / 1024:.0f} MiB")
    print(f"/metrics {scrape_bytes / 1e6:.2f} MB")
    for line in exposition.splitlines():
        if line.startswith(
            (
                "augur_series_scored",
                "augur_polls_total",
                "augur_poll_failures_total",
                "augur_poll_overruns_total",
                "augur_poll_duration_seconds_sum",
            )
        ):
            print("  " + line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--lookback", default="3h")
    parser.add_argument("--step", default="15s")
    parser.add_argument("--interval", default="15s", help="augur's poll.interval")
    parser.add_argument("--duration", type=float, default=120, help="seconds augur runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="augur-measure-") as tmp:
        measure(args, Path(tmp))


if __name__ == "__main__":
    main()
