"""Bounds on what a client can hold: open connections, and time to send a request.

aiohttp closes a connection that sends no complete request head within its keep-alive timeout
(the timer starts when the connection opens and is not reset by bytes that do not finish the
head), so `web.read_timeout` is passed as that. A body is not covered by it: `body_deadline`
answers 408 and closes when the body has not arrived `read_timeout` after its head. `LimitedSite`
answers 503 to a connection beyond `web.max_connections` and closes it; TLS handshakes are
bounded by `read_timeout` too.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

log = logging.getLogger("augur.web")


_BUSY_BODY = b"503 Service Unavailable: too many open connections, try again\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_BUSY_BODY), _BUSY_BODY)
)
_LOG_EVERY_SECONDS = 60.0


class BodyTimeoutError(Exception):
    """The request's body did not arrive within `web.read_timeout`."""


def body_deadline(seconds: float, on_timeout: Callable[[], None] | None = None) -> Middleware:
    """Middleware: a body still incomplete `seconds` after the head fails its reader; 408.

    `on_timeout` is called for each such request (a counter's `inc`).
    """

    @web.middleware
    async def deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists or request.content.is_eof():
            return await handler(request)
        expired = False

        def expire() -> None:
            nonlocal expired
            if not request.content.is_eof():
                expired = True
                request.content.set_exception(BodyTimeoutError())

        timer = asyncio.get_running_loop().call_later(seconds, expire)
        try:
            response = await handler(request)
        except Exception:
            if not expired:
                raise
        finally:
            timer.cancel()
        if not expired:
            return response
        if on_timeout is not None:
            on_timeout()
        log.warning(
            "request_body_timeout",
            extra={"path": request.path, "remote": request.remote, "seconds": seconds},
        )
        timeout = web.Response(
            status=408, text=f"408 Request Timeout: the body took longer than {seconds:g} s\n"
        )
        timeout.force_close()
        return timeout

    return deadline


class _Busy(asyncio.Protocol):
    """A connection beyond the limit: 503 and close, without reading the request."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_BUSY)
        transport.close()


class LimitedSite(web.BaseSite):
    """A TCP site like aiohttp's `TCPSite` that keeps at most `max_connections` open."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        max_connections: int,
        handshake_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 128,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._port = port
        self._max_connections = max_connections
        self._handshake_timeout = handshake_timeout
        self.refused = 0
        """Connections answered 503 because `max_connections` were open."""
        self._logged_at = 0.0
        self._on_refused = on_refused

    @property
    def name(self) -> str:
        """The URL it serves."""
        scheme = "https" if self._ssl_context else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self._port}/"

    def _protocol(self) -> asyncio.BaseProtocol:
        server = self._runner.server
        assert server is not None
        if len(server.connections) < self._max_connections:
            return server()
        self.refused += 1
        if self._on_refused is not None:
            self._on_refused()
        now = time.monotonic()
        if now - self._logged_at >= _LOG_EVERY_SECONDS:
            self._logged_at = now
            log.warning(
                "connections_refused",
                extra={"limit": self._max_connections, "refused_so_far": self.refused},
            )
        return _Busy()

    async def start(self) -> None:
        """Listen; the port is bound when this returns."""
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            ssl_handshake_timeout=self._handshake_timeout if self._ssl_context else None,
            reuse_address=True,
        )
        if self._port == 0 and self._server.sockets:
            self._port = self._server.sockets[0].getsockname()[1]
