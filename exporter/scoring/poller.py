"""The scoring loop: every poll interval, bring each query's window up to date, score it,
publish it. The window is the query's in-memory history (`feed.py` fetches only what is new
into it; `history.py` holds it), snapshotted with the detectors' state.

One cycle runs all queries concurrently (the Prometheus client bounds the concurrency).
Aligning and scoring are CPU work and run in a bounded executor under a timeout, never on
the event loop. A call that times out runs on in its thread, so a query has one CPU call in
flight at most: until it returns, the query's cycles are skipped as failures and nothing else
enters its (not thread-safe) detectors. A failing query is counted and logged and the others
go on; a cycle that outlasts the interval delays the next one instead of stacking on top of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from exporter.config.durations import format_duration
from exporter.config.queries import QueryConfig
from exporter.detectors import Stateful
from exporter.prometheus.client import PrometheusClient, PrometheusError
from exporter.prometheus.health import UpstreamHealth
from exporter.scoring.board import ScoreBoard
from exporter.scoring.feed import Feed, Owns, Run
from exporter.scoring.history import History
from exporter.scoring.queryset import release
from exporter.scoring.runner import QueryRunner
from exporter.scoring.state import StateStore
from exporter.self_metrics import SelfMetrics

log = logging.getLogger("augur.poller")

P = ParamSpec("P")
T = TypeVar("T")


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
        owns: Owns | None = None,
    ) -> None:
        self.runners = [QueryRunner.build(q) for q in queries]
        # Series whose labels `owns` rejects (another shard's) are never decoded nor kept.
        self.feeds = {
            r.config.name: Feed(client, r.config, History.of(r.config), owns) for r in self.runners
        }
        self.owns = owns
        self.store = store
        self.snapshot_interval = snapshot_interval
        self.turn = asyncio.Lock()  # held by each cycle: a reload swaps queries between them
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
        self.health = UpstreamHealth("prometheus", metrics, max_delay=interval, clock=clock)
        for runner in self.runners:
            metrics.init_query(runner.config.name)
            for name in runner.detectors:
                metrics.init_detector(runner.config.name, name)

    def stop(self) -> None:
        """Ask `run` to return after the cycle in progress (and its snapshot) completes."""
        self._stopping.set()

    async def run(self) -> None:
        """Poll until `stop()`; the first cycle starts at once, after restoring state.

        While Prometheus is down no queries are sent: one cheap probe goes out on a backoff
        (1 s doubling, capped at the interval), each interval's missed cycle is counted as a
        failure of every query, and the full cycle runs as soon as a probe is answered.
        """
        loop = asyncio.get_running_loop()
        async with self.turn:
            await self.restore()
        last_snapshot = next_tick = loop.time()
        while not self._stopping.is_set():
            async with self.turn:
                if self.health.up is False and not await self._probe():
                    next_tick = self._skip_cycle(loop.time(), next_tick)
                    delay = self.health.retry_delay()
                else:
                    started = loop.time()
                    report = await self.cycle()
                    elapsed = loop.time() - started
                    next_tick = started + self._period(elapsed)
                    log.debug(
                        "poll_cycle",
                        extra={
                            "duration_seconds": round(elapsed, 3),
                            "scored": sum(report.scored.values()),
                        },
                    )
                    delay = next_tick - loop.time()
                    if self.health.up is False:
                        delay = min(delay, self.health.retry_delay())
                if loop.time() - last_snapshot >= self.snapshot_interval:
                    await self.snapshot()
                    last_snapshot = loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), max(0.0, delay))
        async with self.turn:
            await self.snapshot()

    def _period(self, elapsed: float) -> float:
        """Seconds from a cycle's start to the next: the interval, or whole intervals past an
        overrun (counted and logged)."""
        if elapsed <= self.interval:
            return self.interval
        self.metrics.overruns.inc()
        log.warning(
            "poll_overrun",
            extra={
                "duration_seconds": round(elapsed, 3),
                "interval_seconds": self.interval,
                "hint": "raise poll.interval, lower max_series or add workers",
            },
        )
        return math.ceil(elapsed / self.interval) * self.interval

    async def _probe(self) -> bool:
        """One cheap instant query to a Prometheus found down; whether it answered."""
        try:
            await self.client.query("1")
        except PrometheusError as exc:
            self.health.failed(exc)
        else:
            self.health.answered()
        return self.health.settle() is True

    def _skip_cycle(self, now: float, next_tick: float) -> float:
        """A due cycle not run (Prometheus is down): every query's poll failed; the next tick."""
        if now < next_tick:
            return next_tick
        for runner in self.runners:
            name = runner.config.name
            self.metrics.polls.labels(name).inc()
            self.metrics.poll_failures.labels(name).inc()
            self.board.missed(name)
        self.cycles += 1
        return next_tick + (math.floor((now - next_tick) / self.interval) + 1) * self.interval

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
                await self._cpu(runner, detector.load_state, state)
            except Exception as exc:
                log.warning(
                    "state_discarded",
                    extra={"query": runner.config.name, "detector": name, "reason": str(exc)},
                )
                continue
            restored += 1
            log.info("state_restored", extra={"query": runner.config.name, "detector": name})
        for runner in self.runners:
            feed = self.feeds[runner.config.name]
            snap = await self._io(self.store.load_history, runner.config.name, feed.settings())
            if snap is not None and await feed.restore(snap, self.clock(), self._run_for(runner)):
                restored += 1
                log.info("history_restored", extra={"query": feed.query.name, "tick": snap.tick})
        return restored

    async def snapshot(self) -> int:
        """Write every stateful detector's state to the store; returns how many were written."""
        if self.store is None:
            return 0
        written = 0
        for runner, name, detector, settings in self._stateful():
            try:
                # A scoring call that outlasted its timeout gets that long again to finish.
                await self._settle(runner, self.cpu_timeout)
                state = await self._cpu(runner, detector.dump_state)
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
        for runner in self.runners:
            written += await self._save_history(runner, self.store)
        return written

    async def _save_history(self, runner: QueryRunner, store: StateStore) -> int:
        """Snapshot the query's history (float32 bytes); 1 if written."""
        feed = self.feeds[runner.config.name]
        try:
            await self._settle(runner, self.cpu_timeout)
            t0 = time.perf_counter()
            snap = await self._cpu(runner, feed.history.dump) if feed.complete else None
            if snap is None:
                return 0
            size = await self._io(store.save_history, feed.query.name, feed.settings(), snap)
        except Exception as exc:  # as for the detectors': worth a line, never a crash
            log.warning(
                "history_snapshot_failed", extra={"query": feed.query.name, "error": str(exc)}
            )
            return 0
        log.debug(
            "history_saved",
            extra={"query": feed.query.name, "bytes": size, "seconds": time.perf_counter() - t0},
        )
        return 1

    def close(self) -> None:
        """Release what the detectors hold outside the process (e.g. a pool of fit workers)."""
        for runner in self.runners:
            release(runner)

    def _stateful(self) -> list[tuple[QueryRunner, str, Stateful, str]]:
        return [(runner, *item) for runner in self.runners for item in runner.snapshots()]

    async def cycle(self) -> CycleReport:
        """Poll every query once, concurrently; never raises for a failing query."""
        report = CycleReport(started=self.clock())
        t0 = time.perf_counter()
        await asyncio.gather(*(self._poll(r, report) for r in self.runners))
        self.health.settle()
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
            self._log_failure(runner, exc)
            return
        finally:
            self.metrics.poll_duration.labels(q.name).observe(time.perf_counter() - t0)
        if runner.failing:
            log.info("poll_recovered", extra={"query": q.name, "failed_polls": runner.failing})
            runner.failing = 0
        report.scored[q.name] = scored
        runner.status.publish(self.metrics, scored, self.clock(), self.interval)

    def _log_failure(self, runner: QueryRunner, exc: Exception) -> None:
        """One line per failure streak of a query; none when Prometheus itself is down (its
        health says that once for every query)."""
        runner.failing += 1
        expected = isinstance(exc, PrometheusError | TimeoutError | Busy)
        level = logging.WARNING if expected else logging.ERROR
        if runner.failing > 1 or (isinstance(exc, PrometheusError) and exc.upstream_fault):
            level = logging.DEBUG
        log.log(
            level,
            "poll_failed",
            extra={"query": runner.config.name, "error": _describe(exc)},
            exc_info=not expected and level == logging.ERROR,
        )

    async def _poll_query(self, runner: QueryRunner) -> int:
        q = runner.config
        await self._settle(runner, 0.0)  # a call left from an earlier cycle: skip this one
        feed = self.feeds[q.name]
        try:
            await feed.update(self.clock(), self._run_for(runner))
        except PrometheusError as exc:
            self.health.failed(exc)
            raise
        self.health.answered()
        self.metrics.history_bytes.labels(q.name).set(feed.history.nbytes)
        window = await self._cpu(runner, feed.history.window)
        if feed.dropped:
            self.metrics.series_dropped.labels(q.name).inc(feed.dropped)
            feed.warn_dropped(len(window.keys))
        if not window.keys:
            self.board.publish(q.name, (), {})
            return 0
        estimates = await self._cpu(runner, runner.score, window)
        incidents = runner.track(window, estimates)
        for name, stages in incidents.items():
            self.metrics.incidents_opened.labels(q.name, name).inc(stages.opened)
            self.metrics.incidents_escalated.labels(q.name, name).inc(stages.escalated)
        scored = self.board.publish(
            q.name, window.keys, estimates, q.labels, incidents, window.values[:, -1]
        )
        forecasts = await self._cpu(runner, runner.forecast, window)
        if forecasts is not None:
            self.board.publish_forecasts(
                q.name, window.keys, [format_duration(h) for h in q.horizons], forecasts, q.labels
            )
        return scored

    async def _settle(self, runner: QueryRunner, wait: float) -> None:
        """Give the query's CPU call in flight `wait` seconds to end; raise Busy if it runs on."""
        future = runner.in_flight
        if future is None or future.done():
            return
        if wait > 0:
            waiter = asyncio.wrap_future(future)
            await asyncio.wait([waiter], timeout=wait)
            if waiter.done():
                if not waiter.cancelled():
                    waiter.exception()  # its outcome went to its own caller, who timed out
                return
            waiter.cancel()  # the call in its thread runs on: threads cannot be cancelled
        raise Busy("its last scoring call outlasted poll.cpu_timeout and runs on: skipped")

    async def _cpu(
        self, runner: QueryRunner, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn` for `runner` in the bounded executor under the CPU timeout, one at a time."""
        await self._settle(runner, 0.0)
        future = self.executor.submit(lambda: fn(*args, **kwargs))
        runner.in_flight = future
        # On timeout the thread runs on; `in_flight` keeps the next call out until it returns.
        return await asyncio.wait_for(asyncio.wrap_future(future), self.cpu_timeout)

    def _run_for(self, runner: QueryRunner) -> Run:
        """`_cpu` for one query's history calls (the feed's writes)."""

        def run(fn: Callable[[], T]) -> Awaitable[T]:
            return self._cpu(runner, fn)

        return run

    async def _io(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a short blocking call (SQLite) in the executor."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))


class Busy(Exception):
    """The query's previous CPU call is still running in its thread (it timed out)."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "scoring took longer than poll.cpu_timeout"
    return str(exc) or type(exc).__name__
