"""How augur talks to its upstreams (Prometheus, Alertmanager): TLS and one credential each.

The settings mirror Prometheus's own `http_config` (`tls_config`, `bearer_token_file`,
`basic_auth.password_file`), so the values operators give Prometheus work here. Secrets are
read from files when the configuration loads (`secrets.py`); every file is checked then, so a
missing key or a client certificate that does not match its key is a configuration error.
"""

from __future__ import annotations

import base64
import re
import ssl
from collections.abc import Mapping
from pathlib import Path

from pydantic import field_validator, model_validator

from exporter.config.base import Strict
from exporter.config.secrets import CABundle, SecretFile


class BasicAuth(Strict):
    """HTTP basic auth; the password comes from `password_file` (or, for Prometheus, the env)."""

    username: str
    password_file: SecretFile | None = None

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if ":" in value:
            raise ValueError('a ":" is not allowed in a basic-auth user name (RFC 7617)')
        return value


class TLS(Strict):
    """TLS towards an upstream: its CA, augur's client certificate, the name to verify."""

    ca_file: CABundle | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _client_certificate(self) -> TLS:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both or neither")
        if self.cert_file is not None and self.key_file is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            for name, path in (("cert_file", self.cert_file), ("key_file", self.key_file)):
                if not path.is_file():
                    raise ValueError(f"{name}: {path}: no such file")
            try:
                context.load_cert_chain(str(self.cert_file), str(self.key_file))
            except ssl.SSLError as exc:
                raise ValueError(
                    f"cert_file, key_file: {self.cert_file} and {self.key_file} are not a "
                    f"matching PEM certificate and unencrypted key ({exc.reason or exc})"
                ) from None
            except OSError as exc:
                raise ValueError(f"cert_file: cannot read it: {exc.strerror or exc}") from None
        return self

    def context(self) -> ssl.SSLContext:
        """The client's SSL context; the files were checked at load, so this reads them again."""
        context = _NamedContext(ssl.PROTOCOL_TLS_CLIENT)
        context.server_name = self.server_name
        if self.ca_file is not None:
            context.load_verify_locations(cafile=str(self.ca_file))
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        if self.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


class _NamedContext(ssl.SSLContext):
    """A client context that sends and verifies `server_name` rather than the URL's host.

    aiohttp takes the name per request only; asyncio hands it to `wrap_bio`, so it is
    replaced there, for every connection of the session.
    """

    server_name: str | None = None

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        name = self.server_name or server_hostname
        return super().wrap_bio(incoming, outgoing, server_side, name, session)


def basic_auth_header(username: str, password: str) -> str:
    """The `Authorization` value of HTTP basic auth.

    aiohttp 3.14 deprecates BasicAuth, and its replacement is missing before 3.14. The
    configuration refuses a ":" in the user name (RFC 7617).
    """
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def one_credential(given: dict[str, object], upstream: str) -> None:
    """ValueError when more than one of the named credentials is set: which wins is a guess."""
    names = [name for name, value in given.items() if value is not None]
    if len(names) > 1:
        listed = ", ".join(names[:-1]) + " and " + names[-1]
        raise ValueError(f"{listed} are set; keep only one ({upstream} takes one credential)")


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
RESERVED_HEADERS = {
    "authorization": "set bearer_token_file or basic_auth instead",
    "host": "augur sends the URL's host",
    "content-type": "augur sets it",
    "content-length": "augur sets it",
    "content-encoding": "augur sets it",
    "transfer-encoding": "augur sets it",
    "accept": "augur reads JSON only",
    "accept-encoding": "set compression instead",
    "user-agent": "augur names itself",
    "connection": "a hop-by-hop header",
}
"""Headers `headers` may not set, with why (lower case)."""


def string_map(value: object) -> object:
    """A mapping from YAML, or `name=value,name=value` from the environment, as str -> str.

    YAML reads `partial_response: false` as a boolean and `deny_partial_response: 1` as a
    number; the request wants the words `false` and `1`.
    """
    if isinstance(value, str):
        out: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, sep, text = item.partition("=")
            if not sep:
                raise ValueError(f"expected name=value pairs separated by commas, got {item!r}")
            out[name.strip()] = text.strip()
        return out
    if isinstance(value, Mapping):
        return {
            k: str(v).lower()
            if isinstance(v, bool)
            else str(v)
            if isinstance(v, int | float)
            else v
            for k, v in value.items()
        }
    return value


def check_header(name: str, value: str | None = None) -> None:
    """ValueError unless `name` (and `value`) can be sent as an extra request header."""
    if not _TOKEN.match(name):
        raise ValueError(f"{name!r} is not a valid HTTP header name")
    why = RESERVED_HEADERS.get(name.lower())
    if why is not None:
        raise ValueError(f"{name}: this header cannot be set here ({why})")
    if value is not None and any(c in value for c in "\r\n\0"):
        raise ValueError(f"{name}: a header value cannot hold a line break or NUL")
