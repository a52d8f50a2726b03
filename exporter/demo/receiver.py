"""The demo's stand-in for a team's receiver: prints each enriched alert as it arrives.

The demo's Alertmanager routes what augur posted back (label `augur_enriched="true"`) here.
Each alert is printed once per state (firing, then resolved) as a compact block, and once more
as UPDATED when augur re-posts it with a new summary or related series (its settle-time second
look, when the evidence arrived after the first post). Every alert received is appended to a
JSON lines log, one object as Alertmanager sent it plus the time it arrived (`received`). A
firing alert, its update and its resolution read::

    03:24:56  FIRING    AugurAnomaly  service=checkout metric=demo_http_errors_per_second
      category  errors (confidence 0.91)
      summary   demo_http_errors_per_second of service checkout is anomalous; 2.8/s,
                2.4× its expected 1.19/s (band 0.784/s–1.28/s).   [one line when printed]
      related   none: no series of checkout scored >= 1 between 03:10 UTC and 03:25 UTC
      runbook   High error rate of a service
    03:27:57  UPDATED   AugurAnomaly  service=checkout metric=demo_http_errors_per_second
      …
      cause     demo_disk_io_utilization_ratio{service="checkout"} anomalous since …
    03:31:56  RESOLVED  AugurAnomaly  service=checkout …  (errors, after 7m)
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

from exporter.config.durations import format_duration

KEY_LABELS = ("service", "instance", "pod", "namespace", "node", "device", "mountpoint", "metric")
"""The labels a block's first line shows after the alert name, in this order, when present."""
RECENT = 50
"""How many blocks `GET /` shows."""
_WIDTH = 160
_NOT_SERIES = ("none:", "unavailable:", "rule expression")
_SAID = ("augur_summary", "augur_related", "augur_cause")
"""The annotations augur's settle-time look may change: a change is printed as UPDATED."""


def _time(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _cut(text: str, width: int = _WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _related(text: str) -> str:
    """The top related series, with how many more there are; else augur's own 'none: …'."""
    lines = [line for line in text.splitlines() if line.strip()]
    series = [line for line in lines if not line.startswith(_NOT_SERIES)]
    if not series:
        return lines[0] if lines else "-"
    more = f"  (+{len(series) - 1} more)" if len(series) > 1 else ""
    return _cut(series[0], _WIDTH - len(more)) + more


def format_alert(alert: Mapping[str, Any], arrived: float, *, updated: bool = False) -> str:
    """The block printed for one enriched alert; a resolved alert gets its first line only.

    `updated`: a firing alert printed before, now with new annotations from augur."""
    labels: Mapping[str, str] = alert.get("labels") or {}
    notes: Mapping[str, str] = alert.get("annotations") or {}
    status = str(alert.get("status", "firing"))
    keys = " ".join(f"{k}={labels[k]}" for k in KEY_LABELS if k in labels)
    head = time.strftime("%H:%M:%S", time.localtime(arrived))
    shown = "updated" if updated and status == "firing" else status
    head += f"  {shown.upper():<8}  {labels.get('alertname', '?')}  {keys}".rstrip()
    category = notes.get("augur_category") or labels.get("category") or "?"
    if status == "resolved":
        start, end = _time(alert.get("startsAt")), _time(alert.get("endsAt"))
        after = ""
        if start and end and end > start:
            after = f", after {format_duration(round((end - start).total_seconds()))}"
        return f"{head}  ({category}{after})"
    runbook = notes.get("augur_runbook", "-").split(" — ")[0]
    lines = [
        head,
        f"  category  {category} (confidence {notes.get('augur_confidence', '?')})",
        f"  summary   {_cut(notes.get('augur_summary') or '-', 4 * _WIDTH)}",
        f"  related   {_related(notes.get('augur_related', ''))}",
    ]
    if cause := notes.get("augur_cause"):
        lines.append(f"  cause     {_cut(cause.removeprefix('likely cause: '))}")
    if earlier := notes.get("augur_follows"):
        lines += [
            f"  follows   {_cut(link.removeprefix('follows: '))}" for link in earlier.splitlines()
        ]
    lines.append(f"  runbook   {_cut(runbook)}")
    if missing := notes.get("augur_missing"):
        lines.append(f"  missing   {_cut(missing)}")
    return "\n".join(lines)


class DemoReceiver:
    """Alertmanager's webhook for enriched alerts: prints each new state, logs every alert."""

    def __init__(self, log_path: Path, out: TextIO) -> None:
        self.log_path = log_path
        self.out = out
        self.url = ""
        self.recent: deque[str] = deque(maxlen=RECENT)
        # Alertmanager repeats firing alerts; a block is printed once per incident and state,
        # and again when augur changed what it says (what was printed is kept to compare).
        self._printed: dict[tuple[str, str, object], tuple[str, ...]] = {}
        log_path.touch()

    def receive(self, alerts: list[Any]) -> None:
        """Log every alert of a notification and print the ones not printed before."""
        arrived = time.time()
        alerts = [alert for alert in alerts if isinstance(alert, dict)]
        with self.log_path.open("a", encoding="utf-8") as log:
            for alert in alerts:
                log.write(json.dumps({**alert, "received": arrived}, ensure_ascii=False) + "\n")
        for alert in alerts:
            key = (str(alert.get("fingerprint")), str(alert.get("startsAt")), alert.get("status"))
            notes = alert.get("annotations") or {}
            said = tuple(str(notes.get(k, "")) for k in _SAID)
            if self._printed.get(key) == said:
                continue
            updated = key in self._printed
            self._printed[key] = said
            block = format_alert(alert, arrived, updated=updated)
            self.recent.append(block)
            print(block, file=self.out, flush=True)


RECEIVER = web.AppKey("receiver", DemoReceiver)


async def _webhook(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        alerts = body["alerts"]
    except (ValueError, KeyError, TypeError):
        return web.Response(status=400, text="expected Alertmanager's webhook JSON\n")
    if not isinstance(alerts, list):
        return web.Response(status=400, text='"alerts" must be a list\n')
    request.app[RECEIVER].receive(alerts)
    return web.Response(text="ok\n")


async def _recent(request: web.Request) -> web.Response:
    blocks = request.app[RECEIVER].recent
    text = "\n\n".join(blocks) if blocks else "No enriched alert has arrived yet."
    return web.Response(text=f"Enriched alerts, newest last:\n\n{text}\n")


@contextlib.asynccontextmanager
async def serve(log_path: Path, out: TextIO | None = None) -> AsyncIterator[DemoReceiver]:
    """Serve the receiver on a free loopback port: `POST /` takes the webhook, `GET /` shows."""
    receiver = DemoReceiver(log_path, out or sys.stdout)
    app = web.Application()
    app[RECEIVER] = receiver
    app.router.add_post("/", _webhook)
    app.router.add_get("/", _recent)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        # Port 0: the kernel picks a free port, so no other process can take it in between.
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        receiver.url = f"http://127.0.0.1:{port}/"
        yield receiver
    finally:
        await runner.cleanup()
