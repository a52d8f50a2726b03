"""`POST /webhook`: Alertmanager's notifications in, durably stored alerts out.

The answer is 200 only once every alert of the group is in the outbox (one SQLite transaction
on disk), so anything that fails before is covered by Alertmanager's own retry: a failure on
augur's side answers 503, which Alertmanager retries; bad input answers 4xx, which it does
not (its webhook notifier retries 5xx only, not even 429). Input that can never succeed gets
a 4xx whatever it holds: 400 not JSON (bad UTF-8, lone surrogates, NaN, nesting deeper than
200, a body that does not decompress), 408 a body that does not arrive within
`web.read_timeout`, 413 over `webhook.max_body_bytes` (counted while reading, after
decompression: never read whole), 415 a Content-Encoding other than gzip, deflate or identity,
422 JSON that is not a version-4 payload Alertmanager's API would take back. Backpressure is a
503 with `Retry-After`: the bodies in flight would pass `webhook.max_inflight_bytes`, or more
than `webhook.max_backlog` alerts await enrichment.

New alerts are stored raw, as accepted: the enrichment worker (`worker.py`) enriches them after
the answer, so the model and Prometheus never hold a notification up. Notifications are
idempotent: an alert is keyed by (fingerprint, startsAt), so the same group again or from
another replica refreshes the stored alert instead of adding one, and it is enriched once —
the outbox's single writer decides which notification inserts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import sqlite3
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from exporter.alerts.metrics import AlertMetrics
from exporter.alerts.outbox import Accepted, Key, Outbox, OutboxFull, OutboxUnavailable, Record
from exporter.alerts.payloads import (
    ENRICHED_LABEL,
    WebhookAlert,
    WebhookPayload,
    generator_url,
)
from exporter.alerts.webhook_input import BadInput, cut, error, parsed
from exporter.config.alerts import WebhookConfig

log = logging.getLogger("augur.webhook")

ENCODINGS = frozenset(("", "identity", "gzip", "deflate"))
"""Content-Encodings taken; aiohttp decompresses gzip and deflate while the body is read."""
BACKLOG_CHECK_SECONDS = 1.0
"""How long a count of the alerts awaiting enrichment is trusted before asking the outbox again."""


async def disabled(request: web.Request) -> web.Response:
    """`POST /webhook` while enrichment is off: 503, so Alertmanager retries instead of dropping."""
    return error(
        503,
        "alert enrichment is disabled: list the Alertmanagers to post enriched alerts to under "
        "alertmanager.urls",
    )


class WebhookReceiver:
    """The webhook handler: validate, store the group's alerts durably, answer.

    Register `handle` as `POST /webhook`. `on_accepted` is called after new alerts were stored
    (the enrichment worker's `wake`), `on_changed` after a stored alert changed state, e.g.
    resolved (the sender's `wake`). `read_timeout` is `web.read_timeout`: the server's
    middleware answers a stalled body first under `augur run`; this bound holds wherever the
    handler is mounted.
    """

    def __init__(
        self,
        config: WebhookConfig,
        outbox: Outbox,
        metrics: AlertMetrics,
        *,
        read_timeout: float = 15.0,
        on_accepted: Callable[[], None] | None = None,
        on_changed: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.read_timeout = read_timeout
        self.outbox = outbox
        self.metrics = metrics
        self.on_accepted = on_accepted
        self.on_changed = on_changed
        self._clock = clock
        self._token = config.bearer_token()
        self._inflight = 0
        self._backlog_count = 0
        self._backlog_until = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one notification (aiohttp handler)."""
        started = time.perf_counter()
        response = await self._handle(request)
        self.metrics.webhook_requests.labels(str(response.status)).inc()
        self.metrics.webhook_duration.observe(time.perf_counter() - started)
        if response.status >= 400:
            log.warning(
                "webhook_refused",
                extra={
                    "status": response.status,
                    "remote": request.remote,
                    "error": response.text,
                    "rate_key": response.status,  # one line per status and interval
                },
            )
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        if self._token is not None and not self._authorized(request):
            return error(401, "missing or wrong bearer token (see webhook.bearer_token_file)")
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ENCODINGS:
            return error(
                415, f"Content-Encoding {cut(encoding, 40)!r} is not supported: use gzip or none"
            )
        cfg = self.config
        if request.content_length is not None and request.content_length > cfg.max_body_bytes:
            return error(413, self._too_big)
        if (backlog := await self._backlog()) > cfg.max_backlog:
            return self._throttled(
                "backlog",
                f"{backlog} alerts await enrichment, more than webhook.max_backlog "
                f"({cfg.max_backlog}); try again later",
            )
        held = [0]  # body bytes this request counts in flight
        inflight = (
            "too many bytes of webhook bodies in flight (webhook.max_inflight_bytes); "
            "try again later"
        )
        try:
            if not self._reserve(held, request.content_length or 0):
                return self._throttled("inflight_bytes", inflight)
            try:
                async with asyncio.timeout(self.read_timeout):
                    body = await self._read(request, held)
            except TimeoutError:
                response = error(
                    408,
                    f"the body did not arrive within web.read_timeout ({self.read_timeout:g} s)",
                )
                response.force_close()
                return response
            except BadInput as exc:
                response = (
                    self._throttled("inflight_bytes", inflight)
                    if exc.status == 503
                    else error(exc.status, str(exc))
                )
                response.force_close()  # the rest of the body is not read: a new connection
                return response
            payload = parsed(body)
            del body  # the models hold what is needed: the bytes go before the write
            if isinstance(payload, web.Response):
                return payload
            return await self._store(payload)
        finally:
            self._inflight -= held[0]

    async def _read(self, request: web.Request, held: list[int]) -> bytes:
        """The (decompressed) body, its bytes counted in flight in `held` as they arrive."""
        limit, chunks, size = self.config.max_body_bytes, [], 0
        try:
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:  # decompressed bytes count: a gzip bomb stops here
                    raise BadInput(413, self._too_big)
                if size > held[0] and not self._reserve(held, size):
                    raise BadInput(503, "over webhook.max_inflight_bytes")
                chunks.append(chunk)
        except (HttpProcessingError, RequestPayloadError) as exc:
            # A body that does not decompress (or a broken chunked encoding) is the sender's.
            cause = exc.__cause__ or exc.__context__ or exc
            raise BadInput(
                400, f"the body could not be read or decompressed: {cut(str(cause))}"
            ) from None
        return b"".join(chunks)

    async def _store(self, payload: WebhookPayload) -> web.Response:
        try:
            accepted = await self.accept(payload)
        except OutboxFull as exc:
            # A bound, not a fault: no traceback; Alertmanager retries the 503 later.
            self.metrics.webhook_throttled.labels("outbox_full").inc()
            log.warning("outbox_full", extra={"error": str(exc)})
            return error(503, cut(str(exc)), retry_after=max(30.0, self.config.retry_after))
        except OutboxUnavailable as exc:
            # The volume is full, read-only or failing, or a damaged file was just replaced:
            # logged where it was found (once, with the reason); here only the answer.
            log.warning("outbox_unavailable", extra={"error": str(exc)})
            return error(
                503,
                f"could not store the alerts, try again: {cut(str(exc))}",
                retry_after=self.config.retry_after,
            )
        except (sqlite3.Error, OSError, RuntimeError) as exc:
            # Not the sender's fault: answer 5xx so Alertmanager tries again.
            log.exception("outbox_write_failed", extra={"error": str(exc)})
            return error(503, f"could not store the alerts, try again: {cut(str(exc))}")
        except Exception as exc:
            # A payload that passed validation and still cannot be stored is augur's bug, but
            # retrying the same body cannot help: a 4xx stops Alertmanager from looping on it.
            log.exception("webhook_unstorable", extra={"error": str(exc)})
            return error(422, f"the alerts could not be stored: {type(exc).__name__}")
        return web.json_response(
            {
                "status": "success",
                "inserted": accepted.inserted,
                "changed": accepted.changed,
                "refreshed": accepted.refreshed,
                "ignored": len(accepted.ignored),
            }
        )

    @property
    def inflight_bytes(self) -> int:
        """Body bytes of the requests being handled now (the `max_inflight_bytes` bound)."""
        return self._inflight

    @property
    def _too_big(self) -> str:
        return (
            f"the body is larger than webhook.max_body_bytes ({self.config.max_body_bytes} bytes)"
        )

    def _reserve(self, held: list[int], size: int) -> bool:
        """Count a request's body as `size` bytes in flight, unless that passes the bound.

        A request alone is always let through (max_body_bytes bounds it already).
        """
        more = size - held[0]
        others = self._inflight - held[0]
        if others and self._inflight + more > self.config.max_inflight_bytes:
            return False
        self._inflight += more
        held[0] = size
        return True

    def _throttled(self, reason: str, message: str) -> web.Response:
        self.metrics.webhook_throttled.labels(reason).inc()
        return error(503, message, retry_after=self.config.retry_after)

    async def _backlog(self) -> int:
        """Alerts awaiting enrichment, asked of the outbox at most once a second."""
        now = time.monotonic()
        if now >= self._backlog_until:
            self._backlog_until = now + BACKLOG_CHECK_SECONDS
            # A broken outbox is reported by the write that follows (503), not here.
            with contextlib.suppress(Exception):
                self._backlog_count = await self.outbox.awaiting_count()
        return self._backlog_count

    def _authorized(self, request: web.Request) -> bool:
        assert self._token is not None
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        # aiohttp keeps undecodable header bytes as surrogates: compare bytes, never raise.
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode("utf-8", "surrogateescape"), self._token.encode()
        )

    async def accept(self, payload: WebhookPayload) -> Accepted:
        """Store the group's alerts, new ones raw for the worker to enrich; raises on failure."""
        self.metrics.received.inc(len(payload.alerts))
        authenticated = self._token is not None
        if payload.truncatedAlerts:
            log.warning(
                "webhook_truncated",
                extra={
                    "group": payload.groupKey,
                    "truncated": payload.truncatedAlerts,
                    "hint": "remove max_alerts from augur's webhook_configs: truncated alerts "
                    "are not enriched",
                },
            )
        alerts: dict[Key, WebhookAlert] = {}
        for alert in payload.alerts:
            if ENRICHED_LABEL in alert.labels:
                self.metrics.ignored.labels("already_enriched").inc()
            else:
                alerts[alert.key()] = alert
        if not alerts:
            return Accepted()
        accepted = await self.outbox.accept(
            [self._record(alert, authenticated) for alert in alerts.values()], self._clock()
        )
        for reason in accepted.ignored:
            self.metrics.ignored.labels(reason).inc()
        self._backlog_count += accepted.inserted
        if accepted.inserted and self.on_accepted is not None:
            self.on_accepted()
        if accepted.changed and self.on_changed is not None:
            self.on_changed()
        log.debug(
            "webhook_accepted",
            extra={
                "group": payload.groupKey,
                "receiver": payload.receiver,
                "alerts": len(payload.alerts),
                "inserted": accepted.inserted,
                "changed": accepted.changed,
            },
        )
        return accepted

    def _record(self, alert: WebhookAlert, authenticated: bool) -> Record:
        fingerprint, starts_at = alert.key()
        ends_at = alert.endsAt.timestamp() if alert.status == "resolved" and alert.endsAt else None
        return Record(
            fingerprint=fingerprint,
            starts_at=starts_at,
            status=alert.status,
            ends_at=ends_at,
            labels=alert.labels,
            annotations=alert.annotations,
            enrichment={},
            generator_url=generator_url(alert.generatorURL),
            # Only a new row keeps it, until the worker has enriched the alert.
            # What the body said of it is replaced by what augur knows.
            source=alert.model_copy(
                update={"augur_authenticated": authenticated}
            ).model_dump_json(),
        )
