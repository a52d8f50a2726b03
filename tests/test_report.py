"""`augur report` on a real Prometheus backfilled with a day of augur's series whose anomalies
are known (tests/report_world.py), and a real Alertmanager holding enriched alerts.

The report must name exactly the two anomalous series, the stronger first, plot each (a PNG
that decodes and is not blank), give each incident its true time to resolve, find the one
forecast past 100 %, count the alerts by category and service and show the chains.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import io
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from matplotlib.image import imread
from report_world import DISK, ERRORS, LOAD, STEP, world

from exporter.assistant import report_plots
from exporter.assistant.ask import answer
from exporter.assistant.catalog import CATALOG
from exporter.assistant.errors import NotAvailable
from exporter.assistant.labels import Bound
from exporter.assistant.match import Match
from exporter.assistant.related import related_anomalies
from exporter.assistant.report import Report, build, check_parameters
from exporter.assistant.report_data import series_name, threshold_of
from exporter.assistant.report_text import TEXT
from exporter.cli import main
from exporter.config.alerts import AlertmanagerConfig
from exporter.demo.procs import Process, Sample, start_alertmanager, start_prometheus
from exporter.prometheus.client import PrometheusClient

NOW = int(time.time()) // STEP * STEP
ENRICHED = [
    {
        "labels": {
            "alertname": "DiskWillFillIn4Hours",
            "instance": "db-01:9100",
            "augur_enriched": "true",
            "category": "disk",
            "service": "inventory",
        },
        "annotations": {
            "augur_category": "disk",
            "augur_related": 'disk_used_ratio{instance="db-01:9100"}',
            "augur_follows": "HostHighCpuLoad on db-01 (12 min before)",
        },
    },
    {
        "labels": {
            "alertname": "HighErrorRate",
            "service": "checkout",
            "augur_enriched": "true",
            "category": "errors",
        },
        "annotations": {"augur_category": "errors"},
    },
    {  # not enriched by augur: not counted as such
        "labels": {"alertname": "TargetDown", "service": "search"},
        "annotations": {},
    },
]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    proc = start_prometheus(tmp_path_factory.mktemp("prometheus"), samples=world(NOW))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    config = {"route": {"receiver": "null"}, "receivers": [{"name": "null"}]}
    proc = start_alertmanager(tmp_path_factory.mktemp("alertmanager"), config)
    yield proc
    proc.stop()


@pytest.fixture
async def client(prometheus: Process) -> AsyncIterator[PrometheusClient]:
    async with aiohttp.ClientSession() as session:
        yield PrometheusClient(session, prometheus.url)


async def _post_alerts(alertmanager: Process) -> None:
    starts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - 1800))
    body = [{**alert, "startsAt": starts} for alert in ENRICHED]
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{alertmanager.url}/api/v2/alerts", json=body) as response,
    ):
        assert response.status == 200, await response.text()


def _decoded(png: bytes) -> np.ndarray:
    image: np.ndarray = imread(io.BytesIO(png), format="png")
    return image


async def _report(client: PrometheusClient, lang: str, am: Process | None = None) -> Report:
    urls = [am.url] if am else []
    return await build(client, 86400, lang=lang, now=NOW, alertmanagers=urls)


async def test_the_known_anomalies_come_first_with_plots_and_times(
    client: PrometheusClient, alertmanager: Process
) -> None:
    await _post_alerts(alertmanager)
    report = await _report(client, "en", alertmanager)
    data = report.data
    assert data.problems == []
    assert [s.labels for s in data.series] == [LOAD, ERRORS]
    assert data.scored == 6 and data.anomalous == 2
    load, errors = data.series
    assert (load.peak, load.detector, load.above) == (5.0, "zscore", 3600)
    assert (errors.peak, errors.above, len(errors.stretches)) == (3.0, 80 * 60, 2)
    assert [s.start for s in load.stretches] == [NOW - 6 * 3600]
    resolve = {
        i.labels["query"]: (i.closed - i.opened if i.closed else None) for i in data.incidents
    }
    assert resolve == {"load": 80 * 60, "errors": 24 * 60}
    assert [i.stage for i in data.incidents] == [2, 2]
    assert [(f.labels, f.horizon, f.kind) for f in data.forecasts] == [(DISK, "4h", "percent")]
    assert [(f.alertname, f.service, f.category) for f in data.fired] == [
        ("HighErrorRate", "checkout", "errors")
    ]
    assert set(data.enriched_by_category) == {"disk"}
    assert data.alerts is not None
    assert sorted(a.alertname for a in data.alerts) == ["DiskWillFillIn4Hours", "HighErrorRate"]
    page = report.text
    for section in ("summary", "series", "incidents", "alerts", "forecasts", "chains"):
        assert f'<section id="{section}">' in page
    assert page.index(html.escape(series_name(LOAD))) < page.index(html.escape(series_name(ERRORS)))
    assert "1 h 20 min" in page and "24 min" in page
    assert "HostHighCpuLoad on db-01 (12 min before)" in page
    assert page.count('<img src="data:image/png;base64,') == 2
    assert "http://" not in page and "https://" not in page  # nothing to fetch


async def test_each_plot_decodes_and_shows_the_band_and_the_stretch(
    client: PrometheusClient,
) -> None:
    report = await _report(client, "en")
    series = report.data.series
    pngs = report_plots.plots(series, "en", report.data.start, report.data.end)
    for png in pngs:
        image = _decoded(png)
        assert image.shape[:2] == (300, 800)
        rgb = image[..., :3].reshape(-1, 3)
        assert len(np.unique((rgb * 255).astype(np.uint8), axis=0)) > 50  # not blank
    # The stretch's shading is drawn: a quiet copy of the series has no orange-tinted pixels.
    quiet = series[0]
    shaded = _decoded(pngs[0])[..., :3]
    quiet.stretches, quiet.incidents = [], []
    plain = _decoded(report_plots.plot(quiet, "en", report.data.start, report.data.end))[..., :3]

    def orange(img: np.ndarray) -> int:
        r, g, b = img[..., 0], img[..., 1], img[..., 2]
        return int(((r > 0.9) & (g < 0.9) & (b < 0.85) & (r - b > 0.1)).sum())

    assert orange(shaded) > 20 * orange(plain) + 1000


async def test_the_chinese_report_is_in_chinese(client: PrometheusClient) -> None:
    report = await _report(client, "zh")
    page = report.text
    assert '<html lang="zh">' in page
    for key in ("h_series", "h_incidents", "h_alerts", "h_forecasts", "h_chains"):
        assert TEXT["zh"][key] in page
    assert "1 小时 20 分钟" in page and "24 分钟" in page
    assert TEXT["zh"]["no_alertmanager"] in page
    assert page.count("data:image/png;base64,") == 2


async def test_without_matplotlib_the_report_says_plots_are_off(
    client: PrometheusClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report_plots, "available", lambda: False)
    report = await _report(client, "en")
    assert "plots are off (pip install &#x27;augur[report]&#x27;)" in report.text
    assert "<img" not in report.text
    assert html.escape(series_name(LOAD)) in report.text


def test_the_command_writes_markdown_with_its_pngs_beside_it(
    prometheus: Process, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["report", "--prometheus.url", prometheus.url, "--format", "md", "--lang", "zh"]
    assert main([*argv, "--since", "24h", "--top", "1", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "augur-report.md").read_text(encoding="utf-8")
    assert capsys.readouterr().out.strip() == str(tmp_path / "augur-report.md")
    assert md.startswith("# augur 报告：最近 1d")
    assert "](augur-report-1.png)" in md and "augur-report-2.png" not in md
    assert _decoded((tmp_path / "augur-report-1.png").read_bytes()).shape[:2] == (300, 800)
    assert series_name(LOAD) in md


@pytest.mark.parametrize(
    ("since", "lang", "fmt", "top", "reason"),
    [
        ("30d", "en", "html", "10", "outside 5m..7d"),
        ("1m", "en", "html", "10", "outside 5m..7d"),
        ("soon", "en", "html", "10", "not a duration"),
        ("24h", "fr", "html", "10", "lang"),
        ("24h", "en", "pdf", "10", "format"),
        ("24h", "en", "html", "0", "outside 1..50"),
        ("24h", "en", "html", "1e3", "not a whole number"),
    ],
)
def test_bad_parameters_say_what_is_wrong(
    since: str, lang: str, fmt: str, top: str, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        check_parameters(since, lang, fmt, top)
    assert check_parameters("7d", "zh", "md", "50") == (7 * 86400, 50)


def test_the_command_refuses_a_bad_period_with_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--prometheus.url", "http://127.0.0.1:1", "--since", "8d"]) == 2
    assert "since" in capsys.readouterr().err


async def test_an_incident_open_before_the_period_is_not_cut_at_its_start(
    client: PrometheusClient,
) -> None:
    # Over the last 5 h, the load incident (open from 6 h to 4 h 40 ago) began before the period.
    report = await build(client, 5 * 3600, lang="en", now=NOW)
    load = [i for i in report.data.incidents if i.labels["query"] == "load"]
    assert [i.before for i in load] == [True]
    assert [i.before for i in report.data.incidents if i.labels["query"] == "errors"] == [False]
    assert TEXT["en"]["open_before"] in report.text
    # At least what the period shows (HTML-escaped), not "20 min" to resolve.
    assert "&gt; 20 min" in report.text
    assert TEXT["en"]["median_resolve"].split("{")[0] + "24 min" in report.text


@contextlib.asynccontextmanager
async def _guarded(upstream: str, authorization: str) -> AsyncIterator[str]:
    """A proxy in front of the real Alertmanager that answers 401 without `authorization`."""

    async def forward(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != authorization:
            return web.Response(status=401, text="unauthorized")
        async with (
            aiohttp.ClientSession() as session,
            session.get(upstream + request.path_qs) as got,
        ):
            return web.Response(
                status=got.status, body=await got.read(), content_type="application/json"
            )

    app = web.Application()
    app.router.add_get("/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_alertmanager_is_read_with_its_configured_credentials(
    client: PrometheusClient, alertmanager: Process, tmp_path: Path
) -> None:
    await _post_alerts(alertmanager)
    token = tmp_path / "token"
    token.write_text("s3cret\n", encoding="utf-8")
    async with _guarded(alertmanager.url, "Bearer s3cret") as url:
        config = AlertmanagerConfig(urls=[url], bearer_token_file=token)
        bare = await build(client, 86400, now=NOW, alertmanagers=[url])
        assert bare.data.alerts == [] and "401" in bare.data.problems[0]
        report = await build(client, 86400, now=NOW, alertmanagers=[url], alertmanager=config)
        assert report.data.problems == [] and report.data.alerts is not None
        assert "HighErrorRate" in {a.alertname for a in report.data.alerts}
        # `ask`'s related_anomalies reads the same way; a URL not in the config gets no token.
        disk = Bound(now=NOW, alert="DiskWillFillIn4Hours")
        _, rows, _ = await related_anomalies(disk, "en", url, config)
        assert rows[0][2] == 'disk_used_ratio{instance="db-01:9100"}'
        other = AlertmanagerConfig(urls=["http://127.0.0.1:1"], bearer_token_file=token)
        for without in (None, other):
            with pytest.raises(NotAvailable, match="401"):
                await related_anomalies(disk, "en", url, without)
        # ... and `augur ask` passes the configuration on to it (the CLI and /api/v1/ask do).
        # (HighErrorRate: the alert Prometheus's ALERTS knows, so the slot checks pass.)
        found = Match(CATALOG["related_anomalies"], 1.0, [], {"alert": "HighErrorRate"})
        outcomes = [
            await answer(
                "related of HighErrorRate",
                found,
                client,
                now=NOW,
                alertmanager_url=url,
                alertmanager=given,
            )
            for given in (None, config)
        ]
        assert "401" in outcomes[0].reason
        assert "401" not in outcomes[1].reason + str(outcomes[1].answer), outcomes[1]


def test_only_ratio_or_percent_series_are_compared_with_100_percent() -> None:
    assert threshold_of({"metric": "http_p99_seconds", "query": "latency"}, 0.8) == (0.8, "max")
    assert threshold_of({"metric": "disk_used_ratio"}, 0.99) == (1.0, "percent")
    assert threshold_of({"metric": "cpu_busy", "unit": "percent"}, 40.0) == (100.0, "percent")


def test_every_template_exists_in_both_languages() -> None:
    assert TEXT["en"].keys() == TEXT["zh"].keys()


async def test_an_unreachable_prometheus_is_named_not_raised() -> None:
    async with aiohttp.ClientSession() as session:
        client = PrometheusClient(session, "http://127.0.0.1:1", retries=0)
        report = await asyncio.wait_for(build(client, 3600, now=NOW), 60)
    assert report.data.problems and report.data.problems[0].startswith("anomaly scores")
    assert '<section id="problems">' in report.text


async def test_a_hostile_label_value_is_escaped_not_injected(
    prometheus_factory: Callable[..., Process],
) -> None:
    hostile = {"query": "q", "metric": "m", "instance": 'db"01\\x"} or vector(1) #\nz'}
    series = {**hostile, "detector": "zscore"}
    history = [
        Sample(name, series, t, value)
        for t in range(NOW - 3600, NOW + 1, STEP)
        for name, value in (
            ("augur_anomaly_score", 4.0 if t > NOW - 600 else 0.1),
            ("augur_observed_value", 7.0),
            ("augur_expected_value", 5.0),
            ("augur_expected_lower", 4.0),
            ("augur_expected_upper", 6.0),
        )
    ]
    proc = prometheus_factory(history)
    async with aiohttp.ClientSession() as session:
        report = await build(PrometheusClient(session, proc.url), 3600, now=NOW)
    assert report.data.problems == []
    [found] = report.data.series
    assert found.labels == hostile
    # Its own four band series, read with the escaped selector (an injected `or vector(1)`
    # would have added a fifth, label-less series).
    assert sorted(found.bands) == sorted(
        [
            "augur_observed_value",
            "augur_expected_value",
            "augur_expected_lower",
            "augur_expected_upper",
        ]
    )
    points = int(3600 / report.data.step) + 1  # the whole hour, on the report's grid
    assert all(len(p) == points for p in found.bands.values())
