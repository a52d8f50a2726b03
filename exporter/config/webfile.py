"""`--web.config.file`: TLS and basic auth of augur's own endpoints, in exporter-toolkit's format.

The file is the one Prometheus, Alertmanager and the Go exporters read (`tls_server_config`,
`http_server_config`, `basic_auth_users`), so operators reuse what they have. What Python's TLS
cannot do the way Go's does is refused with a message naming the setting, never ignored:
`RequestClientCert` and `RequireAnyClientCert` (a certificate asked for but not verified),
`curve_preferences`, `client_allowed_sans`, inline `cert`/`key`/`client_ca` (secrets live in
files), `rate_limit`. Relative paths are relative to the file, as there.

`read_web_file` parses and checks everything a server needs (certificate and key load and
match, the client CA loads, every password is a bcrypt hash): `augur check-config` and
`augur run` refuse the same files, and the running server re-reads it when it changes.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from exporter.config.base import Strict, located
from exporter.config.secrets import check_ca_file

ClientAuth = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TLSVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]

TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
"""The versions augur offers; TLS 1.0 and 1.1 are refused (OpenSSL 3 disables them anyway)."""

# Go's names (crypto/tls) of the TLS 1.2 suites worth offering, and OpenSSL's. TLS 1.3 suites
# are not configurable there either.
CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
}

# exporter-toolkit lets these headers be set, some only to these values (web/handler.go).
ALLOWED_HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

_BCRYPT = re.compile(r"^\$2[abxy]?\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")
_UNSUPPORTED = {
    "cert": "inline certificates are not supported; use cert_file",
    "key": "an inline key is a secret in the file; use key_file",
    "client_ca": "inline CAs are not supported; use client_ca_file",
    "curve_preferences": "not supported by augur (Python's TLS picks the curves); remove it",
    "client_allowed_sans": "not supported by augur; issue client certificates from a CA of "
    "their own and name it in client_ca_file",
}


class TLSServerConfig(Strict):
    """`tls_server_config`: the certificate augur serves and what it asks of clients."""

    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None
    client_auth_type: ClientAuth = "NoClientCert"
    min_version: TLSVersionName = "TLS12"
    max_version: TLSVersionName = "TLS13"
    cipher_suites: list[str] = Field(default_factory=list)
    prefer_server_cipher_suites: bool = True

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for key, why in _UNSUPPORTED.items():
                if key in data:
                    raise ValueError(f"{key}: {why}")
        return data

    @field_validator("cert_file", "key_file", "client_ca_file")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value}: no such file")
        return value

    @field_validator("min_version", "max_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value not in TLS_VERSIONS:
            raise ValueError(f"{value} is not offered by augur; use TLS12 or TLS13")
        return value

    @field_validator("cipher_suites")
    @classmethod
    def _ciphers(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in CIPHER_SUITES:
                known = ", ".join(CIPHER_SUITES)
                raise ValueError(f"unknown or unsupported cipher suite {name!r}; use: {known}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TLSServerConfig:
        if self.cert_file is None or self.key_file is None:
            raise ValueError("cert_file and key_file are both required to serve TLS")
        auth = self.client_auth_type
        if auth in ("RequestClientCert", "RequireAnyClientCert"):
            raise ValueError(
                f"client_auth_type: {auth} (a certificate asked for but not verified) is not "
                "supported by augur; use VerifyClientCertIfGiven or RequireAndVerifyClientCert "
                "with client_ca_file"
            )
        verifies = auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
        if verifies and self.client_ca_file is None:
            raise ValueError(f"client_auth_type: {auth} needs client_ca_file (the clients' CA)")
        if self.client_ca_file is not None and not verifies:
            raise ValueError(
                "client_ca_file is set without a client_auth_type that verifies; set "
                "client_auth_type: RequireAndVerifyClientCert (or VerifyClientCertIfGiven)"
            )
        if TLS_VERSIONS[self.min_version] > TLS_VERSIONS[self.max_version]:
            raise ValueError(f"min_version {self.min_version} is above max_version")
        check_key_pair(self.cert_file, self.key_file)
        if self.client_ca_file is not None:
            check_client_ca(self.client_ca_file)
        return self


def check_key_pair(cert_file: Path, key_file: Path, where: str = "") -> None:
    """ValueError unless the certificate and key load and match (on a scratch context)."""
    for name, path in (("cert_file", cert_file), ("key_file", key_file)):
        if not path.is_file():
            raise ValueError(f"{where}{name}: {path}: no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert_file), str(key_file))
    except ssl.SSLError as exc:
        raise ValueError(
            f"{where}cert_file, key_file: {cert_file} and {key_file} are not a matching PEM "
            f"certificate and unencrypted key ({exc.reason or exc})"
        ) from None
    except OSError as exc:
        raise ValueError(f"{where}cert_file: cannot read it: {exc.strerror or exc}") from None


def check_client_ca(path: Path) -> None:
    """ValueError unless `path` holds a PEM CA certificate (the upstreams' own check)."""
    try:
        check_ca_file(path)
    except ValueError as exc:
        raise ValueError(f"client_ca_file: {exc}") from None


class HTTPServerConfig(Strict):
    """`http_server_config`: the headers added to every answer (those exporter-toolkit allows)."""

    http2: bool = True  # accepted for compatibility; augur serves HTTP/1.1
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, header in value.items():
            if name not in ALLOWED_HEADERS:
                allowed = ", ".join(ALLOWED_HEADERS)
                raise ValueError(f"HTTP header {name!r} can not be configured; only {allowed}")
            values = ALLOWED_HEADERS[name]
            if values and header not in values:
                raise ValueError(f"{name} must be one of {', '.join(values)}, got {header!r}")
            if "\n" in header or "\r" in header:
                raise ValueError(f"{name}: a header value cannot span lines")
        return value


class WebFile(Strict):
    """The whole web configuration file."""

    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = HTTPServerConfig()
    basic_auth_users: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _rate_limit(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "rate_limit" in data:
            raise ValueError("rate_limit: not supported by augur; remove it")
        return data

    @field_validator("basic_auth_users")
    @classmethod
    def _users(cls, value: dict[str, str]) -> dict[str, str]:
        for user, hashed in value.items():
            if ":" in user or not user:
                raise ValueError(f'user name {user!r}: must be non-empty and without ":"')
            if not _BCRYPT.match(hashed):
                # The value may be a password pasted by mistake: never echo it.
                raise ValueError(
                    f"{user}: not a bcrypt hash; hash the password with "
                    "`htpasswd -nBC 10 \"\" | tr -d ':\\n'` or bcrypt.hashpw"
                )
        return value

    def tls(self) -> bool:
        """Whether augur serves https."""
        return self.tls_server_config is not None


def _relative_to(data: dict[str, Any], folder: Path) -> None:
    tls = data.get("tls_server_config")
    if isinstance(tls, dict):
        for key in ("cert_file", "key_file", "client_ca_file"):
            value = tls.get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                tls[key] = str(folder / value)


def read_web_file(path: Path) -> WebFile:
    """The web configuration in `path`, checked; ValueError with every problem located in it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ValueError(f"{path} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a mapping")
    _relative_to(data, path.parent)
    try:
        return WebFile.model_validate(data)
    except ValidationError as exc:
        # Never the input: a wrong value may be a password.
        raise ValueError("; ".join(located(exc.errors()))) from None


def _web_file(path: Path) -> Path:
    read_web_file(path)
    return path


WebFilePath = Annotated[Path, AfterValidator(_web_file)]
"""Validator of `web.config_file`: the file is read and checked at load."""
