"""The report's words in English and Chinese: small templates, filled with figures.

As exporter/alerts/measured.py does for alert summaries, every sentence is one template per
language; a key missing in one language is a test failure, not an English fallback.
"""

from __future__ import annotations

from datetime import UTC, datetime

LANGS = ("en", "zh")

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "augur report: the last {period}",
        "period": "{start} to {end} UTC, read every {step}.",
        "summary": "{scored} series scored; {anomalous} were anomalous (score >= 1) at some "
        "point; {incidents} incidents; {alerts} alerts fired.",
        "quiet": "No series was anomalous in this period.",
        "plots_off": "plots are off (pip install 'augur[report]')",
        "h_series": "Most anomalous series",
        "h_incidents": "Incidents and time to resolve",
        "h_alerts": "Alerts by category and service",
        "h_forecasts": "Forecasts past a threshold",
        "h_chains": "Related-anomaly chains",
        "h_problems": "What could not be read",
        "series_line": "peak score {peak}, {above} at or above 1, in {stretches} stretches "
        "(band of {detector})",
        "c_series": "series",
        "c_peak": "peak score",
        "c_above": "time >= 1",
        "c_opened": "opened",
        "c_closed": "closed",
        "c_resolve": "time to resolve",
        "c_stage": "stage",
        "c_category": "category",
        "c_service": "service",
        "c_alert": "alert",
        "c_count": "count",
        "c_source": "source",
        "c_forecast": "forecast",
        "c_threshold": "threshold",
        "c_horizon": "in",
        "c_related": "related",
        "c_follows": "follows",
        "c_started": "started",
        "still_open": "still open",
        "open_before": "open before the period",
        "no_incidents": "No incident was open in this period.",
        "median_resolve": "Median time to resolve: {median} over {closed} closed incidents.",
        "no_alerts": "No alert fired and none was enriched in this period.",
        "no_forecasts": "No forecast crosses its threshold.",
        "no_chains": "No related-anomaly chain was recorded.",
        "no_alertmanager": "No Alertmanager was given: chains need --alertmanager.url.",
        "src_enriched": "enriched by augur",
        "src_fired": "fired (ALERTS)",
        "threshold_percent": "100 %",
        "threshold_max": "its period max {value}",
        "legend_observed": "observed",
        "legend_expected": "expected",
        "legend_band": "normal band",
        "legend_anomalous": "anomalous",
        "legend_incident": "incident",
    },
    "zh": {
        "title": "augur 报告：最近 {period}",
        "period": "{start} 至 {end} UTC，每 {step} 取一点。",
        "summary": "共评分 {scored} 条序列；其中 {anomalous} 条曾经异常（分数 >= 1）；"
        "事件 {incidents} 个；告警触发 {alerts} 条。",
        "quiet": "这段时间内没有序列异常。",
        "plots_off": "图表已关闭（pip install 'augur[report]'）",
        "h_series": "最异常的序列",
        "h_incidents": "事件与解决用时",
        "h_alerts": "按类别和服务统计的告警",
        "h_forecasts": "超过阈值的预测",
        "h_chains": "相关异常链",
        "h_problems": "未能读取的内容",
        "series_line": "最高分 {peak}，分数 >= 1 持续 {above}，"
        "共 {stretches} 段（{detector} 的正常区间）",
        "c_series": "序列",
        "c_peak": "最高分",
        "c_above": "异常时长",
        "c_opened": "开始",
        "c_closed": "结束",
        "c_resolve": "解决用时",
        "c_stage": "级别",
        "c_category": "类别",
        "c_service": "服务",
        "c_alert": "告警",
        "c_count": "数量",
        "c_source": "来源",
        "c_forecast": "预测值",
        "c_threshold": "阈值",
        "c_horizon": "时间",
        "c_related": "相关",
        "c_follows": "前因",
        "c_started": "开始",
        "still_open": "仍未结束",
        "open_before": "时段开始前已发生",
        "no_incidents": "这段时间内没有事件。",
        "median_resolve": "解决用时中位数：{median}（已结束的事件 {closed} 个）。",
        "no_alerts": "这段时间内没有告警触发，也没有告警被增强。",
        "no_forecasts": "没有预测超过阈值。",
        "no_chains": "没有记录到相关异常链。",
        "no_alertmanager": "未指定 Alertmanager：相关异常链需要 --alertmanager.url。",
        "src_enriched": "augur 增强",
        "src_fired": "已触发 (ALERTS)",
        "threshold_percent": "100 %",
        "threshold_max": "本时段最大值 {value}",
        "legend_observed": "观测值",
        "legend_expected": "预期值",
        "legend_band": "正常区间",
        "legend_anomalous": "异常",
        "legend_incident": "事件",
    },
}


def say(lang: str, key: str, **values: object) -> str:
    """The template `key` in `lang`, filled with `values`."""
    return TEXT[lang][key].format(**values)


def clock(ts: float) -> str:
    """A UTC time as the report writes it: `2026-12-05 14:05`."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def span(seconds: float, lang: str) -> str:
    """A duration in words: `1 h 20 min` / `1 小时 20 分钟`."""
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    units = ("d", "h", "min") if lang == "en" else ("天", "小时", "分钟")
    parts = [f"{n} {u}" for n, u in zip((days, hours, minutes), units, strict=True) if n]
    if not parts:
        return "< 1 min" if lang == "en" else "< 1 分钟"
    return " ".join(parts)


def figure(value: float) -> str:
    """A value with three significant figures (`0.934`, `1.2e+03` stays readable as `1200`)."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"
