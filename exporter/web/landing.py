"""The landing page at `/`: links to /metrics and health, as every exporter has, and what the
scoring loop is doing per query: series seen, scored and warming up, the time until the last
of them gets its first score, and the last successful poll.

The figures are those of `exporter/scoring/warmup.py`, the same the gauges export; a new user
who sees `augur_series_scored 0` finds here why and for how long.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from exporter import __version__
from exporter.assistant.ask_web import form as ask_form
from exporter.config.durations import format_duration
from exporter.config.root import Config
from exporter.scoring.poller import Poller
from exporter.scoring.warmup import QueryStatus

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>augur</title>
<style>
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: .2rem .5rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
</style></head>
<body>
<h1>augur {version}</h1>
<p>Anomaly scores and forecasts for the series of {prometheus}.</p>
{ask}
<ul>
<li><a href="metrics">Metrics</a></li>
<li><a href="-/ready">Readiness</a> and <a href="-/healthy">health</a></li>
<li><a href="runbooks/">Runbooks</a></li>
</ul>
<h2>Queries</h2>
<p>Scored every {interval}. A series is warming up while its detectors collect the points
they need before its first score.</p>
<table>
<tr><th>query</th><th>series seen</th><th>scored</th><th>warming up</th><th>first score in</th>
<th>last poll</th></tr>
{rows}
</table>
</body></html>
"""
_ROW = (
    "<tr><td>{query}</td><td>{seen}</td><td>{scored}</td><td>{warming}</td>"
    "<td>{first_score}</td><td>{last_poll}</td></tr>"
)


def without_userinfo(url: str) -> str:
    """`url` without credentials, query or fragment, fit to show to anyone allowed to see `/`."""
    # The configuration refuses credentials in the URL; the page never relies on that alone.
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _row(status: QueryStatus, now: float) -> str:
    if status.seen is None:  # no successful poll yet
        seen = scored = warming = first_score = last_poll = "–"
    else:
        seen, scored, warming = str(status.seen), str(status.scored), str(status.warming)
        first_score = status.first_score_in() if status.warming else "–"
        last = status.last_poll if status.last_poll is not None else now
        ago = format_duration(max(0, math.floor(now - last)))
        stamp = datetime.fromtimestamp(last, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        last_poll = f"{stamp} ({ago} ago)"
    return _ROW.format(
        query=html.escape(status.query.name),
        seen=seen,
        scored=scored,
        warming=warming,
        first_score=html.escape(first_score),
        last_poll=last_poll,
    )


def render(config: Config, statuses: Sequence[QueryStatus], now: float) -> str:
    """The page for `config` with one table row per query status."""
    return _PAGE.format(
        ask=ask_form(),
        version=html.escape(__version__),
        prometheus=html.escape(without_userinfo(config.prometheus.url)),
        interval=format_duration(config.poll.interval),
        rows="\n".join(_row(s, now) for s in statuses),
    )


def landing(
    config_of: Callable[[web.Application], Config], poller_key: web.AppKey[Poller]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler of `/`, reading the configuration in force (a reload changes it) and the
    poller at each request (the poller is there once the scoring loop started; before, every
    query shows as not polled)."""

    async def handler(request: web.Request) -> web.Response:
        config = config_of(request.app)
        poller = request.app.get(poller_key)
        if poller is not None:
            statuses = [runner.status for runner in poller.runners]
        else:
            statuses = [QueryStatus(q) for q in config.effective_queries()]
        body = render(config, statuses, time.time())
        return web.Response(text=body, content_type="text/html")

    return handler
