"""Replacing the poller's queries on a reload: keep what did not change, restart what did.

A query whose configuration is equal to the running one keeps its runner (detectors with their
fitted state, open incidents) and its feed (the in-memory history), so a reload costs it
nothing. A changed query gets a new runner and an empty feed, as a new one does: its first
cycle fetches its whole look-back. A removed or changed query's rows leave the score board at
once, and a removed query's own series (`augur_polls_total{query}`, …) leave /metrics too.

`plan` builds the new set beside the running one (it may fail, changing nothing); its
`commit` must run while the poller holds no cycle: under `poller.turn`.
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


@dataclass
class Swap:
    """The queries of a reload, built and waiting to replace the running ones (`plan`)."""

    changes: QueryChanges
    runners: list[QueryRunner]
    feeds: dict[str, Feed]
    built: list[QueryRunner]
    retiring: list[tuple[QueryRunner, set[str] | None]]

    def commit(self, poller: Poller) -> QueryChanges:
        """Retire the replaced and removed queries and switch to the new set; cannot fail
        halfway. Call it holding `poller.turn`."""
        for running, keep in self.retiring:
            _retire(poller, running, keep=keep)
        for runner in self.built:
            poller.metrics.init_query(runner.config.name)
            for name in runner.detectors:
                poller.metrics.init_detector(runner.config.name, name)
        poller.runners, poller.feeds = self.runners, self.feeds
        return self.changes

    def abandon(self) -> None:
        """Release what was built for a reload that does not go ahead."""
        for runner in self.built:
            release(runner)


def plan(poller: Poller, queries: Sequence[QueryConfig]) -> Swap:
    """Build what `queries` need beside the running queries, changing nothing of them: if a
    detector or a history cannot be built, the exception says why and the poller runs on."""
    old = {runner.config.name: runner for runner in poller.runners}
    out = Swap(QueryChanges(), [], {}, [], [])
    try:
        for q in queries:
            running = old.pop(q.name, None)
            if running is not None and running.config == q:
                out.runners.append(running)
                out.feeds[q.name] = poller.feeds[q.name]
                out.changes.kept.append(q.name)
                continue
            if running is not None:
                out.changes.changed.append(q.name)
                out.retiring.append((running, set(q.detectors)))
            else:
                out.changes.added.append(q.name)
            runner = QueryRunner.build(q)
            out.built.append(runner)
            out.runners.append(runner)
            out.feeds[q.name] = Feed(poller.client, q, History.of(q), poller.owns)
    except BaseException:
        out.abandon()  # nothing of the new set stays behind (queued fits, workers)
        raise
    for name, running in old.items():
        out.changes.removed.append(name)
        out.retiring.append((running, None))
    return out


def swap(poller: Poller, queries: Sequence[QueryConfig]) -> QueryChanges:
    """`plan` then `commit`: make `queries` the poller's queries. Call it holding `poller.turn`."""
    return plan(poller, queries).commit(poller)


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
