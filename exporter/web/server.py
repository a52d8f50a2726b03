"""augur's endpoints as `web.config_file` has them: the SSL context, the users, the headers.

`WebServer` holds what the file said last; `watch()` looks at the file and the certificate,
key and client CA it names every `RELOAD_SECONDS` and reloads when one changed (a Kubernetes
Secret update included: the mount's symlink then points at new files). A file that no longer
loads is logged and the last good settings stay. Turning TLS on or off takes a restart: the
listening socket is either TLS or not.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path

from aiohttp import web

from exporter.config.root import Config, WebConfig
from exporter.config.webfile import WebFile, read_web_file
from exporter.web.auth import Users
from exporter.web.limits import LimitedSite
from exporter.web.tls import apply, server_context

log = logging.getLogger("augur.web")

RELOAD_SECONDS = 5.0
"""How often the web configuration file and its certificates are looked at."""

_Stamp = tuple[int, int, int] | None


def _stamp(path: Path | None) -> _Stamp:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class WebServer:
    """TLS and basic auth of augur's endpoints, reloaded when their files change."""

    def __init__(self, config: WebConfig) -> None:
        self.path = config.config_file
        self.file = read_web_file(self.path) if self.path is not None else WebFile()
        self.users = Users(self.file.basic_auth_users)
        tls = self.file.tls_server_config
        self.context: ssl.SSLContext | None = server_context(tls) if tls is not None else None
        self._stamps = self._stat()

    def _stat(self) -> tuple[_Stamp, ...]:
        tls = self.file.tls_server_config
        files = (tls.cert_file, tls.key_file, tls.client_ca_file) if tls else ()
        return tuple(_stamp(path) for path in (self.path, *files))

    def headers(self) -> Mapping[str, str]:
        """The headers added to every answer (`http_server_config.headers`)."""
        return self.file.http_server_config.headers

    def reload_if_changed(self) -> bool:
        """Read the file again if it or a file it names changed; whether anything was applied."""
        if self.path is None:
            return False
        stamps = self._stat()
        if stamps == self._stamps:
            return False
        self._stamps = stamps
        try:
            new = read_web_file(self.path)
            if new.tls() != self.file.tls():
                raise ValueError("turning TLS on or off takes a restart of augur")
            if new.tls_server_config is not None and self.context is not None:
                apply(self.context, new.tls_server_config)
        except (ValueError, ssl.SSLError, OSError) as exc:
            log.error(
                "web_config_reload_failed",
                extra={"file": str(self.path), "error": str(exc), "kept": "the last good one"},
            )
            return False
        if new.basic_auth_users != self.file.basic_auth_users:
            self.users = Users(new.basic_auth_users)
        self.file = new
        self._stamps = self._stat()
        log.info("web_config_reloaded", extra={"file": str(self.path)})
        return True

    async def watch(self) -> None:
        """Reload on change until cancelled; file checks run off the event loop."""
        while True:
            await asyncio.sleep(RELOAD_SECONDS)
            await asyncio.to_thread(self.reload_if_changed)


def make_runner(app: web.Application, config: Config) -> web.AppRunner:
    """The runner of `augur run` and the tests: an idle or slow client is cut at read_timeout.

    shutdown_timeout: how long in-flight requests (a scrape) get before connections close;
    lingering_time: how long the unread rest of a body answered early may take to arrive.
    """
    return web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=5.0,
        keepalive_timeout=config.web.read_timeout,
        lingering_time=min(10.0, config.web.read_timeout),
    )


async def start_site(
    runner: web.AppRunner,
    config: Config,
    server: WebServer,
    on_refused: Callable[[], None] | None = None,
) -> LimitedSite:
    """Listen on `web.listen_address` with the server's TLS and the connection limit.

    `augur run` and the tests both serve through this; `on_refused` counts the connections
    turned away.
    """
    host, port = config.web.host_port()
    site = LimitedSite(
        runner,
        host,
        port,
        ssl_context=server.context,
        max_connections=config.web.max_connections,
        handshake_timeout=config.web.read_timeout,
        on_refused=on_refused,
    )
    await site.start()
    return site
