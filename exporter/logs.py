"""Structured logs on stderr: logfmt for people, one JSON object per line for machines.

Code logs a short event name as the message and context as `extra`:
``log.warning("poll_failed", extra={"query": name, "error": str(exc)})``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else on a record came in through `extra`.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def _context(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, then the bound context."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(_context(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _logfmt_value(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


class LogfmtFormatter(logging.Formatter):
    """`ts=… level=… logger=… event=… key=value …`, readable in a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields.update(_context(record))
        line = " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup(level: str = "info", fmt: str = "logfmt") -> None:
    """Send the `augur` loggers to stderr at `level` in format `fmt` (logfmt or json)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("augur").setLevel(level.upper())
    # aiohttp's access log would print a line per scrape; keep it for debugging only.
    logging.getLogger("aiohttp.access").setLevel(
        logging.DEBUG if level == "debug" else logging.WARNING
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--log.level` and `--log.format`, for the commands that read no configuration file."""
    parser.add_argument("--log.level", dest="log_level", choices=["debug", "info", "warning"])
    parser.add_argument("--log.format", dest="log_format", choices=["logfmt", "json"])


def setup_from(args: argparse.Namespace) -> None:
    """`setup` with the flags of `add_arguments` (info and logfmt unless given)."""
    setup(args.log_level or "info", args.log_format or "logfmt")
