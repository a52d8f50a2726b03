"""Replacing the poller's queries on a reload: keep what did not change, restart what did.

A query whose configuration is equal to the running one keeps its runner (detectors with their
fitted state, open incidents) and its feed (the in-memory history), so a reload costs it
nothing. A changed query gets a new runner and an empty feed, as a new one does: its first
cycle fetches its whole look-back. A removed or changed query's rows leave the score board at
once, and a removed query's own series (`augur_polls_total{query}`, …) leave /metrics too.

`swap` must run while the poller holds no cycle: under `poller.turn`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client.metrics import MetricWrapperBase

from exporter.config.queries import QueryConfig
from exporter.detectors.base import parts
from exporter.prometheus.client import PrometheusClient
from exporter.scoring.board import ScoreBoard
from exporter.scoring.feed import Feed, Owns
from exporter.scoring.history import History
from exporter.scoring.runner import QueryRunner
from exporter.self_metrics import SelfMetrics

log = logging.getLogger("augur.reload")


class Poller(Protocol):
    """What `swap` changes of the scoring loop (exporter/scoring/poller.py)."""

    runners: list[QueryRunner]
    feeds: dict[str, Feed]
    client: PrometheusClient
    owns: Owns | None
    board: ScoreBoard
    metrics: SelfMetrics


@dataclass
class QueryChanges:
    """What a swap did, by query name."""

    kept: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """`kept 2, changed 1 (disk), added 0, removed 1 (up)`."""
        out = []
        for what in ("kept", "changed", "added", "removed"):
            names: list[str] = getattr(self, what)
            shown = f" ({', '.join(names)})" if names and what != "kept" else ""
            out.append(f"{what} {len(names)}{shown}")
        return ", ".join(out)


def release(runner: QueryRunner) -> None:
    """Release what the runner's detectors hold outside the process (e.g. queued ARIMA fits)."""
    for detector in runner.detectors.values():
        for part in parts(detector):
            close = getattr(part, "close", None)
            if callable(close):
                close()


def swap(poller: Poller, queries: Sequence[QueryConfig]) -> QueryChanges:
    """Make `queries` the poller's queries; call it holding `poller.turn`."""
    old = {runner.config.name: runner for runner in poller.runners}
    changes = QueryChanges()
    runners: list[QueryRunner] = []
    feeds: dict[str, Feed] = {}
    for q in queries:
        running = old.pop(q.name, None)
        if running is not None and running.config == q:
            runners.append(running)
            feeds[q.name] = poller.feeds[q.name]
            changes.kept.append(q.name)
            continue
        if running is not None:
            changes.changed.append(q.name)
            _retire(poller, running, keep=set(q.detectors))
        else:
            changes.added.append(q.name)
        runner = QueryRunner.build(q)
        runners.append(runner)
        feeds[q.name] = Feed(poller.client, q, History.of(q), poller.owns)
        poller.metrics.init_query(q.name)
        for name in runner.detectors:
            poller.metrics.init_detector(q.name, name)
    for name, running in old.items():
        changes.removed.append(name)
        _retire(poller, running, keep=None)
    poller.runners, poller.feeds = runners, feeds
    return changes


def _retire(poller: Poller, runner: QueryRunner, *, keep: set[str] | None) -> None:
    """Forget a runner that a reload removed (`keep` None) or replaced: rows, fits, series.

    A removed query loses every series of its name; a changed one only those of the detectors
    it no longer has (`keep` are those it still has: their counters go on under the name).
    """
    name = runner.config.name
    if runner.in_flight is not None:
        # A call that outlasted its timeout may still run on these detectors in its thread:
        # they are released once it returns (at once if it has).
        runner.in_flight.add_done_callback(lambda _: release(runner))
    else:
        release(runner)
    poller.board.forget(name)
    metrics = poller.metrics
    if keep is None:
        _remove_series(metrics, {"query": name})
        return
    for detector in runner.detectors:
        if detector not in keep:
            _remove_series(metrics, {"query": name, "detector": detector})


def _remove_series(metrics: SelfMetrics, labels: dict[str, str]) -> None:
    """Remove the children matching `labels` from every labelled metric of `metrics`."""
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            # A metric without one of these label names is not about queries: left alone.
            with contextlib.suppress(ValueError):
                metric.remove_by_labels(labels)
