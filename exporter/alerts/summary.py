"""The one-sentence summary of an alert, in its own language (English or Chinese).

Built from the facts the Enricher gathered: what the alert says, where, the rule's value, the
first related anomaly, and what could not be learned in time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from exporter.alerts.facts import Facts, Reason
from exporter.alerts.payloads import WebhookAlert
from exporter.text.entities import Entities


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
        "rule": "rule value {} (was {} at {})",
        "value": "rule value {}",
        "related": "related: {name} anomalous (score {score:.1f}) since {since}",
        "more": " and {} more",
        "unknown": "{} unknown ({})",
        "and": ", ",
        "sep": "; ",
        "end": ".",
        "related_what": "related series",
        "expression_what": "rule value",
        "category_what": "category and runbook",
    },
    {
        "head": "{}：{}",
        "on": "（{}）",
        "rule": "规则值 {0}（{2} 时为 {1}）",
        "value": "规则值 {}",
        "related": "相关：{name} 自 {since} 起异常（分数 {score:.1f}）",
        "more": "，另有 {} 个序列",
        "unknown": "{}未知（{}）",
        "and": "、",
        "sep": "；",
        "end": "。",
        "related_what": "相关序列",
        "expression_what": "规则值",
        "category_what": "分类与手册",
    },
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _lead(alert: WebhookAlert) -> str:
    notes = alert.annotations
    text = _CONTROL.sub(" ", notes.get("summary") or notes.get("description") or "")
    text = " ".join(text.split())
    text = _SENTENCE_END.split(text, maxsplit=1)[0] or alert.labels.get("alertname", "alert")
    return text.rstrip(".。 ")[:200]


def _where(e: Entities) -> str:
    if e.pod:
        return f"{e.namespace[0]}/{e.pod[0]}" if e.namespace else e.pod[0]
    return next((names[0] for names in (e.machines(), e.service, e.job) if names), "")


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
    if (r := f.reading) and format_number(r.value) not in lead:
        at, then = format_clock(r.earlier_at, now), format_number(r.earlier)
        parts.append(
            p["rule" if r.earlier_at < r.at else "value"].format(format_number(r.value), then, at)
        )
    if f.related:
        top, more = f.related[0], len(f.related) - 1
        since = format_clock(top.first, now)
        parts.append(p["related"].format(name=top.metric, score=top.peak, since=since))
        parts[-1] += p["more"].format(more) if more else ""
    by_reason: dict[Reason, list[str]] = {}
    for what, reason in f.missing.items():
        by_reason.setdefault(reason, []).append(p[f"{what}_what"])
    for reason, whats in by_reason.items():
        parts.append(p["unknown"].format(p["and"].join(whats), reason[f.zh]))
    return p["sep"].join(parts) + p["end"]
