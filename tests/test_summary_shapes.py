"""Summaries that say what the rule measured, in English and Chinese, and when an alert recovered.

Pure formatting from the facts for each rule shape (predict_linear, a ratio, rate, increase,
histogram_quantile, up == 0, augur's own incidents), then a predict_linear rule read from a real
Prometheus by the real enricher: its time to full comes from the two readings.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from urllib.parse import quote

import aiohttp
import pytest
from model_files import MODEL_DIR

from exporter.alerts.alertmanager import compose
from exporter.alerts.band import Band
from exporter.alerts.enrich import AlertEnricher
from exporter.alerts.facts import Facts
from exporter.alerts.measured import band, measured, shape
from exporter.alerts.outbox_schema import Entry, State
from exporter.alerts.payloads import WebhookAlert
from exporter.alerts.related import Reading
from exporter.alerts.summary import summary
from exporter.config.alerts import EnrichConfig
from exporter.demo.procs import Process, Sample
from exporter.prometheus.client import PrometheusClient
from exporter.text import TextModel
from exporter.text.entities import extract

NOW = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC
START = NOW - 1800
EARLIER = START - 900


def facts(
    expr: str,
    value: float,
    earlier: float | None = None,
    *,
    summary_text: str = "Something is wrong",
    zh: bool = False,
    status: str = "firing",
    ends: float | None = None,
) -> Facts:
    alert = WebhookAlert.model_validate(
        {
            "status": status,
            "labels": {"alertname": "Test"},
            "annotations": {"summary": summary_text},
            "startsAt": datetime.fromtimestamp(START, UTC),
            "endsAt": None if ends is None else datetime.fromtimestamp(ends, UTC),
        }
    )
    f = Facts(alert, summary_text, zh, extract(alert.labels, [summary_text], expr=expr), expr)
    f.reading = Reading(value, START, value if earlier is None else earlier, EARLIER)
    return f


EN = "Something is wrong"
ZH = "出问题了"
CASES = [
    # predict_linear: 1.05 now, 0.9 fifteen minutes earlier -> reaches 1 in ~55 min of the hour
    (
        "predict_linear(demo_disk_used_ratio[2m], 3600) > 1",
        (1.05, 0.9),
        "Alert: Something is wrong; predicted to reach 100 % in ~55 min.",
        "告警：出问题了；预计约 55 分钟后达到 100 %。",
    ),
    # the same prediction twice: no slope to tell the time, so the horizon
    (
        "predict_linear(demo_disk_used_ratio[2m], 3600) > 1",
        (3.12, 3.12),
        "Alert: Something is wrong; predicted to reach 100 % within 1 h.",
        "告警：出问题了；预计 1 小时内达到 100 %。",
    ),
    (
        'predict_linear(node_filesystem_avail_bytes{fstype!=""}[6h], 4 * 60 * 60) < 0',
        (-2e9, -1e9),
        "Alert: Something is wrong; predicted to run out in ~3.5 h.",
        "告警：出问题了；预计约 3.5 小时后耗尽。",
    ),
    (
        "1 - node_filesystem_avail_bytes / node_filesystem_size_bytes > 0.9",
        (0.934, 0.934),
        "Alert: Something is wrong; at 93.4 %, above the 90 % threshold.",
        "告警：出问题了；当前 93.4 %，高于阈值 90 %。",
    ),
    (
        'sum by (service) (rate(http_requests_total{code=~"5.."}[5m])) > 10',
        (12.3, 4.0),
        "Alert: Something is wrong; at 12.3/s (was 4/s at 19:41 UTC), above the 10/s threshold.",
        "告警：出问题了；当前 12.3/秒（19:41 UTC 时为 4/秒），高于阈值 10/秒。",
    ),
    (
        "increase(kube_pod_container_status_restarts_total[15m]) > 3",
        (5, 5),
        "Alert: Something is wrong; 5 in the last 15m, above the 3 threshold.",
        "告警：出问题了；最近 15m 内增加 5，高于阈值 3。",
    ),
    (
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))"
        " > 0.8",
        (1.2, 1.2),
        "Alert: Something is wrong; p99 latency 1.2 s, above the 800 ms threshold.",
        "告警：出问题了；p99 延迟 1.2 秒，高于阈值 800 毫秒。",
    ),
    (
        'up{job="node"} == 0',
        (0, 0),
        "Alert: Something is wrong; down (up == 0).",
        "告警：出问题了；已宕机（up == 0）。",
    ),
    (
        "max without (detector) (augur_anomaly_incident) >= 1",
        (2, 2),
        "Alert: Something is wrong; augur incident stage 2.",
        "告警：出问题了；augur 异常事件等级 2。",
    ),
    (
        "probe_ssl_earliest_cert_expiry - time() < 86400 * 7",
        (3 * 86400, 3 * 86400),
        "Alert: Something is wrong; at 3 d, below the 7 d threshold.",
        "告警：出问题了；当前 3 天，低于阈值 7 天。",
    ),
]


@pytest.mark.parametrize(("expr", "values", "english", "chinese"), CASES)
def test_what_the_rule_measured_in_words(
    expr: str, values: tuple[float, float], english: str, chinese: str
) -> None:
    assert summary(facts(expr, *values, summary_text=EN), NOW) == english
    assert summary(facts(expr, *values, summary_text=ZH, zh=True), NOW) == chinese


def test_shapes_read_from_the_tokens() -> None:
    node_mixin = (
        '(node_filesystem_avail_bytes{fstype!=""} / node_filesystem_size_bytes{fstype!=""} * 100'
        ' < 15 and predict_linear(node_filesystem_avail_bytes{fstype!=""}[6h], 4*60*60) < 0)'
    )
    s = shape(node_mixin)  # `a and b` answers a's values: a percentage under 15
    assert (s.kind, s.op, s.threshold, s.percent) == ("value", "<", 15, True)
    assert shape("0.9 < a / b").op == ">"  # the constant on the left is turned round
    assert shape("x > bool 3").threshold == 3
    assert shape("predict_linear(x[1h], 4h) < 0").horizon == 14400
    assert shape("rate(x[5m]").kind == "rate"  # broken PromQL: what can be read
    assert shape("").kind == "value"


def test_a_resolved_alert_says_it_recovered_and_when() -> None:
    ended = START + 23 * 60
    expr = "max without (detector) (augur_anomaly_incident) >= 1"
    text = "search: demo_requests is anomalous"
    f = facts(expr, 2, summary_text=text, status="resolved", ends=ended)
    assert summary(f, NOW) == (
        "Alert: search: demo_requests is anomalous; recovered at 20:19 UTC after 23 min."
    )
    f = facts(expr, 2, summary_text="search 请求量异常", zh=True, status="resolved", ends=ended)
    assert summary(f, NOW) == "告警：search 请求量异常；已于 20:19 UTC 恢复，持续 23 分钟。"
    # Resolved without an end time (or a bogus one): recovered by now.
    f = facts(expr, 2, summary_text=text, status="resolved", ends=NOW + 3600)
    assert summary(f, NOW).endswith("recovered at 20:26 UTC after 30 min.")
    assert "band" not in summary(f, NOW) and "outside" not in summary(f, NOW)


def test_the_summary_stays_about_one_line() -> None:
    f = facts("up == 0", 0, summary_text="x" * 500)
    out = summary(f, NOW)
    assert "\n" not in out and len(out) <= 200


def test_a_value_against_its_band() -> None:
    assert band(410, 120, 95, 150, False) == "410, 3.4× its expected 120 (band 95–150)"
    assert band(410, 120, 95, 150, True) == "410，是预期 120 的 3.4 倍（正常区间 95–150）"
    assert band(160, 120, 95, 150, False) == "160, above its expected 120 (band 95–150)"
    assert band(60, 120, 95, 150, False) == "60, 50 % below its expected 120 (band 95–150)"
    assert band(60, 120, 95, 150, True) == "60，比预期 120 低 50 %（正常区间 95–150）"
    assert band(100, 120, 95, 150, False) == "100, within its band 95–150"
    share = shape("demo_cpu_usage_ratio")  # a band edge below 0 % is in percent too
    assert band(0.772, 0.276, -0.0122, 0.49, False, share) == (
        "77.2 %, 2.8× its expected 27.6 % (band -1.22 %–49 %)"
    )
    # An ensemble's mean outside the band its members agree on: the band alone is said.
    assert band(0.733, 0.579, 0.61, 0.614, False, share) == (
        "73.3 %, above its expected band 61 %–61.4 %"
    )
    assert band(0.5, 0.7, 0.6, 0.62, True, share) == "50 %，低于预期区间 60 %–62 %"
    per_second = shape("rate(http_requests_total[5m])")
    assert band(412, 130, 90, 170, False, per_second) == (
        "412/s, 3.2× its expected 130/s (band 90/s–170/s)"
    )
    # A band narrower than the digits printed reads as its middle and half-width, not a point
    # ("band 404/s–404/s" was seen in the demo).
    assert band(563, 404.1, 403.9, 404.3, False, per_second) == (
        "563/s, above its expected 404/s (band 404/s ± 0.2/s)"
    )
    # No band at all (an ensemble whose members' bands do not overlap): said, not "494–494".
    assert band(761, 494, 494, 494, False, per_second) == (
        "761/s, 1.5× its expected 494/s (band none: its detectors disagree)"
    )
    assert band(761, 494, 494, 494, True, per_second) == (
        "761/秒，是预期 494/秒 的 1.5 倍（正常区间 无：各检测器不一致）"
    )
    assert band(563, 404.1, 403.9, 404.3, True, per_second) == (
        "563/秒，高于预期 404/秒（正常区间 404/秒 ± 0.2/秒）"
    )
    assert band(0.25, 0.8, 0.6, 1.0, True, shape("x_seconds")) == (
        "250 毫秒，比预期 800 毫秒 低 69 %（正常区间 600 毫秒–1 秒）"
    )


def test_an_augur_alert_says_its_value_against_the_band_not_just_its_stage() -> None:
    incident = "max without (detector) (augur_anomaly_incident) >= 1"
    drop = Band(21.0, 130.0, 90.0, 170.0, START, "demo_http_requests_per_second")
    f = facts(incident, 1, summary_text="search: requests is anomalous")
    f.band = drop
    assert summary(f, NOW) == (
        "Alert: search: requests is anomalous; 21/s, 84 % below its expected 130/s "
        "(band 90/s–170/s)."
    )
    f = facts(incident, 1, summary_text="search 请求量异常", zh=True)
    f.band = drop
    assert summary(f, NOW) == (
        "告警：search 请求量异常；21/秒，比预期 130/秒 低 84 %（正常区间 90/秒–170/秒）。"
    )
    # Once it has risen, the stage is news too.
    f = facts(incident, 2, summary_text="search: requests is anomalous")
    f.band = drop
    assert summary(f, NOW).endswith("(band 90/s–170/s); augur incident stage 2.")
    # Resolved: nothing about the present, the band neither.
    f = facts(incident, 1, summary_text="x", status="resolved", ends=START + 600)
    f.band = drop
    assert "band" not in summary(f, NOW) and "recovered at" in summary(f, NOW)


def test_a_rule_alert_names_the_series_its_band_is_of_in_the_series_unit() -> None:
    rule = "demo_disk_used_ratio > 0.9"
    f = facts(rule, 0.97, summary_text="Disk almost full")
    f.band = Band(0.97, 0.6, 0.55, 0.65, START, "demo_disk_used_ratio")
    assert summary(f, NOW) == (
        "Alert: Disk almost full; at 97 %, above the 90 % threshold; demo_disk_used_ratio 97 %, 1.6× "
        "its expected 60 % (band 55 %–65 %)."
    )
    f = facts(rule, 0.97, summary_text="磁盘快满了", zh=True)
    f.band = Band(0.97, 0.6, 0.55, 0.65, START, "demo_disk_used_ratio")
    assert summary(f, NOW) == (
        "告警：磁盘快满了；当前 97 %，高于阈值 90 %；demo_disk_used_ratio 为 97 %，"
        "是预期 60 % 的 1.6 倍（正常区间 55 %–65 %）。"
    )


# --- a predict_linear rule read from a real Prometheus ---------------------------------------

STEP = 15
T_END = int(time.time()) // STEP * STEP
T0 = T_END - 600
"""The alert's startsAt."""


def _used(t: float) -> float:
    """A disk filling at 0.01 % per second of the hour before."""
    return 0.5 + (t - (T_END - 3600)) * 0.0001


@pytest.fixture(scope="module")
def model() -> Iterator[TextModel]:
    yield TextModel(MODEL_DIR, threads=1)


async def test_predict_linear_read_from_prometheus(
    prometheus_factory: Callable[..., Process], model: TextModel
) -> None:
    labels = {"instance": "db-1:9100", "mountpoint": "/data"}
    prom = prometheus_factory(
        samples=[
            Sample("disk_used_ratio", labels, t, _used(t))
            for t in range(T_END - 3600, T_END - 60, STEP)
        ]
    )
    expr = "predict_linear(disk_used_ratio[10m], 3600) > 1"
    alert = WebhookAlert(
        status="firing",
        labels={"alertname": "DiskWillFillIn1Hour", **labels},
        annotations={"summary": "Disk /data will be full within an hour"},
        startsAt=datetime.fromtimestamp(T0, UTC),
        generatorURL=f"http://127.0.0.1:9090/graph?g0.expr={quote(expr)}",
    )
    async with aiohttp.ClientSession() as session:
        client = PrometheusClient(session, prom.url, retries=1)
        with ThreadPoolExecutor(1) as pool:
            enricher = AlertEnricher(model, client, EnrichConfig(deadline=5.0), executor=pool)
            await enricher.start()
            try:
                (out,) = await enricher.enrich([alert])
            finally:
                await enricher.close()
    # At T0 the disk is at _used(T0); at 0.01 %/s it reaches 100 % (1 - _used(T0)) / 1e-4 s on.
    minutes = (1 - _used(T0)) / 0.0001 / 60
    text = out.annotations["augur_summary"]
    assert f"predicted to reach 100 % in ~{minutes:.2g} min" in text, text


def test_an_alert_enriched_while_firing_is_sent_resolved_as_recovered() -> None:
    def entry(state: State, summary_text: str) -> Entry:
        starts = datetime.fromtimestamp(START, UTC).isoformat()
        notes = {"summary": "x", "augur_summary": summary_text}
        return Entry(1, 1, state, starts, START + 23 * 60, {"alertname": "A"}, notes, "")

    sent = compose(
        entry("resolved", "Disk: full on pg-1; at 93 %, above the 90 % threshold."), NOW, 60
    )
    assert sent["annotations"]["augur_summary"] == (
        "Recovered at 20:19 UTC after 23 min — Disk: full on pg-1; at 93 %, above the 90 % "
        "threshold."
    )
    assert sent["annotations"]["summary"] == "x"
    sent = compose(entry("resolved", "磁盘：pg-1 已满；当前 93 %，高于阈值 90 %。"), NOW, 60)
    assert sent["annotations"]["augur_summary"] == (
        "已于 20:19 UTC 恢复（持续 23 分钟）——磁盘：pg-1 已满；当前 93 %，高于阈值 90 %。"
    )
    already = "Alert: x; recovered at 20:19 UTC after 23 min."
    assert compose(entry("resolved", already), NOW, 60)["annotations"]["augur_summary"] == already
    states: tuple[State, ...] = ("firing", "expired")
    for state in states:
        sent = compose(entry(state, "Disk: full."), NOW, 60)
        assert sent["annotations"]["augur_summary"] == "Disk: full."


def test_any_expression_and_reading_give_a_short_phrase() -> None:
    """Broken PromQL and absurd readings (inf, NaN, 1e308) never raise nor run on."""
    rng = random.Random(13)
    pieces = [
        *("predict_linear histogram_quantile rate increase up time and bool x".split()),
        *("( ) [5m] / * 100 > < == 0 1e308 - , 0.99 1h 0x1f inf NaN".split()),
        '{a="b"}',
        '"s"',
    ]
    values = [0.0, 1.0, -1.0, 0.5, 1e308, -1e308, math.inf, math.nan, 123456789.0]
    for _ in range(3000):
        expr = " ".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        at = rng.choice([START, EARLIER])
        reading = Reading(rng.choice(values), START, rng.choice(values), at)
        for zh in (False, True):
            assert len(measured(shape(expr), reading, zh)) < 300, expr


def test_a_value_the_alert_gives_already_is_not_said_twice() -> None:
    expr = "demo_http_request_duration_seconds > 0.8"
    lead = "p99 latency of checkout is 981.5ms, above 800 ms"
    assert summary(facts(expr, 0.9815, summary_text=lead), NOW) == f"Alert: {lead}."
    lead = "Disk 93% full"
    assert summary(facts("a / b > 0.9", 0.93, summary_text=lead), NOW) == f"Alert: {lead}."
    lead = "Disk almost full"
    assert summary(facts("a / b > 0.9", 0.93, summary_text=lead), NOW) == (
        f"Alert: {lead}; at 93 %, above the 90 % threshold."
    )
