"""The report's content as sections of sentences, tables and images, whatever the format.

report_html.py writes them as one self-contained HTML page or as Markdown; both read the same
sections, so the two formats cannot say different things.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

from exporter.assistant.report_data import ReportData, series_name
from exporter.assistant.report_text import clock, figure, say, span
from exporter.config.durations import format_duration


@dataclass
class Table:
    """Column headings and rows of text."""

    columns: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    """One part of the report: `id` is its stable anchor (`series`, `incidents`, …)."""

    id: str
    heading: str
    lines: list[str] = field(default_factory=list)
    table: Table | None = None
    images: list[tuple[str, bytes]] = field(default_factory=list)
    """(caption, PNG) pairs."""


def _series(data: ReportData, lang: str, pngs: list[bytes] | None) -> Section:
    section = Section("series", say(lang, "h_series"))
    if not data.series:
        section.lines.append(say(lang, "quiet"))
        return section
    if pngs is None:
        section.lines.append(say(lang, "plots_off"))
    section.table = Table(
        [say(lang, k) for k in ("c_series", "c_peak", "c_above")],
        [[series_name(s.labels), figure(s.peak), span(s.above, lang)] for s in data.series],
    )
    for i, s in enumerate(data.series):
        caption = f"{series_name(s.labels)}: " + say(
            lang,
            "series_line",
            peak=figure(s.peak),
            above=span(s.above, lang),
            stretches=len(s.stretches),
            detector=s.detector,
        )
        if pngs is not None:
            section.images.append((caption, pngs[i]))
        else:
            section.lines.append(caption)
    return section


def _incidents(data: ReportData, lang: str) -> Section:
    section = Section("incidents", say(lang, "h_incidents"))
    if not data.incidents:
        section.lines.append(say(lang, "no_incidents"))
        return section
    # One open before the period took longer than the period shows: not in the median.
    closed = [i.closed - i.opened for i in data.incidents if i.closed is not None and not i.before]
    if closed:
        median = span(statistics.median(closed), lang)
        section.lines.append(say(lang, "median_resolve", median=median, closed=len(closed)))
    section.table = Table(
        [say(lang, k) for k in ("c_series", "c_opened", "c_closed", "c_resolve", "c_stage")],
        [
            [
                f"{series_name(i.labels)} ({i.detector})",
                say(lang, "open_before") if i.before else clock(i.opened),
                clock(i.closed) if i.closed is not None else say(lang, "still_open"),
                span(i.closed - i.opened, lang)
                if i.closed is not None and not i.before
                else "> " + span((i.closed or data.end) - i.opened, lang),
                str(i.stage),
            ]
            for i in data.incidents
        ],
    )
    return section


def _alerts(data: ReportData, lang: str) -> Section:
    section = Section("alerts", say(lang, "h_alerts"))
    rows: list[list[str]] = []
    if data.alerts is not None:
        counts = Counter((a.category, a.service, a.alertname) for a in data.alerts)
        for (category, service, name), n in sorted(counts.items()):
            rows.append([category, service, name, str(n), say(lang, "src_enriched")])
    else:
        for category, n in sorted(data.enriched_by_category.items()):
            rows.append([category, "", "", str(n), say(lang, "src_enriched")])
    for f in data.fired:
        rows.append([f.category, f.service, f.alertname, str(f.series), say(lang, "src_fired")])
    if not rows:
        section.lines.append(say(lang, "no_alerts"))
        return section
    section.table = Table(
        [say(lang, k) for k in ("c_category", "c_service", "c_alert", "c_count", "c_source")],
        rows,
    )
    return section


def _forecasts(data: ReportData, lang: str) -> Section:
    section = Section("forecasts", say(lang, "h_forecasts"))
    if not data.forecasts:
        section.lines.append(say(lang, "no_forecasts"))
        return section
    section.table = Table(
        [say(lang, k) for k in ("c_series", "c_horizon", "c_forecast", "c_threshold")],
        [
            [
                series_name(f.labels),
                f.horizon,
                figure(f.value),
                say(lang, "threshold_percent")
                if f.kind == "percent"
                else say(lang, "threshold_max", value=figure(f.threshold)),
            ]
            for f in data.forecasts
        ],
    )
    return section


def _chains(data: ReportData, lang: str) -> Section:
    section = Section("chains", say(lang, "h_chains"))
    if data.alerts is None:
        section.lines.append(say(lang, "no_alertmanager"))
        return section
    chained = [a for a in data.alerts if a.related or a.follows]
    if not chained:
        section.lines.append(say(lang, "no_chains"))
        return section
    section.table = Table(
        [say(lang, k) for k in ("c_alert", "c_service", "c_started", "c_follows", "c_related")],
        [[a.alertname, a.service, a.starts_at, a.follows, a.related] for a in chained],
    )
    return section


def title(data: ReportData, lang: str) -> str:
    """The report's title: the period it covers."""
    return say(lang, "title", period=format_duration(data.end - data.start))


def sections(data: ReportData, lang: str, pngs: list[bytes] | None) -> list[Section]:
    """The report's sections in order; `pngs` are the series' plots (None: plots are off)."""
    summary = Section("summary", title(data, lang))
    summary.lines.append(
        say(
            lang,
            "period",
            start=clock(data.start),
            end=clock(data.end),
            step=format_duration(data.step),
        )
    )
    fired = sum(f.series for f in data.fired)
    summary.lines.append(
        say(
            lang,
            "summary",
            scored=data.scored,
            anomalous=data.anomalous,
            incidents=len(data.incidents),
            alerts=fired,
        )
    )
    out = [
        summary,
        _series(data, lang, pngs),
        _incidents(data, lang),
        _alerts(data, lang),
        _forecasts(data, lang),
        _chains(data, lang),
    ]
    if data.problems:
        out.append(Section("problems", say(lang, "h_problems"), lines=list(data.problems)))
    return out
