"""The configuration's settings: every section of the file as a strict pydantic model.

`Config` is the root; `exporter.config` reads the file, the `AUGUR_*` environment and the
flags into it and re-exports every name here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from exporter.alerts.enrich import EnrichConfig
from exporter.alerts.models import AlertmanagerConfig, WebhookConfig
from exporter.detectors import DETECTORS, DetectorParams
from exporter.durations import Duration, format_duration, parse_duration
from exporter.incidents import DEFAULT_ESCALATION, DEFAULT_RECOVERY

SECRET_ENV = {
    "bearer_token": "AUGUR_PROMETHEUS_BEARER_TOKEN",
    "basic_auth_password": "AUGUR_PROMETHEUS_BASIC_AUTH_PASSWORD",
}


class Strict(BaseModel):
    """Base model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BasicAuth(Strict):
    """HTTP basic auth; the password comes from `password_file` or the environment."""

    username: str
    password_file: Path | None = None


class TLS(Strict):
    """TLS options for talking to Prometheus over https."""

    ca_file: Path | None = None
    insecure_skip_verify: bool = False


class PrometheusConfig(Strict):
    """Where and how to query Prometheus (or Thanos, Mimir: only the HTTP API is used)."""

    url: str
    timeout: Duration = 30.0
    retries: int = Field(3, ge=0, le=10)
    max_concurrency: int = Field(4, ge=1, le=64)
    compression: Literal["auto", "gzip", "none"] = "auto"
    bearer_token_file: Path | None = None
    basic_auth: BasicAuth | None = None
    tls: TLS = TLS()
    # Secrets found in the environment at load time; never part of the model's fields or repr.
    _env_secrets: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_credential(self) -> PrometheusConfig:
        if self.bearer_token_file is not None and self.basic_auth is not None:
            raise ValueError("set either bearer_token_file or basic_auth, not both")
        return self

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            if "bearer_token" in data:
                raise ValueError(
                    "bearer_token: secrets are not read from the file; set bearer_token_file "
                    f"or the environment variable {SECRET_ENV['bearer_token']}"
                )
            auth = data.get("basic_auth")
            if isinstance(auth, Mapping) and "password" in auth:
                raise ValueError(
                    "basic_auth.password: secrets are not read from the file; set "
                    f"basic_auth.password_file or {SECRET_ENV['basic_auth_password']}"
                )
        return data

    def gzip(self) -> bool:
        """Whether to ask Prometheus for gzip-compressed answers.

        `auto` asks for it except on loopback: compressing a 48 MB range answer costs
        Prometheus about 3 s of CPU, ten times the cost of sending it uncompressed to a
        sidecar (docs/benchmarks.md); over a real network the smaller answer wins.
        """
        if self.compression != "auto":
            return self.compression == "gzip"
        host = urlsplit(self.url).hostname or ""
        try:
            return not ipaddress.ip_address(host).is_loopback
        except ValueError:  # a name, not an address
            return host != "localhost"

    def bearer_token(self) -> str | None:
        """The bearer token from its file or the environment, if any."""
        return self._secret(self.bearer_token_file, "bearer_token")

    def basic_auth_password(self) -> str | None:
        """The basic-auth password from its file or the environment, if any."""
        path = self.basic_auth.password_file if self.basic_auth else None
        return self._secret(path, "basic_auth_password")

    def _secret(self, path: Path | None, name: str) -> str | None:
        if path is not None:
            return path.read_text(encoding="utf-8").strip()
        return self._env_secrets.get(name) or None


class PollConfig(Strict):
    """The scoring loop's schedule and its bounded executor."""

    interval: Duration = Field(60.0, gt=0)
    workers: int = Field(2, ge=1, le=32)
    cpu_timeout: Duration = Field(30.0, gt=0)
    expire_after: int = Field(3, ge=1)


class WebConfig(Strict):
    """augur's own HTTP server."""

    listen_address: str = "0.0.0.0:9465"

    @field_validator("listen_address")
    @classmethod
    def _address(cls, value: str) -> str:
        _, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"must be HOST:PORT (e.g. 0.0.0.0:9465), got {value!r}")
        return value

    def host_port(self) -> tuple[str, int]:
        """The address split into host and port; an empty host means all interfaces."""
        host, _, port = self.listen_address.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)


class LogConfig(Strict):
    """Logging: level and line format."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["logfmt", "json"] = "logfmt"


REPO_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "onnx"
"""The model shipped in the source tree; images and installs set `model.dir` explicitly."""


class ModelConfig(Strict):
    """The alert-text model: where its files are and how many threads inference gets."""

    dir: Path = REPO_MODEL_DIR
    threads: int = Field(1, ge=1, le=16)


class StateConfig(Strict):
    """Where detector state is kept between restarts, and how often it is written."""

    path: Path = Path("augur.db")
    snapshot_interval: Duration = Field(300.0, gt=0)


# A pydantic error written as `path: message`: a detector's settings here, the whole file in
# `exporter.config.load`.
def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "dict[", "list[")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _message(error: Mapping[str, Any]) -> str:
    kind = error.get("type")
    if kind == "extra_forbidden":
        return "unknown setting (check the spelling; see the configuration reference)"
    if kind == "missing":
        return "required setting is missing"
    msg = str(error.get("msg", ""))
    return msg.removeprefix("Value error, ")


def _detectors(value: Any) -> dict[str, DetectorParams]:
    """Accept `[zscore, ewma]` or `{zscore: {window: 60}, ewma: {}}` and validate params."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise ValueError("write detectors as a list of names or a mapping name -> settings")
        value = dict.fromkeys(value)
    if not isinstance(value, Mapping):
        raise ValueError("write detectors as a list of names or a mapping name -> settings")
    if not value:
        raise ValueError("at least one detector is needed")
    out: dict[str, DetectorParams] = {}
    for name, params in value.items():
        spec = DETECTORS.get(str(name))
        if spec is None:
            known = ", ".join(sorted(DETECTORS))
            raise ValueError(f'unknown detector "{name}" (known: {known})')
        if isinstance(params, DetectorParams):
            out[name] = params
            continue
        try:
            out[name] = spec.params.model_validate(params or {})
        except ValidationError as exc:
            raise ValueError(
                "; ".join(f"{name}.{_path(e['loc'])}: {_message(e)}" for e in exc.errors())
            ) from None
    return out


_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class QueryConfig(Strict):
    """One PromQL expression whose series are scored on every cycle."""

    name: str
    expr: str
    # The shipped default: the ensemble over three days at 5-minute steps, enough for it to
    # warm up at once and to see a daily pattern.
    detectors: Annotated[dict[str, DetectorParams], BeforeValidator(_detectors)] = Field(
        default_factory=lambda: _detectors(["ensemble"])
    )
    lookback: Duration = Field(3 * 86400.0, gt=0)
    step: Duration = Field(300.0, gt=0)
    direction: Literal["up", "down", "both"] = "both"
    min_deviation: float = Field(0.0, ge=0)
    min_relative_deviation: float = Field(0.0, ge=0)
    labels: list[str] | None = None
    max_series: int = Field(1000, ge=1)
    valid_range: tuple[float, float] | None = None
    seasonality: str = "auto"
    horizons: list[Duration] = Field(default_factory=list)
    recovery: Duration = Field(DEFAULT_RECOVERY, ge=0)
    """How long a series must score below 1 before its incident closes."""
    escalation: float = Field(DEFAULT_ESCALATION, gt=1, allow_inf_nan=False)
    """An open incident is raised a stage by a score this many times the one that opened it."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str] | None) -> list[str] | None:
        for label in value or []:
            if not _LABEL_RE.match(label):
                raise ValueError(f"not a valid label name: {label!r}")
        return value

    @field_validator("seasonality")
    @classmethod
    def _seasonality(cls, value: str) -> str:
        if value not in ("none", "auto"):
            try:
                parse_duration(value)
            except ValueError:
                raise ValueError(
                    f"write none, auto or a period such as 1d or 1w, got {value!r}"
                ) from None
        return value

    @field_validator("valid_range")
    @classmethod
    def _range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not value[0] < value[1]:
            raise ValueError(f"write [low, high] with low < high, got {list(value)}")
        return value

    @field_validator("horizons")
    @classmethod
    def _horizons(cls, value: list[float]) -> list[float]:
        if any(h <= 0 for h in value):
            raise ValueError("every horizon must be a positive duration such as 1h")
        return sorted(set(value))

    @model_validator(mode="after")
    def _window(self) -> QueryConfig:
        if self.lookback < 2 * self.step:
            raise ValueError(
                f"lookback ({format_duration(self.lookback)}) must cover at least two steps "
                f"({format_duration(self.step)})"
            )
        period = self.season_seconds()
        if isinstance(period, float) and period < 2 * self.step:
            raise ValueError(
                f"seasonality ({self.seasonality}) must span at least two steps "
                f"({format_duration(self.step)})"
            )
        return self

    def season_seconds(self) -> float | str | None:
        """The seasonality as the detectors' wrapper takes it: None, "auto" or a period."""
        if self.seasonality == "none":
            return None
        if self.seasonality == "auto":
            return "auto"
        return parse_duration(self.seasonality)


DEFAULT_QUERIES: tuple[QueryConfig, ...] = (
    QueryConfig(name="process_cpu", expr="rate(process_cpu_seconds_total[5m])"),
    QueryConfig(name="process_memory", expr="process_resident_memory_bytes"),
    QueryConfig(
        name="node_cpu_busy",
        expr='1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))',
    ),
    QueryConfig(
        name="node_memory_available_ratio",
        expr="node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
    ),
    QueryConfig(name="scrape_duration", expr="scrape_duration_seconds"),
)
"""What is scored when the file names no queries: process and node basics, if present."""


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
