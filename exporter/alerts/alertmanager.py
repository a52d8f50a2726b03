"""The sender: drains the outbox into `POST /api/v2/alerts` of every Alertmanager replica.

Replicas do not share alerts, so each one gets every enriched alert, through its own loop with
its own backoff: one replica being down delays nobody else. A firing alert is re-posted every
`repost_interval` with `endsAt` a few intervals ahead, so Alertmanager keeps it firing while
augur runs and lets it resolve by itself soon after augur stops; a resolved one is posted
once with its end time. Alerts not seen in a notification for `resolve_timeout` are resolved
by a housekeeping loop, which also purges finished entries and updates `augur_outbox_pending`.

Whether Alertmanager answers is reported after every call (`on_upstream`): it is up while any
replica answered its last call as its API does (accepted or refused an alert, or answered
`GET /api/v2/status`). A replica with nothing to post is probed with that GET every
`PROBE_SECONDS`, and from 1 s doubling while it does not answer, so the state is current
even when no alert flows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from exporter import __version__
from exporter.alerts.metrics import AlertMetrics
from exporter.alerts.outbox import Entry, Outbox
from exporter.alerts.payloads import format_time
from exporter.alerts.summary import recovered_summary
from exporter.config.alerts import AlertmanagerConfig

log = logging.getLogger("augur.alertmanager")

ENDS_AHEAD = 3
"""A firing alert's `endsAt` is this many repost intervals ahead of each post."""
BATCH = 100
MAX_IDLE_SECONDS = 30.0
STOP_GRACE_SECONDS = 2.0
PURGE_EVERY_SECONDS = 60.0
_CONNECT_TIMEOUT = 5.0
_ERROR_CHARS = 500
_ERROR_READ_BYTES = 64 * 1024
PROBE_SECONDS = 30.0
"""Seconds without an answer from a replica after which it is asked `GET /api/v2/status`."""


def _message(body: str) -> str:
    """Alertmanager's error text: a JSON string (400) or an object with a message (422)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()
    if isinstance(data, dict):
        data = data.get("message")
    return data if isinstance(data, str) else body.strip()


_SUMMARY = "augur_summary"


def compose(entry: Entry, now: float, repost_interval: float) -> dict[str, Any]:
    """The alert as `POST /api/v2/alerts` takes it, with `endsAt` for its state at `now`."""
    starts = datetime.fromisoformat(entry.starts_at).timestamp()
    if entry.state == "firing":
        ends = now + ENDS_AHEAD * repost_interval
    else:
        ends = min(entry.ends_at if entry.ends_at is not None else now, now)
    # Alertmanager refuses endsAt before startsAt; a source clock ahead of ours can cause that.
    ends = max(ends, starts)
    notes = entry.annotations
    if entry.state == "resolved" and _SUMMARY in notes:  # written when it fired: say it is over
        notes = {**notes, _SUMMARY: recovered_summary(notes[_SUMMARY], starts, ends, now)}
    alert: dict[str, Any] = {
        "labels": entry.labels,
        "annotations": notes,
        "startsAt": entry.starts_at,
        "endsAt": format_time(datetime.fromtimestamp(ends, UTC)),
    }
    if entry.generator_url:
        alert["generatorURL"] = entry.generator_url
    return alert


@dataclass
class _Replica:
    url: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    failures: int = 0
    not_before: float = 0.0
    probe_at: float = 0.0
    """When to ask the replica whether it answers, if nothing else did by then."""
    probe_failures: int = 0


class AlertmanagerSender:
    """Background delivery of the outbox to every replica; `start()` and `stop()` it."""

    def __init__(
        self,
        config: AlertmanagerConfig,
        outbox: Outbox,
        metrics: AlertMetrics,
        *,
        clock: Callable[[], float] = time.time,
        housekeeping_interval: float = 1.0,
        on_upstream: Callable[[bool], None] | None = None,
        answering: Mapping[str, bool] | None = None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.metrics = metrics
        self._clock = clock
        self._housekeeping_interval = housekeeping_interval
        self._replicas = [_Replica(url) for url in config.urls]
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        metrics.init_replicas(config.urls)
        self.on_upstream = on_upstream
        """Called with whether Alertmanager answers (any replica) after each call, and with
        False at once: down until a replica answers (`answering`: what a sender before this one
        knew of the same replicas, carried over a reload)."""
        self._answering = {url: bool((answering or {}).get(url)) for url in config.urls}
        self._answered(None, False)

    @property
    def answering(self) -> dict[str, bool]:
        """Whether each replica answered its last call."""
        return dict(self._answering)

    def _answered(self, replica: _Replica | None, ok: bool) -> None:
        if replica is not None:
            self._answering[replica.url] = ok
            if ok:
                replica.probe_at, replica.probe_failures = self._clock() + PROBE_SECONDS, 0
        if self.on_upstream is not None:
            self.on_upstream(any(self._answering.values()))

    async def start(self) -> None:
        """Open the HTTP session and start one loop per replica plus housekeeping."""
        timeout = aiohttp.ClientTimeout(
            total=self.config.timeout, connect=min(self.config.timeout, _CONNECT_TIMEOUT)
        )
        headers = {"User-Agent": f"augur/{__version__}"}
        authorization = self.config.authorization()
        if authorization is not None:
            headers["Authorization"] = authorization
        self._session = aiohttp.ClientSession(
            timeout=timeout,
            headers=headers,
            connector=aiohttp.TCPConnector(ssl=self.config.tls.context()),
        )
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(self._replica_loop(r), name=f"augur-sender-{r.url}")
            for r in self._replicas
        ]
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="augur-outbox-gc"))

    def wake(self) -> None:
        """New work in the outbox: post it now (replicas in backoff keep waiting)."""
        for replica in self._replicas:
            replica.wake.set()

    async def stop(self) -> None:
        """Stop within a few seconds; nothing is lost, the outbox is on disk already."""
        self._stop.set()
        self.wake()
        if self._tasks:
            # A post in flight gets a moment to finish; if cut, it is simply posted again.
            _, late = await asyncio.wait(self._tasks, timeout=STOP_GRACE_SECONDS)
            for task in late:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _sleep(self, seconds: float, event: asyncio.Event | None = None) -> None:
        waits = [asyncio.ensure_future(self._stop.wait())]
        if event is not None:
            waits.append(asyncio.ensure_future(event.wait()))
        try:
            await asyncio.wait(waits, timeout=max(0.0, seconds), return_when="FIRST_COMPLETED")
        finally:
            for w in waits:
                w.cancel()

    async def _replica_loop(self, replica: _Replica) -> None:
        while not self._stop.is_set():
            now = self._clock()
            if now < replica.not_before:
                await self._sleep(replica.not_before - now)
                continue
            # Cleared before draining, so a wake-up during the drain is not lost.
            replica.wake.clear()
            try:
                await self._drain(replica)
                now = self._clock()
                # Not while posts back off: they say already that it does not answer.
                if now >= replica.probe_at and now >= replica.not_before:
                    await self._probe(replica)
                due = await self.outbox.next_due(replica.url)
            except Exception as exc:
                log.exception(
                    "sender_error", extra={"alertmanager": replica.url, "error": str(exc)}
                )
                self._back_off(replica)
                continue
            idle = MAX_IDLE_SECONDS if due is None else due - self._clock()
            idle = min(idle, replica.probe_at - self._clock())
            await self._sleep(min(idle, MAX_IDLE_SECONDS), replica.wake)

    async def _probe(self, replica: _Replica) -> None:
        """Ask an idle replica for its status: only whether it answers as its API is kept."""
        assert self._session is not None, "start() the sender first"
        try:
            async with self._session.get(replica.url + "/api/v2/status") as resp:
                await resp.content.read(_ERROR_READ_BYTES)
                ok = 200 <= resp.status < 300 and resp.content_type == "application/json"
        except (TimeoutError, aiohttp.ClientError):
            ok = False
        self._answered(replica, ok)
        if not ok:
            replica.probe_failures += 1
            delay = min(PROBE_SECONDS, 2.0 ** min(replica.probe_failures - 1, 10))
            replica.probe_at = self._clock() + delay

    async def _drain(self, replica: _Replica) -> None:
        while not self._stop.is_set():
            now = self._clock()
            entries = await self.outbox.due(replica.url, now, BATCH)
            if not entries or not await self._post(replica, entries, now):
                return

    def _back_off(self, replica: _Replica) -> float:
        replica.failures += 1
        ceiling = min(
            self.config.backoff_max, self.config.backoff_base * 2.0 ** (replica.failures - 1)
        )
        # Half fixed, half jitter: replicas restarting together spread out, yet a down
        # Alertmanager is never hit in a tight loop.
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        replica.not_before = self._clock() + delay
        return delay

    async def _post(self, replica: _Replica, entries: Sequence[Entry], now: float) -> bool:
        """Post one batch; False if the replica failed and is now backing off."""
        assert self._session is not None, "start() the sender first"
        body = json.dumps([compose(e, now, self.config.repost_interval) for e in entries])
        try:
            async with self._session.post(
                replica.url + "/api/v2/alerts",
                # A file-like body: aiohttp sends it without blocking the loop, however large.
                data=io.BytesIO(body.encode()),
                headers={"Content-Type": "application/json"},
            ) as resp:
                status = resp.status
                # At most 64 KiB of an error is read: it names the bad label in its first line.
                raw = await resp.content.read(_ERROR_READ_BYTES)
                text = _message(raw.decode("utf-8", "replace"))[:_ERROR_CHARS]
        except TimeoutError:
            await self._failed(replica, entries, f"no answer within {self.config.timeout} s")
            return False
        except aiohttp.ClientError as exc:
            await self._failed(replica, entries, f"{type(exc).__name__}: {exc}")
            return False
        # Alertmanager's own answers: accepted, or an alert refused as invalid.
        self._answered(replica, 200 <= status < 300 or status in (400, 422))
        if 200 <= status < 300:
            repost_at = now + self.config.repost_interval
            await self.outbox.delivered(replica.url, entries, repost_at)
            self.metrics.posted.labels(replica.url).inc(len(entries))
            replica.failures = 0
            return True
        if status in (400, 422):
            return await self._refused(replica, entries, status, text, now)
        await self._failed(replica, entries, f"HTTP {status}: {text}", status)
        return False

    async def _refused(
        self, replica: _Replica, entries: Sequence[Entry], status: int, text: str, now: float
    ) -> bool:
        if len(entries) > 1:
            # Alertmanager stores the valid alerts of a batch but does not say which were
            # invalid: post them one by one. Posting an accepted alert again is harmless, it
            # merges with itself by label set.
            for entry in entries:
                if not await self._post(replica, [entry], now):
                    return False
            return True
        error = f"HTTP {status}: {text}"
        entry = entries[0]
        self.metrics.refused.labels(replica.url).inc()
        if entry.generator_url:
            # Go's URL parser refuses some URLs the webhook's check lets through; the alert is
            # worth more than its link: it goes again without it.
            log.warning(
                "alert_repaired",
                extra={
                    "alertmanager": replica.url,
                    "alert": json.dumps(entry.labels, ensure_ascii=False, sort_keys=True),
                    "error": error,
                    "hint": "posted again without its generatorURL",
                },
            )
            return await self._post(replica, [dataclasses.replace(entry, generator_url="")], now)
        log.error(
            "alert_refused",
            extra={
                "alertmanager": replica.url,
                "alert": json.dumps(entries[0].labels, ensure_ascii=False, sort_keys=True),
                "error": error,
                "hint": "the alert is not retried until it changes",
            },
        )
        # Parked, not lost: the row keeps the reason (last_error) and is posted again when the
        # alert changes (resolves); counted apart from failures that are retried.
        await self.outbox.delivered(replica.url, entries, now, error=error)
        self.metrics.post_failures.labels(replica.url).inc()
        return True

    async def _failed(
        self, replica: _Replica, entries: Sequence[Entry], error: str, status: int | None = None
    ) -> None:
        if status is None:  # no answer at all (an HTTP status was reported by `_post`)
            self._answered(replica, False)
        delay = self._back_off(replica)
        self.metrics.post_failures.labels(replica.url).inc(len(entries))
        await self.outbox.retry(replica.url, entries, replica.not_before, error)
        context = {
            "alertmanager": replica.url,
            "alerts": len(entries),
            "attempt": replica.failures,
            "retry_in_seconds": round(delay, 2),
            "error": error,
        }
        if status is not None and 400 <= status < 500:
            # 401, 403, 404: retrying cannot help until the setup is fixed; say so loudly.
            context["hint"] = "check alertmanager.urls (the base URL) and any proxy in front"
            log.error("alertmanager_post_failed", extra=context)
        else:
            log.warning("alertmanager_post_failed", extra=context)

    async def _housekeeping(self) -> None:
        next_purge = 0.0
        while not self._stop.is_set():
            try:
                now = self._clock()
                expired = await self.outbox.expire(now, self.config.resolve_timeout)
                if expired:
                    log.info("alerts_expired", extra={"alerts": expired})
                    self.wake()
                if now >= next_purge:
                    purged = await self.outbox.purge(now, self.config.outbox_retention)
                    if purged:
                        log.debug("outbox_purged", extra={"alerts": purged})
                    next_purge = now + PURGE_EVERY_SECONDS
                self.metrics.pending.set(await self.outbox.pending())
            except Exception as exc:
                log.exception("outbox_housekeeping_error", extra={"error": str(exc)})
            await self._sleep(self._housekeeping_interval)
