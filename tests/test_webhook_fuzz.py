"""Property-based hostile input against the real webhook: never a 5xx, never a hang.

augur's alert loop (`AlertLoop`: the webhook receiver and its real SQLite outbox) serves on a
loopback port from a thread of its own; hypothesis posts over plain HTTP connections, one per
example, with a socket timeout as the "never hangs" bound. Enrichment is off: the answer never
waits on it. Whatever is answered 200 must be in the outbox.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from exporter.alerts.loop import AlertLoop
from exporter.alerts.payloads import WebhookPayload
from exporter.config.alerts import AlertmanagerConfig, WebhookConfig
from exporter.config.prometheus import PrometheusConfig
from exporter.config.root import Config, WebConfig
from exporter.demo.procs import free_port

TOKEN = "fuzz-token"
AUTHORIZED = {"Authorization": f"Bearer {TOKEN}"}
ANSWER_WITHIN_SECONDS = 30.0
"""The socket timeout of each request: past it, the webhook hung."""
FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@dataclass
class Served:
    port: int
    loop: asyncio.AbstractEventLoop
    alerts: AlertLoop

    def post(self, body: bytes, headers: dict[str, Any] | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=ANSWER_WITHIN_SECONDS)
        try:
            conn.request("POST", "/webhook", body=body, headers={**AUTHORIZED, **(headers or {})})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def stored(self) -> set[tuple[str, str]]:
        rows = asyncio.run_coroutine_threadsafe(self.alerts.outbox.rows(), self.loop).result(30)
        return {(r["fingerprint"], r["starts_at"]) for r in rows}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    (folder / "token").write_text(TOKEN)
    config = Config(
        prometheus=PrometheusConfig(url="http://127.0.0.1:1"),
        alertmanager=AlertmanagerConfig(urls=["http://127.0.0.1:9"]),
        # A body cut short inside a deflate stream can leave aiohttp's parser waiting (it drops
        # the decompressor's error at EOF in a race): read_timeout is the bound that answers.
        webhook=WebhookConfig(max_body_bytes=8 << 20, bearer_token_file=folder / "token"),
        web=WebConfig(read_timeout=3.0),
    )
    path = folder / "outbox.db"
    alerts = AlertLoop(config, CollectorRegistry(), outbox=path, enrich=False, send=False)
    app = web.Application()
    app.cleanup_ctx.append(alerts.cleanup_ctx)
    app.router.add_post("/webhook", alerts.handle)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-server", daemon=True)
    thread.start()
    runner = web.AppRunner(app)
    port = free_port()

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    asyncio.run_coroutine_threadsafe(start(), loop).result(60)

    async def stop() -> None:
        await runner.cleanup()
        # Connections aiohttp refused in its parser leave their handler tasks behind.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    try:
        yield Served(port, loop, alerts)
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def check(served: Served, body: bytes, headers: dict[str, Any] | None = None) -> int:
    """Post; the answer is no 5xx, a JSON object, and a 200's alerts are all stored."""
    status, answer = served.post(body, headers)
    assert status < 500, (status, answer[:500])
    assert isinstance(json.loads(answer), dict)
    if status == 200:
        payload = WebhookPayload.model_validate_json(body)
        keys = {a.key() for a in payload.alerts if "augur_enriched" not in a.labels}
        assert keys <= served.stored()
    return status


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)
# Any code point, lone surrogates included (JSON escapes them as \udXXX).
HOSTILE_TEXT = st.text(st.characters(codec=None, categories=None), max_size=40) | st.sampled_from(
    ["", "a" * 100_000, "http://[::1", "0001-01-01T00:00:00Z", "NaN", "\ud800", "💥", "a-b"]
)
LABELS = st.dictionaries(HOSTILE_TEXT, HOSTILE_TEXT, max_size=6) | st.just({"alertname": "X"})
TIME = st.sampled_from(
    [
        "2024-05-01T10:00:00Z",
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "2024-13-40T99:00:00Z",
        "",
    ]
) | st.datetimes().map(lambda d: d.isoformat())


def _alert(labels: dict[str, str], starts: str, url: str, fp: str) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": "s"},
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": url,
        "fingerprint": fp,
    }


def _payload(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "augur",
        "alerts": alerts,
    }


ALERT = st.builds(_alert, LABELS, TIME, HOSTILE_TEXT, HOSTILE_TEXT | st.just(""))


@FUZZ
@given(body=st.binary(max_size=2000) | JSON.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_bytes_and_json(served: Served, body: bytes) -> None:
    check(served, body)


@FUZZ
@given(alerts=st.lists(ALERT, min_size=1, max_size=5))
def test_hostile_labels_times_urls_and_fingerprints(
    served: Served, alerts: list[dict[str, Any]]
) -> None:
    check(served, json.dumps(_payload(alerts)).encode())


FIELDS = ["version", "groupKey", "truncatedAlerts", "status", "receiver", "alerts"]
ALERT_FIELDS = [*_alert({}, "", "", "")]


@FUZZ
@given(
    field=st.sampled_from(FIELDS + [f"alerts[0].{f}" for f in ALERT_FIELDS]),
    value=JSON,
)
def test_wrong_types_at_every_field(served: Served, field: str, value: Any) -> None:
    body = _payload([_alert({"alertname": "Typed"}, "2024-05-01T10:00:00Z", "", "")])
    if field.startswith("alerts[0]."):
        body["alerts"][0][field.removeprefix("alerts[0].")] = value
    else:
        body[field] = value
    check(served, json.dumps(body).encode())


@FUZZ
@given(
    depth=st.integers(1, 50_000),
    literal=st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "null"]),
    duplicate=st.booleans(),
)
def test_deep_nesting_nan_and_duplicate_keys(
    served: Served, depth: int, literal: str, duplicate: bool
) -> None:
    good = json.dumps(_payload([_alert({"alertname": "Deep"}, "2024-05-01T10:00:00Z", "", "")]))
    extra = "[" * depth + literal + "]" * depth
    if duplicate:
        good = good.replace('"version": "4"', '"version": "3", "version": "4"')
    status = check(served, (good[:-1] + f', "extra": {extra}}}').encode())
    assert status in (200, 400)


@FUZZ
@given(
    encoding=st.sampled_from(["gzip", "deflate", "identity", "", "br", "zstd", "x", "gzip, br"]),
    compress=st.sampled_from(["gzip", "deflate", "none"]),
    truncate=st.integers(0, 200),
)
def test_content_encodings(served: Served, encoding: str, compress: str, truncate: int) -> None:
    body = json.dumps(_payload([_alert({"alertname": "Enc"}, "2024-05-01T10:00:00Z", "", "")]))
    raw = body.encode()
    data = {"gzip": gzip.compress(raw), "deflate": zlib.compress(raw)}.get(compress, raw)
    data = data[: len(data) - truncate] if truncate < len(data) else data
    status, answer = served.post(data, {"Content-Encoding": encoding} if encoding else {})
    assert status < 500, (status, answer[:300])
    if status == 200:
        assert data == raw or encoding in ("gzip", "deflate")


@FUZZ
@given(token=st.binary(min_size=0, max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b))
def test_authorization_header_of_any_bytes(served: Served, token: bytes) -> None:
    body = json.dumps(_payload([_alert({"alertname": "Auth"}, "2024-05-01T10:00:00Z", "", "")]))
    status, _ = served.post(body.encode(), {"Authorization": b"Bearer " + token})
    # 401, or 400 from aiohttp's own parser for control characters; 200 for the token only.
    assert status in (400, 401) or (status == 200 and token == TOKEN.encode()), status


def test_ten_thousand_alerts_in_one_group(served: Served) -> None:
    alerts = [
        _alert({"alertname": "Many", "i": str(i)}, "2024-05-01T10:00:00Z", "", "")
        for i in range(10_000)
    ]
    assert check(served, json.dumps(_payload(alerts)).encode()) == 200
