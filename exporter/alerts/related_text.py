"""The related-anomalies part of an enrichment: its window, its annotations, when it settles.

`augur_related` lists the ranked candidates (`cause.py`), then the rule expression's reading;
`augur_cause` names the top likely cause alone. Rules and augur's scores do not cross at the
same second (augur polls every `poll.interval`, and its scores reach Prometheus a scrape later),
so what is known at the first enrichment may lack the series that crossed just before or after
the alert: until `enrich.related_settle` after the alert's start the enrichment says when it
settles, and the worker re-enriches this part and the summary once then.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from exporter.alerts.cause import related_line
from exporter.alerts.facts import Facts
from exporter.alerts.payloads import bound
from exporter.alerts.related import Reading
from exporter.alerts.summary import format_clock, format_number
from exporter.config.alerts import EnrichConfig

RELATED_ANNOTATIONS = ("augur_related", "augur_cause", "augur_summary")
"""The annotations a re-enrichment of the related part may change (the summary names the
cause too)."""
_READING = re.compile(r"rule expression: (\S+) at [^(]*?(?: \((\S+) at [^)]*\))?")


def format_instant(ts: float, now: float) -> str:
    """`14:05:30 UTC` (with the date a day or more from `now`): a cause often leads by seconds."""
    return datetime.fromtimestamp(ts, UTC).strftime(
        "%H:%M:%S UTC" if abs(now - ts) < 86400 else "%Y-%m-%d %H:%M:%S UTC"
    )


def related_window(f: Facts, cfg: EnrichConfig, now: float) -> tuple[float, float]:
    """`related_before` before the alert's start to `related_after` after (not past now)."""
    start = f.alert.startsAt.timestamp()
    begin = math.floor((start - cfg.related_before) / cfg.related_step) * cfg.related_step
    end = math.ceil(min(start + cfg.related_after, now) / cfg.related_step)
    return begin, max(begin, end * cfg.related_step)


def settle_at(f: Facts, cfg: EnrichConfig, now: float) -> float | None:
    """When the related part is to be looked at again, if it was asked for too early."""
    if f.related is None and "related" not in f.missing:
        return None  # nothing to look for: later data changes nothing
    due = f.alert.startsAt.timestamp() + cfg.related_settle
    return due if now < due else None


def cause_text(f: Facts, now: float) -> str:
    """The top likely cause's line, or "" (then `augur_cause` is left out)."""
    top = next((r for r in f.related or () if r.cause), None)
    return related_line(top, format_instant(top.first, now), f.zh) if top else ""


def related_text(f: Facts, cfg: EnrichConfig, now: float) -> str:
    """One line per related series, likeliest cause first, then the rule's own values."""
    lines = [
        related_line(r, format_instant(r.first, now), f.zh)
        for r in (f.related or [])[: cfg.max_related]
    ]
    if "related" in f.missing:
        lines.append(f"unavailable: {f.missing['related'][0]}")
    elif f.related is None:
        lines.append("none: the alert names no instance, host, pod or service to look for")
    elif not f.related:
        begin, end = related_window(f, cfg, now)
        e = f.entities
        places = e.pod or e.machines() or e.service or e.url or f.rule_metrics
        lines.append(
            f"none: no series of {', '.join(places)} scored >= {cfg.related_min_score:g} "
            f"between {format_clock(begin, now)} and {format_clock(end, now)}"
        )
    if r := f.reading:
        lines.append(f"rule expression: {format_number(r.value)} at {format_clock(r.at, now)}")
        if r.earlier_at < r.at:
            lines[-1] += f" ({format_number(r.earlier)} at {format_clock(r.earlier_at, now)})"
    elif "expression" in f.missing:
        lines.append(f"rule expression unavailable: {f.missing['expression'][0]}")
    elif f.expr_not_run:
        lines.append(f"rule expression not run ({f.expr_not_run}): {bound(f.expr, 300)}")
    return "\n".join(lines)


def keep_reading(new: str, before: str) -> str:
    """`new` related lines with the rule expression's lines of `before` (a first enrichment's)."""
    kept = [line for line in before.splitlines() if line.startswith("rule expression")]
    lines = [line for line in new.splitlines() if not line.startswith("rule expression")]
    return "\n".join([*lines, *kept])


def first_reading(before: str, f: Facts, cfg: EnrichConfig) -> Reading | None:
    """The rule expression's reading as a first enrichment's `augur_related` gave it.

    The settle-time look does not run the rule's PromQL again (its reading at the alert's start
    does not change, and whoever may run it was decided when it arrived), so the summary it
    rewrites says what the rule read from these lines: the alert's start and `related_before`
    earlier, to the three digits shown. A reading that could not be had is said to be missing.
    """
    for line in before.splitlines():
        if line.startswith("rule expression unavailable"):
            f.missing["expression"] = (line.split(": ", 1)[-1], "首次富化时未能读取")
        elif match := _READING.fullmatch(line):
            start = f.alert.startsAt.timestamp()
            value = float(match[1])
            if match[2] is None:
                return Reading(value, start, value, start)
            return Reading(value, start, float(match[2]), start - (cfg.related_before or 1.0))
    return None
