"""Slot values from a question: names checked against known label values, ranges, times, top-k.

Names (`host`, `service`, `namespace`, `pod`, `alert`) are taken first from the label values
Prometheus (or the offline world file) knows, matched whole and case-insensitively; a name it
does not know is still taken when the wording marks it as one (`host db-09`, `服务 billing`),
so that the catalogue can answer "no such host, did you mean db-01?" rather than ignore it.
Values are returned as written and normalised as models/data/ask-questions.jsonl labels them:
range as a Prometheus duration (`1h`, `24h`, `7d`), time as `HH:MM` or relative `-2h`, topk as
digits. Nothing here builds PromQL: the catalogue validates and escapes every value.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from exporter.text.entities import extract, split_host_port

DEFAULT_TOPK = "5"
NAME_SLOTS = ("host", "service", "namespace", "pod", "alert")


@dataclass(frozen=True)
class Known:
    """Label values a question's names are matched against."""

    hosts: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    pods: tuple[str, ...] = ()
    alerts: tuple[str, ...] = ()
    by_slot: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        slots = {
            "host": self.hosts,
            "service": self.services,
            "namespace": self.namespaces,
            "pod": self.pods,
            "alert": self.alerts,
        }
        object.__setattr__(self, "by_slot", slots)

    @cached_property
    def index(self) -> dict[str, _Index]:
        """Each slot's values as set lookups, built once per snapshot of the known values."""
        return {slot: _Index(values) for slot, values in self.by_slot.items()}

    @cached_property
    def names_cache(self) -> dict[str, tuple[tuple[str, str], ...]]:
        """`names` of the questions asked against this snapshot (bounded by `names`)."""
        return {}


def load_world(path: Path) -> Known:
    """The known values of a world file (models/data/ask-world.json's shape)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    pods = doc.get("pods", {})
    return Known(
        hosts=tuple(doc.get("hosts", ())),
        services=tuple(doc.get("services", ())),
        namespaces=tuple(doc.get("namespaces", ())),
        pods=tuple(p for names in pods.values() for p in names),
        alerts=tuple(doc.get("alerts", ())),
    )


def known_from_labels(values: Mapping[str, Iterable[str]]) -> Known:
    """Known values from Prometheus label values: label name -> its values."""

    def of(*names: str) -> tuple[str, ...]:
        out: dict[str, None] = {}
        for name in names:
            for value in values.get(name, ()):
                out.setdefault(split_host_port(value)[0] if name == "instance" else value)
        return tuple(v for v in out if v)

    return Known(
        hosts=of("instance", "node", "nodename"),
        services=of("service", "job", "app"),
        namespaces=of("namespace"),
        pods=of("pod"),
        alerts=of("alertname"),
    )


LABELS_FOR_KNOWN: tuple[str, ...] = ("instance", "node", "nodename", "service", "job", "app")
LABELS_FOR_KNOWN += ("namespace", "pod", "alertname")
"""The label names whose values `known_from_labels` reads."""

_EDGE_L = r"(?<![A-Za-z0-9_.-])"
_EDGE_R = r"(?![A-Za-z0-9_-])"

_CN_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
_CN_DIGITS |= {"六": 6, "七": 7, "八": 8, "九": 9}
_CN_NUM = r"[零一二两三四五六七八九十]+"
_EN_NUMS = "one two three four five six seven eight nine ten eleven twelve".split()
_EN_NUM = "|".join(_EN_NUMS)


def number(text: str) -> int | None:
    """`12`, `twelve`, `十二`, `两` -> an int; None if not a number this reads."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    if text in _EN_NUMS:
        return _EN_NUMS.index(text) + 1
    if text and all(c in _CN_DIGITS or c == "十" for c in text):
        if "十" not in text:
            return int("".join(str(_CN_DIGITS[c]) for c in text)) if len(text) == 1 else None
        tens, _, ones = text.partition("十")
        return (_CN_DIGITS[tens] if tens else 1) * 10 + (_CN_DIGITS[ones] if ones else 0)
    return None


_RUN = re.compile(r"[A-Za-z0-9._:-]+")
_MAX_CUTS = 16
_NAMEISH = re.compile(r"^[A-Za-z0-9._:-]+$")


class _Index:
    """One slot's known values as set lookups: lower-case value -> the values spelt so."""

    def __init__(self, values: Iterable[str]) -> None:
        self.by_lower: dict[str, list[str]] = {}
        self.other: list[str] = []  # values a name run cannot hold (spaces, CJK): regex, as before
        for value in dict.fromkeys(values):
            if _NAMEISH.match(value):
                self.by_lower.setdefault(value.lower(), []).append(value)
            elif value:
                self.other.append(value)

    def find(self, question: str, runs: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """(position, value) of each known value named whole in the question."""
        found = []
        for start, candidate in runs:
            spelt = self.by_lower.get(candidate.lower())
            if spelt:
                found.append(
                    (start, -len(candidate), candidate if candidate in spelt else spelt[0])
                )
        for value in self.other:
            pattern = _EDGE_L + re.escape(value) + r"(?::\d{1,5})?" + _EDGE_R
            if m := re.search(pattern, question, re.IGNORECASE):
                found.append((m.start(), -len(value), value))
        return [(start, value) for start, _, value in sorted(found)]


def _runs(question: str) -> list[tuple[int, str]]:
    """Every substring a known name can be: a run of name characters, cut where a name may end.

    As the edges of the old per-value regex: a name starts at a run's start or after a `:` in it
    (`host:db-01`) and ends at the run's end or before a `.` or `:` (`db-01.example`,
    `web-02:9100`, `db-01.` at a sentence's end); CJK around an ASCII run ends it by itself.
    """
    out = []
    for m in _RUN.finditer(question):
        run, base = m.group(), m.start()
        starts = [0] + [i + 1 for i, c in enumerate(run) if c == ":"]
        ends = [i for i, c in enumerate(run) if c in ".:"] + [len(run)]
        for a in starts:
            first = bisect.bisect_right(ends, a)  # a few ends per start: `a:a:a:...` x 1,000
            # must not make a million candidates; real names have a few dots (FQDN, port).
            out += [(base + a, run[a:b]) for b in ends[first : first + _MAX_CUTS]]
    return out


# An English marker is a whole word (`alerting` marks nothing); a Chinese one may touch the name.
_MARKED = {
    "host": r"(?:(?:host|server|machine|node|instance)(?![A-Za-z])|主机|服务器|机器|节点)",
    "service": r"(?:(?:service|svc|app)(?![A-Za-z])|服务|应用)",
    "namespace": r"(?:(?:namespace|ns)(?![A-Za-z])|命名空间|名字空间)",
    "pod": r"(?:pod(?![A-Za-z])|容器组)",
    "alert": r"(?:alert(?![A-Za-z])|告警|报警)",
}
_VALUE = r"\s*[:=：]?\s*[\"'`“「]?([A-Za-z][A-Za-z0-9_.-]*[A-Za-z0-9])"
_HOSTLIKE = re.compile(r"^[a-z][a-z0-9.-]*\d[a-z0-9.-]*$", re.IGNORECASE)
_NUMBERED = re.compile(_EDGE_L + r"([a-z][a-z0-9]*(?:-[a-z0-9]+)*-\d+)" + _EDGE_R, re.I)
_CAMEL = re.compile(_EDGE_L + r"([A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+)" + _EDGE_R)
_NOT_NAMES = frozenset(
    "is are was were be been the a an of with in on at to for by per from into over under and or "
    "not no has have had get gets got getting do does did doing can could should would will "
    "each every all any some this that these those it its their which what who how much many "
    "now today handle handles handling serve serves serving use uses using run runs running "
    "cpu memory disk availability error errors latency traffic requests request rate success "
    "level status health usage load uptime".split()
)
"""Words that follow a marker (`service`, `host`, ...) in a sentence without naming anything."""


def _marked(question: str, slot: str) -> str | None:
    """A name the wording marks as of `slot`: `host db-09`, `namespace billing`."""
    pattern = _EDGE_L + _MARKED[slot] + _VALUE
    for m in re.finditer(pattern, question, re.IGNORECASE):
        value = m.group(1)
        if value.lower() in _NOT_NAMES:
            continue
        if slot == "host" and not _HOSTLIKE.match(value):
            continue
        return value
    return None


def names(question: str, known: Known) -> dict[str, str]:
    """Every name slot the question fills, known values first (the first one named wins)."""
    # Cached on the snapshot (dropped with it): matching asks `mentioned`, then `fill`.
    cache = known.names_cache
    if question not in cache:
        if len(cache) >= 256:
            cache.clear()
        cache[question] = _names(question, known)
    return dict(cache[question])


def _names(question: str, known: Known) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    runs = _runs(question)
    for slot in NAME_SLOTS:
        hits = known.index[slot].find(question, runs)
        if hits:
            out[slot] = hits[0][1]
    for slot in NAME_SLOTS:
        if slot not in out and (value := _marked(question, slot)) is not None:
            out[slot] = value
    if "alert" not in out and (m := _CAMEL.search(question)):
        out["alert"] = m.group(1)
    if "host" not in out:
        entities = extract({}, [question])
        machines = [h for h in entities.machines() if _HOSTLIKE.match(h)]
        if machines:
            out["host"] = machines[0]
        elif m := _NUMBERED.search(question):  # `db-07`: named like the fleet's hosts
            out["host"] = m.group(1)
    if "pod" not in out:
        pods = extract({}, [question]).pod
        if pods:
            out["pod"] = pods[0]
    return tuple(out.items())


_UNITS = {
    "m": "m", "min": "m", "mins": "m", "minute": "m", "minutes": "m", "分钟": "m", "分": "m",
    "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h", "小时": "h", "个小时": "h",
    "d": "d", "day": "d", "days": "d", "天": "d", "日": "d",
    "w": "w", "week": "w", "weeks": "w", "周": "w", "星期": "w", "个星期": "w", "礼拜": "w",
}  # fmt: skip
_UNIT = "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True))
_COUNT = rf"(\d+|{_EN_NUM}|an?|{_CN_NUM}|半)"
_RANGE_NUM = re.compile(
    rf"(?:last|past|previous|recent|over|within|in|next|coming|过去|最近|近|前(?!天)|未来|接下来)"
    rf"\s*(?:the\s+)?{_COUNT}?\s*"
    rf"(?:个)?\s*({_UNIT})(?![A-Za-z])",
    re.IGNORECASE,
)
# "24小时内", "3天内", "一周以内": the count and unit come first, 内/以内/之内 closes them.
_RANGE_WITHIN = re.compile(rf"{_COUNT}\s*(?:个)?\s*({_UNIT})\s*(?:以内|之内|内)", re.I)
# A day, not a span up to now: no range; the instant is -48h, a point in that day.
_DAY_BEFORE_YESTERDAY = re.compile(r"前天|day before yesterday", re.I)
_RANGE_WORDS = (
    (re.compile(r"this hour|这一?(?:个)?小时|本小时", re.I), "1h"),
    (re.compile(r"today|this day|so far today|今天|今日|当天|一整天", re.I), "24h"),
    (re.compile(r"yesterday|昨天|昨日", re.I), "24h"),
    (re.compile(r"this week(?!end)|本周|这周|这一周|这个星期", re.I), "7d"),
    (re.compile(r"this month|本月|这个月", re.I), "30d"),
    (re.compile(r"overnight|last night|昨晚|昨夜", re.I), "12h"),
)


def _duration(count: int, unit: str) -> str:
    if unit == "w":
        return f"{count * 7}d"
    if unit == "m" and count % 60 == 0:
        return f"{count // 60}h"
    if unit == "d" and count == 1:
        return "24h"
    return f"{count}{unit}"


def time_range(question: str) -> str | None:
    """A Prometheus duration for "last hour", "past 30 minutes", "今天", "最近一周"; or None."""
    if _DAY_BEFORE_YESTERDAY.search(question):
        return None
    for m in (_RANGE_NUM.search(question), _RANGE_WITHIN.search(question)):
        if m is None:
            continue
        raw, unit = (m.group(1) or "1"), _UNITS[m.group(2).lower()]
        if raw == "半":
            return "30m" if unit == "h" else None
        count = 1 if raw.lower() in ("a", "an") else number(raw)
        if count:
            return _duration(count, unit)
    for pattern, value in _RANGE_WORDS:
        if pattern.search(question):
            return value
    return None


_CLOCK = re.compile(r"(?<!\d)([01]?\d|2[0-3])[:：]([0-5]\d)(?!\d)")
_AGO = re.compile(rf"{_COUNT}\s*(?:个)?\s*({_UNIT})\s*(?:ago|之前|以前|前)", re.I)
_HALF_AGO = re.compile(r"(?:half an hour ago|半(?:个)?小时(?:之|以)?前)", re.I)
_AMPM = re.compile(r"(?<!\d)(1[0-2]|0?\d)(?::([0-5]\d))?\s*(am|pm|a\.m\.|p\.m\.)", re.I)
_CN_CLOCK = re.compile(
    rf"(凌晨|早上|早晨|上午|中午|下午|傍晚|晚上|夜里)?\s*(\d{{1,2}}|{_CN_NUM})\s*[点时]"
    rf"\s*(半|(\d{{1,2}}|{_CN_NUM})\s*分?)?"
)
_PM = ("下午", "傍晚", "晚上", "夜里")


def instant(question: str) -> str | None:
    """`HH:MM` for "at 14:05", "3pm", "下午3点半"; `-2h` for "2 hours ago", "30 分钟前"; or None."""
    if _HALF_AGO.search(question):
        return "-30m"
    m = _AGO.search(question)
    if m:
        raw = m.group(1)
        count = 1 if raw.lower() in ("a", "an") else number(raw)
        if count:
            return f"-{count}{_UNITS[m.group(2).lower()]}"
    if _DAY_BEFORE_YESTERDAY.search(question):
        return "-48h"  # a point in that day: the catalogue's instants are times, not days
    # am/pm first: "2:30pm" also reads as the 24-hour clock 02:30.
    m = _AMPM.search(question)
    if m:
        clock = int(m.group(1)) % 12 + (12 if m.group(3).lower().startswith("p") else 0)
        return f"{clock:02d}:{m.group(2) or '00'}"
    m = _CLOCK.search(question)
    if m:
        return f"{int(m.group(1)):02d}:{m.group(2)}"
    m = _CN_CLOCK.search(question)
    if m:
        hour = number(m.group(2))
        if hour is None or hour > 24:
            return None
        if m.group(1) in _PM and hour < 12:
            hour += 12
        elif m.group(1) == "中午" and hour < 6:
            hour += 12
        minute = 30 if m.group(3) == "半" else (number(m.group(4)) if m.group(4) else 0)
        return f"{hour % 24:02d}:{minute or 0:02d}"
    return None


_NOT_IN_NAME = r"(?<![A-Za-z0-9_.-])"
"""Before a count: a digit run attached to a name (`db-07`, `web_2`, `v1.2`) is part of the name."""
_TOPK = (
    re.compile(rf"top[\s-]*({_EN_NUM}|\d+)", re.I),
    re.compile(
        rf"{_NOT_IN_NAME}(\d+|{_EN_NUM})\s+(?:highest|busiest|most|largest|fullest|worst)", re.I
    ),
    re.compile(
        rf"{_NOT_IN_NAME}(\d+|{_EN_NUM})\s+(?:pods?|hosts?|servers?|machines?|nodes?|containers?"
        r"|disks?|filesystems?|services?)",
        re.I,
    ),
    re.compile(rf"(?:first|前)\s*(\d+|{_EN_NUM}|{_CN_NUM})\s*(?:个|台|名|位|条|项)?", re.I),
    re.compile(rf"(?:最高|最多|最大|最忙|最满|最慢)的\s*(\d+|{_CN_NUM})\s*(?:个|台|名|条|项)"),
    re.compile(rf"{_NOT_IN_NAME}(\d+|{_CN_NUM})\s*(?:台|个)(?:服务器|主机|机器|pod|Pod|容器)"),
)


def topk(question: str) -> str | None:
    """Digits for "top 5", "five busiest", "前五", "前 10 个", "最高的三台"; or None."""
    for pattern in _TOPK:
        for m in pattern.finditer(question):
            value = number(m.group(1))
            if value and 0 < value <= 100:
                return str(value)
    return None


def mentioned(question: str, known: Known) -> set[str]:
    """The slots the question names a value for (topk aside: every top-k intent has a default)."""
    out = set(names(question, known))
    if time_range(question) is not None:
        out.add("range")
    if instant(question) is not None:
        out.add("time")
    return out


def fill(question: str, wanted: Iterable[str], known: Known) -> dict[str, str]:
    """The slots of `wanted` the question fills; `topk` defaults to DEFAULT_TOPK."""
    wanted = tuple(wanted)
    out: dict[str, str] = {}
    found = names(question, known)
    for slot in wanted:
        if slot in found:
            out[slot] = found[slot]
    if "range" in wanted and (value := time_range(question)) is not None:
        out["range"] = value
    if "time" in wanted and (value := instant(question)) is not None:
        out["time"] = value
    if "topk" in wanted:
        out["topk"] = topk(question) or DEFAULT_TOPK
    return out
