"""What a report says, read from Prometheus (augur's own series) and Alertmanager's API.

The most anomalous series are ranked by the highest of `max without (detector)
(augur_anomaly_score)` over the period, then by the time it spent at or above 1; the
anomalous stretches are the runs of that score >= 1 and the incidents the runs of
`augur_anomaly_incident >= 1`, both read on one step grid, so their times are exact to a step.
Every selector is built from label sets Prometheus returned, escaped; nothing a user typed but
the period and the number of series reaches a query.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import numpy as np

from exporter.config.durations import format_duration
from exporter.prometheus.client import MatrixSeries, PrometheusClient, PrometheusError

POINTS = 720
"""Grid points over the period: 2 minutes apart over 24 h."""
MIN_STEP = 15.0
BANDS = (
    "augur_observed_value",
    "augur_expected_value",
    "augur_expected_lower",
    "augur_expected_upper",
)
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Stretch:
    """A run on the grid: `start` is its first point, `end` the first point after (None: the
    run lasts to the end of the period)."""

    start: float
    end: float | None

    def seconds(self, until: float) -> float:
        """How long it lasted, up to `until` when it is still going on."""
        return (self.end if self.end is not None else until) - self.start


@dataclass
class Incident:
    """One augur incident: opened, closed (None: still open) and its highest stage."""

    labels: dict[str, str]
    detector: str
    opened: float
    closed: float | None
    stage: int
    before: bool = False
    """Already open at the period's start: `opened` is that start, not when it opened."""


@dataclass
class Series:
    """One of the most anomalous series, with what its plot draws."""

    labels: dict[str, str]
    """Its labels without `detector` (augur's `metric`, `query` and the series' own)."""
    detector: str
    """The detector that gave its highest score; its band is the one drawn."""
    peak: float
    above: float
    """Seconds with the score >= 1."""
    stretches: list[Stretch]
    incidents: list[Incident] = field(default_factory=list)
    bands: dict[str, np.ndarray] = field(default_factory=dict)
    """`augur_observed_value` etc. -> array of (timestamp, value) rows."""


@dataclass(frozen=True)
class Fired:
    """A Prometheus alert (ALERTS) that fired during the period."""

    alertname: str
    category: str
    service: str
    series: int


@dataclass(frozen=True)
class Enriched:
    """An alert augur enriched, as Alertmanager holds it."""

    alertname: str
    category: str
    service: str
    starts_at: str
    related: str
    follows: str


@dataclass(frozen=True)
class Forecast:
    """A forecast past its threshold: `kind` is `percent` (100 %) or `max` (the period's max)."""

    labels: dict[str, str]
    horizon: str
    value: float
    threshold: float
    kind: str


@dataclass
class ReportData:
    """Everything a report shows for the period `start`..`end`."""

    start: float
    end: float
    step: float
    scored: int = 0
    anomalous: int = 0
    series: list[Series] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    enriched_by_category: dict[str, int] = field(default_factory=dict)
    fired: list[Fired] = field(default_factory=list)
    alerts: list[Enriched] | None = None
    """None when no Alertmanager was given."""
    forecasts: list[Forecast] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def escape(value: str) -> str:
    """A label value as a PromQL string literal's content."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def selector(labels: Mapping[str, str]) -> str:
    """`{a="x", b="y"}` matching exactly these labels' values."""
    return "{" + ", ".join(f'{k}="{escape(v)}"' for k, v in sorted(labels.items())) + "}"


def series_name(labels: Mapping[str, str]) -> str:
    """How a report names a series: `node_load1{instance="db-1:9100"}`."""
    rest = {k: v for k, v in labels.items() if k not in ("metric", "query", "__name__")}
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(rest.items()))
    return f"{labels.get('metric', labels.get('query', '?'))}{{{inner}}}"


def _key(metric: Mapping[str, str], *drop: str) -> Labels:
    return tuple(sorted((k, v) for k, v in metric.items() if k not in drop and k != "__name__"))


def _points(series: MatrixSeries) -> np.ndarray:
    values = np.asarray(series.get("values", ()), dtype=float)
    return values.reshape(-1, 2)


def runs(points: np.ndarray, grid: np.ndarray, step: float, at_least: float = 1.0) -> list[Stretch]:
    """The runs of grid points where the value is >= `at_least` (a missing point breaks one)."""
    on = np.zeros(len(grid), dtype=bool)
    if len(points):
        index = np.rint((points[:, 0] - grid[0]) / step).astype(int)
        ok = (index >= 0) & (index < len(grid))
        on[index[ok]] = points[ok, 1] >= at_least
    out = []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(int), [0]])))
    for begin, finish in zip(edges[::2], edges[1::2], strict=True):
        end = float(grid[finish]) if finish < len(grid) else None
        out.append(Stretch(float(grid[begin]), end))
    return out


async def _ranked(client: PrometheusClient, data: ReportData, grid: np.ndarray, top: int) -> None:
    """Rank every scored series by its peak, then its time >= 1; keep the `top` first."""
    matrix = await client.query_range("augur_anomaly_score", data.start, data.end, data.step)
    best: dict[Labels, tuple[float, str]] = {}
    merged: dict[Labels, np.ndarray] = {}
    for s in matrix:
        points = _points(s)
        if not len(points):
            continue
        key = _key(s["metric"], "detector")
        peak = float(np.nanmax(points[:, 1])) if np.isfinite(points[:, 1]).any() else 0.0
        if key not in best or peak > best[key][0]:
            best[key] = (peak, s["metric"].get("detector", ""))
        values = np.full(len(grid), -np.inf)
        index = np.rint((points[:, 0] - grid[0]) / data.step).astype(int)
        ok = (index >= 0) & (index < len(grid))
        values[index[ok]] = np.nan_to_num(points[ok, 1], nan=-np.inf)
        merged[key] = np.maximum(merged[key], values) if key in merged else values
    data.scored = len(merged)
    ranked = []
    for key, values in merged.items():
        kept = np.isfinite(values)
        stretches = runs(np.column_stack([grid[kept], values[kept]]), grid, data.step)
        above = sum(s.seconds(data.end + data.step) for s in stretches)
        ranked.append(Series(dict(key), best[key][1], best[key][0], above, stretches))
    data.anomalous = sum(1 for s in ranked if s.peak >= 1)
    ranked.sort(key=lambda s: (-s.peak, -s.above, series_name(s.labels)))
    data.series = [s for s in ranked[:top] if s.peak >= 1]


async def _incidents(client: PrometheusClient, data: ReportData, grid: np.ndarray) -> None:
    matrix = await client.query_range("augur_anomaly_incident", data.start, data.end, data.step)
    for s in matrix:
        points = _points(s)
        labels = {k: v for k, v in s["metric"].items() if k not in ("__name__", "detector")}
        for run in runs(points, grid, data.step):
            inside = points[(points[:, 0] >= run.start) & (points[:, 0] < (run.end or math.inf))]
            stage = int(np.nanmax(inside[:, 1])) if len(inside) else 1
            detector, before = s["metric"].get("detector", ""), run.start <= grid[0]
            data.incidents.append(Incident(labels, detector, run.start, run.end, stage, before))
    data.incidents.sort(key=lambda i: (i.opened, series_name(i.labels)))
    for series in data.series:
        series.incidents = [i for i in data.incidents if i.labels == series.labels]


async def _bands(client: PrometheusClient, data: ReportData, series: Series) -> None:
    names = "|".join(BANDS)
    match = selector({**series.labels, "detector": series.detector})
    expr = f'{{__name__=~"{names}", {match[1:]}'
    for s in await client.query_range(expr, data.start, data.end, data.step):
        series.bands[s["metric"].get("__name__", "")] = _points(s)


async def _alert_counts(client: PrometheusClient, data: ReportData) -> None:
    window = format_duration(data.end - data.start)
    enriched = await client.query(
        f"sum by (category) (increase(augur_alerts_enriched_total[{window}]))", data.end
    )
    for row in enriched.result:
        count = round(float(row["value"][1]))
        if count > 0:
            data.enriched_by_category[row["metric"].get("category", "")] = count
    fired = await client.query(
        "count by (alertname, category, service) "
        f'(max_over_time(ALERTS{{alertstate="firing"}}[{window}]))',
        data.end,
    )
    data.fired = sorted(
        (
            Fired(
                row["metric"].get("alertname", ""),
                row["metric"].get("category", ""),
                row["metric"].get("service", ""),
                round(float(row["value"][1])),
            )
            for row in fired.result
        ),
        key=lambda f: (f.alertname, f.service),
    )


def threshold_of(labels: Mapping[str, str], peak: float) -> tuple[float, str]:
    """The level a forecast is compared with: 100 % for a series named or labelled (`unit`) a
    ratio or a percentage, else the series' own highest value of the period. A value under 1
    says nothing: a 0.8 s latency is no 80 %."""
    name = " ".join(labels.get(k, "") for k in ("metric", "query", "unit")).lower()
    if "percent" in name or "pct" in name:
        return 100.0, "percent"
    if "ratio" in name:
        return 1.0, "percent"
    return peak, "max"


async def _forecasts(client: PrometheusClient, data: ReportData) -> None:
    window = format_duration(data.end - data.start)
    observed = await client.query(
        f"max without (detector) (max_over_time(augur_observed_value[{window}]))", data.end
    )
    peaks = {_key(row["metric"]): float(row["value"][1]) for row in observed.result}
    for row in (await client.query("augur_forecast_value", data.end)).result:
        labels = {k: v for k, v in row["metric"].items() if k != "__name__"}
        peak = peaks.get(_key(labels, "horizon", "detector"))
        value = float(row["value"][1])
        if peak is None or not math.isfinite(value):
            continue
        threshold, kind = threshold_of(labels, peak)
        if value > threshold:
            horizon = labels.pop("horizon", "")
            labels.pop("detector", None)
            data.forecasts.append(Forecast(labels, horizon, value, threshold, kind))
    data.forecasts.sort(key=lambda f: (-f.value / (abs(f.threshold) or 1.0), series_name(f.labels)))


async def alertmanager_alerts(
    session: aiohttp.ClientSession, url: str, since: float
) -> list[Enriched]:
    """The alerts augur enriched (label `augur_enriched`) that started after `since`."""
    async with session.get(f"{url.rstrip('/')}/api/v2/alerts") as response:
        response.raise_for_status()
        body: Any = await response.json()
    out = []
    for alert in body if isinstance(body, list) else []:
        labels, notes = alert.get("labels", {}), alert.get("annotations", {})
        if labels.get("augur_enriched") != "true":
            continue
        starts = str(alert.get("startsAt", ""))
        if _iso_seconds(starts) < since:
            continue
        out.append(
            Enriched(
                labels.get("alertname", ""),
                notes.get("augur_category", labels.get("category", "")),
                labels.get("service", labels.get("job", "")),
                starts,
                notes.get("augur_related", ""),
                notes.get("augur_follows", ""),
            )
        )
    return sorted(out, key=lambda a: (a.starts_at, a.alertname))


def _iso_seconds(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return math.inf  # a time it cannot read is not dropped


async def collect(
    client: PrometheusClient,
    since: float,
    now: float,
    top: int,
    *,
    session: aiohttp.ClientSession | None = None,
    alertmanagers: Sequence[str] = (),
) -> ReportData:
    """Read the period `now - since` .. `now`; a part that fails is named in `problems`."""
    step = max(MIN_STEP, math.ceil(since / POINTS / MIN_STEP) * MIN_STEP)
    end = math.floor(now / step) * step
    data = ReportData(start=end - since, end=end, step=step)
    grid = np.arange(data.start, data.end + step / 2, step)
    await _part(data, "anomaly scores", _ranked(client, data, grid, top))
    await _part(data, "incidents", _incidents(client, data, grid))
    await asyncio.gather(
        *(_part(data, "bands", _bands(client, data, s)) for s in data.series),
        _part(data, "alert counts", _alert_counts(client, data)),
        _part(data, "forecasts", _forecasts(client, data)),
    )
    if alertmanagers and session is not None:
        data.alerts = []
        for url in alertmanagers:
            try:
                data.alerts = await alertmanager_alerts(session, url, data.start)
                break
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                data.problems.append(f"Alertmanager {url}: {exc or type(exc).__name__}")
    return data


async def _part(data: ReportData, what: str, work: Awaitable[None]) -> None:
    try:
        await work
    except PrometheusError as exc:
        data.problems.append(f"{what}: {exc}")
