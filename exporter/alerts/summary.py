"""The one-sentence summary of an alert, in its own language (English or Chinese).

Built from the facts the Enricher gathered: what the alert says, where, what the rule measured
in words (measured.py: "predicted to run out in ~40 min", "at 93 %, above the 90 % threshold"),
the first related anomaly, and what could not be learned in time. A resolved alert's summary
says when it recovered and how long it lasted instead of what the rule read when it fired.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import UTC, datetime

from exporter.alerts.facts import Facts, Reason
from exporter.alerts.measured import band, duration, measured, shape
from exporter.alerts.payloads import WebhookAlert
from exporter.text.entities import Entities, is_chinese


def format_clock(ts: float, now: float) -> str:
    """`14:05 UTC`, or with the date when `ts` is a day or more away from `now`."""
    return datetime.fromtimestamp(ts, UTC).strftime(
        "%H:%M UTC" if abs(now - ts) < 86400 else "%Y-%m-%d %H:%M UTC"
    )


def format_number(value: float) -> str:
    """Three significant digits."""
    return f"{value:.3g}"


_WORDS = {
    "cpu": ("CPU", "CPU"),
    "memory": ("Memory", "内存"),
    "disk": ("Disk", "磁盘"),
    "network": ("Network", "网络"),
    "availability": ("Availability", "可用性"),
    "latency": ("Latency", "延迟"),
    "traffic": ("Traffic", "流量"),
    "errors": ("Errors", "错误"),
    "saturation": ("Saturation", "资源饱和"),
    "security": ("Security", "安全"),
    "data_integrity": ("Data integrity", "数据完整性"),
    "deployment": ("Deployment", "发布"),
    "hardware": ("Hardware", "硬件"),
    "other": ("Alert", "告警"),
}
_PHRASES = (
    {
        "head": "{}: {}",
        "on": " on {}",
        "recovered": "recovered at {} after {}",
        "recovered_head": "Recovered at {} after {} — {}",
        "related": "related: {name} anomalous (score {score:.1f}) since {since}",
        "cause": "likely cause: {name} anomalous (score {score:.1f}) since {since}",
        "more": " and {} more",
        "unknown": "{} unknown ({})",
        "and": ", ",
        "sep": "; ",
        "end": ".",
        "related_what": "related series",
        "expression_what": "rule value",
        "category_what": "category and runbook",
        "series_band": "{} {}",
    },
    {
        "head": "{}：{}",
        "on": "（{}）",
        "recovered": "已于 {} 恢复，持续 {}",
        "recovered_head": "已于 {} 恢复（持续 {}）——{}",
        "related": "相关：{name} 自 {since} 起异常（分数 {score:.1f}）",
        "cause": "可能原因：{name} 自 {since} 起异常（分数 {score:.1f}）",
        "more": "，另有 {} 个序列",
        "unknown": "{}未知（{}）",
        "and": "、",
        "sep": "；",
        "end": "。",
        "related_what": "相关序列",
        "expression_what": "规则值",
        "category_what": "分类与手册",
        "series_band": "{} 为 {}",
    },
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_LEAD_CHARS = 120
"""The alert's own summary is cut here, so that augur's one line stays near 200 characters."""


def _lead(alert: WebhookAlert) -> str:
    notes = alert.annotations
    text = _CONTROL.sub(" ", notes.get("summary") or notes.get("description") or "")
    text = " ".join(text.split())
    text = _SENTENCE_END.split(text, maxsplit=1)[0] or alert.labels.get("alertname", "alert")
    text = text.rstrip(".。 ")
    return text if len(text) <= _LEAD_CHARS else text[: _LEAD_CHARS - 1] + "…"


def _says(lead: str, value: float) -> bool:
    """Whether the alert's own text gives the rule's value already (`{{ $value }}` in a
    template), as it is, in percent or in milli-units (`981.5ms` for 0.9815)."""
    if not math.isfinite(value):
        return False
    for number in _NUMBER.findall(lead):
        said = float(number)
        if any(math.isclose(said, value * k, rel_tol=0.01) for k in (1, 100, 1000)):
            return True
    return False


def _where(e: Entities) -> str:
    if e.pod:
        return f"{e.namespace[0]}/{e.pod[0]}" if e.namespace else e.pod[0]
    return next((names[0] for names in (e.machines(), e.service, e.job) if names), "")


def _recovered(f: Facts, now: float) -> str:
    """`recovered at 14:25 UTC after 23 min`: when the source resolved (else now), how long."""
    start = f.alert.startsAt.timestamp()
    end = f.alert.endsAt.timestamp() if f.alert.endsAt is not None else now
    end = end if start <= end <= now else now
    return _PHRASES[f.zh]["recovered"].format(
        format_clock(end, now), duration(max(60.0, end - start), f.zh)
    )


def _related_clause(f: Facts, now: float) -> str:
    """The likely cause (else the first related anomaly) and how many more, or ``.

    The alert's own series is no news and is left out.
    """
    p = _PHRASES[f.zh]
    others = [r for r in f.related or () if not r.own]
    if not others:
        return ""
    top = next((r for r in others if r.cause), others[0])
    since, more = format_clock(top.first, now), len(others) - 1
    phrase = p["cause" if top.cause else "related"]
    text = phrase.format(name=top.metric, score=top.peak, since=since)
    return text + (p["more"].format(more) if more else "")


def _band_clause(f: Facts, with_name: bool) -> str:
    """The alerting series' value against its expected band, or ""."""
    if (b := f.band) is None:
        return ""
    unit = shape(b.metric)
    if b.metric.endswith("_per_second"):  # a recording rule's or exporter's rate, by name
        unit = replace(unit, kind="rate")
    text = band(b.value, b.expected, b.lower, b.upper, f.zh, unit)
    return _PHRASES[f.zh]["series_band"].format(b.metric, text) if with_name else text


def _measured_clauses(f: Facts, lead: str) -> list[str]:
    """What the rule read, and where augur scores the alerting series, its value and band.

    For augur's own alerts the band says it all: "augur incident stage 1" only adds a stage
    once it has risen. A rule's alert names the series the band is of.
    """
    s, r = shape(f.expr), f.reading
    augurs = s.kind in ("incident", "score") or (not f.expr and "query" in f.alert.labels)
    clause = _band_clause(f, with_name=not augurs)
    said = r is None or _says(lead, r.value)
    if augurs and clause and not (s.kind == "incident" and r and r.value >= 2):
        said = True
    rule = [] if said or r is None else [measured(s, r, f.zh)]
    both = [clause, *rule] if augurs else [*rule, clause]
    return [c for c in both if c]


def summary(f: Facts, now: float) -> str:
    """One sentence in the alert's own language, built from the facts gathered for it."""
    p, e, lead, where = _PHRASES[f.zh], f.entities, _lead(f.alert), _where(f.entities)
    word = _WORDS.get(f.understood[0].category if f.understood else "other", _WORDS["other"])[f.zh]
    parts = [lead if word.lower() in lead.lower() else p["head"].format(word, lead)]
    if where and where not in lead:
        parts[0] += p["on"].format(where)
    place = next((x for x in (*e.mountpoint, *e.device) if x not in lead), "")
    share = next((x for x in e.percentage if x not in lead), "")
    if place or share:
        parts.append(f"{place} {share}".strip())
    if f.alert.status == "resolved":
        parts.append(_recovered(f, now))
    else:
        parts += _measured_clauses(f, lead)
    if related := _related_clause(f, now):
        parts.append(related)
    by_reason: dict[Reason, list[str]] = {}
    for what, reason in f.missing.items():
        by_reason.setdefault(reason, []).append(p[f"{what}_what"])
    for reason, whats in by_reason.items():
        parts.append(p["unknown"].format(p["and"].join(whats), reason[f.zh]))
    return p["sep"].join(parts) + p["end"]


def recovered_summary(text: str, starts: float, ends: float, now: float) -> str:
    """An enriched alert's `augur_summary`, written when it fired, as sent once it resolved:
    `Recovered at 14:25 UTC after 23 min — <the summary>`, in the summary's language."""
    if not text or "recovered at " in text.lower() or "恢复，持续" in text or "恢复（持续" in text:
        return text  # said already (the alert was enriched after it resolved)
    ends = ends if starts <= ends <= now else now
    zh = is_chinese(text)
    head = _PHRASES[zh]["recovered_head"]
    return head.format(format_clock(ends, now), duration(max(60.0, ends - starts), zh), text)
