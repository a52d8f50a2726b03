"""`augur report` over a day of N scored series in a real Prometheus: seconds per stage.

N series (default 1,000) of augur's own output, backfilled with promtool on the report's
2-minute grid: `augur_anomaly_score` and the four band series (observed, expected, lower,
upper) for every series, ten of them anomalous for an hour with an incident. Then, in the same
run and against the same Prometheus, each repeat times:

- the report's own stages (`augur report`'s `build`): `queries` (ranking, incidents, bands of
  the top series, alert counts, forecasts), `plots` (matplotlib, Agg) and `render` (HTML);
- `raw`: one `query_range` of `augur_anomaly_score` over the day (the baseline: the least any
  report must read), after the report, with one untimed read before the first repeat;

and prints the median of each, the report's total, and its ratio to `raw`. Target: total
<= 20 s.

    .venv/bin/python benchmarks/bench_report.py [--series 1000] [--top 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp

from exporter.assistant.report import build
from exporter.demo.procs import Sample, start_prometheus
from exporter.prometheus.client import PrometheusClient

STEP = 120
DAY = 86400
ANOMALOUS = 10


def samples(count: int, now: int) -> Iterator[Sample]:
    """A day of `count` series; every (count // ANOMALOUS)-th is anomalous for an hour."""
    every = max(1, count // ANOMALOUS)
    for i in range(count):
        labels = {
            "query": f"q{i % 20}",
            "metric": "bench_value",
            "instance": f"host-{i}:9100",
            "detector": "zscore",
        }
        start = now - DAY + (i * 997 % 20) * 3600 if i % every == 0 else None
        for t in range(now - DAY, now + 1, STEP):
            hot = start is not None and start <= t < start + 3600
            base = 10.0 + i % 7
            yield Sample("augur_anomaly_score", labels, t, 3.0 + i / count if hot else 0.4)
            yield Sample("augur_observed_value", labels, t, base * (2 if hot else 1))
            yield Sample("augur_expected_value", labels, t, base)
            yield Sample("augur_expected_lower", labels, t, base * 0.8)
            yield Sample("augur_expected_upper", labels, t, base * 1.2)
            if start is not None:
                yield Sample("augur_anomaly_incident", labels, t, 1 if hot else 0)


async def measure(url: str, now: int, top: int, repeat: int) -> dict[str, list[float]]:
    """Seconds of each stage, per repeat."""
    out: dict[str, list[float]] = {"raw": [], "queries": [], "plots": [], "render": []}
    async with aiohttp.ClientSession() as session:
        client = PrometheusClient(session, url)
        # One untimed read first, so neither side pays for Prometheus's cold caches.
        await client.query_range("augur_anomaly_score", now - DAY, now, STEP)
        for _ in range(repeat):
            report = await build(client, DAY, now=now, top=top)
            assert len(report.data.series) == min(top, ANOMALOUS), report.data.problems
            for stage, seconds in report.timings.items():
                out[stage].append(seconds)
            clock = time.perf_counter()
            await client.query_range("augur_anomaly_score", now - DAY, now, STEP)
            out["raw"].append(time.perf_counter() - clock)
    return out


def main() -> None:
    """Backfill, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    now = int(time.time()) // STEP * STEP
    with tempfile.TemporaryDirectory(prefix="augur-bench-report-") as work:
        clock = time.perf_counter()
        prom = start_prometheus(
            Path(work) / "prometheus", samples=samples(args.series, now), timeout=600
        )
        print(f"backfill and start: {time.perf_counter() - clock:.1f} s")
        try:
            times = asyncio.run(measure(prom.url, now, args.top, args.repeat))
        finally:
            prom.stop()
    median = {stage: statistics.median(values) for stage, values in times.items()}
    total = median["queries"] + median["plots"] + median["render"]
    print(
        f"{args.series} series x {DAY // STEP + 1} points, top {args.top}, "
        f"median of {args.repeat}; nproc {os.cpu_count()}, load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    for stage, seconds in median.items():
        print(f"  {stage:8} {seconds:7.3f} s")
    print(
        f"  total    {total:7.3f} s (target <= 20 s); {total / median['raw']:.1f}x raw query_range"
    )


if __name__ == "__main__":
    main()
