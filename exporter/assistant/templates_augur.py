"""Intents over augur's own series (scores, incidents, forecasts, self-metrics) and ALERTS.

augur's series carry `query`, `detector` and the watched series' labels; a row is one watched
series (the detectors folded with `max without (detector)`), shown as `query` plus its labels.
"""

from __future__ import annotations

from exporter.assistant.labels import Bound, sel
from exporter.assistant.template import Query, Template, Value, t

SERIES = ("query", "series")
"""`series` is not a label: the answer shows the remaining labels as `k=v, ...` there."""
_SCORE = ("augur_anomaly_score",)
_AROUND = 600
"""changed_around looks 10 minutes either side of the time asked."""


def _augur(needs: tuple[str, ...], keys: tuple[str, ...], *values: Value) -> Query:
    return Query("augur", needs, keys, values)


def _where(b: Bound) -> str:
    return sel(b.svc_sel(), b.host_sel())


def _now(b: Bound) -> str:
    return f"sort_desc(max without (detector) (augur_anomaly_score{_where(b)}) >= 1)"


def _during(b: Bound) -> str:
    peak = f"max_over_time(augur_anomaly_score{_where(b)}[{b.rng('24h')}])"
    return f"sort_desc(max without (detector) ({peak}) >= 1)"


def _at(b: Bound) -> tuple[int, int]:
    at = b.time if b.time is not None else b.now
    end = round(min(at + _AROUND, b.now))
    return end, end - 2 * _AROUND


def _rise(b: Bound) -> str:
    end, start = _at(b)
    then = f"max without (detector) (max_over_time(augur_anomaly_score[20m] @ {end}))"
    before = f"max without (detector) (max_over_time(augur_anomaly_score[1h] @ {start}))"
    return f"sort_desc({then} - {before} > 0.2)"


def _peak(b: Bound) -> str:
    end, _ = _at(b)
    return f"max without (detector) (max_over_time(augur_anomaly_score[20m] @ {end}))"


_INCIDENT = "max without (detector) (augur_anomaly_incident) >= 1"
_STATUS = ("augur_last_poll_timestamp_seconds", "augur_series_scored", "augur_series_warming_up")

AUGUR: dict[str, Template] = {
    "anomalous_now": Template(
        (_augur(_SCORE, SERIES, Value(t("score", "异常分"), "number", _now)),),
        t(
            "{n} series are anomalous now, most {key}: score {value}",
            "当前有 {n} 个序列异常,最严重的是 {key}:异常分 {value}",
        ),
        t("augur finds nothing anomalous now.", "augur 当前没有发现异常。"),
    ),
    "anomalies_in_range": Template(
        (_augur(_SCORE, SERIES, Value(t("peak score", "最高异常分"), "number", _during)),),
        t(
            "{n} series were anomalous, most {key}: score {value}",
            "共有 {n} 个序列出现异常,最严重的是 {key}:异常分 {value}",
        ),
        t("augur found nothing anomalous in that period.", "augur 在这段时间内没有发现异常。"),
    ),
    "open_incidents": Template(
        (
            _augur(
                ("augur_anomaly_incident", "augur_anomaly_incident_start_timestamp_seconds"),
                SERIES,
                Value(t("stage", "阶段"), "count", lambda b: _INCIDENT),
                Value(
                    t("open for", "已持续"),
                    "age",
                    lambda b: (
                        "max without (detector) (augur_anomaly_incident_start_timestamp_seconds)"
                    ),
                ),
            ),
            _augur(
                ("augur_anomaly_incident",),
                SERIES,
                Value(t("stage", "阶段"), "count", lambda b: _INCIDENT),
            ),
        ),
        t("{n} incident(s) are open, first {key}", "有 {n} 个事件未关闭,首先是 {key}"),
        t("No augur incident is open.", "augur 当前没有未关闭的事件。"),
        then=False,
    ),
    "forecast_of": Template(
        (
            _augur(
                ("augur_forecast_value",),
                ("query", "horizon", "series"),
                Value(
                    t("forecast", "预测值"),
                    "number",
                    lambda b: f"sort_desc(augur_forecast_value{_where(b)})",
                ),
            ),
        ),
        t("{key} is heading to {value}", "{key} 预计将达到 {value}"),
        t("augur forecasts nothing for that.", "augur 没有这方面的预测。"),
    ),
    "alerts_firing": Template(
        (
            Query(
                "Prometheus alerting rules",
                ("ALERTS",),
                ("alertname", "severity"),
                (
                    Value(
                        t("firing", "触发数"),
                        "count",
                        lambda b: (
                            "sort_desc(count by (alertname, severity) "
                            '(ALERTS{alertstate="firing"}))'
                        ),
                    ),
                ),
            ),
        ),
        t(
            "{n} alert(s) are firing, most {key}: {value}",
            "有 {n} 种告警正在触发,最多的是 {key}:{value}",
        ),
        t("No alert is firing.", "当前没有告警在触发。"),
        rows=20,
    ),
    "alerts_fired_in_range": Template(
        (
            Query(
                "Prometheus alerting rules",
                ("ALERTS",),
                ("alertname", "severity"),
                (
                    Value(
                        t("series", "序列数"),
                        "count",
                        lambda b: (
                            "sort_desc(count by (alertname, severity) "
                            f'(max_over_time(ALERTS{{alertstate="firing"}}[{b.rng("24h")}])))'
                        ),
                    ),
                ),
            ),
        ),
        t(
            "{n} alert(s) fired, most {key}: {value}",
            "共有 {n} 种告警触发过,最多的是 {key}:{value}",
        ),
        t("No alert fired in that period.", "这段时间内没有告警触发。"),
        rows=20,
    ),
    "alerts_by_category": Template(
        (
            _augur(
                ("augur_alerts_enriched_total",),
                ("category",),
                Value(
                    t("alerts", "告警数"),
                    "count",
                    lambda b: (
                        "sort_desc(sum by (category) "
                        f"(increase(augur_alerts_enriched_total[{b.rng('24h')}])) > 0)"
                    ),
                ),
            ),
        ),
        t("Most enriched alerts were {key}: {value}", "增强告警中最多的类别是 {key}:{value}"),
        t("augur enriched no alert in that period.", "augur 在这段时间内没有增强任何告警。"),
    ),
    "changed_around": Template(
        (
            _augur(
                _SCORE,
                SERIES,
                Value(t("score rose by", "异常分上升"), "number", _rise),
                Value(t("peak score", "最高异常分"), "number", _peak),
            ),
        ),
        t(
            "{key} changed the most then: its score rose by {value}",
            "{key} 当时变化最大:异常分上升 {value}",
        ),
        t("No augur score rose around that time.", "该时间前后没有异常分上升。"),
    ),
    "augur_status": Template(
        (
            _augur(
                _STATUS,
                (),
                Value(
                    t("series scored", "评分序列数"), "count", lambda b: "max(augur_series_scored)"
                ),
                Value(t("warming up", "预热中"), "count", lambda b: "max(augur_series_warming_up)"),
                Value(
                    t("last poll", "上次轮询"),
                    "age",
                    lambda b: "max(augur_last_poll_timestamp_seconds)",
                ),
            ),
        ),
        t("augur scores {value} series", "augur 正在为 {value} 个序列评分"),
        t(
            "augur exports no status series to this Prometheus.",
            "该 Prometheus 中没有 augur 的状态序列。",
        ),
        then=False,
    ),
}
"""augur's and the alerts' intents' templates by name (related_anomalies is in `related`)."""
