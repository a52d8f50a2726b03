"""Configuration: YAML -> strict pydantic models -> one ConfigError that names the failing path.

Precedence, highest first: CLI flag > `AUGUR_*` environment variable > file > default. Every
scalar setting has an environment name made of its path, e.g. `poll.interval` is
`AUGUR_POLL_INTERVAL` and `prometheus.tls.ca_file` is `AUGUR_PROMETHEUS_TLS_CA_FILE`.
Secrets never live in the YAML: they come from `*_file` settings or from the environment.

This module reads and merges those sources and checks the files the settings point at. The
models are in `exporter.settings` and durations in `exporter.durations`; every public name of
both is re-exported here, so `exporter.config` stays the one place to import settings from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from exporter.durations import Duration, format_duration, parse_duration
from exporter.settings import (
    DEFAULT_QUERIES,
    REPO_MODEL_DIR,
    SECRET_ENV,
    TLS,
    BasicAuth,
    Config,
    LogConfig,
    ModelConfig,
    PollConfig,
    PrometheusConfig,
    QueryConfig,
    StateConfig,
    Strict,
    WebConfig,
    _message,
    _path,
)

__all__ = [
    "DEFAULT_QUERIES",
    "ENV_PREFIX",
    "REPO_MODEL_DIR",
    "SECRET_ENV",
    "TLS",
    "BasicAuth",
    "Config",
    "ConfigError",
    "Duration",
    "LogConfig",
    "ModelConfig",
    "PollConfig",
    "PrometheusConfig",
    "QueryConfig",
    "StateConfig",
    "Strict",
    "WebConfig",
    "check_files",
    "env_name",
    "env_overrides",
    "format_duration",
    "load",
    "parse_duration",
]

ENV_PREFIX = "AUGUR_"


class ConfigError(Exception):
    """The configuration is invalid; `problems` lists each one with its path."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "invalid configuration:\n  " + "\n  ".join(problems))


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


def load(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[tuple[str, ...], object] | None = None,
) -> Config:
    """Read, merge and validate the configuration; raise ConfigError listing every problem."""
    source = str(path) if path else ""
    data: Any = {}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"cannot read the file: {exc.strerror}"], source) from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError([f"not valid YAML: {where}{problem}"], source) from None
        if not isinstance(data, dict):
            raise ConfigError(["the top level must be a mapping of settings"], source)
    environ = os.environ if environ is None else environ
    for key, value in env_overrides(environ).items():
        _set(data, key, value)
    for path_, override in (overrides or {}).items():
        if override is not None:
            _set(data, path_, override)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            [f"{_path(e['loc'])}: {_message(e)}" for e in exc.errors()], source
        ) from None
    problems = check_files(config)
    if problems:
        raise ConfigError(problems, source)
    config.prometheus._env_secrets.update(
        {name: environ[env] for name, env in SECRET_ENV.items() if environ.get(env)}
    )
    return config


def check_files(config: Config) -> list[str]:
    """Problems with files the configuration points at (secrets, CA bundle)."""
    files = {
        "prometheus.bearer_token_file": config.prometheus.bearer_token_file,
        "prometheus.basic_auth.password_file": (
            config.prometheus.basic_auth.password_file if config.prometheus.basic_auth else None
        ),
        "prometheus.tls.ca_file": config.prometheus.tls.ca_file,
        "webhook.bearer_token_file": config.webhook.bearer_token_file,
    }
    problems = []
    for key, file in files.items():
        if file is not None and not os.access(file, os.R_OK):
            problems.append(f"{key}: cannot read {file}")
    if config.alertmanager.enabled():
        manifest = config.model.dir / "manifest.json"
        if not os.access(manifest, os.R_OK):
            problems.append(
                f"model.dir: no readable {manifest}; alert enrichment (alertmanager.urls is "
                "set) needs the text model: point model.dir at models/onnx"
            )
        if not config.enrich.knowledge_dir.is_dir():
            problems.append(f"enrich.knowledge_dir: {config.enrich.knowledge_dir} is not a folder")
    return problems
