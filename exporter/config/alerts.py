"""The alert loop's settings: the webhook, enrichment, the text model, the Alertmanager replicas.

The webhook's token is read from `webhook.bearer_token_file` when the configuration loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, PrivateAttr, field_validator, model_validator

from exporter.config.base import Strict
from exporter.config.durations import Duration
from exporter.config.httpclient import TLS, BasicAuth, basic_auth_header, one_credential
from exporter.config.secrets import SecretFile, read_secret

_PACKAGE = Path(__file__).resolve().parents[1]

REPO_MODEL_DIR = _PACKAGE.parent / "models" / "onnx"
"""The model's source: `augur model build` writes it here, and a checkout finds it here."""

MODEL_PACKAGE = "augur_model"
"""The import name under which augur's wheel installs models/onnx (pyproject.toml)."""

MODEL_HINT = (
    f"the model comes with augur's wheel (installed as the package {MODEL_PACKAGE}) and with a "
    "checkout (models/onnx), and `augur model build` rebuilds it: leave model.dir unset to use "
    "the installed one, or point it (--model-dir, AUGUR_MODEL_DIR) at a folder with its "
    "manifest.json"
)
"""How to get the text model, for the errors that find it missing."""


def shipped_model_dir(*, package: Path = _PACKAGE) -> Path:
    """The model that came with the `exporter` package at `package`: installed, else checkout.

    A wheel installs `augur_model` beside `exporter` in site-packages; a checkout (or an
    editable install of one) has `models/onnx` beside it. Looking beside the running code, not
    on sys.path, keeps each checkout on its own model even where another augur is installed.
    An explicit `model.dir` (file, `AUGUR_MODEL_DIR`, `--model-dir`) is never replaced by this.
    """
    installed = package.parent / MODEL_PACKAGE
    if (installed / "manifest.json").is_file():
        return installed
    return package.parent / "models" / "onnx"


RUNBOOKS_DIR = _PACKAGE / "runbooks"
"""The starter runbooks shipped with augur, one per category in English and Chinese."""

# E5 puts any two ops texts at cosine 0.80-0.90 and short Chinese texts closer still, so
# similarity alone cannot tell a fitting runbook from a neighbouring one: the category decides
# (tests/test_knowledge.py holds the shipped runbooks to known alerts in both languages).
RUNBOOK_MIN_SCORE = 0.87
"""Below this (similarity plus the category and alert-name boosts) no runbook is claimed."""


class WebhookConfig(Strict):
    """augur's `POST /webhook`, where Alertmanager sends the alerts to enrich."""

    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    bearer_token_file: SecretFile | None = None
    enrich_timeout: Duration = Field(5.0, gt=0)
    # Backpressure: over either bound the webhook answers 503 with Retry-After, which
    # Alertmanager retries (its webhook notifier retries 5xx only, not 429).
    max_inflight_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    """Body bytes of all requests being read, parsed and stored at once (~25x that in RSS)."""
    max_backlog: int = Field(20_000, ge=1)
    """Alerts accepted and not yet enriched; past it new notifications wait in Alertmanager."""
    retry_after: Duration = Field(10.0, gt=0)
    _bearer_token: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _token(self) -> WebhookConfig:
        if self.bearer_token_file is not None:
            self._bearer_token = read_secret(self.bearer_token_file)
        return self

    def bearer_token(self) -> str | None:
        """The token Alertmanager must send, read from `bearer_token_file` at load, if any."""
        return self._bearer_token


class EnrichConfig(Strict):
    """How alerts are enriched: runbooks, the Prometheus deadline, the related-series window."""

    knowledge_dir: Path = RUNBOOKS_DIR
    runbook_base_url: str | None = None
    runbook_min_score: float = Field(RUNBOOK_MIN_SCORE, ge=0.0, le=2.0)
    deadline: Duration = Field(0.5, gt=0)
    model_timeout: Duration = Field(2.0, gt=0)
    related_before: Duration = Field(900.0, ge=0)
    related_after: Duration = Field(300.0, ge=0)
    related_step: Duration = Field(15.0, gt=0)
    related_settle: Duration = Field(180.0, ge=0)
    """How long after an alert's start its related anomalies are complete enough: an alert
    enriched sooner has them looked at once more then, and re-posted. Rules and augur's scores
    do not cross at the same second: a score is known up to a poll interval (60 s) plus a
    scrape of augur (<= 60 s) after the sample that made it anomalous, plus a step of the
    range query; 180 s covers that. 0 turns the second look off."""
    related_min_score: float = Field(1.0, ge=0)
    max_related: int = Field(5, ge=0, le=50)
    metric_names_ttl: Duration = Field(300.0, gt=0)
    trusted_generator_hosts: list[str] = Field(default_factory=list)
    """Hosts (as in generatorURL, port optional) whose rule expressions augur runs even from an
    unauthenticated webhook; the configured Prometheus's host always is one."""
    max_expr_series: int = Field(1000, ge=1)
    """A rule expression answering more series than this gives no reading."""


class ModelConfig(Strict):
    """The alert-text model: where its files are, and the CPU its inference gets.

    `workers` calls run at once (onnxruntime's `run` is thread-safe and releases the GIL),
    each on `threads` onnxruntime threads. Two single-threaded calls at once enrich 1.4x as
    many alerts per second on 2 cores as one call, on one thread or on two (the operators are
    too small to split well): docs/benchmarks.md.

    `cache_size` templates keep the model's answer for texts that differ only in names and
    numbers (a storm of one rule over many pods), `text/cache.py`; 0 turns the cache off.
    """

    dir: Path = Field(default_factory=shipped_model_dir)
    threads: int = Field(1, ge=1, le=16)
    workers: int = Field(2, ge=1, le=16)
    cache_size: int = Field(2048, ge=0, le=1_000_000)


def _url_list(value: object) -> object:
    # From the environment (AUGUR_ALERTMANAGER_URLS) the list comes as one comma-separated string.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class AlertmanagerConfig(Strict):
    """Where enriched alerts go (every replica), how often they are re-sent, and retries.

    TLS and one credential (`bearer_token_file` or `basic_auth` with `password_file`) as
    Prometheus's `http_config` has them; the secrets are read from their files at load.
    """

    urls: Annotated[list[str], BeforeValidator(_url_list)] = Field(default_factory=list)
    repost_interval: Duration = Field(60.0, gt=0)
    resolve_timeout: Duration = Field(300.0, gt=0)
    timeout: Duration = Field(10.0, gt=0)
    backoff_base: Duration = Field(0.5, gt=0)
    backoff_max: Duration = Field(30.0, gt=0)
    outbox_retention: Duration = Field(3600.0, ge=0)
    bearer_token_file: SecretFile | None = None
    basic_auth: BasicAuth | None = None
    tls: TLS = TLS()
    _authorization: str | None = PrivateAttr(default=None)

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"must be http:// or https:// URLs, got {url!r}")
            if parts.username is not None or parts.password is not None:
                # Secrets never live in the configuration file, and the URL is a metric label.
                raise ValueError(f"credentials in a URL are not supported: {parts.hostname}")
            if parts.path.rstrip("/").endswith("/api/v2/alerts"):
                raise ValueError(
                    f"give Alertmanager's base URL; augur adds /api/v2/alerts: {url!r}"
                )
            url = url.rstrip("/")
            if url in out:
                raise ValueError(f"{url} is listed twice")
            out.append(url)
        return out

    @model_validator(mode="after")
    def _backoff(self) -> AlertmanagerConfig:
        if self.backoff_max < self.backoff_base:
            raise ValueError("backoff_max must not be smaller than backoff_base")
        return self

    @model_validator(mode="after")
    def _credentials(self) -> AlertmanagerConfig:
        one_credential(
            {"bearer_token_file": self.bearer_token_file, "basic_auth": self.basic_auth},
            "Alertmanager",
        )
        if self.bearer_token_file is not None:
            self._authorization = "Bearer " + read_secret(self.bearer_token_file)
        elif self.basic_auth is not None:
            if self.basic_auth.password_file is None:
                raise ValueError("basic_auth: set password_file (the password is never inline)")
            password = read_secret(self.basic_auth.password_file)
            self._authorization = basic_auth_header(self.basic_auth.username, password)
        return self

    def authorization(self) -> str | None:
        """The `Authorization` header for every replica, from the files read at load, if any."""
        return self._authorization

    def enabled(self) -> bool:
        """Whether alert enrichment is on (at least one Alertmanager to post to)."""
        return bool(self.urls)
