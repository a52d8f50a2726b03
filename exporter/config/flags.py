"""The configuration flags of `augur run` and `augur check-config`, and loading through them.

Flags are named as Prometheus names its own and override the `AUGUR_*` environment, which
overrides the file. Both commands load through `load_config`, so what one accepts the other
accepts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from exporter.config.base import ConfigError
from exporter.config.load import load
from exporter.config.root import Config

# Each flag's destination, mapped to the configuration path it overrides.
_OVERRIDES: dict[str, tuple[str, ...]] = {
    "prometheus_url": ("prometheus", "url"),
    "web_listen_address": ("web", "listen_address"),
    "web_config_file": ("web", "config_file"),
    "web_external_url": ("web", "external_url"),
    "web_enable_lifecycle": ("web", "enable_lifecycle"),
    "poll_interval": ("poll", "interval"),
    "log_level": ("log", "level"),
    "log_format": ("log", "format"),
    "state_path": ("state", "path"),
    "shard_count": ("shard", "count"),
    "shard_index": ("shard", "index"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config` and the flags that override single settings."""
    parser.add_argument(
        "--config", "-c", type=Path, help="YAML configuration file (see the README)"
    )
    parser.add_argument(
        "--prometheus.url",
        dest="prometheus_url",
        metavar="URL",
        help="Prometheus to query, e.g. http://prometheus:9090",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="web_listen_address",
        metavar="HOST:PORT",
        help="address for /metrics and the API (default 0.0.0.0:9465)",
    )
    parser.add_argument(
        "--web.external-url",
        dest="web_external_url",
        metavar="URL",
        help="the URL under which augur is reached, for the runbook links in enriched alerts "
        "(default http://<hostname>:<port>)",
    )
    parser.add_argument(
        "--web.enable-lifecycle",
        dest="web_enable_lifecycle",
        action="store_true",
        default=None,
        help="accept POST /-/reload (off by default, as in Prometheus; SIGHUP always reloads)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="TLS and basic auth of augur's endpoints, in the format of Prometheus's "
        "--web.config.file (see docs/security.md)",
    )
    parser.add_argument(
        "--poll.interval",
        dest="poll_interval",
        metavar="DURATION",
        help="how often to score every query, e.g. 30s or 1m",
    )
    parser.add_argument(
        "--state.path", dest="state_path", metavar="FILE", help="SQLite file for detector state"
    )
    parser.add_argument(
        "--shard.count",
        dest="shard_count",
        metavar="N",
        help="replicas splitting every query's series between them (default 1: all of them)",
    )
    parser.add_argument(
        "--shard.index",
        dest="shard_index",
        metavar="I",
        help="this replica's share, 0 to N-1, or from-hostname: the StatefulSet ordinal at the "
        "end of the pod name (augur-2 -> 2)",
    )
    parser.add_argument(
        "--log.level", dest="log_level", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--log.format", dest="log_format", choices=["logfmt", "json"])


def loader(args: argparse.Namespace) -> Callable[[], Config]:
    """Loading as `load_config` does, raising ConfigError: what a reload of `augur run` calls,
    so it reads the same file, environment and flags as the start did."""
    overrides = {path: getattr(args, dest) for dest, path in _OVERRIDES.items()}
    return lambda: load(args.config, overrides=overrides)


def load_config(args: argparse.Namespace) -> Config | None:
    """The configuration of `run` and `check-config` alike: file, `AUGUR_*` env and flags, with
    every check passed; None, with the problems printed, when it is invalid."""
    try:
        return loader(args)()
    except ConfigError as exc:
        print(f"augur: {exc}", file=sys.stderr)
        return None


def add_source_arguments(parser: argparse.ArgumentParser, alertmanager_help: str) -> None:
    """`--config`, `--prometheus.url` and `--alertmanager.url` of the commands that only read
    (`augur ask`, `augur report`): where to read from, not how to serve."""
    parser.add_argument(
        "--config", "-c", type=Path, help="augur's configuration file (its Prometheus)"
    )
    parser.add_argument("--prometheus.url", dest="prometheus_url", metavar="URL")
    parser.add_argument(
        "--alertmanager.url", dest="alertmanager_url", metavar="URL", help=alertmanager_help
    )


def load_source(args: argparse.Namespace, prog: str) -> Config | None:
    """The configuration of `add_source_arguments`' flags: the file, `AUGUR_*` environment, then
    `--prometheus.url`, as `augur run` loads them; None, the problems printed, when invalid."""
    try:
        return load(args.config, overrides={("prometheus", "url"): args.prometheus_url})
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return None
