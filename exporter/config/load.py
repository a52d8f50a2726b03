"""Loading: YAML file + `AUGUR_*` environment + flags -> `Config`, or one `ConfigError`.

Precedence, highest first: CLI flag > `AUGUR_*` environment variable > file > default. Every
scalar setting has an environment name made of its path, e.g. `poll.interval` is
`AUGUR_POLL_INTERVAL` and `prometheus.tls.ca_file` is `AUGUR_PROMETHEUS_TLS_CA_FILE`.
Secrets never live in the YAML: they come from `*_file` settings or from the environment.

`load` is the one gate: `augur check-config` and `augur run` both call it, and it runs every
check (the models' own, the secrets and CA bundle they read, the files the alert loop needs),
so what one accepts the other accepts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from exporter.config.alerts import MODEL_HINT
from exporter.config.base import ConfigError, located
from exporter.config.root import Config
from exporter.config.secrets import secrets_context
from exporter.config.shard import HOSTNAME_KEY, hostname
from exporter.config.yamlsafe import safe_yaml

ENV_PREFIX = "AUGUR_"


def _leaf_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        inner = [a for a in getattr(ann, "__args__", (ann,)) if a is not type(None)]
        sub = inner[0] if len(inner) == 1 else None
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            paths.extend(_leaf_paths(sub, (*prefix, name)))
        elif name != "queries":
            paths.append((*prefix, name))
    return paths


def env_name(path: tuple[str, ...]) -> str:
    """The environment variable that overrides the setting at `path`."""
    return ENV_PREFIX + "_".join(path).upper()


def env_overrides(environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Settings given as `AUGUR_*` environment variables, keyed by their path."""
    out = {}
    for path in _leaf_paths(Config):
        value = environ.get(env_name(path))
        if value is not None:
            out[path] = value
    return out


def _set(data: dict[str, Any], path: tuple[str, ...], value: object) -> None:
    node = data
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def _read_yaml(path: Path, source: str) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror}"], source) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); is it binary?"],
            source,
        ) from None
    try:
        data = safe_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        if isinstance(exc, yaml.reader.ReaderError):  # placed by character, not by line
            where = f"character {exc.position}: "
            problem = f"{exc.reason} (#x{exc.character:04x}); is it a text file?"
        raise ConfigError([f"not valid YAML: {where}{problem}"], source) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(["the top level must be a mapping of settings"], source)
    return data


def load(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[tuple[str, ...], object] | None = None,
) -> Config:
    """Read, merge and validate the configuration; raise ConfigError listing every problem."""
    source = str(path) if path else ""
    data = _read_yaml(path, source) if path is not None else {}
    environ = os.environ if environ is None else environ
    for key, value in env_overrides(environ).items():
        _set(data, key, value)
    for path_, override in (overrides or {}).items():
        if override is not None:
            _set(data, path_, override)
    try:
        # The host name is read once, here, so `shard.index: from-hostname` sees the
        # environment `load` was given.
        context = {**secrets_context(environ), HOSTNAME_KEY: hostname(environ)}
        config = Config.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(located(exc.errors()), source) from None
    problems = check_files(config)
    if problems:
        raise ConfigError(problems, source)
    return config


def check_files(config: Config) -> list[str]:
    """Problems with the files the alert loop needs (the text model, the runbooks' folder).

    Secret files and the CA bundle are read while the models validate; these are checked
    here because they matter only when alert enrichment is on.
    """
    problems = []
    if config.alertmanager.enabled():
        manifest = config.model.dir / "manifest.json"
        if not os.access(manifest, os.R_OK):
            problems.append(
                f"model.dir: no readable {manifest}; alert enrichment (alertmanager.urls is "
                f"set) needs the text model; {MODEL_HINT}"
            )
        if not config.enrich.knowledge_dir.is_dir():
            problems.append(f"enrich.knowledge_dir: {config.enrich.knowledge_dir} is not a folder")
    return problems
