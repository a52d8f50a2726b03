"""Secrets and the files behind them, read and checked once, when the configuration loads.

Secrets never live in the YAML: a `*_file` setting names a file holding one, or (for
Prometheus) an `AUGUR_*` environment variable carries it. A secret file must be readable
UTF-8 text with something in it, a CA bundle must hold a certificate: every such problem is a
configuration error of the setting that names the file, so `augur check-config` finds it and
`augur run` never starts with it.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, ValidationInfo

SECRET_ENV = {
    "bearer_token": "AUGUR_PROMETHEUS_BEARER_TOKEN",
    "basic_auth_password": "AUGUR_PROMETHEUS_BASIC_AUTH_PASSWORD",
}
"""Prometheus credentials that may come from the environment instead of a file."""

_CONTEXT_KEY = "augur_env_secrets"


def read_secret(path: Path) -> str:
    """The secret in `path`, surrounding whitespace removed; ValueError if unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    secret = text.strip()
    if not secret:
        raise ValueError(f"{path} is empty; write the secret into it")
    return secret


def _secret_file(path: Path) -> Path:
    read_secret(path)
    return path


SecretFile = Annotated[Path, AfterValidator(_secret_file)]
"""A file holding one secret; validated by reading it."""


def check_ca_file(path: Path) -> None:
    """ValueError unless `path` is a PEM file of CA certificates TLS can load."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        reason = exc.reason or exc
        raise ValueError(f"{path} holds no usable PEM certificate ({reason})") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None


def _ca_bundle(path: Path) -> Path:
    check_ca_file(path)
    return path


CABundle = Annotated[Path, AfterValidator(_ca_bundle)]
"""A PEM file of CA certificates; validated by loading it as TLS will."""


def env_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """The Prometheus credentials set (non-empty) in the environment, by name."""
    return {name: environ[env] for name, env in SECRET_ENV.items() if environ.get(env)}


def secrets_context(environ: Mapping[str, str]) -> dict[str, object]:
    """The validation context that hands the environment's secrets to the models."""
    return {_CONTEXT_KEY: env_secrets(environ)}


def env_secret(info: ValidationInfo, name: str) -> str | None:
    """A secret the loader found in the environment, if the model is being loaded by it."""
    context = info.context if isinstance(info.context, Mapping) else {}
    found = context.get(_CONTEXT_KEY, {})
    value = found.get(name) if isinstance(found, Mapping) else None
    return value if isinstance(value, str) else None
