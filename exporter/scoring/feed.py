"""What each poll fetches into a query's `History`: the first fill, then only what is new.

The first fill fetches the look-back in time chunks of at most `FILL_SAMPLES` samples
(`max_series` x columns; Prometheus's own `query.max-samples` is 50 M), `FILL_CONCURRENCY`
at a time, each written into the history as it arrives: the decoded answer of a whole
10,000 x 864 look-back at once (a quarter of a GB of JSON) is the memory spike this avoids.
A progress line is logged every few seconds.

After it, a poll fetches the columns from its previous newest one (fetched then while its
step was in progress) minus `OVERLAP` columns (late samples) up to the step boundary at or
after now: two to four points per series. Those columns are emptied and written again, so a
series gone from them reads NaN as in a full fetch. A series that appears gets a row. Its
older columns are empty in Prometheus too, unless it was left out before: past `max_series`
(room opens when a series expires) or its samples arrived later than the overlap. Only after
the feed refused a series for `max_series` are a new series' older columns fetched: the same
chunked range query with a `keep` predicate that decodes only the new series (an arbitrary
PromQL expression cannot be narrowed to some series by label matchers). Fetching them for
every new series would cost Prometheus a whole look-back evaluation per poll wherever pods
churn, for columns that are empty. Series of another shard (`owns`) are never decoded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np

from exporter.config.queries import QueryConfig
from exporter.detectors.base import SeriesKey
from exporter.heap import release_freed_memory
from exporter.prometheus.client import PrometheusClient
from exporter.prometheus.decode import Keep
from exporter.scoring.history import History, Snapshot, key_of, tick_at
from exporter.scoring.state import settings_hash

log = logging.getLogger("augur.poller")

FILL_SAMPLES = 1_000_000
"""Samples per chunk of a fill (about 30 MB of JSON): series (`max_series`) x columns."""
FILL_CONCURRENCY = 2
"""Chunks of one query in flight at once: each one's answer is held while it decodes."""
OVERLAP = 1
"""Columns before the previous poll's newest that each poll fetches again, for late samples."""
_PROGRESS_SECONDS = 5.0

Owns = Callable[[Mapping[str, str]], bool]
T = TypeVar("T")


class Run(Protocol):
    """Runs a call on the history off the event loop (the poller's bounded executor)."""

    def __call__(self, fn: Callable[[], T], /) -> Awaitable[T]: ...


@dataclass
class Feed:
    """Keeps one query's history current: `update(now, run)` before each scoring."""

    client: PrometheusClient
    query: QueryConfig
    history: History
    owns: Owns | None = None
    fetched: int | None = None
    """The newest tick fetched; None until the first fill (or a restore) finished."""
    pending: set[SeriesKey] = field(default_factory=set)
    """New series whose older columns are still to be fetched (retried each poll)."""
    dropped: int = 0
    """Series left out for `max_series` by the last update."""
    warned: bool = False
    refused: bool = False
    """Whether a series was left out for `max_series` since the first fill (so one that gets
    a row later may have older samples the history lacks)."""
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def complete(self) -> bool:
        """Whether the first fill (or a restore) finished; a failed one starts over."""
        return self.fetched is not None

    async def update(self, now: float, run: Run) -> None:
        """Bring the history up to the step boundary at or after `now`."""
        h, tick = self.history, tick_at(now, self.query.step)
        self.dropped = 0
        if self.fetched is None or h.tick is None or tick - self.fetched >= h.width:
            self.fetched, self.pending, self.refused = None, set(), False
            await run(lambda: h.reset(tick))
            await self._fetch(h.first, tick, run, clear=False, what="history_fill")
            self.fetched = tick
            await run(release_freed_memory)
            return
        await run(lambda: h.advance(tick))
        # From the last column fetched, not the history's newest: a failed fetch after the
        # advance must not leave the columns in between empty.
        lo = max(h.first, min(self.fetched, tick) - OVERLAP)
        added = await self._fetch(lo, tick, run, clear=True, what="")
        self.fetched = tick
        if self.refused:
            self.pending.update(added)
        if self.pending:
            new = frozenset(self.pending)
            await self._fetch(h.first, lo - 1, run, clear=False, what="history_backfill", only=new)
            self.pending -= new

    def warn_dropped(self, scored: int) -> None:
        """Say once that `max_series` left series out."""
        if self.warned:
            return
        self.warned = True
        log.warning(
            "series_dropped",
            extra={
                "query": self.query.name,
                "series": scored + self.dropped,
                "max_series": self.query.max_series,
                "hint": "narrow the query or raise max_series; logged once",
            },
        )

    def settings(self) -> str:
        """The hash of what the history depends on, for its snapshots."""
        q = self.query
        return settings_hash([q.expr, q.step, q.lookback])

    async def restore(self, snap: Snapshot, now: float, run: Run) -> bool:
        """Take over a snapshot recent enough to share columns with the look-back at `now`:
        the next update then fetches only the gap since it (in chunks if it is long)."""
        if tick_at(now, self.query.step) - snap.tick >= self.history.width:
            return False
        try:
            await run(lambda: self.history.load(snap))
        except ValueError:
            return False
        # Series another shard owns now (the shard count changed since the snapshot).
        if self.owns is not None:
            owns = self.owns
            await run(lambda: self.history.retain(lambda key: owns(dict(key))))
        # The snapshot may have been taken after a failed fetch had advanced the grid: its
        # newest columns are then empty, and they are fetched again from the newest sample.
        last = np.frombuffer(snap.last, dtype=np.int64)
        self.fetched = min(snap.tick, int(last.max())) if last.size else snap.tick
        return True

    async def _fetch(
        self,
        lo: int,
        hi: int,
        run: Run,
        *,
        clear: bool,
        what: str,
        only: frozenset[SeriesKey] | None = None,
    ) -> list[SeriesKey]:
        """Fetch ticks `lo..hi` in chunks and write each; the keys of the rows added."""
        if hi < lo:
            return []
        q, step = self.query, self.query.step
        columns = max(1, FILL_SAMPLES // max(1, len(only) if only else q.max_series))
        spans = [(max(lo, b - columns + 1), b) for b in range(hi, lo - 1, -columns)]
        added: list[SeriesKey] = []
        gate = asyncio.Semaphore(FILL_CONCURRENCY)
        t0 = last = time.monotonic()
        done = 0

        async def chunk(a: int, b: int) -> None:
            nonlocal done, last
            keep, refused = self._keep(only)
            async with gate:
                matrix = await self.client.range_matrix(q.expr, a * step, b * step, step, keep=keep)
            async with self._lock:  # one write at a time: the history is not thread-safe
                room = len(only) if only else self.history.room()
                added.extend(
                    await run(lambda: self.history.write(matrix, a, b, clear=clear, add=room))
                )
            self.dropped = max(self.dropped, refused[0])
            self.refused = self.refused or refused[0] > 0
            done += 1
            if what and (time.monotonic() - last >= _PROGRESS_SECONDS or done == len(spans)):
                last = time.monotonic()
                log.info(
                    what,
                    extra={
                        "query": q.name,
                        "chunks": f"{done}/{len(spans)}",
                        "series": len(self.history.keys),
                        "seconds": round(last - t0, 1),
                    },
                )

        # The newest chunk alone first: the series it admits (within `max_series`) are those a
        # full fetch keeps, and the older chunks, in flight together, then only fill their rows
        # (each decides with the room left when it starts).
        await chunk(*spans[0])
        try:
            async with asyncio.TaskGroup() as group:
                for a, b in spans[1:]:
                    group.create_task(chunk(a, b))
        except ExceptionGroup as failed:
            # The group cancelled the other chunks; the poller handles one plain error.
            raise failed.exceptions[0] from None
        return added

    def _keep(self, only: frozenset[SeriesKey] | None) -> tuple[Keep, list[int]]:
        """Which series a chunk decodes: this shard's, known or within `max_series`."""
        index, owns = self.history.index, self.owns
        room, refused = [self.history.room()], [0]

        def keep(metric: Mapping[str, str]) -> bool:
            if owns is not None and not owns(metric):
                return False
            key = key_of(metric)
            if only is not None:
                return key in only
            if key in index:
                return True
            if room[0] > 0:
                room[0] -= 1
                return True
            refused[0] += 1
            return False

        return keep, refused
