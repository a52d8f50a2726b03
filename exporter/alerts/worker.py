"""The enrichment worker: turns alerts the webhook accepted raw into sendable, enriched ones.

The webhook only validates and stores (so it answers within milliseconds); this background
task does the slow part. It takes accepted alerts from the outbox in batches, oldest first,
calls the `Enricher` under `webhook.enrich_timeout`, stores each enrichment and wakes the
sender. When the enricher fails or overruns, the alerts get `minimal_enrichment`, which says
what is missing: no alert waits forever. Everything it has not finished stays on disk as
accepted, so after a crash or a stop the next start picks it up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from exporter.alerts.metrics import AlertMetrics
from exporter.alerts.outbox import Awaiting, Outbox
from exporter.alerts.payloads import (
    ENRICHED_LABEL,
    Enricher,
    Enrichment,
    WebhookAlert,
    merge,
    minimal_enrichment,
)

log = logging.getLogger("augur.enrich")

BATCH = 16
"""Alerts per enricher call: one model batch, one round of Prometheus look-ups."""
MAX_IDLE_SECONDS = 30.0
ERROR_PAUSE_SECONDS = 1.0
STOP_GRACE_SECONDS = 2.0


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
    ) -> None:
        self.outbox = outbox
        self.enricher = enricher
        self.metrics = metrics
        self.timeout = timeout
        self.on_enriched = on_enriched
        self.batch = batch
        self._clock = clock
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
        if task is None:
            return
        _, late = await asyncio.wait([task], timeout=STOP_GRACE_SECONDS)
        for t in late:
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        while not self._stop.is_set():
            # Cleared before the round, so an alert accepted during it is not overlooked.
            self._wake.clear()
            try:
                done = await self.run_once()
            except Exception as exc:
                log.exception("enrichment_worker_error", extra={"error": str(exc)})
                await self._sleep(ERROR_PAUSE_SECONDS, stoppable_only=True)
                continue
            if done < self.batch:
                await self._sleep(MAX_IDLE_SECONDS)

    async def _sleep(self, seconds: float, *, stoppable_only: bool = False) -> None:
        events = [self._stop] if stoppable_only else [self._stop, self._wake]
        waits = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when="FIRST_COMPLETED")
        finally:
            for w in waits:
                w.cancel()

    async def run_once(self) -> int:
        """Enrich and store one batch of accepted alerts; returns how many there were."""
        rows = await self.outbox.awaiting(self.batch)
        if rows:
            parsed = {row.alert_id: _source(row) for row in rows}
            readable = [(i, a) for i, a in parsed.items() if a is not None]
            started = time.perf_counter()
            enrichments = await self._enrich(readable)
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
            stored = await self.outbox.store_enrichment(results, self._clock())
            self.metrics.enriched.inc(stored)
            if stored and self.on_enriched is not None:
                self.on_enriched()
        self.metrics.awaiting.set(await self.outbox.awaiting_count())
        return len(rows)

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
            reason = f"enrichment failed: {type(exc).__name__}: {exc}"
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
