"""augur's app served on its configured loopback address for a test, the way `augur run` serves it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from exporter.app import METRICS, WEB, build_app
from exporter.config.root import Config
from exporter.web.server import make_runner, start_site


@asynccontextmanager
async def running(cfg: Config) -> AsyncIterator[web.Application]:
    """The app listening on `cfg.web`, with its TLS, auth and limits; on exit its cleanup runs
    (the poller's last snapshot)."""
    app = build_app(cfg)
    runner = make_runner(app, cfg)
    await runner.setup()
    await start_site(runner, cfg, app[WEB], app[METRICS].http_connections_refused.inc)
    try:
        yield app
    finally:
        await runner.cleanup()
