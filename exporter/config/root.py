"""`Config`, the root of the file, and the sections about augur's own process.

Those are the scoring loop's schedule (`poll`), the HTTP server (`web`), logging (`log`) and
where detector state is kept (`state`). The other sections' models are in `queries`,
`prometheus`, `alerts`, `outbox` and `shard` of this package.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from exporter.config.alerts import AlertmanagerConfig, EnrichConfig, ModelConfig, WebhookConfig
from exporter.config.base import Strict
from exporter.config.durations import Duration
from exporter.config.outbox import OutboxConfig
from exporter.config.prometheus import PrometheusConfig
from exporter.config.queries import DEFAULT_QUERIES, QueryConfig
from exporter.config.shard import ShardConfig
from exporter.config.webfile import WebFilePath


class PollConfig(Strict):
    """The scoring loop's schedule and its bounded executor."""

    interval: Duration = Field(60.0, gt=0)
    workers: int = Field(2, ge=1, le=32)
    cpu_timeout: Duration = Field(30.0, gt=0)
    expire_after: int = Field(3, ge=1)


class WebConfig(Strict):
    """augur's own HTTP server: where it listens, its TLS and auth file, its limits.

    `read_timeout` bounds how long a client may take to send a request's headers, and then
    its body; a connection idle that long between requests is closed too. `max_connections`
    bounds the open connections; one more is answered 503 and closed. `external_url` is how
    others reach augur (as Prometheus's `--web.external-url`): enriched alerts link to its
    runbook pages under it. `enable_lifecycle` opens `POST /-/reload` (off by default, as
    Prometheus's `--web.enable-lifecycle`: whoever reaches the port could otherwise make augur
    reload; SIGHUP always works).
    """

    listen_address: str = "0.0.0.0:9465"
    external_url: str | None = None
    config_file: WebFilePath | None = None
    read_timeout: Duration = Field(15.0, gt=0, le=3600)
    max_connections: int = Field(512, ge=1, le=100_000)
    enable_lifecycle: bool = False

    @field_validator("listen_address")
    @classmethod
    def _address(cls, value: str) -> str:
        _, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"must be HOST:PORT (e.g. 0.0.0.0:9465), got {value!r}")
        return value

    @field_validator("external_url")
    @classmethod
    def _external(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("credentials in the URL would be published in every alert")
        if parts.query or parts.fragment:
            raise ValueError(f"must have no ?query or #fragment, got {value!r}")
        return value.rstrip("/")

    def external(self) -> str:
        """`external_url`, or `http://<this host's name>:<port>` made from the listen address."""
        if self.external_url:
            return self.external_url
        host, port = self.host_port()
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def host_port(self) -> tuple[str, int]:
        """The address split into host and port; an empty host means all interfaces."""
        host, _, port = self.listen_address.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)


class LogConfig(Strict):
    """Logging: level and line format."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["logfmt", "json"] = "logfmt"


class StateConfig(Strict):
    """Where detector state is kept between restarts, and how often it is written."""

    path: Path = Path("augur.db")
    snapshot_interval: Duration = Field(300.0, gt=0)


class Config(Strict):
    """The whole configuration of an augur process."""

    prometheus: PrometheusConfig
    poll: PollConfig = PollConfig()
    web: WebConfig = WebConfig()
    log: LogConfig = LogConfig()
    state: StateConfig = StateConfig()
    queries: list[QueryConfig] = Field(default_factory=list)
    alertmanager: AlertmanagerConfig = AlertmanagerConfig()
    webhook: WebhookConfig = WebhookConfig()
    enrich: EnrichConfig = EnrichConfig()
    model: ModelConfig = ModelConfig()
    outbox: OutboxConfig = OutboxConfig()
    shard: ShardConfig = ShardConfig()

    @field_validator("queries")
    @classmethod
    def _unique(cls, value: list[QueryConfig]) -> list[QueryConfig]:
        seen: set[str] = set()
        for q in value:
            if q.name in seen:
                raise ValueError(f'query name "{q.name}" is used twice; names must be unique')
            seen.add(q.name)
        return value

    def effective_queries(self) -> tuple[QueryConfig, ...]:
        """The configured queries, or the built-in defaults when none are configured."""
        return tuple(self.queries) or DEFAULT_QUERIES
