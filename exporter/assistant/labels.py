"""Slot values checked against Prometheus's own label values, and rendered safely into PromQL.

Nothing a user typed is pasted into a query. A label slot (host, service, namespace, pod,
alert) must equal a real label value, exactly or by a unique case-insensitive match; the query
then carries the *real* value, escaped as a PromQL string literal (and for RE2 as well when
several values go into one regex matcher). Numbers and durations are parsed and rendered anew.
"""

from __future__ import annotations

import difflib
import re
import time as _time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from exporter.assistant.catalog import Intent
from exporter.assistant.discovery import Discovery
from exporter.assistant.errors import SlotError

MAX_SLOT_CHARS = 253
"""Longer than any DNS name: a longer value is refused before any label list is read."""
MAX_TOPK = 100
MAX_RANGE_SECONDS = 30 * 86400
"""The longest range a question may ask for: a longer `increase(...[r])` over every series
costs Prometheus more than an answer typed into a chat is worth."""
SERVICE_LABELS = ("service", "job", "app")
"""Where a service's name is found, in this order of preference."""
HOST_LABELS = ("node", "nodename")
"""Kubernetes and node_uname_info name machines here; node_exporter in `instance`."""

_DURATION = re.compile(r"(\d{1,6})(ms|s|m|h|d|w|y)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_PORT = re.compile(r"^(.*):\d{1,5}$")


def promql_string(value: str) -> str:
    """`value` as a double-quoted PromQL string literal (backslash, quote, newline escaped)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped.replace("\r", "\\r").replace("\t", "\\t") + '"'


def re2_literal(value: str) -> str:
    """`value` as an RE2 pattern matching exactly that text: every non-word character escaped."""
    return "".join(c if c.isascii() and (c.isalnum() or c == "_") else _re2_char(c) for c in value)


def _re2_char(c: str) -> str:
    # Punctuation takes a backslash; anything else (unicode, controls) a \x{...} code point.
    return "\\" + c if c.isascii() and c.isprintable() and c != " " else f"\\x{{{ord(c):x}}}"


def matcher(label: str, values: Iterable[str]) -> str:
    """`label="v"` for one value, `label=~"v1|v2"` (RE2-escaped, then string-escaped) for more."""
    unique = sorted(set(values))
    if len(unique) == 1:
        return f"{label}={promql_string(unique[0])}"
    return f"{label}=~{promql_string('|'.join(re2_literal(v) for v in unique))}"


def parse_duration(text: str) -> float:
    """Seconds of a Prometheus duration such as `1h`, `90m` or `1h30m`; ValueError otherwise."""
    if len(text) > 32:
        raise ValueError("too long")
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or total <= 0:
        raise ValueError(f"not a duration: {text!r}")
    return total


def render_duration(seconds: float) -> str:
    """The shortest whole-unit Prometheus duration for `seconds`: `7d`, `90m`, `30s`."""
    whole = max(1, round(seconds))
    for unit in ("w", "d", "h", "m"):
        size = int(_UNITS[unit])
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def parse_time(text: str, now: float) -> float:
    """An instant: `HH:MM` (today, or yesterday when that is still to come, UTC) or `-2h`."""
    if text.startswith("-"):
        return now - parse_duration(text[1:])
    m = _CLOCK.fullmatch(text)
    if m is None:
        raise ValueError(f"not a time: {text!r}")
    day = now - now % 86400
    at = day + int(m.group(1)) * 3600 + int(m.group(2)) * 60
    return at if at <= now else at - 86400


def host_part(instance: str) -> str:
    """`web-01` of `web-01:9100` (and of `[::1]:9100`, `::1`); the value itself without a port."""
    m = _PORT.match(instance)
    if m is None or (":" in m.group(1) and not m.group(1).startswith("[")):
        return instance
    return m.group(1).strip("[]")


@dataclass(frozen=True)
class Bound:
    """An intent's slots after validation: real label values and parsed numbers only."""

    now: float
    instances: tuple[str, ...] = ()
    host: str | None = None
    node: str | None = None
    service: str | None = None
    service_label: str = "service"
    namespace: str | None = None
    pod: str | None = None
    alert: str | None = None
    range_seconds: float | None = None
    topk: int | None = None
    time: float | None = None

    def host_sel(self) -> str:
        """The `instance` matcher of the host's node_exporter targets, or "" for all hosts."""
        if self.host is None:
            return ""
        # A Kubernetes-only node has no node_exporter target: its name matches nothing there.
        return matcher("instance", self.instances or (self.host,))

    def node_sel(self) -> str:
        """The Kubernetes `node` matcher of the host, or ""."""
        return matcher("node", [self.node]) if self.node is not None else ""

    def svc_sel(self) -> str:
        """The matcher of the service in the label it was found in, or ""."""
        return matcher(self.service_label, [self.service]) if self.service is not None else ""

    def ns_sel(self) -> str:
        """The `namespace` matcher, or ""."""
        return matcher("namespace", [self.namespace]) if self.namespace is not None else ""

    def alert_sel(self) -> str:
        """The `alertname` matcher, or ""."""
        return matcher("alertname", [self.alert]) if self.alert is not None else ""

    def rng(self, default: str) -> str:
        """The range slot rendered anew, or `default`."""
        return render_duration(self.range_seconds) if self.range_seconds else default

    def k(self, default: int = 5) -> int:
        """How many rows the question asked for."""
        return self.topk or default


def sel(*parts: str) -> str:
    """A `{...}` selector body from matchers, the empty ones left out."""
    return "{" + ",".join(p for p in parts if p) + "}"


def _closest(value: str, real: Iterable[str]) -> list[str]:
    options = sorted(set(real))
    lower = {o.lower(): o for o in options}
    near = difflib.get_close_matches(value.lower(), list(lower), n=5, cutoff=0.4)
    return [lower[n] for n in near] or options[:5]


def _pick(slot: str, value: str, real: Iterable[str]) -> str:
    """The real value `value` names: equal, or the one case-insensitive match; else SlotError."""
    options = set(real)
    if value in options:
        return value
    folded = [o for o in options if o.casefold() == value.casefold()]
    if len(folded) == 1:
        return folded[0]
    raise SlotError(slot, f"no {slot} {value[:60]!r} in this Prometheus", _closest(value, options))


async def _host(value: str, found: Discovery) -> tuple[tuple[str, ...], str | None, str]:
    instances = await found.values("instance")
    by_host: dict[str, list[str]] = {}
    for inst in instances:
        by_host.setdefault(host_part(inst), []).append(inst)
    nodes: set[str] = set()
    for label in HOST_LABELS:
        nodes |= await found.values(label)
    name = _pick("host", value, set(by_host) | nodes | set(instances))
    if name in instances and name not in by_host:
        name = host_part(name)  # `web-01:9100` as written names the host too
    node = name if name in nodes else None
    return tuple(by_host.get(name, ())), node, name


async def bind(intent: Intent, slots: Mapping[str, str], found: Discovery, now: float) -> Bound:
    """Check every slot `intent` uses against Prometheus and parse the numeric ones."""
    given = {k: v for k, v in slots.items() if k in intent.slots and v is not None and v != ""}
    for slot in intent.required:
        if slot not in given:
            article = "an" if slot[0] in "aeiou" else "a"
            raise SlotError(slot, f"{intent.name} needs {article} {slot}")
    for slot, value in given.items():
        if not isinstance(value, str) or len(value) > MAX_SLOT_CHARS:
            raise SlotError(slot, f"the {slot} is longer than {MAX_SLOT_CHARS} characters")
    out: dict[str, object] = {"now": now}
    if "host" in given:
        out["instances"], out["node"], out["host"] = await _host(given["host"], found)
    if "service" in given:
        out["service"], out["service_label"] = await _service(given["service"], found)
    for slot, label in (("namespace", "namespace"), ("pod", "pod"), ("alert", "alertname")):
        if slot in given:
            out[slot] = _pick(slot, given[slot], await found.values(label))
    for slot, parse in _NUMERIC.items():
        if slot in given:
            try:
                out[_FIELD.get(slot, slot)] = parse(given[slot], now)
            except ValueError as exc:
                raise SlotError(slot, f"cannot read the {slot}: {exc}") from None
    return Bound(**out)  # type: ignore[arg-type]


def _range(text: str, now: float) -> float:
    seconds = parse_duration(text)
    if seconds > MAX_RANGE_SECONDS:
        raise ValueError(f"longer than the {render_duration(MAX_RANGE_SECONDS)} cap")
    return seconds


def _topk(text: str, now: float) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 3):
        raise ValueError(f"not a count: {text[:20]!r}")
    return min(MAX_TOPK, max(1, int(text)))


_NUMERIC = {"range": _range, "topk": _topk, "time": parse_time}
_FIELD = {"range": "range_seconds"}


async def _service(value: str, found: Discovery) -> tuple[str, str]:
    errors: list[SlotError] = []
    for label in SERVICE_LABELS:
        try:
            return _pick("service", value, await found.values(label)), label
        except SlotError as exc:
            errors.append(exc)
    closest = [c for e in errors for c in e.closest]
    raise SlotError("service", errors[0].args[0], list(dict.fromkeys(closest))[:5])


def utc_clock(at: float) -> str:
    """`14:05` of a unix time, in UTC."""
    return _time.strftime("%H:%M", _time.gmtime(at))
