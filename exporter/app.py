"""The aiohttp application: one cleanup context per long-lived resource, and the HTTP routes.

Start-up order: scoring executor -> state -> Prometheus session -> alert loop (its own model
executor, model, outbox, sender, worker: `AlertLoop`) -> scoring loop. Shutdown runs the other
way round, bounded: on SIGTERM or SIGINT augur turns not-ready, stops polling, stops the alert
loop, closes its session, the ARIMA fit workers and the executor, and exits within
`SHUTDOWN_SECONDS` (a pod gets 30 s). SIGHUP and `POST /-/reload` reload the configuration
(exporter/reload.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter.alerts.loop import AlertLoop, AlertLoopError
from exporter.alerts.webhook import disabled
from exporter.assistant import ask_web
from exporter.assistant.report_web import report_route
from exporter.config.durations import format_duration
from exporter.config.root import Config
from exporter.detectors.arima import fit as arima
from exporter.prometheus.client import PrometheusClient, make_session
from exporter.reload import LIVE, RELOADER, Live, Reloader, install
from exporter.scoring.board import DetectorCollector, ScoreBoard, ScoreCollector
from exporter.scoring.poller import Poller
from exporter.scoring.shard import Shard
from exporter.scoring.state import StateStore
from exporter.self_metrics import SelfMetrics
from exporter.sqlite_files import unwritable
from exporter.web.auth import auth_middleware
from exporter.web.landing import landing
from exporter.web.limits import body_deadline
from exporter.web.runbooks import add_routes as add_runbook_routes
from exporter.web.server import WebServer, make_runner, start_site

log = logging.getLogger("augur.app")

SHUTDOWN_SECONDS = 25.0


@dataclass
class Health:
    """Readiness: config loaded, first successful cycle done, not shutting down."""

    shutting_down: bool = False
    poller: Poller | None = None
    reasons: list[str] = field(default_factory=list)

    def ready(self) -> tuple[bool, str]:
        """Whether augur is ready, and why not."""
        if self.shutting_down:
            return False, "shutting down"
        if self.poller is None:
            return False, "starting"
        if not self.poller.succeeded_once.is_set():
            return False, "waiting for the first successful poll of Prometheus"
        return True, "ready"


CONFIG = web.AppKey("config", Config)
REGISTRY = web.AppKey("registry", CollectorRegistry)
BOARD = web.AppKey("board", ScoreBoard)
METRICS = web.AppKey("metrics", SelfMetrics)
HEALTH = web.AppKey("health", Health)
EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)
"""The scoring loop's threads (the alert loop has its own)."""
CLIENT = web.AppKey("client", PrometheusClient)
SESSION = web.AppKey("session", aiohttp.ClientSession)
POLLER = web.AppKey("poller", Poller)
STORE = web.AppKey("store", StateStore)
ALERTS = web.AppKey("alerts", AlertLoop)
WEB = web.AppKey("web", WebServer)
"""TLS, users and headers of augur's endpoints (`web.config_file`), reloaded on change."""

POLLER_STOP_SECONDS = 10.0
"""How long a cycle in flight at shutdown may take to finish before it is cancelled."""


async def _web_ctx(app: web.Application) -> AsyncIterator[None]:
    server = app[WEB]
    if server.path is None:
        yield
        return
    task = asyncio.create_task(server.watch(), name="augur-web-config")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(request.app[WEB].headers())


async def _executor_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    executor = ThreadPoolExecutor(config.poll.workers, thread_name_prefix="augur-cpu")
    app[EXECUTOR] = executor
    yield
    # ARIMA fits run in a process pool shared by the scoring loop's detectors; its workers
    # must not outlive it. Not on the scoring threads: one may still hold an abandoned call.
    await asyncio.to_thread(arima.shutdown_pools)
    # Threads cannot be interrupted; a scoring call still running is abandoned, not awaited.
    executor.shutdown(wait=False, cancel_futures=True)


async def _state_ctx(app: web.Application) -> AsyncIterator[None]:
    path = app[CONFIG].state.path
    storage = app[METRICS].storage
    try:
        # A damaged file is moved aside and replaced in there (the snapshots are disposable):
        # what fails here is the volume refusing the file, which augur cannot work around.
        store = await asyncio.get_running_loop().run_in_executor(
            app[EXECUTOR], lambda: StateStore(path, storage)
        )
    except (OSError, sqlite3.Error) as exc:
        why = unwritable(exc, path) or "SQLite failed"
        raise StartupError(
            f"cannot open the state database {path}: {why} ({exc}); give augur write access "
            "and free space there, or point --state.path (state.path) elsewhere"
        ) from None
    app[STORE] = store
    yield
    store.close()


async def _alerts_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    alerts = app[ALERTS]
    if not config.alertmanager.enabled():
        log.info(
            "alert_enrichment_disabled",
            extra={"hint": "list Alertmanager replicas under alertmanager.urls to enable it"},
        )
    else:
        try:
            await alerts.start()
        except AlertLoopError as exc:
            raise StartupError(str(exc)) from None
        log.info("alert_enrichment", extra={"alertmanagers": ", ".join(config.alertmanager.urls)})
    yield
    await alerts.stop()  # whatever a reload left running


async def _prometheus_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    session = make_session(config.prometheus)
    metrics = app[METRICS]
    app[SESSION] = session
    client = PrometheusClient.from_config(
        config.prometheus,
        session,
        executor=app[EXECUTOR],
        on_retry=metrics.prometheus_retried,
        on_request=metrics.prometheus_requested,
    )
    app[CLIENT] = client
    yield
    await session.close()


async def _poller_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    queries = config.effective_queries()
    if not config.queries:
        log.info(
            "no_queries_configured",
            extra={
                "hint": "scoring the built-in defaults; list your own under `queries:`",
                "defaults": ", ".join(q.name for q in queries),
            },
        )
    shard = Shard.from_config(config.shard)
    app[METRICS].set_shard(shard.index, shard.count)
    poller = Poller(
        queries,
        app[CLIENT],
        app[BOARD],
        app[METRICS],
        app[EXECUTOR],
        interval=config.poll.interval,
        cpu_timeout=config.poll.cpu_timeout,
        store=app[STORE],
        snapshot_interval=config.state.snapshot_interval,
        owns=shard.filter(),
    )
    app[POLLER] = poller
    app[HEALTH].poller = poller
    detectors = DetectorCollector(
        lambda: [
            (runner.config.name, name, detector)
            for runner in poller.runners
            for name, detector in runner.detectors.items()
        ]
    )
    app[REGISTRY].register(detectors)
    task = asyncio.create_task(poller.run(), name="augur-poller")
    log.info(
        "polling",
        extra={
            "prometheus": config.prometheus.url,
            "queries": len(queries),
            "interval": format_duration(config.poll.interval),
        },
    )
    yield
    # Let the cycle in flight finish and the final snapshot be written, within a bound.
    poller.stop()
    try:
        await asyncio.wait_for(asyncio.shield(task), POLLER_STOP_SECONDS)
    except TimeoutError:
        log.warning("poller_stop_timeout", extra={"seconds": POLLER_STOP_SECONDS})
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    poller.close()
    app[REGISTRY].unregister(detectors)


async def _mark_not_ready(app: web.Application) -> None:
    app[HEALTH].shutting_down = True
    await app[RELOADER].stop()  # before the cleanup: a reload swaps what it would close


async def metrics(request: web.Request) -> web.Response:
    """The Prometheus exposition of scores and self-metrics (OpenMetrics if asked for)."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": content_type})


async def healthy(request: web.Request) -> web.Response:
    """Liveness: the process is serving."""
    return web.Response(text="augur is healthy.\n")


async def ready(request: web.Request) -> web.Response:
    """Readiness: 200 after the first successful poll, 503 before and while shutting down."""
    ok, reason = request.app[HEALTH].ready()
    return web.Response(text=f"augur is {reason}.\n", status=200 if ok else 503)


async def webhook(request: web.Request) -> web.Response:
    """Alertmanager's webhook; 503 (so Alertmanager retries) when enrichment is not set up."""
    # The alert loop's own configuration, not `LIVE`'s: a reload switches the loop's first
    # (exporter/reload.py), and the webhook must follow the loop that will take the alert.
    if not request.app[ALERTS].config.alertmanager.enabled():
        return await disabled(request)
    return await request.app[ALERTS].handle(request)


def build_app(
    config: Config,
    registry: CollectorRegistry | None = None,
    load: Callable[[], Config] | None = None,
) -> web.Application:
    """Assemble the application; resources are created when the app starts, not here.

    `load` reads the configuration again on a reload (exporter/reload.py). Raises StartupError
    if `web.config_file` no longer loads (it was checked at load).
    """
    live = Live(config)
    try:
        server = WebServer(config.web)
    except ValueError as exc:
        raise StartupError(f"web.config_file: {exc}") from None
    app = web.Application(
        middlewares=[
            body_deadline(
                config.web.read_timeout, lambda: app[METRICS].http_request_timeouts.inc()
            ),
            auth_middleware(  # the token as the running alert loop checks it (see webhook)
                lambda: server.users,
                lambda: app[ALERTS].config.webhook.bearer_token() is not None,
            ),
        ]
    )
    app[WEB] = server
    app.on_response_prepare.append(_headers)
    app[CONFIG] = config
    registry = registry or CollectorRegistry(auto_describe=True)
    board = ScoreBoard(expire_after=config.poll.expire_after)
    registry.register(ScoreCollector(board))
    app[REGISTRY] = registry
    app[BOARD] = board
    app[METRICS] = SelfMetrics(registry)
    app[HEALTH] = Health()
    # Built, and its metrics registered, even when off: it only starts if it has somewhere
    # to send to (see `_alerts_ctx`).
    app[ALERTS] = AlertLoop(config, registry, self_metrics=app[METRICS])
    install(app, Reloader(live, load, app[ALERTS], board, lambda: app.get(POLLER), registry))
    app.cleanup_ctx.extend(
        [_web_ctx, _executor_ctx, _state_ctx, _prometheus_ctx, _alerts_ctx, _poller_ctx]
    )
    app.on_shutdown.append(_mark_not_ready)
    app.router.add_get("/", landing(lambda app: app[LIVE].config, POLLER))
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/webhook", webhook)
    app.router.add_get("/report", report_route(lambda app: app[CLIENT], lambda app: live.config))
    add_runbook_routes(app, lambda: live.config.enrich.knowledge_dir)
    ask_web.add_routes(
        app,
        ask_web.AskService(
            lambda: app[CLIENT],
            lambda: app[ALERTS].model,
            lambda: live.config.model.dir,
            lambda: next(iter(live.config.alertmanager.urls), None),
            alertmanager_config_of=lambda: live.config.alertmanager,
        ),
    )
    return app


async def serve(
    config: Config, stop: asyncio.Event | None = None, load: Callable[[], Config] | None = None
) -> None:
    """Run augur until SIGTERM/SIGINT (or `stop` is set); SIGHUP reloads with `load`."""
    app = build_app(config, load=load)
    runner = make_runner(app, config)
    try:
        await runner.setup()
    except BaseException:
        await runner.cleanup()
        raise
    try:
        site = await start_site(runner, config, app[WEB], app[METRICS].http_connections_refused.inc)
    except BaseException as exc:
        await runner.cleanup()
        if not isinstance(exc, OSError):
            raise
        raise StartupError(
            f"cannot listen on {config.web.listen_address}: {exc.strerror}; "
            "choose another address with --web.listen-address"
        ) from None
    log.info(
        "listening",
        extra={"address": site.name, "basic_auth": bool(app[WEB].users)},
    )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: app[RELOADER].start("SIGHUP"))
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        log.info("shutting_down")
        app[HEALTH].shutting_down = True
        try:
            await asyncio.wait_for(runner.cleanup(), SHUTDOWN_SECONDS - 2)
        except TimeoutError:
            log.error("shutdown_timeout", extra={"seconds": SHUTDOWN_SECONDS})
        log.info("stopped")


class StartupError(Exception):
    """augur cannot start (address in use, …); the message says what to do."""
