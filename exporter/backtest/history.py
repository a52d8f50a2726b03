"""History for a backtest pulled from Prometheus through augur's own client and settings.

The pull uses the same `PrometheusConfig` as `augur run`: the settings file's `prometheus`
section and the `AUGUR_PROMETHEUS_*` environment (bearer token or basic auth, CA bundle,
`insecure_skip_verify`, timeout, retries), with `--prometheus` as the URL. The client splits
ranges longer than Prometheus allows on the step grid, so a long history needs nothing here.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from exporter.backtest.inputs import BacktestError, InputSeries, parse_time
from exporter.config.base import located
from exporter.config.durations import parse_duration
from exporter.config.load import env_overrides
from exporter.config.prometheus import PrometheusConfig
from exporter.config.queries import QueryConfig
from exporter.config.secrets import secrets_context
from exporter.prometheus.client import PrometheusClient, PrometheusError, make_session
from exporter.scoring.align import align

_REFUSED = (400, 422)
"""Statuses with which Prometheus refuses a query itself (bad PromQL, bad range)."""


def prometheus_config(
    url: str, section: object, environ: Mapping[str, str] | None = None
) -> PrometheusConfig:
    """augur's Prometheus settings (`section` from the file, then `AUGUR_PROMETHEUS_*`) at `url`."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = dict(section) if isinstance(section, Mapping) else {}
    for path, value in env_overrides(environ).items():
        if path[0] == "prometheus":
            node = data
            for key in path[1:-1]:
                child = node.get(key)
                node[key] = child = dict(child) if isinstance(child, Mapping) else {}
                node = child
            node[path[-1]] = value
    data["url"] = url
    try:
        return PrometheusConfig.model_validate(data, context=secrets_context(environ))
    except ValidationError as exc:
        problems = located(exc.errors(), "prometheus")
        raise BacktestError("invalid configuration:\n  " + "\n  ".join(problems)) from None


def fetch_prometheus(
    cfg: PrometheusConfig,
    expr: str | None,
    start: str | None,
    end: str | None,
    step: str | None,
    queries: Sequence[QueryConfig],
) -> list[InputSeries]:
    """Pull `expr` (or each query's own expression) over [start, end] at `step`."""
    now = time.time()
    t_end = _when(end, now, "--end") if end else now
    t_start = _when(start, now, "--start") if start else t_end - 86400.0
    if t_start >= t_end:
        raise BacktestError("--start must be before --end")
    wanted = (
        [(None, expr, queries[0].step)] if expr else [(q.name, q.expr, q.step) for q in queries]
    )
    pulls = []
    for query, promql, default_step in wanted:
        if not promql:
            raise BacktestError(f"query {query!r} has no expression: give --query PROMQL")
        pulls.append((query, promql, _duration(step, "--step") if step else default_step))
    start_s, end_s = float(math.floor(t_start)), float(math.floor(t_end))
    answers = asyncio.run(_pull(cfg, [(p, s) for _, p, s in pulls], start_s, end_s))
    out: list[InputSeries] = []
    for (query, _, seconds), answer in zip(pulls, answers, strict=True):
        window = align(answer, start_s, end_s, seconds)
        stamps = tuple(
            datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
            for t in window.timestamps
        )
        for key, row in zip(window.keys, window.values, strict=True):
            name = ",".join(f"{k}={v}" for k, v in key).replace("/", "_") or "series"
            folder = f"{query}/" if query else ""
            out.append(InputSeries(f"{folder}{name}.csv", stamps, window.timestamps, row, query))
    if not out:
        raise BacktestError("the query returned no series in that range")
    return out


async def _pull(
    cfg: PrometheusConfig, wanted: Sequence[tuple[str, float]], start: float, end: float
) -> list[list[dict[str, Any]]]:
    """Each (expression, step) as a matrix, one after the other, through one session."""
    out = []
    async with make_session(cfg) as session:
        client = PrometheusClient.from_config(cfg, session)
        for promql, step in wanted:
            try:
                out.append(await client.query_range(promql, start, end, step))
            except PrometheusError as exc:
                if exc.status in _REFUSED:
                    raise BacktestError(f"Prometheus refused the query {promql!r}: {exc}") from None
                if exc.status is None:
                    raise RuntimeError(f"cannot reach Prometheus at {cfg.url}: {exc}") from None
                raise RuntimeError(f"query to {cfg.url} failed: {exc}") from None
    return out


def _when(text: str, now: float, flag: str) -> float:
    """`now`, `now-<duration>`, unix seconds or RFC 3339."""
    text = text.strip()
    if text.startswith("now-"):
        return now - _duration(text[4:], flag)
    return now if text == "now" else parse_time(text, flag)


def _duration(text: str, flag: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise BacktestError(f"{flag}: {exc}") from None
    if seconds <= 0:
        raise BacktestError(f"{flag}: must be positive, got {text!r}")
    return seconds
