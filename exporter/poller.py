"""The scoring loop: every poll interval, fetch each query's window, score it, publish it.

One cycle runs all queries concurrently (the Prometheus client bounds the concurrency).
Aligning and scoring are CPU work and run in a bounded executor under a timeout, never on
the event loop. A failing query is counted and logged and the others go on; a cycle that
outlasts the interval delays the next one instead of stacking another on top of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

import numpy as np

from exporter.align import align, select
from exporter.config.durations import format_duration
from exporter.config.queries import QueryConfig
from exporter.detectors import (
    Detector,
    Estimate,
    FloatArray,
    Forecaster,
    Stateful,
    Window,
    apply_filters,
    build,
)
from exporter.detectors.base import parts
from exporter.detectors.seasonal import wrap
from exporter.incidents import IncidentBook, Stages
from exporter.metrics import ScoreBoard, SelfMetrics
from exporter.prometheus import PrometheusClient, PrometheusError
from exporter.state import StateStore, settings_hash

log = logging.getLogger("augur.poller")

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class QueryRunner:
    """One configured query with its detectors (built once, so they can keep state)."""

    config: QueryConfig
    detectors: dict[str, Detector]
    incidents: dict[str, IncidentBook]
    dropped_logged: bool = False

    @classmethod
    def build(cls, config: QueryConfig) -> QueryRunner:
        """Instantiate the query's detectors, wrapped for its seasonality if it has one."""
        season = config.season_seconds()
        return cls(
            config,
            {
                name: wrap(build(name, p), season, config.step)
                for name, p in config.detectors.items()
            },
            {name: IncidentBook(config.recovery, config.escalation) for name in config.detectors},
        )

    def score(self, window: Window) -> dict[str, Estimate]:
        """Run every detector on the window and apply the query's false-positive filters."""
        newest = window.values[:, -1]
        return {
            name: apply_filters(
                detector.score(window),
                newest,
                direction=self.config.direction,
                min_deviation=self.config.min_deviation,
                min_relative_deviation=self.config.min_relative_deviation,
                valid_range=self.config.valid_range,
            )
            for name, detector in self.detectors.items()
        }

    def track(self, window: Window, estimates: dict[str, Estimate]) -> dict[str, Stages]:
        """Advance each detector's incidents by the newest scores."""
        ts = float(window.timestamps[-1])
        return {
            name: self.incidents[name].update(window.keys, est.score, ts)
            for name, est in estimates.items()
        }

    def forecast(self, window: Window) -> FloatArray | None:
        """Forecasts at the query's horizons from its first forecasting detector, if any."""
        if not self.config.horizons:
            return None
        for detector in self.detectors.values():
            if isinstance(detector, Forecaster):
                steps = [max(1, round(h / window.step)) for h in self.config.horizons]
                values: FloatArray = detector.forecast(window, steps)
                if self.config.valid_range is not None:
                    values = np.clip(values, *self.config.valid_range)
                return values
        return None

    def settings(self, name: str) -> str:
        """The hash of what detector `name` depends on, for its snapshots."""
        q = self.config
        return settings_hash(
            [q.detectors[name].model_dump(), q.seasonality, q.step, q.lookback, q.expr]
        )

    def snapshots(self) -> list[tuple[str, Stateful, str]]:
        """What is worth keeping across restarts: (name in the store, object, settings hash).

        The stateful detectors, and every detector's open incidents (under `<detector>/incidents`,
        kept whatever the settings, so a restart does not notify again about an open incident).
        """
        out: list[tuple[str, Stateful, str]] = [
            (name, detector, self.settings(name))
            for name, detector in self.detectors.items()
            if isinstance(detector, Stateful)
        ]
        out += [
            (f"{name}/incidents", book, settings_hash([self.config.expr]))
            for name, book in self.incidents.items()
        ]
        return out


@dataclass
class CycleReport:
    """What one cycle did: per query, the number of series scored or the error."""

    started: float
    duration: float = 0.0
    scored: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


class Poller:
    """Runs the scoring cycles on a fixed interval until stopped."""

    def __init__(
        self,
        queries: Sequence[QueryConfig],
        client: PrometheusClient,
        board: ScoreBoard,
        metrics: SelfMetrics,
        executor: Executor,
        *,
        interval: float,
        cpu_timeout: float,
        clock: Callable[[], float] = time.time,
        store: StateStore | None = None,
        snapshot_interval: float = 300.0,
    ) -> None:
        self.runners = [QueryRunner.build(q) for q in queries]
        self.store = store
        self.snapshot_interval = snapshot_interval
        self._stopping = asyncio.Event()
        self.client = client
        self.board = board
        self.metrics = metrics
        self.executor = executor
        self.interval = interval
        self.cpu_timeout = cpu_timeout
        self.clock = clock
        self.cycles = 0
        self.succeeded_once = asyncio.Event()
        for runner in self.runners:
            metrics.init_query(runner.config.name)
            for name in runner.detectors:
                metrics.init_detector(runner.config.name, name)

    def stop(self) -> None:
        """Ask `run` to return after the cycle in progress (and its snapshot) completes."""
        self._stopping.set()

    async def run(self) -> None:
        """Poll until `stop()`; the first cycle starts at once, after restoring state."""
        loop = asyncio.get_running_loop()
        await self.restore()
        last_snapshot = loop.time()
        while not self._stopping.is_set():
            started = loop.time()
            report = await self.cycle()
            elapsed = loop.time() - started
            if elapsed > self.interval:
                self.metrics.overruns.inc()
                skipped = math.ceil(elapsed / self.interval)
                log.warning(
                    "poll_overrun",
                    extra={
                        "duration_seconds": round(elapsed, 3),
                        "interval_seconds": self.interval,
                        "hint": "raise poll.interval, lower max_series or add workers",
                    },
                )
                delay = skipped * self.interval - elapsed
            else:
                delay = self.interval - elapsed
            log.debug(
                "poll_cycle",
                extra={
                    "duration_seconds": round(elapsed, 3),
                    "scored": sum(report.scored.values()),
                },
            )
            if loop.time() - last_snapshot >= self.snapshot_interval:
                await self.snapshot()
                last_snapshot = loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), max(0.0, delay))
        await self.snapshot()

    async def restore(self) -> int:
        """Load every stateful detector's snapshot, if the store has a compatible one.

        Snapshots of queries and detectors no longer configured are deleted first.
        """
        if self.store is None:
            return 0
        keep = {(runner.config.name, name) for runner, name, _, _ in self._stateful()}
        if forgotten := await self._io(self.store.forget_others, keep):
            log.info("state_forgotten", extra={"snapshots": forgotten})
        restored = 0
        for runner, name, detector, settings in self._stateful():
            state = await self._io(
                self.store.load, runner.config.name, name, detector.state_version, settings
            )
            if state is None:
                continue
            try:
                await self._cpu(detector.load_state, state)
            except Exception as exc:
                log.warning(
                    "state_discarded",
                    extra={"query": runner.config.name, "detector": name, "reason": str(exc)},
                )
                continue
            restored += 1
            log.info("state_restored", extra={"query": runner.config.name, "detector": name})
        return restored

    async def snapshot(self) -> int:
        """Write every stateful detector's state to the store; returns how many were written."""
        if self.store is None:
            return 0
        written = 0
        for runner, name, detector, settings in self._stateful():
            try:
                state = await self._cpu(detector.dump_state)
                await self._io(
                    self.store.save,
                    runner.config.name,
                    name,
                    detector.state_version,
                    settings,
                    state,
                )
            except Exception as exc:  # a snapshot is worth logging, never worth crashing
                log.warning(
                    "state_snapshot_failed",
                    extra={"query": runner.config.name, "detector": name, "error": str(exc)},
                )
                continue
            written += 1
        return written

    def close(self) -> None:
        """Release what the detectors hold outside the process (e.g. a pool of fit workers)."""
        for runner in self.runners:
            for detector in runner.detectors.values():
                for part in parts(detector):
                    close = getattr(part, "close", None)
                    if callable(close):
                        close()

    def _stateful(self) -> list[tuple[QueryRunner, str, Stateful, str]]:
        return [(runner, *item) for runner in self.runners for item in runner.snapshots()]

    async def cycle(self) -> CycleReport:
        """Poll every query once, concurrently; never raises for a failing query."""
        report = CycleReport(started=self.clock())
        t0 = time.perf_counter()
        await asyncio.gather(*(self._poll(r, report) for r in self.runners))
        report.duration = time.perf_counter() - t0
        self.cycles += 1
        if report.scored or not report.errors:
            self.succeeded_once.set()
        return report

    async def _poll(self, runner: QueryRunner, report: CycleReport) -> None:
        q = runner.config
        self.metrics.polls.labels(q.name).inc()
        t0 = time.perf_counter()
        try:
            scored = await self._poll_query(runner)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.board.missed(q.name)
            self.metrics.poll_failures.labels(q.name).inc()
            report.errors[q.name] = _describe(exc)
            level = (
                logging.WARNING
                if isinstance(exc, PrometheusError | TimeoutError)
                else logging.ERROR
            )
            log.log(
                level,
                "poll_failed",
                extra={"query": q.name, "error": _describe(exc)},
                exc_info=level == logging.ERROR,
            )
            return
        finally:
            self.metrics.poll_duration.labels(q.name).observe(time.perf_counter() - t0)
        report.scored[q.name] = scored
        self.metrics.series_scored.labels(q.name).set(scored)
        self.metrics.last_poll.labels(q.name).set(self.clock())

    async def _poll_query(self, runner: QueryRunner) -> int:
        q = runner.config
        end = self.clock()
        start = end - q.lookback
        matrix = await self.client.query_range(q.expr, start, end, q.step)
        window = await self._cpu(align, matrix, start, end, q.step)
        total = len(window.keys)
        if total > q.max_series:
            window = select(window, range(q.max_series))
            self.metrics.series_dropped.labels(q.name).inc(total - q.max_series)
            if not runner.dropped_logged:
                runner.dropped_logged = True
                log.warning(
                    "series_dropped",
                    extra={
                        "query": q.name,
                        "series": total,
                        "max_series": q.max_series,
                        "hint": "narrow the query or raise max_series; logged once",
                    },
                )
        if not window.keys:
            self.board.publish(q.name, (), {})
            return 0
        estimates = await self._cpu(runner.score, window)
        incidents = runner.track(window, estimates)
        for name, stages in incidents.items():
            self.metrics.incidents_opened.labels(q.name, name).inc(stages.opened)
            self.metrics.incidents_escalated.labels(q.name, name).inc(stages.escalated)
        scored = self.board.publish(q.name, window.keys, estimates, q.labels, incidents)
        forecasts = await self._cpu(runner.forecast, window)
        if forecasts is not None:
            self.board.publish_forecasts(
                q.name, window.keys, [format_duration(h) for h in q.horizons], forecasts, q.labels
            )
        return scored

    async def _cpu(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` in the bounded executor under the CPU timeout."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))
        return await asyncio.wait_for(future, self.cpu_timeout)

    async def _io(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a short blocking call (SQLite) in the executor."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "scoring took longer than poll.cpu_timeout"
    return str(exc) or type(exc).__name__
