"""The `augur` command: run | check-config | demo | backtest | classify | model.

Exit codes: 0 success, 1 runtime failure (cannot start, demo failed), 2 invalid configuration
or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from exporter import __version__, logs
from exporter.config.base import ConfigError
from exporter.config.durations import format_duration
from exporter.config.load import load
from exporter.config.root import Config

log = logging.getLogger("augur.cli")

# Flags named as Prometheus names its own, mapped to the configuration path they override.
_OVERRIDES: dict[str, tuple[str, ...]] = {
    "prometheus_url": ("prometheus", "url"),
    "web_listen_address": ("web", "listen_address"),
    "poll_interval": ("poll", "interval"),
    "log_level": ("log", "level"),
    "log_format": ("log", "format"),
    "state_path": ("state", "path"),
}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
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
        "--poll.interval",
        dest="poll_interval",
        metavar="DURATION",
        help="how often to score every query, e.g. 30s or 1m",
    )
    parser.add_argument(
        "--state.path", dest="state_path", metavar="FILE", help="SQLite file for detector state"
    )
    parser.add_argument(
        "--log.level", dest="log_level", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--log.format", dest="log_format", choices=["logfmt", "json"])


def load_config(args: argparse.Namespace) -> Config | None:
    """The configuration of `run` and `check-config` alike: file, `AUGUR_*` env and flags, with
    every check passed; None, with the problems printed, when it is invalid."""
    overrides = {path: getattr(args, dest) for dest, path in _OVERRIDES.items()}
    try:
        return load(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"augur: {exc}", file=sys.stderr)
        return None


def _cmd_run(args: argparse.Namespace) -> int:
    from exporter.app import StartupError, serve

    cfg = load_config(args)
    if cfg is None:
        return 2
    logs.setup(cfg.log.level, cfg.log.format)
    log.info("starting", extra={"version": __version__, "config": str(args.config or "")})
    try:
        asyncio.run(serve(cfg))
    except StartupError as exc:
        log.error("startup_failed", extra={"error": str(exc)})
        return 1
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    if cfg is None:
        return 2
    queries = cfg.effective_queries()
    source = "built-in defaults" if not cfg.queries else "configured"
    print(f"{args.config or '(no file)'}: configuration is valid")
    print(f"  prometheus: {cfg.prometheus.url}")
    print(f"  poll interval: {format_duration(cfg.poll.interval)}")
    print(f"  queries ({source}): {len(queries)}")
    for q in queries:
        print(
            f"    {q.name}: {', '.join(q.detectors)} over {format_duration(q.lookback)} "
            f"at {format_duration(q.step)} steps"
        )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from exporter.demo.stack import run_demo

    logs.setup(args.log_level or "info", args.log_format or "logfmt")
    return run_demo(args)


def _cmd_backtest(args: argparse.Namespace) -> int:
    from exporter.backtest import run_backtest

    logs.setup(args.log_level or "info", args.log_format or "logfmt")
    return run_backtest(args)


def parser() -> argparse.ArgumentParser:
    """The argument parser of the `augur` command."""
    root = argparse.ArgumentParser(
        prog="augur",
        description="Anomaly scores and forecasts for Prometheus series; "
        "alert enrichment for Alertmanager.",
    )
    root.add_argument("--version", action="version", version=f"augur {__version__}")
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="poll Prometheus, score the series, serve /metrics")
    _add_config_flags(run)
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser(
        "check-config", help="validate a configuration file; exit 2 listing every problem"
    )
    _add_config_flags(check)
    check.set_defaults(func=_cmd_check_config)

    demo = sub.add_parser(
        "demo",
        help="start a real Prometheus, Alertmanager, a demo workload and augur on loopback",
    )
    demo.add_argument("--log.level", dest="log_level", choices=["debug", "info", "warning"])
    demo.add_argument("--log.format", dest="log_format", choices=["logfmt", "json"])
    from exporter.demo.stack import add_arguments

    add_arguments(demo)
    demo.set_defaults(func=_cmd_demo)

    backtest = sub.add_parser(
        "backtest",
        help="score CSV files, NAB or a Prometheus range offline; print NAB scores with labels",
    )
    backtest.add_argument("--log.level", dest="log_level", choices=["debug", "info", "warning"])
    backtest.add_argument("--log.format", dest="log_format", choices=["logfmt", "json"])
    from exporter import backtest as backtest_module

    backtest_module.add_arguments(backtest)
    backtest.set_defaults(func=_cmd_backtest)

    from exporter.text import cli_model

    cli_model.add_commands(sub)  # classify, model build, model eval
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `augur` console script."""
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
