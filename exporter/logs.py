"""Structured logs on stderr: logfmt for people, one JSON object per line for machines.

Code logs a short event name as the message and context as `extra`:
``log.warning("poll_failed", extra={"query": name, "error": str(exc)})``. logfmt writes it
as `msg=poll_failed`, as Prometheus and other Go tools do; JSON as `"event"`.

A record is one line whatever it carries: a traceback is one more field (`exception`), its
newlines escaped inside a quoted value in logfmt and inside the string in JSON; the line
separators that JSON leaves raw (U+0085, U+2028, U+2029) are escaped as well, so no
line-splitting reader cuts a record in two.

Lines are bounded whatever the input was: each value is cut to `MAX_VALUE_CHARS` (with how much
was cut) and the line to `MAX_LINE_CHARS`. Repeats are bounded too: a warning with the same
logger, event and `rate_key` extra (or none) prints at most once per `REPEAT_SECONDS` (also
per `query`, `alertmanager` or `alert`, when the line has one), and the
next one that prints says how many were suppressed (`suppressed=N`). Errors always print.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else on a record came in through `extra`.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "rate_key",
}

MAX_VALUE_CHARS = 2048
MAX_LINE_CHARS = 16384
REPEAT_SECONDS = 10.0
_MAX_KEYS = 1024
_KEYED = ("rate_key", "query", "alertmanager", "alert")
"""Context that tells one subject's repeats from another's: each is limited on its own."""


def cut(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """`text` cut to `limit` characters, saying how many more there were."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"…({len(text) - limit} more characters)"


def _bounded(value: object) -> object:
    if isinstance(value, bool | int | float) or value is None:
        return value
    return cut(value if isinstance(value, str) else str(value))


def _context(record: logging.LogRecord) -> dict[str, Any]:
    return {k: _bounded(v) for k, v in record.__dict__.items() if k not in _STANDARD}


class RepeatFilter(logging.Filter):
    """Passes a warning at most once per `seconds` per (logger, event, subject).

    Errors and anything below WARNING pass. The next warning that passes for a key carries
    `suppressed`, the number dropped since, so nothing disappears without a trace.
    """

    def __init__(
        self, seconds: float = REPEAT_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.seconds = seconds
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str, str], tuple[float, int]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether `record` prints; counts it if not."""
        if record.levelno != logging.WARNING:
            return True
        names = [getattr(record, k, "") for k in _KEYED]
        key = (record.name, str(record.msg), cut(str(names), 200))
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.seconds:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.suppressed = last[1]
        self._seen[key] = (now, 0)
        self._seen.move_to_end(key)
        while len(self._seen) > _MAX_KEYS:
            self._seen.popitem(last=False)
        return True


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, then the bound context."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": cut(record.getMessage()),
        }
        entry.update(_context(record))
        entry.update(_exception(self, record))
        line = json.dumps(entry, default=str, ensure_ascii=False)
        if len(line) > MAX_LINE_CHARS:  # still one valid object, with the start of the rest
            core = {k: entry[k] for k in ("ts", "level", "logger", "event")}
            core["truncated"] = cut(line, MAX_LINE_CHARS // 2)
            line = json.dumps(core, ensure_ascii=False)
        return _one_line(line)


_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}
"""Characters that end a line for some readers (Python's splitlines) and that json.dumps with
ensure_ascii=False leaves as they are: escaped, so a record stays one line everywhere."""


def _one_line(text: str) -> str:
    return text.translate(_LINE_BREAKS)


def _logfmt_value(value: object) -> str:
    text = str(value)
    # Control characters (a traceback's newlines, a carriage return) only inside quotes,
    # escaped: a value never starts a line of its own.
    if not text or not text.isprintable() or any(c in text for c in ' "='):
        return _one_line(json.dumps(text, ensure_ascii=False))
    return text


def _exception(formatter: logging.Formatter, record: logging.LogRecord) -> dict[str, str]:
    """The record's traceback and stack, as fields (cut to half a line each)."""
    out: dict[str, str] = {}
    if record.exc_info:
        out["exception"] = cut(formatter.formatException(record.exc_info), MAX_LINE_CHARS // 2)
    elif record.exc_text:
        out["exception"] = cut(record.exc_text, MAX_LINE_CHARS // 2)
    if record.stack_info:
        out["stack"] = cut(formatter.formatStack(record.stack_info), MAX_LINE_CHARS // 2)
    return out


class LogfmtFormatter(logging.Formatter):
    """`ts=… level=… logger=… msg=… key=value …` on one line, readable in a terminal.

    A traceback is the last field, `exception="Traceback …\\n  File …"`.
    """

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": cut(record.getMessage()),
        }
        fields.update(_context(record))
        # The traceback goes last and is cut first: the line's start says what happened.
        head = " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields.items())
        for key, text in _exception(self, record).items():
            room = MAX_LINE_CHARS - len(head) - len(key) - 2
            if room < 100:
                break
            head += f" {key}={_fitted(text, room)}"
        return cut(head, MAX_LINE_CHARS)


def _fitted(text: str, room: int) -> str:
    """`text` as a logfmt value of at most `room` characters, escapes and the "…(n more
    characters)" note included: cut before it is quoted and escaped, so the line never ends
    inside an open quote."""
    limit = room
    while True:
        value = _logfmt_value(cut(text, limit))
        if len(value) <= room or limit <= 1:
            return value
        limit = max(1, limit - (len(value) - room))


def setup(level: str = "info", fmt: str = "logfmt") -> None:
    """Send the `augur` loggers to stderr at `level` in format `fmt` (logfmt or json)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    handler.addFilter(RepeatFilter())
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
