"""Reloading the whole configuration of a running augur: SIGHUP and `POST /-/reload`.

A reload reads the same `--config` file, `AUGUR_*` environment and flags again, through the
same `load` as the start did, and applies the result in an order where nothing that can fail
comes after something already changed:

1. the file is loaded and checked, and the new queries' detectors and histories built beside
   the running ones: a file that does not load, or a query that cannot be built, changes
   nothing;
2. the alert loop: with its settings unchanged, the model files are read again and swapped in
   if they verify (what SIGHUP always did); with them changed (Alertmanager URLs, webhook,
   enrichment, runbooks, model), the new model is loaded beside the old one, then the loop is
   stopped and started on the new settings, its outbox carrying the accepted alerts over. A
   model that does not load changes nothing;
3. the queries, switched between two cycles of the scoring loop (exporter/scoring/queryset.py),
   which cannot fail: an unchanged query keeps its detectors and history, a changed one starts
   again, a removed one's series leave /metrics, a new one is scored from the next cycle; the
   loop's interval and timeouts, and the board's expiry.

Settings that only a restart can change (`RESTART_ONLY`: the listening socket, the state file,
the Prometheus connection, the shard) keep their running values; the reload applies the rest
and says which of them need a restart, as Prometheus applies what it can. The outcome is
logged, answered to `POST /-/reload` (200, or 500 with the reason) and exported as
`augur_config_last_reload_successful` and `augur_config_last_reload_success_timestamp_seconds`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge

from exporter import heap, logs
from exporter.alerts.loop import AlertLoop, AlertLoopError
from exporter.config.base import ConfigError
from exporter.config.root import Config
from exporter.scoring.board import ScoreBoard
from exporter.scoring.poller import Poller
from exporter.scoring.queryset import Swap, plan

log = logging.getLogger("augur.reload")

RESTART_ONLY: tuple[tuple[str, ...], ...] = (
    ("web", "listen_address"),
    ("web", "config_file"),  # the file itself reloads when it changes (exporter/web/server.py)
    ("web", "read_timeout"),
    ("web", "max_connections"),
    ("state", "path"),
    ("prometheus",),  # the scoring loop's session, and every query's history fetched through it
    ("shard",),  # which series this replica keeps: its histories hold only those
    ("poll", "workers"),  # the size of the running executor
)
"""Settings a reload leaves at their running values (logged: they need a restart)."""

STOP_SECONDS = 10.0
"""How long a reload in progress at shutdown may take to finish before it is cancelled."""


@dataclass
class Live:
    """The configuration augur runs on now: the one it started with, then each reload's."""

    config: Config


@dataclass(frozen=True)
class Outcome:
    """What a reload did, or why it changed nothing."""

    ok: bool
    message: str
    restart: tuple[str, ...] = ()


class ReloadError(Exception):
    """The reload changed nothing; the message says why."""


class ReloadMetrics:
    """The outcome of the last reload, named as Prometheus names its own.

    Sample output::

        augur_config_last_reload_successful 1.0
        augur_config_last_reload_success_timestamp_seconds 1.7649e+09
    """

    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float] = time.time):
        self.successful = Gauge(
            "augur_config_last_reload_successful",
            "Whether the last configuration reload (SIGHUP or POST /-/reload) succeeded; 1 from "
            "the start until one fails.",
            registry=registry,
        )
        self.success_time = Gauge(
            "augur_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration reload (the start time until one).",
            registry=registry,
        )
        self.clock = clock
        self.succeeded()

    def succeeded(self) -> None:
        """Record a reload (or the start) that applied its configuration."""
        self.successful.set(1)
        self.success_time.set(self.clock())

    def failed(self) -> None:
        """Record a reload that changed nothing."""
        self.successful.set(0)


def _get(config: Config, path: tuple[str, ...]) -> Any:
    value: Any = config
    for name in path:
        value = getattr(value, name)
    return value


def pinned(old: Config, new: Config) -> tuple[Config, list[str]]:
    """`new` with every `RESTART_ONLY` setting at `old`'s value, and those that differed."""
    differ = [path for path in RESTART_ONLY if _get(old, path) != _get(new, path)]
    sections: dict[str, dict[str, Any]] = {}
    whole: dict[str, Any] = {}
    for path in differ:
        if len(path) == 1:
            whole[path[0]] = _get(old, path)
        else:
            sections.setdefault(path[0], {})[path[1]] = _get(old, path)
    update = {
        **{name: getattr(new, name).model_copy(update=values) for name, values in sections.items()},
        **whole,
    }
    return new.model_copy(update=update), [".".join(path) for path in differ]


def _alert_settings(config: Config) -> tuple[object, ...]:
    """What the alert loop is built from (a change restarts it); secrets read at load included."""
    return (
        config.alertmanager,
        config.webhook,
        config.enrich,
        config.model,
        config.outbox,
        config.web.external_url,
    )


@dataclass
class Reloader:
    """Reloads on demand; one reload at a time (a second one waits, then reads the file again).

    `load` reads the configuration as the start did (None: the file is not read again, and a
    reload only reads the model files again); `poller` is the scoring loop once it runs.
    """

    live: Live
    load: Callable[[], Config] | None
    alerts: AlertLoop
    board: ScoreBoard
    poller: Callable[[], Poller | None]
    registry: InitVar[CollectorRegistry]
    metrics: ReloadMetrics = field(init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _tasks: set[asyncio.Task[Outcome]] = field(default_factory=set)
    _waiting: asyncio.Task[Outcome] | None = None
    _stopped: bool = False

    def __post_init__(self, registry: CollectorRegistry) -> None:
        self.metrics = ReloadMetrics(registry)

    def start(self, trigger: str) -> asyncio.Task[Outcome]:
        """Begin a reload that runs to its end even if whoever asked for it goes away.

        Asked for while another one waits for its turn, it is that one (which reads the file
        after both were asked for): a burst of requests costs one reload, not one each.
        """
        if self._waiting is not None and not self._waiting.done():
            return self._waiting
        task = asyncio.create_task(self.reload(trigger), name="augur-reload")
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)
        self._waiting = task
        return task

    async def stop(self) -> None:
        """At shutdown: refuse new reloads, let one in progress finish within `STOP_SECONDS`."""
        self._stopped = True
        tasks = list(self._tasks)
        if not tasks:
            return
        _, running = await asyncio.wait(tasks, timeout=STOP_SECONDS)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def reload(self, trigger: str) -> Outcome:
        """Reload and apply the configuration; the outcome (logged and exported too)."""
        async with self._lock:
            if self._waiting is asyncio.current_task():
                self._waiting = None  # from now on a new request starts a new reload
            if self._stopped:
                return Outcome(False, "augur is shutting down: configuration not reloaded")
            started = time.perf_counter()
            try:
                outcome = await self._reload()
            except Exception as exc:  # a reload that fails must never take augur down
                self.metrics.failed()
                expected = isinstance(exc, ReloadError)
                log.error(
                    "config_reload_failed",
                    extra={"trigger": trigger, "error": str(exc)},
                    exc_info=not expected,
                )
                why = str(exc) if expected else f"{type(exc).__name__}: {exc}"
                return Outcome(False, f"configuration not reloaded, the old one runs on: {why}")
            self.metrics.succeeded()
            extra = {"trigger": trigger, "seconds": round(time.perf_counter() - started, 3)}
            log.info("config_reloaded", extra={**extra, "applied": outcome.message})
            if outcome.restart:
                log.warning(
                    "reload_needs_restart",
                    extra={
                        "settings": ", ".join(outcome.restart),
                        "hint": "these keep their running values until augur restarts",
                    },
                )
            return outcome

    async def _reload(self) -> Outcome:
        old = self.live.config
        try:
            # Reading the file and the secrets it names blocks: not on the event loop.
            new = await asyncio.to_thread(self.load) if self.load is not None else old
        except ConfigError as exc:
            raise ReloadError(str(exc)) from None
        config, restart = pinned(old, new)
        poller = self.poller()
        queries: Swap | None = None
        if poller is not None:
            try:  # built beside the running queries; nothing changed yet if this fails
                queries = plan(poller, config.effective_queries())
            except Exception as exc:
                raise ReloadError(f"a query cannot be set up: {exc}") from exc
        try:
            done = [await self._alerts(old, config)]
        except BaseException:
            if queries is not None:
                queries.abandon()
            raise
        if poller is not None and queries is not None:
            # Between two cycles, never in one: a cycle reads the runners and feeds throughout.
            async with poller.turn:
                changes = queries.commit(poller)
                poller.interval = poller.health.max_delay = config.poll.interval
                poller.cpu_timeout = config.poll.cpu_timeout
                poller.snapshot_interval = config.state.snapshot_interval
            done.insert(0, f"queries {changes.summary()}")
        self.board.expire_after = config.poll.expire_after
        if config.log != old.log:
            logs.setup(config.log.level, config.log.format)
        self.live.config = config
        if restart:
            done.append(f"needs a restart to apply: {', '.join(restart)}")
        return Outcome(True, "; ".join(done), tuple(restart))

    async def _alerts(self, old: Config, new: Config) -> str:
        """Bring the alert loop to `new`'s settings; what it did. Raises ReloadError if it
        could not (then the old loop runs on)."""
        serving = [self.alerts.model.current] if self.alerts.model is not None else []
        try:
            return await self._alert_loop(old, new)
        finally:
            now = self.alerts.model
            if serving and (now is None or now.current is not serving[0]):
                # The old model's last reference is `serving` (calls in flight aside): dropped,
                # collected and its ~100 MB handed back now rather than at some later moment.
                serving.clear()
                await asyncio.to_thread(_release_memory)

    async def _alert_loop(self, old: Config, new: Config) -> str:
        alerts = self.alerts
        if _alert_settings(old) == _alert_settings(new):
            if not new.alertmanager.enabled():
                return "alert enrichment off"
            failed = await alerts.reload_model()
            if failed is not None:
                raise ReloadError(f"the text model does not load: {failed}")
            return "model files read again"
        model = current = alerts.model
        try:
            if not new.alertmanager.enabled() or not alerts.loads_model:
                model = None
            elif current is not None and (current.model_dir, current.cache_size) == (
                new.model.dir,
                new.model.cache_size,
            ):
                # The serving model reads its files again; if they are the same, it stays.
                if (failed := await current.reload(None, threads=new.model.threads)) is not None:
                    raise ReloadError(f"the text model does not load: {failed}")
            else:
                # Loaded beside the old one, which serves until the loop restarts.
                model = await alerts.load_model(new)
            await alerts.reconfigure(new, model)
        except AlertLoopError as exc:
            raise ReloadError(str(exc)) from None
        if not new.alertmanager.enabled():
            return "alert enrichment turned off"
        return f"alert loop restarted (Alertmanagers: {', '.join(new.alertmanager.urls)})"


def _release_memory() -> None:
    gc.collect()
    heap.release_freed_memory()


RELOADER = web.AppKey("reloader", Reloader)
LIVE = web.AppKey("live", Live)
"""The configuration in force; `CONFIG` (exporter/app.py) stays the one augur started with."""


def install(app: web.Application, reloader: Reloader) -> None:
    """Put `reloader` and its configuration on `app`, and route `POST /-/reload` to it."""
    app[RELOADER] = reloader
    app[LIVE] = reloader.live
    app.router.add_post("/-/reload", handle)
    app.router.add_put("/-/reload", handle)  # Prometheus takes both


async def handle(request: web.Request) -> web.Response:
    """`POST /-/reload`: 200 with what was applied, 500 with why nothing was; 403 unless
    `web.enable_lifecycle` (Prometheus's answer and wording)."""
    if not request.app[LIVE].config.web.enable_lifecycle:
        return web.Response(
            text="Lifecycle API is not enabled.\n", status=403, content_type="text/plain"
        )
    outcome = await asyncio.shield(request.app[RELOADER].start("http"))
    return web.Response(
        text=outcome.message + "\n", status=200 if outcome.ok else 500, content_type="text/plain"
    )
