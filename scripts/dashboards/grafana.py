"""Builders for Grafana dashboard JSON: variables, targets, panels, rows, the dashboard.

The dashboards are written as Python (one module each) and rendered to the JSON files under
dashboards/grafana/ by build.py, so the conventions every panel must follow (the data source
variable, a unit, a description, unique ids, a grid without holes) live in one place instead of
being repeated by hand in four files of a few thousand lines each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 39
"""Grafana 10/11's dashboard format; newer Grafana migrates it on load."""
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
TAG = "augur"
"""Every augur dashboard carries it: the dashboards' links list the others by this tag."""
WIDTH = 24

Json = dict[str, Any]


def datasource_variable() -> Json:
    """The first variable of every dashboard: which Prometheus to read."""
    return {
        "type": "datasource",
        "name": "datasource",
        "label": "Data source",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
    }


def query_variable(
    name: str,
    label: str,
    query: str,
    *,
    multi: bool = True,
    all_value: str | None = ".*",
    regex: str = "",
    description: str = "",
) -> Json:
    """A variable whose values come from Prometheus (`label_values(...)`, `query_result(...)`).

    With `all_value` the variable offers "All", which stands for that regex: `.*` also matches
    a series without the label, so an optional label (`cluster`) filters nothing when absent.
    """
    include_all = all_value is not None
    current: Json = (
        {"selected": True, "text": ["All"], "value": ["$__all"]} if include_all and multi else {}
    )
    out: Json = {
        "type": "query",
        "name": name,
        "label": label,
        "description": description,
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor"},
        "refresh": 2,  # on time range change: values come and go with the series
        "sort": 1,
        "multi": multi,
        "includeAll": include_all,
        "current": current,
        "options": [],
        "regex": regex,
        "hide": 0,
    }
    if include_all:
        out["allValue"] = all_value
    return out


def target(expr: str, legend: str = "", *, instant: bool = False) -> Json:
    """One PromQL query of a panel; a table's query is instant and formatted as a table."""
    out: Json = {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend or "__auto"}
    if instant:
        out.update(instant=True, range=False, format="table")
    else:
        out.update(instant=False, range=True)
    return out


@dataclass
class Panel:
    """A panel before layout: its kind, size and everything Grafana needs but the position."""

    kind: str
    title: str
    description: str
    unit: str
    targets: list[Json]
    width: int = 8
    height: int = 8
    options: Json = field(default_factory=dict)
    defaults: Json = field(default_factory=dict)
    overrides: list[Json] = field(default_factory=list)
    extra: Json = field(default_factory=dict)


def threshold_steps(*red_from: float) -> Json:
    """Green below, red from the given value (none: no thresholds but the base colour)."""
    steps: list[Json] = [{"color": "green", "value": None}]
    steps += [{"color": "red", "value": v} for v in red_from]
    return {"mode": "absolute", "steps": steps}


def timeseries(
    title: str,
    description: str,
    unit: str,
    *targets: Json,
    width: int = 8,
    red_line: float | None = None,
    stack: bool = False,
    bars: bool = False,
    dashed: str = "",
) -> Panel:
    """A graph; `red_line` draws a threshold (the score's 1), `bars` suit per-interval counts,
    series whose name matches the regex `dashed` are drawn dashed without fill (a band's edges)."""
    custom: Json = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 60 if bars else 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "axisSoftMin": 0,
    }
    defaults: Json = {"custom": custom}
    if red_line is not None:
        custom["thresholdsStyle"] = {"mode": "line+area"}
        defaults["thresholds"] = threshold_steps(red_line)
    options = {
        "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["max", "lastNotNull"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    overrides = []
    if dashed:
        dash = {"fill": "dash", "dash": [10, 10]}
        overrides.append(
            {
                "matcher": {"id": "byRegexp", "options": dashed},
                "properties": [
                    {"id": "custom.lineStyle", "value": dash},
                    {"id": "custom.fillOpacity", "value": 0},
                ],
            }
        )
    return Panel(
        "timeseries",
        title,
        description,
        unit,
        list(targets),
        width,
        8,
        options,
        defaults,
        overrides,
    )


def stat(
    title: str,
    description: str,
    unit: str,
    *targets: Json,
    width: int = 4,
    red: float | None = None,
) -> Panel:
    """One number (the last value); red from `red` on."""
    defaults: Json = {"thresholds": threshold_steps(*([] if red is None else [red]))}
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value" if red is not None else "none",
        "graphMode": "area",
        "textMode": "auto",
    }
    return Panel("stat", title, description, unit, list(targets), width, 4, options, defaults)


def table(
    title: str,
    description: str,
    unit: str,
    *targets: Json,
    width: int = 12,
    height: int = 8,
    hide: tuple[str, ...] = ("Time",),
    links: list[Json] | None = None,
) -> Panel:
    """An instant table of label sets and their value, highest first; `hide` drops columns."""
    overrides = []
    if links:
        overrides.append(
            {
                "matcher": {"id": "byName", "options": "Value"},
                "properties": [{"id": "links", "value": links}],
            }
        )
    return Panel(
        "table",
        title,
        description,
        unit,
        list(targets),
        width,
        height,
        {"showHeader": True, "sortBy": [{"displayName": "Value", "desc": True}]},
        {"custom": {"align": "auto"}},
        overrides,
        {
            "transformations": [
                {"id": "organize", "options": {"excludeByName": dict.fromkeys(hide, True)}}
            ]
        },
    )


@dataclass
class Row:
    """A titled row of panels, laid out left to right and wrapped at the grid's width."""

    title: str
    panels: list[Panel]


def _layout(rows: list[Row]) -> list[Json]:
    out: list[Json] = []
    y = 0
    next_id = 1
    for row in rows:
        out.append(
            {
                "type": "row",
                "id": next_id,
                "title": row.title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y},
            }
        )
        next_id += 1
        y += 1
        x = 0
        line_height = 0
        for p in row.panels:
            if x + p.width > WIDTH:
                x, y, line_height = 0, y + line_height, 0
            targets = [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(p.targets)]
            defaults = {"unit": p.unit, **p.defaults}
            out.append(
                {
                    "type": p.kind,
                    "id": next_id,
                    "title": p.title,
                    "description": p.description,
                    "datasource": DATASOURCE,
                    "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
                    "fieldConfig": {"defaults": defaults, "overrides": p.overrides},
                    "options": p.options,
                    "targets": targets,
                    **p.extra,
                }
            )
            next_id += 1
            x += p.width
            line_height = max(line_height, p.height)
        y += line_height
    return out


def dashboard(
    uid: str, title: str, description: str, variables: list[Json], rows: list[Row]
) -> Json:
    """The whole dashboard: links to the other augur dashboards (by tag), variables, panels."""
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": [TAG, "prometheus", "anomaly-detection"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "refresh": "1m",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [
            {
                "type": "dashboards",
                "title": "augur",
                "tags": [TAG],
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
                "targetBlank": False,
                "icon": "external link",
                "tooltip": "",
                "url": "",
            }
        ],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": [datasource_variable(), *variables]},
        "panels": _layout(rows),
    }
