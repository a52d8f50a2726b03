"""`POST /webhook`: Alertmanager's notifications in, durably stored alerts out.

The answer is 200 only once every alert of the group is in the outbox (one SQLite transaction
on disk), so anything that fails before is covered by Alertmanager's own retry: a failure on
augur's side answers 503, which Alertmanager retries; bad input answers 4xx, which it does
not. New alerts are stored raw, as accepted: the enrichment worker (`worker.py`) enriches
them after the answer, so the model and Prometheus never hold a notification up.
Notifications are idempotent: an alert is keyed by (fingerprint, startsAt), so the same group
again or from another replica refreshes the stored alert instead of adding one, and it is
enriched once — the outbox's single writer decides which notification inserts it.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from exporter.alerts.metrics import AlertMetrics
from exporter.alerts.outbox import Accepted, Key, Outbox, Record
from exporter.alerts.payloads import (
    ENRICHED_LABEL,
    WebhookAlert,
    WebhookPayload,
    generator_url,
)
from exporter.config.alerts import WebhookConfig
from exporter.config.base import located

log = logging.getLogger("augur.webhook")

MAX_PROBLEMS = 20
"""How many validation problems an error answer lists."""


def _error(status: int, message: str, problems: Sequence[str] = ()) -> web.Response:
    body: dict[str, Any] = {"status": "error", "error": message}
    if problems:
        body["problems"] = list(problems)
    headers = {"WWW-Authenticate": 'Bearer realm="augur"'} if status == 401 else None
    return web.json_response(body, status=status, headers=headers)


def problems(exc: ValidationError) -> list[str]:
    """Each validation error as `path: message`, e.g. `alerts[0].startsAt: field required`."""
    return located(exc.errors()[:MAX_PROBLEMS], noun="field", top="(body)")


async def disabled(request: web.Request) -> web.Response:
    """`POST /webhook` while enrichment is off: 503, so Alertmanager retries instead of dropping."""
    return _error(
        503,
        "alert enrichment is disabled: list the Alertmanagers to post enriched alerts to under "
        "alertmanager.urls",
    )


class WebhookReceiver:
    """The webhook handler: validate, store the group's alerts durably, answer.

    Register `handle` as `POST /webhook`. `on_accepted` is called after new alerts were stored
    (the enrichment worker's `wake`), `on_changed` after a stored alert changed state, e.g.
    resolved (the sender's `wake`).
    """

    def __init__(
        self,
        config: WebhookConfig,
        outbox: Outbox,
        metrics: AlertMetrics,
        *,
        on_accepted: Callable[[], None] | None = None,
        on_changed: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.metrics = metrics
        self.on_accepted = on_accepted
        self.on_changed = on_changed
        self._clock = clock
        self._token = config.bearer_token()

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one notification (aiohttp handler)."""
        started = time.perf_counter()
        response = await self._handle(request)
        self.metrics.webhook_requests.labels(str(response.status)).inc()
        self.metrics.webhook_duration.observe(time.perf_counter() - started)
        if response.status >= 400:
            log.warning(
                "webhook_refused",
                extra={"status": response.status, "remote": request.remote, "error": response.text},
            )
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        if self._token is not None and not self._authorized(request):
            return _error(401, "missing or wrong bearer token (see webhook.bearer_token_file)")
        limit = self.config.max_body_bytes
        too_big = f"the body is larger than webhook.max_body_bytes ({limit} bytes)"
        if request.content_length is not None and request.content_length > limit:
            return _error(413, too_big)
        body = bytearray()
        async for chunk in request.content.iter_any():
            body += chunk
            if len(body) > limit:
                return _error(413, too_big)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _error(400, f"the body is not valid UTF-8 (byte {exc.start}: {exc.reason})")
        try:
            data = json.loads(text)
        except ValueError as exc:
            return _error(400, f"the body is not JSON: {exc}")
        try:
            payload = WebhookPayload.model_validate(data)
        except ValidationError as exc:
            return _error(422, "not an Alertmanager webhook payload (version 4)", problems(exc))
        try:
            accepted = await self.accept(payload)
        except Exception as exc:
            # Not the sender's fault: answer 5xx so Alertmanager tries again.
            log.exception("outbox_write_failed", extra={"error": str(exc)})
            return _error(503, f"could not store the alerts, try again: {exc}")
        return web.json_response(
            {
                "status": "success",
                "inserted": accepted.inserted,
                "changed": accepted.changed,
                "refreshed": accepted.refreshed,
                "ignored": len(accepted.ignored),
            }
        )

    def _authorized(self, request: web.Request) -> bool:
        assert self._token is not None
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), self._token.encode()
        )

    async def accept(self, payload: WebhookPayload) -> Accepted:
        """Store the group's alerts, new ones raw for the worker to enrich; raises on failure."""
        self.metrics.received.inc(len(payload.alerts))
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
            [self._record(alert) for alert in alerts.values()], self._clock()
        )
        for reason in accepted.ignored:
            self.metrics.ignored.labels(reason).inc()
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

    def _record(self, alert: WebhookAlert) -> Record:
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
            source=alert.model_dump_json(),
        )
