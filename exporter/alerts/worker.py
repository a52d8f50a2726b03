"""The enrichment worker: turns alerts the webhook accepted raw into sendable, enriched ones.

The webhook only validates and stores (so it answers within milliseconds); this background
task does the slow part. It takes accepted alerts from the outbox in batches, calls the
`Enricher` under `webhook.enrich_timeout`, stores each enrichment and wakes the sender. When the
enricher fails or overruns, the alerts get `minimal_enrichment`, which says what is missing:
no alert waits forever. Everything it has not finished stays on disk as accepted, so after a
crash or a stop the next start picks it up again.

Each alert is enriched on its own merits: when the enricher raises on a batch, every alert of
it is tried alone, so one bad alert gets the minimal enrichment and the others theirs.

Fairness: batches are taken alternately from the newest and the oldest end of the backlog. A
small group accepted behind a 40,000-alert one waits for one batch, not for the whole group,
and the oldest alerts still advance at half the rate, so nothing starves (the webhook's
`max_backlog` bounds how much can wait). Up to `CONCURRENCY` batches run at once: the model has
one thread and serialises them anyway, but a batch waiting on a slow Prometheus (up to
`enrich.deadline`) no longer holds the model idle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from pydantic import ValidationError

from exporter.alerts.chain import FOLLOWS_ANNOTATION, Predecessors
from exporter.alerts.metrics import NO_CATEGORY, AlertMetrics
from exporter.alerts.outbox import Awaiting, Outbox, Unsettled
from exporter.alerts.payloads import (
    CATEGORY_LABEL,
    ENRICHED_LABEL,
    Enricher,
    Enrichment,
    WebhookAlert,
    bound,
    format_time,
    merge,
    minimal_enrichment,
)
from exporter.text.entities import is_chinese

log = logging.getLogger("augur.enrich")

BATCH = 16
"""Alerts per enricher call: one model batch, one round of Prometheus look-ups."""
CONCURRENCY = 4
"""Batches enriched at once: enough to keep the model busy while others wait on Prometheus."""
MAX_IDLE_SECONDS = 30.0
ERROR_PAUSE_SECONDS = 1.0
STOP_GRACE_SECONDS = 2.0
CHAIN_CANDIDATES = 500
"""Earlier firing alerts (the latest) a batch is compared with for `augur_follows`."""


@runtime_checkable
class Resettler(Protocol):
    """An Enricher that can look at an early-enriched alert's related anomalies once more."""

    async def resettle(self, alerts: Sequence[tuple[WebhookAlert, str]]) -> list[dict[str, str]]:
        """For each (alert, its first `augur_related`), the annotations that replace augur's."""
        ...


class EnrichmentWorker:
    """Background enrichment of the outbox's accepted alerts; `start()`, `wake()`, `stop()`."""

    def __init__(
        self,
        outbox: Outbox,
        enricher: Enricher,
        metrics: AlertMetrics,
        *,
        timeout: float,
        on_enriched: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        batch: int = BATCH,
        concurrency: int = CONCURRENCY,
        chain_window: float = 0.0,
    ) -> None:
        self.outbox = outbox
        self.enricher = enricher
        self.metrics = metrics
        self.timeout = timeout
        self.on_enriched = on_enriched
        self.batch = batch
        self.concurrency = concurrency
        self.chain_window = chain_window
        """How long before an alert's start an earlier firing one may be linked (0: never)."""
        self._clock = clock
        self._inflight: set[int] = set()  # alert ids a running batch holds
        self._batches: set[asyncio.Task[None]] = set()
        self._newest = False
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background task; it first enriches whatever an earlier run left."""
        self._stop.clear()
        self._wake.set()  # the first round picks up what a crash or a stop left accepted
        self._task = asyncio.create_task(self._run(), name="augur-enrichment")

    def wake(self) -> None:
        """New alerts were accepted: enrich them now."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop within a few seconds; unfinished alerts stay accepted on disk for the next run."""
        self._stop.set()
        task, self._task = self._task, None
        tasks = [*([task] if task is not None else []), *self._batches]
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
        for t in late:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stop.is_set():
            # Cleared before claiming, so an alert accepted meanwhile is not overlooked; a
            # finishing batch sets it too.
            self._wake.clear()
            if len(self._batches) >= self.concurrency:
                await self._sleep(MAX_IDLE_SECONDS)
                continue
            try:
                if await self.run_settle():
                    continue
                rows = await self._claim()
            except Exception as exc:
                log.exception("enrichment_worker_error", extra={"error": str(exc)})
                await self._sleep(ERROR_PAUSE_SECONDS, stoppable_only=True)
                continue
            if not rows:
                await self._sleep(await self._idle_seconds())
                continue
            batch = asyncio.create_task(self._batch(rows), name="augur-enrichment-batch")
            self._batches.add(batch)
            batch.add_done_callback(self._finished)

    def _finished(self, batch: asyncio.Task[None]) -> None:
        self._batches.discard(batch)
        self._wake.set()

    async def _batch(self, rows: Sequence[Awaiting]) -> None:
        try:
            await self._enrich_rows(rows)
        except Exception as exc:
            log.exception("enrichment_worker_error", extra={"error": str(exc)})
            # Its alerts stay claimed meanwhile, so a failing store is not retried in a loop.
            await self._sleep(ERROR_PAUSE_SECONDS, stoppable_only=True)
        finally:
            self._inflight.difference_update(row.alert_id for row in rows)

    async def _sleep(self, seconds: float, *, stoppable_only: bool = False) -> None:
        events = [self._stop] if stoppable_only else [self._stop, self._wake]
        waits = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when="FIRST_COMPLETED")
        finally:
            for w in waits:
                w.cancel()

    async def _claim(self) -> list[Awaiting]:
        """The next batch not held by a running one, from the newest and oldest end in turn."""
        newest, self._newest = self._newest, not self._newest
        rows = await self.outbox.awaiting(self.batch + len(self._inflight), newest_first=newest)
        fresh = [r for r in rows if r.alert_id not in self._inflight][: self.batch]
        rows = sorted(fresh, key=lambda r: r.alert_id)
        self._inflight.update(row.alert_id for row in rows)
        return rows

    async def _idle_seconds(self) -> float:
        """Until the next alert's settle time, or MAX_IDLE_SECONDS."""
        at = await self.outbox.next_settle() if isinstance(self.enricher, Resettler) else None
        return (
            MAX_IDLE_SECONDS if at is None else min(MAX_IDLE_SECONDS, max(0.0, at - self._clock()))
        )

    async def run_settle(self) -> int:
        """Look once more at the related anomalies of alerts whose settle time has passed.

        Each is looked at once: whatever comes of it (nothing new, Prometheus down, an error),
        it is settled; a changed annotation makes the alert due to every replica again.
        Returns how many alerts were looked at.
        """
        if not isinstance(self.enricher, Resettler):
            return 0
        rows = await self.outbox.unsettled(self._clock(), self.batch)
        if not rows:
            return 0
        alerts = [(row, _unsettled_alert(row)) for row in rows]
        todo = [
            (row.alert_id, (a, row.enrichment.get("augur_related", ""))) for row, a in alerts if a
        ]
        notes: dict[int, dict[str, str]] = {row.alert_id: {} for row in rows}
        try:
            if todo:
                found = await asyncio.wait_for(
                    self.enricher.resettle([pair for _, pair in todo]), self.timeout
                )
                notes.update(zip([i for i, _ in todo], found, strict=True))
        except Exception as exc:  # the first enrichment stands; it is not tried again
            log.warning("related_resettle_failed", extra={"alerts": len(todo), "error": repr(exc)})
        changed = await self.outbox.store_settled(notes, self._clock())
        log.info("related_resettled", extra={"alerts": len(rows), "changed": changed})
        if changed and self.on_enriched is not None:
            self.on_enriched()
        return len(rows)

    async def run_once(self) -> int:
        """Enrich and store one batch of accepted alerts; returns how many there were."""
        rows = await self._claim()
        try:
            await self._enrich_rows(rows)
        finally:
            self._inflight.difference_update(row.alert_id for row in rows)
        return len(rows)

    async def _enrich_rows(self, rows: Sequence[Awaiting]) -> None:
        if rows:
            parsed = {row.alert_id: _source(row) for row in rows}
            readable = [(i, a) for i, a in parsed.items() if a is not None]
            started = time.perf_counter()
            enrichments = await self._enrich(readable)
            if self.chain_window:
                try:
                    enrichments = await self._link(readable, enrichments)
                except Exception as exc:  # a missing link must not hold the alerts back
                    log.warning("alert_chain_failed", extra={"error": repr(exc)})
            self.metrics.enrich_duration.observe(time.perf_counter() - started)
            unreadable = minimal_enrichment("the stored source alert could not be read")
            results = []
            for row in rows:
                alert = parsed[row.alert_id]
                if alert is None:
                    self.metrics.enrich_failures.inc()
                    labels = {**row.labels, ENRICHED_LABEL: "true"}
                    results.append((row.alert_id, labels, unreadable.annotations))
                else:
                    results.append((row.alert_id, *merge(alert, enrichments[row.alert_id])))
            settle = {i: e.settle_at for i, e in enrichments.items() if e.settle_at is not None}
            stored = await self.outbox.store_enrichment(results, self._clock(), settle)
            for alert_id in stored:
                found = enrichments.get(alert_id)
                category = found.labels.get(CATEGORY_LABEL) if found is not None else None
                self.metrics.enriched.labels(category or NO_CATEGORY).inc()
            if stored and self.on_enriched is not None:
                self.on_enriched()
        self.metrics.awaiting.set(await self.outbox.awaiting_count())

    async def _link(
        self, alerts: Sequence[tuple[int, WebhookAlert]], enrichments: dict[int, Enrichment]
    ) -> dict[int, Enrichment]:
        """Add `augur_follows` (the first links of a chain) to the enrichments that have one."""
        if not alerts:
            return enrichments
        starts = [a.startsAt.timestamp() for _, a in alerts]
        begin = datetime.fromtimestamp(min(starts) - self.chain_window, UTC)
        end = datetime.fromtimestamp(max(starts), UTC)
        earlier = await self.outbox.firing_between(
            format_time(begin), format_time(end), CHAIN_CANDIDATES
        )
        if not earlier:
            return enrichments
        # Hundreds of small JSON documents: read once per batch, off the event loop.
        index = await asyncio.get_running_loop().run_in_executor(None, Predecessors, earlier)
        now, out = self._clock(), dict(enrichments)
        for i, alert in alerts:
            e = enrichments[i]
            if not index or "augur_entities" not in e.annotations:
                continue
            zh = is_chinese(" ".join(alert.annotations.values()))
            entities = e.annotations["augur_entities"]
            line = index.follows(alert, entities, window=self.chain_window, now=now, zh=zh)
            if line:
                out[i] = replace(e, annotations={**e.annotations, FOLLOWS_ANNOTATION: line})
        return out

    async def _enrich(self, alerts: Sequence[tuple[int, WebhookAlert]]) -> dict[int, Enrichment]:
        if not alerts:
            return {}
        try:
            result = await asyncio.wait_for(
                self.enricher.enrich([a for _, a in alerts]), self.timeout
            )
            if len(result) != len(alerts) or not all(isinstance(e, Enrichment) for e in result):
                raise TypeError(f"returned {len(result)} results for {len(alerts)} alerts")
            return {i: e for (i, _), e in zip(alerts, result, strict=True)}
        except TimeoutError:
            reason = f"enrichment took longer than webhook.enrich_timeout ({self.timeout:g} s)"
        except Exception as exc:
            if len(alerts) > 1:
                # One bad alert must not spoil its batch: each alone, only the bad one fails.
                alone = await asyncio.gather(*(self._enrich([a]) for a in alerts))
                return {i: e for part in alone for i, e in part.items()}
            reason = bound(f"enrichment failed: {type(exc).__name__}: {exc}", 500)
        log.warning("enrichment_failed", extra={"alerts": len(alerts), "error": reason})
        self.metrics.enrich_failures.inc(len(alerts))
        fallback = minimal_enrichment(reason)
        return {i: fallback for i, _ in alerts}


def _source(row: Awaiting) -> WebhookAlert | None:
    try:
        return WebhookAlert.model_validate_json(row.source)
    except ValidationError as exc:
        # Cannot happen for rows this version wrote; it must not hold the alert back forever.
        log.error("stored_alert_unreadable", extra={"alert_id": row.alert_id, "error": str(exc)})
        return None


def _unsettled_alert(row: Unsettled) -> WebhookAlert | None:
    """The source alert again, from what the outbox kept of an enriched one."""
    labels = {k: v for k, v in row.labels.items() if k != ENRICHED_LABEL}
    try:
        return WebhookAlert(
            status="firing",
            labels=labels,
            annotations=row.annotations,
            startsAt=row.starts_at,  # pydantic parses the stored RFC 3339
            generatorURL=row.generator_url,
        )
    except ValidationError:
        return None
