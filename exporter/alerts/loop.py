"""The alert loop as one piece: webhook receiver -> outbox -> enrichment worker -> sender.

`AlertLoop` is the only place where these are wired together: `augur run` (app.py), the tests
and the webhook benchmark all build the loop through it. Constructing it creates nothing;
`cleanup_ctx` (an aiohttp cleanup context) starts the loop's resources in order and stops
them the other way round: the model's own executor (`model.workers` threads), the text
model, the enricher with its own Prometheus session, the outbox (and its thread), the sender
(and its HTTP session) and the worker. The model gets threads of its own so that the scoring
loop's CPU work can never hold an alert's classification back past `enrich.model_timeout`.
A configuration reload (exporter/reload.py) restarts the loop on new settings with
`reconfigure`, keeping the same object, its metrics and its outbox file.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from exporter.alerts.alertmanager import AlertmanagerSender
from exporter.alerts.enrich import AlertEnricher, Model
from exporter.alerts.metrics import AlertMetrics
from exporter.alerts.outbox import Outbox
from exporter.alerts.payloads import Enricher
from exporter.alerts.webhook import WebhookReceiver
from exporter.alerts.webhook_input import error
from exporter.alerts.worker import BATCH, EnrichmentWorker
from exporter.config.root import Config
from exporter.prometheus.client import PrometheusClient, make_session
from exporter.self_metrics import SelfMetrics, StorageMetrics
from exporter.sqlite_files import unwritable
from exporter.text.encoder import ModelError
from exporter.text.reload import ReloadableModel

log = logging.getLogger("augur.alerts")


class AlertLoopError(Exception):
    """The alert loop cannot start (outbox not writable, model not loadable); says what to do."""


def outbox_path(config: Config) -> Path:
    """Where the outbox lives: beside the state database, `<state>-outbox.db`."""
    state = config.state.path
    return state.with_name(state.stem + "-outbox.db")


class AlertLoop:
    """augur's alert loop: run `cleanup_ctx` on an app and route `POST /webhook` to `handle`.

    By default the enricher is the real `AlertEnricher` on the text model of `config.model`;
    `model` puts a stand-in model under that real enricher, `enricher` replaces the enricher
    as a whole (tests, the benchmark). `enrich=False` or `send=False` leave the worker or the
    sender stopped, so that accepted alerts stay on disk as they are.
    """

    metrics: AlertMetrics
    outbox: Outbox
    sender: AlertmanagerSender
    worker: EnrichmentWorker
    receiver: WebhookReceiver

    def __init__(
        self,
        config: Config,
        registry: CollectorRegistry,
        *,
        self_metrics: SelfMetrics | None = None,
        model: Model | None = None,
        enricher: Enricher | None = None,
        outbox: Path | None = None,
        enrich: bool = True,
        send: bool = True,
        batch: int = BATCH,
        housekeeping_interval: float = 1.0,
    ) -> None:
        self.config = config
        self.metrics = AlertMetrics(registry)
        self.self_metrics = self_metrics
        self.storage_metrics = (
            self_metrics.storage if self_metrics is not None else StorageMetrics(registry)
        )
        self.outbox_path = outbox or outbox_path(config)
        self.model: ReloadableModel | None = None
        """The loaded text model, when the loop loaded one (no stand-in was given)."""
        self.model_executor: ThreadPoolExecutor | None = None
        self._model = model
        self._enricher = enricher
        self._enrich = enrich
        self._send = send
        self._batch = batch
        self._housekeeping_interval = housekeeping_interval
        self._stack: contextlib.AsyncExitStack | None = None
        self._swapping = False
        self._answering: dict[str, bool] = {}
        """What the last sender knew of its replicas answering, for the next one (a reload)."""

    @property
    def loads_model(self) -> bool:
        """Whether the loop loads the text model of its configuration (no stand-in given)."""
        return self._model is None and self._enricher is None

    async def cleanup_ctx(self, app: web.Application | None = None) -> AsyncIterator[None]:
        """aiohttp cleanup context: `start()`, then `stop()` at the app's cleanup."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def handle(self, request: web.Request) -> web.Response:
        """`POST /webhook` (aiohttp handler): the receiver's answer (503 during a reload)."""
        if self._swapping:
            # Alertmanager retries a 5xx: nothing is lost while the loop restarts.
            return error(503, "augur is reloading its configuration; retry", retry_after=1)
        return await self.receiver.handle(request)

    async def start(self) -> None:
        """Open and start everything; on failure, close what was opened and raise."""
        async with contextlib.AsyncExitStack() as stack:
            await self._start(stack)
            self._stack = stack.pop_all()

    async def stop(self) -> None:
        """Stop the worker and the sender, then close the outbox, enricher and executor.

        In-flight webhook requests finished before an app's cleanup began; what is accepted
        is on disk, enriched or not: the next start finishes the rest.
        """
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        config = self.config
        executor = ThreadPoolExecutor(config.model.workers, thread_name_prefix="augur-model")
        # A call still running is abandoned, not awaited: threads cannot be interrupted.
        stack.callback(executor.shutdown, wait=False, cancel_futures=True)
        self.model_executor = executor
        enricher = self._enricher or await self._real_enricher(stack, executor)
        try:
            # A damaged outbox is replaced with a fresh one here, logged and counted; what is
            # left is the volume refusing the file, which only its owner can fix.
            outbox = await Outbox.open(
                self.outbox_path,
                config.alertmanager.urls,
                max_alerts=config.outbox.max_alerts,
                metrics=self.storage_metrics,
            )
        except (OSError, sqlite3.Error) as exc:
            why = unwritable(exc, self.outbox_path) or "SQLite failed"
            raise AlertLoopError(
                f"cannot open the alert outbox {self.outbox_path}: {why} ({exc}); give augur "
                "write access and free space there, or move it with state.path"
            ) from None
        stack.push_async_callback(outbox.close)
        sender = AlertmanagerSender(
            config.alertmanager,
            outbox,
            self.metrics,
            housekeeping_interval=self._housekeeping_interval,
            on_upstream=None
            if self.self_metrics is None
            else functools.partial(self.self_metrics.upstream_answered, "alertmanager"),
            answering=self._answering,
        )
        worker = EnrichmentWorker(
            outbox,
            enricher,
            self.metrics,
            timeout=config.webhook.enrich_timeout,
            on_enriched=sender.wake,
            batch=self._batch,
            chain_window=config.enrich.related_before,
        )
        self.receiver = WebhookReceiver(
            config.webhook,
            outbox,
            self.metrics,
            read_timeout=config.web.read_timeout,
            on_accepted=worker.wake,
            on_changed=sender.wake,
        )
        self.outbox, self.sender, self.worker = outbox, sender, worker
        if self._send:
            await sender.start()
            stack.push_async_callback(sender.stop)
        if self._enrich:
            # Alerts accepted but not enriched before a crash or stop are picked up here first.
            worker.start()
            stack.push_async_callback(worker.stop)

    async def _real_enricher(
        self, stack: contextlib.AsyncExitStack, executor: ThreadPoolExecutor
    ) -> AlertEnricher:
        config = self.config
        model = self._model or self.model or await self._load_model(executor)
        # A Prometheus session and client of the loop's own, with one retry: the enricher's
        # deadline cuts every call short anyway, and it must not queue behind the scoring
        # loop's range queries.
        session = make_session(config.prometheus)
        stack.push_async_callback(session.close)
        stage_seconds = self.metrics.enrich_stage
        metrics = self.self_metrics
        enricher = AlertEnricher(
            model,
            PrometheusClient.from_config(
                config.prometheus.model_copy(update={"retries": 1}),
                session,
                on_retry=None if metrics is None else metrics.prometheus_retried,
                on_request=None if metrics is None else metrics.prometheus_requested,
            ),
            config.enrich,
            executor=executor,
            external_url=config.web.external(),
            on_stage=lambda stage, seconds: stage_seconds.labels(stage).observe(seconds),
        )
        for problem in await enricher.start():
            log.warning("runbook_problem", extra={"problem": problem})
        stack.push_async_callback(enricher.close)
        return enricher

    async def _load_model(self, executor: ThreadPoolExecutor | None) -> ReloadableModel:
        model = await self.load_model(self.config, executor)
        self._show(model)
        log.info("model_loaded", extra={"model": model.name, "version": model.version})
        return model

    async def load_model(
        self, config: Config, executor: ThreadPoolExecutor | None = None
    ) -> ReloadableModel:
        """The text model of `config.model`, loaded and verified (not yet used by the loop).

        Raises AlertLoopError saying why it does not load.
        """
        metrics = self.self_metrics
        try:
            model = await asyncio.get_running_loop().run_in_executor(
                executor,
                lambda: ReloadableModel(
                    config.model.dir,
                    threads=config.model.threads,
                    cache_size=config.model.cache_size,
                    cache_metrics=None if metrics is None else metrics.model_cache,
                    on_inference=None
                    if metrics is None
                    else lambda seconds, texts: metrics.model_inference.observe(seconds),
                ),
            )
        except ModelError as exc:
            raise AlertLoopError(f"cannot load the text model: {exc}") from None
        return model

    def _show(self, model: ReloadableModel | None) -> None:
        """Make `model` the loop's model and the one `augur_model_info` names."""
        self.model = model
        if self.self_metrics is not None:
            info = self.self_metrics.model_info
            info.clear()
            if model is not None:
                info.labels(model.name, model.version, model.sha256).set(1)

    async def reload_model(self) -> ModelError | None:
        """Load the model files again and swap them in if they verify; the error if not."""
        model = self.model
        if model is None:
            log.info("reload_skipped", extra={"reason": "no model files loaded: a stand-in"})
            return None
        # Not on the model's thread: reading and hashing the files there would hold alerts
        # back; the old model serves until the new one is swapped in.
        failed = await model.reload(None)
        if failed is None:
            self._show(model)
        return failed

    async def reconfigure(self, config: Config, model: ReloadableModel | None) -> None:
        """Run on `config` from now on: stop, then start again if it has Alertmanagers.

        `model` is the text model of `config`, loaded by the caller before the old loop was
        stopped (`load_model`), so that a model that fails leaves the old loop untouched. The
        outbox (its path is fixed) carries the accepted alerts over. If the new loop does not
        start, the old configuration starts again and AlertLoopError says why.
        """
        old_config, old_model = self.config, self.model
        self._swapping = True
        try:
            if self._stack is not None:  # replicas kept keep what is known of them
                self._answering = self.sender.answering
            await self.stop()
            self.config = config
            self._show(model)
            if not config.alertmanager.enabled():
                if self.self_metrics is not None:  # not "down": not used any more
                    self.self_metrics.upstream_up.remove("alertmanager")
                return
            try:
                await self.start()
            except AlertLoopError:
                await self.stop()
                self.config = old_config
                self._show(old_model)
                if old_config.alertmanager.enabled():
                    await self.start()
                raise
        finally:
            self._swapping = False
