"""`augur report`: what happened over a period, as a self-contained HTML page or Markdown.

    augur report --prometheus.url http://prometheus:9090 --since 24h --lang zh --out reports/

The same report is served at `/report?since=24h&lang=zh&format=html` (report_web.py). Exit
codes: 0 written, 1 written but a part could not be read (the report and stderr say which),
2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from exporter.assistant import report_plots
from exporter.assistant.related import alertmanager_session
from exporter.assistant.report_data import ReportData, collect
from exporter.assistant.report_html import to_html, to_markdown
from exporter.assistant.report_sections import sections
from exporter.assistant.report_text import LANGS
from exporter.config import flags
from exporter.config.alerts import AlertmanagerConfig
from exporter.config.durations import parse_duration
from exporter.prometheus.client import PrometheusClient, make_session

MIN_SINCE, MAX_SINCE = 300.0, 7 * 86400.0
"""The periods a report may cover: 5 minutes to 7 days."""
MAX_TOP = 50
FORMATS = ("html", "md")
ALERTMANAGER_TIMEOUT = 10.0


@dataclass
class Report:
    """A report written out: `text` (HTML or Markdown), the PNGs it links, and the seconds
    each stage took (`queries`, `plots`, `render`)."""

    data: ReportData
    text: str
    pngs: list[bytes]
    timings: dict[str, float] = field(default_factory=dict)


def check_parameters(since: str, lang: str, fmt: str, top: str | int) -> tuple[float, int]:
    """The period in seconds and the series count, or ValueError saying what is wrong."""
    try:
        seconds = parse_duration(since)
    except ValueError as exc:
        raise ValueError(f"since: {exc}") from None
    if not MIN_SINCE <= seconds <= MAX_SINCE:
        raise ValueError(f"since: {since!r} is outside 5m..7d")
    if lang not in LANGS:
        raise ValueError(f"lang: {lang!r} is not one of {', '.join(LANGS)}")
    if fmt not in FORMATS:
        raise ValueError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
    try:
        count = int(top)
    except ValueError:
        raise ValueError(f"top: {top!r} is not a whole number") from None
    if not 1 <= count <= MAX_TOP:
        raise ValueError(f"top: {count} is outside 1..{MAX_TOP}")
    return seconds, count


async def build(
    client: PrometheusClient,
    since: float,
    *,
    lang: str = "en",
    fmt: str = "html",
    top: int = 10,
    now: float | None = None,
    alertmanagers: Sequence[str] = (),
    alertmanager: AlertmanagerConfig | None = None,
    image_name: str | None = None,
    plots: bool = True,
) -> Report:
    """Read the period ending `now` and write the report; `image_name` as in `to_markdown`.
    Alertmanager is read with `alertmanager`'s credentials and TLS when the URLs are its own."""
    clock = time.perf_counter()
    timings: dict[str, float] = {}
    first = alertmanagers[0] if alertmanagers else ""
    async with alertmanager_session(alertmanager, first, ALERTMANAGER_TIMEOUT) as session:
        data = await collect(
            client,
            since,
            time.time() if now is None else now,
            top,
            session=session,
            alertmanagers=alertmanagers,
        )
    timings["queries"] = time.perf_counter() - clock
    clock = time.perf_counter()
    pngs: list[bytes] | None = None
    if plots and report_plots.available():
        # matplotlib is CPU-bound: off the event loop, which keeps serving meanwhile.
        pngs = await asyncio.to_thread(report_plots.plots, data.series, lang, data.start, data.end)
    timings["plots"] = time.perf_counter() - clock
    clock = time.perf_counter()
    parts = sections(data, lang, pngs)
    linked: list[bytes] = []
    if fmt == "html":
        text = to_html(parts, lang)
    else:
        text, linked = to_markdown(parts, image_name)
    timings["render"] = time.perf_counter() - clock
    return Report(data, text, linked, timings)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `augur report`."""
    flags.add_source_arguments(
        parser,
        "read enriched alerts and their chains from this Alertmanager "
        "(default: the config's alertmanager.urls)",
    )
    parser.add_argument("--since", default="24h", help="the period, 5m..7d (default 24h)")
    parser.add_argument("--format", dest="fmt", choices=FORMATS, default="html")
    parser.add_argument("--lang", choices=LANGS, default="en")
    parser.add_argument("--out", type=Path, default=Path("."), help="directory (default .)")
    parser.add_argument("--top", default=10, help=f"series to plot, 1..{MAX_TOP} (default 10)")


def run(args: argparse.Namespace) -> int:
    """Write `augur-report.html` (or `.md` and its PNGs) in `--out`."""
    try:
        since, top = check_parameters(args.since, args.lang, args.fmt, args.top)
    except ValueError as exc:
        print(f"augur report: {exc}", file=sys.stderr)
        return 2
    config = flags.load_source(args, "augur report")
    if config is None:
        return 2
    alertmanagers = [args.alertmanager_url] if args.alertmanager_url else config.alertmanager.urls

    async def write() -> Report:
        async with make_session(config.prometheus) as session:
            client = PrometheusClient.from_config(config.prometheus, session)
            return await build(
                client,
                since,
                lang=args.lang,
                fmt=args.fmt,
                top=top,
                alertmanagers=alertmanagers,
                alertmanager=config.alertmanager,
                image_name="augur-report-{}.png",
            )

    report = asyncio.run(write())
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"augur-report.{args.fmt}"
    path.write_text(report.text, encoding="utf-8")
    for i, png in enumerate(report.pngs, 1):
        (args.out / f"augur-report-{i}.png").write_bytes(png)
    print(path)
    if not report_plots.available():
        print("augur report: plots are off (pip install 'augur[report]')", file=sys.stderr)
    for problem in report.data.problems:
        print(f"augur report: could not read {problem}", file=sys.stderr)
    return 1 if report.data.problems else 0
