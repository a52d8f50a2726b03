"""Where an enriched alert's time goes: a pyinstrument profile of the enricher on one thread.

The loop's AlertEnricher on the shipped model and a real Prometheus (bench_webhook.py's score
history), with an executor that runs the model's calls inline, so that one profile shows the
webhook body's parsing, entity extraction, the tokenizer, the encoder, the head, the runbook
match and the Prometheus look-ups side by side. The alerts are bench_webhook.py's *distinct*
load (no text or template repeats) unless `--texts storm`; `--cache-size` as model.cache_size.

    .venv/bin/python benchmarks/profile_enrich.py [--alerts 320] [--texts distinct] [--html F]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from bench_webhook import (  # the sibling benchmark, run from this folder
    group,
    load_profiler,
    scores_history,
)

from exporter.alerts.enrich import AlertEnricher
from exporter.alerts.payloads import WebhookPayload
from exporter.config.alerts import ModelConfig
from exporter.config.prometheus import PrometheusConfig
from exporter.demo.procs import start_prometheus
from exporter.prometheus.client import PrometheusClient, make_session
from exporter.text.reload import ReloadableModel

P = ParamSpec("P")
T = TypeVar("T")


class InlineExecutor(Executor):
    """Runs each call at once on the caller's thread: the profiler sees the model's work."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Call `fn` now; its result (or exception) in a finished Future."""
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


async def profile(args: argparse.Namespace, prom_url: str) -> Any:
    bodies = [json.dumps(group(seq, 8, args.texts)) for seq in range(args.alerts // 8)]
    model = ReloadableModel(ModelConfig().dir, cache_size=args.cache_size)
    async with make_session(PrometheusConfig(url=prom_url)) as session:
        client = PrometheusClient.from_config(PrometheusConfig(url=prom_url, retries=1), session)
        enricher = AlertEnricher(model, client, executor=InlineExecutor())
        await enricher.start()
        await enricher.enrich(WebhookPayload.model_validate_json(bodies[0]).alerts[:2])  # warm
        profiler = load_profiler(async_mode="enabled", interval=0.0005)
        started = time.perf_counter()
        profiler.start()
        count = 0
        for body in bodies[1:]:
            alerts = WebhookPayload.model_validate_json(body).alerts
            for start in range(0, len(alerts), 16):
                await enricher.enrich(alerts[start : start + 16])
            count += len(alerts)
        profiler.stop()
        seconds = time.perf_counter() - started
        await enricher.close()
    print(
        f"{count} alerts ({args.texts}, model.cache_size {args.cache_size}) in {seconds:.2f} s "
        f"on one thread: {1000 * seconds / count:.2f} ms per alert; load {os.getloadavg()}"
    )
    print(profiler.output_text(unicode=False, color=False, show_all=False, short_mode=False))
    return profiler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=320)
    parser.add_argument("--texts", choices=("distinct", "storm"), default="distinct")
    parser.add_argument("--cache-size", type=int, default=0, help="model.cache_size")
    parser.add_argument("--html", help="also write pyinstrument's HTML report here")
    args: Any = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        prom = start_prometheus(Path(tmp) / "prom", samples=scores_history(time.time()))
        try:
            profiler = asyncio.run(profile(args, prom.url))
        finally:
            prom.stop()
    if args.html:
        Path(args.html).write_text(profiler.output_html(), encoding="utf-8")


if __name__ == "__main__":
    main()
