"""The demo's causal chain, scored as the demo scores it, names its cause once enriched.

The workload's chain (a disk burst on checkout's host, then checkout's latency, then its
errors) is generated as `augur demo` serves it and scored with the demo's own queries (the
shipped default detector, as tests/test_demo_detection.py does). Those scores are backfilled
into a real Prometheus as augur's `augur_anomaly_score`, and the alerts the demo's rules would
fire are enriched by the real enricher with the demo's enrichment settings: each names the disk
as its likely cause.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import numpy as np
from model_files import MODEL_DIR
from test_demo_detection import query_of, simulate

from exporter.alerts.enrich import AlertEnricher
from exporter.alerts.payloads import WebhookAlert
from exporter.backtest.command import Setup, score_series
from exporter.backtest.inputs import InputSeries
from exporter.config.root import Config
from exporter.demo.config import SCRAPE_INTERVAL, WORKLOAD_TARGET, augur_config
from exporter.demo.procs import Process, Sample
from exporter.demo.workload import ROTATION, Injection
from exporter.prometheus.client import PrometheusClient
from exporter.text import TextModel

CHAIN = next(i for i, e in enumerate(ROTATION) if e.effects)


def _alert(labels: dict[str, str], summary: str, starts: float, expr: str = "") -> WebhookAlert:
    url = f"http://127.0.0.1:9090/graph?g0.expr={quote(expr)}" if expr else ""
    return WebhookAlert(
        status="firing",
        labels=labels,
        annotations={"summary": summary},
        startsAt=datetime.fromtimestamp(starts, UTC),
        generatorURL=url,
    )


async def test_the_demos_chain_names_the_disk_as_the_cause(
    prometheus_factory: Callable[..., Process],
) -> None:
    # A demo started so that the chain's slot is over ten minutes ago (backfill is history).
    start = time.time() // SCRAPE_INTERVAL * SCRAPE_INTERVAL - 600 - (CHAIN + 1) * 180 - 60
    demo = simulate(start, count=CHAIN + 1, normal=0.0)
    at, _ = next((t, p) for t, p in demo.injections if p is ROTATION[CHAIN])
    parts: list[Injection] = list(ROTATION[CHAIN].parts())
    stamps = tuple(f"{t:.0f}" for t in demo.times)
    samples, onset = [], {}
    for part in parts:
        q = query_of(demo, part.selector)
        values = demo.values[part.selector]
        est = score_series(
            Setup(q.name, q, "ensemble"), InputSeries(part.selector, stamps, demo.times, values)
        )
        score = est.score[0]
        labels = {
            "job": "augur",
            "instance": WORKLOAD_TARGET["instance"],
            **dict(part.labels),
            "query": q.name,
            "metric": part.metric,
            "detector": "ensemble",
        }
        live = np.arange(len(demo.times)) >= demo.first_poll
        samples += [
            Sample("augur_anomaly_score", labels, float(t), float(v))
            for t, v, ok in zip(demo.times, score, live, strict=True)
            if ok and np.isfinite(v)
        ]
        # What augur exports beside the score: the value it scored, inside its band.
        for name, row in (
            ("augur_observed_value", values),
            ("augur_expected_value", est.expected[0]),
            ("augur_expected_lower", est.lower[0]),
            ("augur_expected_upper", est.upper[0]),
        ):
            samples += [
                Sample(name, labels, float(t), float(v))
                for t, v, s, ok in zip(demo.times, row, score, live, strict=True)
                if ok and np.isfinite(s)
            ]
        crossed = demo.times[live & (score >= 1) & (demo.times >= at)]
        onset[part.metric] = float(crossed[0])
    disk, latency, errors = (p.metric for p in parts)
    assert onset[disk] < onset[latency] < onset[errors]  # the chain as augur scores it

    prom = prometheus_factory(samples=samples)
    doc = augur_config(prom.url, "127.0.0.1:9", Path("augur.db"), "http://127.0.0.1:7")
    cfg = Config.model_validate(doc).enrich
    checkout = {"instance": WORKLOAD_TARGET["instance"], "service": "checkout"}
    anomaly: dict[str, Any] = {"alertname": "AugurAnomaly", "job": "augur", **checkout}
    alerts = [
        _alert(
            {**anomaly, "query": "http_latency_p99", "metric": latency},
            f"{latency} of service checkout is anomalous",
            onset[latency],
        ),
        _alert(
            {**anomaly, "query": "http_errors", "metric": errors},
            f"{errors} of service checkout is anomalous",
            onset[errors],
        ),
        _alert(
            {"alertname": "HighRequestLatency", "job": "workload", **checkout},
            "p99 latency of checkout is 1.28s, above 800 ms",
            onset[latency] + SCRAPE_INTERVAL,
            f"{latency} > 0.8",
        ),
    ]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        client = PrometheusClient(session, prom.url, retries=1, max_concurrency=8)
        enricher = AlertEnricher(TextModel(MODEL_DIR, threads=1), client, cfg)
        await enricher.start()
        try:
            out = await enricher.enrich(alerts)
        finally:
            await enricher.close()
    for e in out:
        notes = e.annotations
        assert notes.get("augur_cause", "").startswith(f"likely cause: {disk}{{"), notes
        assert "this alert's series" in notes["augur_related"], notes
        # The summary says how far outside its band the series went, and names the cause.
        said = notes["augur_summary"]
        assert "its expected" in said and "(band " in said and "stage" not in said, said
        assert f"; likely cause: {disk} anomalous (score " in said, said
    latency_band, errors_band = (e.annotations["augur_summary"] for e in out[:2])
    assert "× its expected" in latency_band and "× its expected" in errors_band  # both surged
