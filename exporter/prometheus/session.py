"""The HTTP session augur talks to Prometheus with: timeouts, TLS, credentials, and the extra
headers and URL parameters of `prometheus.headers`, `header_files` and `params`.

Every Prometheus call goes through a session made here (the scoring loop's, the enricher's,
backtest's), so what a querier needs (a tenant header for Mimir, `partial_response` for
Thanos) is sent alike by all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import aiohttp

from exporter import __version__
from exporter.config.httpclient import basic_auth_header
from exporter.config.prometheus import PrometheusConfig

_CONNECT_TIMEOUT = 5.0


def make_session(
    cfg: PrometheusConfig, *, trace_configs: Sequence[aiohttp.TraceConfig] = ()
) -> aiohttp.ClientSession:
    """An HTTP session for Prometheus with timeouts, TLS and credentials; call it in the loop.

    The credentials, the CA bundle and the client certificate were read and checked when the
    configuration loaded. `prometheus.headers` (a tenant's `X-Scope-OrgID`) go out with every
    request and `prometheus.params` (Thanos's `partial_response`) on every URL, so the scoring
    loop and the enricher, which share this, send them alike.
    """
    token = cfg.bearer_token()
    headers = {
        **cfg.request_headers(),
        "User-Agent": f"augur/{__version__}",
        "Accept": "application/json",
        "Accept-Encoding": "gzip" if cfg.gzip() else "identity",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif cfg.basic_auth:
        headers["Authorization"] = basic_auth_header(
            cfg.basic_auth.username, cfg.basic_auth_password() or ""
        )
    # A total timeout alone would let an unreachable host eat the whole budget of one attempt.
    timeout = aiohttp.ClientTimeout(total=cfg.timeout, connect=min(cfg.timeout, _CONNECT_TIMEOUT))
    return aiohttp.ClientSession(
        headers=headers,
        timeout=timeout,
        connector=aiohttp.TCPConnector(ssl=cfg.tls.context()),
        trace_configs=list(trace_configs) or None,
        middlewares=(_with_params(cfg.params),) if cfg.params else (),
    )


def _with_params(params: Mapping[str, str]) -> aiohttp.ClientMiddlewareType:
    """A client middleware adding `params` to every request's URL.

    On the URL rather than in the form: every querier reads both, and a GET has no form.
    """

    async def middleware(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        request.url = request.url.extend_query(params)
        return await handler(request)

    return middleware
