"""Log lines are bounded: values and lines cut, repeated warnings rate-limited with a count."""

from __future__ import annotations

import io
import json
import logging

from exporter.logs import MAX_LINE_CHARS, JSONFormatter, LogfmtFormatter, RepeatFilter


def _logger(formatter: logging.Formatter, clock: list[float]) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.addFilter(RepeatFilter(10.0, clock=lambda: clock[0]))
    log = logging.getLogger(f"augur.test.{id(out)}")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    return log, out


def test_a_megabyte_value_makes_a_short_line_in_both_formats() -> None:
    for formatter in (LogfmtFormatter(), JSONFormatter()):
        log, out = _logger(formatter, [0.0])
        log.warning("webhook_refused", extra={"error": "x" * 4_000_000, "more": "y" * 100_000})
        line = out.getvalue()
        assert len(line) < MAX_LINE_CHARS + 100
        assert "more characters)" in line
        if isinstance(formatter, JSONFormatter):
            json.loads(line)  # still one valid object


def test_many_fields_are_cut_to_one_valid_json_line() -> None:
    log, out = _logger(JSONFormatter(), [0.0])
    log.error("x", extra={f"f{i}": "v" * 2000 for i in range(40)})
    entry = json.loads(out.getvalue())
    assert entry["event"] == "x" and "truncated" in entry


def test_repeated_warnings_print_once_per_interval_with_the_suppressed_count() -> None:
    clock = [0.0]
    log, out = _logger(LogfmtFormatter(), clock)
    for _ in range(300):  # ~30 a second for 10 s
        log.warning("alerts_enriched", extra={"missing": "Prometheus is unreachable"})
        log.warning("poll_failed", extra={"query": "a"})
        log.warning("poll_failed", extra={"query": "b"})
        log.error("alert_refused")
        clock[0] += 1 / 30
    clock[0] = 10.5
    log.warning("alerts_enriched")
    lines = out.getvalue().splitlines()
    enriched = [line for line in lines if "alerts_enriched" in line]
    assert len(enriched) == 2 and "suppressed=299" in enriched[-1]
    # Each subject is limited on its own; errors are never suppressed.
    assert sum("query=a" in line for line in lines) == 1
    assert sum("query=b" in line for line in lines) == 1
    assert sum("alert_refused" in line for line in lines) == 300


def _failing() -> None:
    raise ValueError('bad "value"\nsecond line')


def test_logfmt_names_the_message_msg_as_prometheus_tools_do() -> None:
    log, out = _logger(LogfmtFormatter(), [0.0])
    log.info("warming_up", extra={"query": "node_cpu", "series": 12})
    line = out.getvalue()
    assert " msg=warming_up query=node_cpu series=12" in line
    assert "event=" not in line


def test_a_traceback_is_one_escaped_record_in_both_formats() -> None:
    for formatter in (LogfmtFormatter(), JSONFormatter()):
        log, out = _logger(formatter, [0.0])
        try:
            _failing()
        except ValueError:
            log.exception("poll_failed", extra={"query": "a\rb"})
        log.info("next")
        lines = out.getvalue().splitlines()
        assert len(lines) == 2, lines  # the traceback did not start lines of its own
        first = lines[0]
        if isinstance(formatter, JSONFormatter):
            entry = json.loads(first)
            assert entry["event"] == "poll_failed" and entry["query"] == "a\rb"
            text = entry["exception"]
        else:
            assert first.startswith("ts=") and " msg=poll_failed " in first
            assert ' query="a\\rb" ' in first
            quoted = first.split(" exception=", 1)[1]
            assert quoted.startswith('"Traceback') and quoted.endswith('"')
            text = json.loads(quoted)  # the value is one quoted, escaped string
        assert text.startswith("Traceback (most recent call last):\n")
        assert "in _failing" in text
        assert text.endswith('ValueError: bad "value"\nsecond line')


def test_unicode_line_separators_do_not_split_a_record() -> None:
    for formatter in (LogfmtFormatter(), JSONFormatter()):
        log, out = _logger(formatter, [0.0])
        log.warning("alert_refused", extra={"alert": "a\u2028b\u0085c\u2029d 中文"})
        text = out.getvalue()
        assert len(text.splitlines()) == 1
        assert "\\u2028" in text and "中文" in text
        if isinstance(formatter, JSONFormatter):
            assert json.loads(text)["alert"] == "a\u2028b\u0085c\u2029d 中文"


def test_a_long_traceback_is_cut_and_the_line_stays_bounded() -> None:
    for formatter in (LogfmtFormatter(), JSONFormatter()):
        log, out = _logger(formatter, [0.0])
        try:
            raise RuntimeError("x" * 100_000)
        except RuntimeError:
            log.error("sender_error", exc_info=True, extra={"error": "y" * 3000})
        text = out.getvalue()
        assert len(text.splitlines()) == 1
        assert len(text) < MAX_LINE_CHARS + 100
        assert "more characters)" in text
        if isinstance(formatter, JSONFormatter):
            json.loads(text)
        else:
            assert " exception=" in text


def _logfmt_fields(line: str) -> list[str]:
    """The values of a logfmt line, each checked to close its quotes (shlex-free parse)."""
    values, i = [], 0
    while i < len(line):
        key_end = line.index("=", i)
        i = key_end + 1
        if line[i] == '"':
            j = i + 1
            while line[j] != '"':  # IndexError: a quote left open
                j += 2 if line[j] == "\\" else 1
            values.append(json.loads(line[i : j + 1]))
            i = j + 1
        else:
            j = line.find(" ", i)
            j = len(line) if j < 0 else j
            values.append(line[i:j])
            i = j
        i += 1 if i < len(line) and line[i] == " " else 0
    return values


def test_a_traceback_full_of_escapes_and_a_stack_close_their_quotes() -> None:
    """Escaping makes a value longer than the text cut for it: a line of a long traceback
    of quotes and newlines, with a stack too, was cut after escaping and ended inside an open
    quote, which logfmt readers (Loki's) refuse."""
    log, out = _logger(LogfmtFormatter(), [0.0])
    try:
        raise RuntimeError('\x01"\n' * 20_000)  # \u0001: six characters escaped
    except RuntimeError:
        log.error("sender_error", exc_info=True, stack_info=True)
    line = out.getvalue().rstrip("\n")
    assert "\n" not in line and len(line) <= MAX_LINE_CHARS
    values = _logfmt_fields(line)
    assert values[3] == "sender_error" and values[4].startswith("Traceback")
