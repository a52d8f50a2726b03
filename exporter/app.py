"""The aiohttp application: one cleanup context per long-lived resource, and the HTTP routes.

Start-up order: executor -> Prometheus session -> scoring loop. Shutdown runs the other way
round, bounded: on SIGTERM or SIGINT augur turns not-ready, stops polling, closes its
session and executor, and exits within `SHUTDOWN_SECONDS` (a pod gets 30 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import signal
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter import __version__
from exporter.config import Config, format_duration
from exporter.metrics import ScoreBoard, ScoreCollector, SelfMetrics
from exporter.poller import Poller
from exporter.prometheus import PrometheusClient, make_session

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
CLIENT = web.AppKey("client", PrometheusClient)
POLLER = web.AppKey("poller", Poller)


async def _executor_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    executor = ThreadPoolExecutor(config.poll.workers, thread_name_prefix="augur-cpu")
    app[EXECUTOR] = executor
    yield
    # Threads cannot be interrupted; a scoring call still running is abandoned, not awaited.
    executor.shutdown(wait=False, cancel_futures=True)


async def _prometheus_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    session = make_session(config.prometheus)
    metrics = app[METRICS]
    client = PrometheusClient.from_config(
        config.prometheus,
        session,
        executor=app[EXECUTOR],
        on_retry=lambda endpoint: metrics.prometheus_retries.labels(endpoint).inc(),
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
    poller = Poller(
        queries,
        app[CLIENT],
        app[BOARD],
        app[METRICS],
        app[EXECUTOR],
        interval=config.poll.interval,
        cpu_timeout=config.poll.cpu_timeout,
    )
    app[POLLER] = poller
    app[HEALTH].poller = poller
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
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _mark_not_ready(app: web.Application) -> None:
    app[HEALTH].shutting_down = True


_LANDING = """<!doctype html>
<html><head><meta charset="utf-8"><title>augur</title></head>
<body>
<h1>augur {version}</h1>
<p>Anomaly scores and forecasts for the series of {prometheus}.</p>
<ul>
<li><a href="metrics">Metrics</a></li>
<li><a href="-/ready">Readiness</a> and <a href="-/healthy">health</a></li>
</ul>
<p>Queries scored every {interval}: {queries}</p>
</body></html>
"""


async def landing(request: web.Request) -> web.Response:
    """A landing page linking /metrics, as every Prometheus exporter has."""
    config = request.app[CONFIG]
    names = ", ".join(html.escape(q.name) for q in config.effective_queries())
    body = _LANDING.format(
        version=html.escape(__version__),
        prometheus=html.escape(config.prometheus.url),
        interval=format_duration(config.poll.interval),
        queries=names,
    )
    return web.Response(text=body, content_type="text/html")


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


def build_app(config: Config, registry: CollectorRegistry | None = None) -> web.Application:
    """Assemble the application; resources are created when the app starts, not here."""
    app = web.Application()
    app[CONFIG] = config
    registry = registry or CollectorRegistry(auto_describe=True)
    board = ScoreBoard(expire_after=config.poll.expire_after)
    registry.register(ScoreCollector(board))
    app[REGISTRY] = registry
    app[BOARD] = board
    app[METRICS] = SelfMetrics(registry)
    app[HEALTH] = Health()
    app.cleanup_ctx.extend([_executor_ctx, _prometheus_ctx, _poller_ctx])
    app.on_shutdown.append(_mark_not_ready)
    app.router.add_get("/", landing)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    return app


async def serve(config: Config, stop: asyncio.Event | None = None) -> None:
    """Run augur until SIGTERM/SIGINT (or `stop` is set), then shut down within the bound."""
    app = build_app(config)
    host, port = config.web.host_port()
    # shutdown_timeout: how long in-flight requests (a scrape) get before connections close.
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException as exc:
        await runner.cleanup()
        if not isinstance(exc, OSError):
            raise
        raise StartupError(
            f"cannot listen on {config.web.listen_address}: {exc.strerror}; "
            "choose another address with --web.listen-address"
        ) from None
    log.info("listening", extra={"address": f"http://{host}:{port}/"})
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
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
