"""`GET /report?since=24h&lang=zh&format=html&top=10` on augur's web server.

Behind the same basic auth as every other page (exporter/web/auth.py). Bad parameters are
answered 400 with the reason; one report is built at a time (a second waits), since each reads
a period of every scored series.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from exporter.assistant.report import build, check_parameters
from exporter.config.root import Config
from exporter.prometheus.client import PrometheusClient


def report_route(
    client_of: Callable[[web.Application], PrometheusClient],
    config_of: Callable[[web.Application], Config],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler, reading the app's Prometheus client and configuration in force."""
    lock = asyncio.Lock()

    async def report(request: web.Request) -> web.Response:
        query = request.query
        lang, fmt = query.get("lang", "en"), query.get("format", "html")
        try:
            since, top = check_parameters(
                query.get("since", "24h"), lang, fmt, query.get("top", "10")
            )
        except ValueError as exc:
            return web.Response(status=400, text=f"{exc}\n")
        async with lock:
            built = await build(
                client_of(request.app),
                since,
                lang=lang,
                fmt=fmt,
                top=top,
                alertmanagers=config_of(request.app).alertmanager.urls,
                alertmanager=config_of(request.app).alertmanager,
            )
        content_type = "text/html" if fmt == "html" else "text/markdown"
        return web.Response(text=built.text, content_type=content_type, charset="utf-8")

    return report
