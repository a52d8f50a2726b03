"""augur's app served on its configured loopback address for a test, the way `augur run` serves it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from exporter.app import build_app
from exporter.config.root import Config


@asynccontextmanager
async def running(cfg: Config) -> AsyncIterator[web.Application]:
    """The app listening on `cfg.web`; on exit its cleanup runs (the poller's last snapshot)."""
    app = build_app(cfg)
    runner = web.AppRunner(app)
    await runner.setup()
    host, port = cfg.web.host_port()
    await web.TCPSite(runner, host, port).start()
    try:
        yield app
    finally:
        await runner.cleanup()
