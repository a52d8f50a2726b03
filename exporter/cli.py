"""The `augur` command: run | check-config | demo | backtest | classify | model | ask | report.

Every command is a module with `add_arguments(parser)` and `run(args) -> int`, listed once in
`COMMANDS`; a new command is a new module and a line there. Heavy imports happen inside `run`.
Exit codes: 0 success, 1 runtime failure (cannot start, demo failed), 2 invalid configuration
or usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Protocol

from exporter import __version__, daemon
from exporter.assistant import ask_command, report
from exporter.backtest import command as backtest
from exporter.config import check
from exporter.demo import stack
from exporter.text import classify, model_command


class Command(Protocol):
    """What a command module provides."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the command's flags and arguments to its subparser."""

    def run(self, args: argparse.Namespace) -> int:
        """Run the command with the parsed `args`; the exit code."""


COMMANDS: dict[str, tuple[Command, str]] = {
    "run": (daemon, "poll Prometheus, score the series, serve /metrics"),
    "check-config": (check, "validate a configuration file; exit 2 listing every problem"),
    "demo": (
        stack,
        "start a real Prometheus, Alertmanager, a demo workload and augur on loopback",
    ),
    "backtest": (
        backtest,
        "score CSV files, NAB or a Prometheus range offline; print NAB scores with labels",
    ),
    "classify": (classify, "classify alert text into a category with the shipped text model"),
    "model": (model_command, "build or evaluate the text model"),
    "ask": (
        ask_command,
        "ask Prometheus a question in English or Chinese",
    ),
    "report": (report, "write the anomalies, incidents and alerts of a period as HTML or Markdown"),
}
"""Command name -> (module, one-line help)."""


def parser() -> argparse.ArgumentParser:
    """The argument parser of the `augur` command."""
    root = argparse.ArgumentParser(
        prog="augur",
        description="Anomaly scores and forecasts for Prometheus series; "
        "alert enrichment for Alertmanager.",
    )
    root.add_argument("--version", action="version", version=f"augur {__version__}")
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, summary) in COMMANDS.items():
        command = sub.add_parser(name, help=summary)
        module.add_arguments(command)
        command.set_defaults(command_run=module.run)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `augur` console script."""
    args = parser().parse_args(argv)
    code: int = args.command_run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
