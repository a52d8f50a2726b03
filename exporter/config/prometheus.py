"""Prometheus (or Thanos, Mimir, VictoriaMetrics): where it is, the limits of the calls,
credentials, TLS, and the extra headers and parameters some of them need.

Credentials are resolved while the model validates: the secret files are read, the
environment's (`SECRET_ENV`, handed over by `exporter.config.load`) are taken, and more than
one credential for Prometheus, from whatever source, is an error. The values are kept out of
the model's fields and repr; `bearer_token()` and `basic_auth_password()` return them. So are
the values of `header_files` (a tenant header may be a secret); `request_headers()` returns
them with `headers`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from exporter.config.base import Strict
from exporter.config.durations import Duration
from exporter.config.httpclient import TLS, BasicAuth, check_header, one_credential, string_map
from exporter.config.secrets import SECRET_ENV, SecretFile, env_secret, read_secret

__all__ = ["TLS", "BasicAuth", "PrometheusConfig"]

StringMap = Annotated[dict[str, str], BeforeValidator(string_map)]
"""Names to values; from the environment as `name=value,name=value`."""
FileMap = Annotated[dict[str, SecretFile], BeforeValidator(string_map)]
"""Names to files each holding one value, read at load."""

# What augur itself sends: an extra parameter must not contradict it.
_OWN_PARAMS = frozenset({"query", "start", "end", "step", "time", "timeout"})


class PrometheusConfig(Strict):
    """Where and how to query Prometheus (or Thanos, Mimir: only the HTTP API is used)."""

    url: str
    timeout: Duration = Field(30.0, gt=0)
    max_response_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    """The largest answer read (before and after gzip), so one query cannot exhaust memory."""
    retries: int = Field(3, ge=0, le=10)
    max_concurrency: int = Field(4, ge=1, le=64)
    compression: Literal["auto", "gzip", "none"] = "auto"
    bearer_token_file: SecretFile | None = None
    basic_auth: BasicAuth | None = None
    tls: TLS = TLS()
    headers: StringMap = Field(default_factory=dict)
    """Extra headers of every request, e.g. Mimir's tenant `X-Scope-OrgID`."""
    header_files: FileMap = Field(default_factory=dict)
    """Extra headers whose values are secrets, each read from its file at load."""
    params: StringMap = Field(default_factory=dict)
    """Extra URL parameters of every request, e.g. Thanos's `partial_response: false`."""
    # Resolved at validation; never part of the model's fields or repr.
    _bearer_token: str | None = PrivateAttr(default=None)
    _basic_auth_password: str | None = PrivateAttr(default=None)
    _header_secrets: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.username is not None or parts.password is not None:
            # Never echoed: the URL is logged and shown on the landing page.
            raise ValueError(
                f"credentials in the URL are not supported ({parts.hostname}); set "
                "basic_auth.username and basic_auth.password_file (or "
                f"{SECRET_ENV['basic_auth_password']})"
            )
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            check_header(name, text)
        return value

    @field_validator("header_files")
    @classmethod
    def _header_files(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        for name, path in value.items():
            # The value is read here too, so a bad one is reported at `header_files`.
            check_header(name, read_secret(path))
            if name.lower() in {h.lower() for h in info.data.get("headers", {})}:
                raise ValueError(f"{name} is in headers too; give it once")
        return value

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name in _OWN_PARAMS:
                raise ValueError(f"{name}: augur sets this parameter itself")
            if not name:
                raise ValueError("a parameter needs a name")
        return value

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

    @model_validator(mode="after")
    def _credentials(self, info: ValidationInfo) -> PrometheusConfig:
        # Prometheus's own client config refuses two credentials too: which wins would be a guess.
        token_env = env_secret(info, "bearer_token")
        one_credential(
            {
                "bearer_token_file": self.bearer_token_file,
                SECRET_ENV["bearer_token"]: token_env,
                "basic_auth": self.basic_auth,
            },
            "Prometheus",
        )
        password_env = env_secret(info, "basic_auth_password")
        if password_env is not None and self.basic_auth is None:
            raise ValueError(
                f"{SECRET_ENV['basic_auth_password']} is set but basic_auth is not; set "
                "basic_auth.username (or unset the variable)"
            )
        if password_env is not None and self.basic_auth and self.basic_auth.password_file:
            raise ValueError(
                f"basic_auth.password_file and {SECRET_ENV['basic_auth_password']} are both "
                "set; give the password once"
            )
        if self.bearer_token_file is not None:
            self._bearer_token = read_secret(self.bearer_token_file)
        else:
            self._bearer_token = token_env
        if self.basic_auth is not None and self.basic_auth.password_file is not None:
            self._basic_auth_password = read_secret(self.basic_auth.password_file)
        else:
            self._basic_auth_password = password_env
        self._header_secrets = {}
        for name, path in self.header_files.items():
            text = read_secret(path)
            check_header(name, text)
            self._header_secrets[name] = text
        return self

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
        """The bearer token, read from its file or the environment at load, if any."""
        return self._bearer_token

    def request_headers(self) -> dict[str, str]:
        """`headers` and `header_files`' values, to send with every request; never log them."""
        return {**self.headers, **self._header_secrets}

    def basic_auth_password(self) -> str | None:
        """The basic-auth password, read from its file or the environment at load, if any."""
        return self._basic_auth_password
