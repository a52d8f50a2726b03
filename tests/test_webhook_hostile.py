"""Each class of hostile input an attacker's run found: a short 4xx, never a 5xx or a hang.

Alertmanager's webhook notifier retries 5xx (only), so input that can never succeed must get a
4xx, and backpressure a 503 with Retry-After. Real aiohttp server, real SQLite outbox; the
enrichment worker is off unless a test needs it (the answer never waits on enrichment).
"""

# ruff: noqa: F811 - the fixtures imported from test_webhook are parameters here

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from test_webhook import (
    MakeClient,
    alert,
    make_client,  # noqa: F401 - a fixture, used by name
    payload,
    post,
    registry,  # noqa: F401 - a fixture, used by name
    sample,
)


async def _raw(client: Any, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with client.post("/webhook", data=body, headers=headers) as resp:
        return resp.status, await resp.json()


def _answer_is_short(answer: dict[str, Any]) -> None:
    assert len(json.dumps(answer)) < 10_000, len(json.dumps(answer))
    assert len(answer.get("problems", [])) <= 21


async def test_deep_nesting_is_400(make_client: MakeClient) -> None:
    client, box, _ = await make_client(enrich=False)
    for depth in (1_000, 100_000):
        deep = b'{"x": ' + b"[" * depth + b"]" * depth + b"}"
        body = json.dumps(payload()).encode()[:-1] + b', "deep": ' + deep + b"}"
        status, answer = await post(client, body)
        assert status == 400 and "recursion limit" in answer["error"], answer
    assert await box.rows() == []


async def test_content_encoding(make_client: MakeClient) -> None:
    client, box, _ = await make_client(enrich=False)
    body = json.dumps(payload(alert("Gzipped"))).encode()
    status, answer = await _raw(client, gzip.compress(body), {"Content-Encoding": "gzip"})
    assert (status, answer["inserted"]) == (200, 1)
    status, answer = await _raw(
        client,
        zlib.compress(json.dumps(payload(alert("Deflated"))).encode()),
        {"Content-Encoding": "deflate"},
    )
    assert (status, answer["inserted"]) == (200, 1)
    # Not gzip at all, though it says so: the decompressor's error is the sender's.
    status, answer = await _raw(client, body, {"Content-Encoding": "gzip"})
    assert status == 400 and "decompressed" in answer["error"]
    for encoding in ("compress", "gzip, gzip", "x" * 5000):
        status, answer = await _raw(client, body, {"Content-Encoding": encoding})
        assert status == 415 and "use gzip or none" in answer["error"]
        _answer_is_short(answer)
    async with client.post("/webhook", data=body, headers={"Content-Encoding": "br"}) as resp:
        assert 400 <= resp.status < 500  # aiohttp itself refuses br without the Brotli package
    assert len(await box.rows()) == 2


async def test_a_gzip_bomb_stops_at_max_body_bytes(make_client: MakeClient) -> None:
    client, box, _ = await make_client(enrich=False, max_body_bytes=1 << 20)
    bomb = gzip.compress(b" " * (200 << 20), compresslevel=9)  # 200 MB of spaces in ~200 KB
    assert len(bomb) < 1 << 20
    status, answer = await _raw(client, bomb, {"Content-Encoding": "gzip"})
    assert status == 413 and "max_body_bytes" in answer["error"]
    assert await box.rows() == []


async def test_a_non_utf8_authorization_header_is_401(
    make_client: MakeClient, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text("s3cret")
    client, _, _ = await make_client(enrich=False, bearer_token_file=tmp_path / "token")
    body = json.dumps(payload()).encode()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\x80s3cret\r\n"
        b"Content-Type: application/json\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"401", status_line


@pytest.mark.parametrize(
    ("field", "value", "status", "text"),
    [
        ("fingerprint", "\\ud800", 400, "not JSON"),
        ("generatorURL", "http://x/\\udfff", 400, "not JSON"),
        ("startsAt", '"0001-01-01T00:00:00+01:00"', 422, "out of range in UTC"),
        ("startsAt", '"9999-12-31T23:59:59-01:00"', 422, "out of range in UTC"),
        ("startsAt", '"not a time"', 422, "alerts[0].startsAt"),
        ("fingerprint", '"' + "f" * 300 + '"', 422, "alerts[0].fingerprint"),
        ("labels", '{"alertname": NaN}', 422, "alerts[0].labels.alertname"),
        ("truncatedAlerts", "Infinity", 422, "truncatedAlerts"),
    ],
)
async def test_input_that_can_never_succeed_is_4xx_not_503(
    make_client: MakeClient,
    registry: CollectorRegistry,
    field: str,
    value: str,
    status: int,
    text: str,
) -> None:
    client, box, _ = await make_client(enrich=False)
    if not value.startswith(('"', "{", "I")):
        value = f'"{value}"'
    if field == "truncatedAlerts":
        body = json.dumps(payload(truncatedAlerts="__HERE__"))
    else:
        body = json.dumps(payload({**alert(), field: "__HERE__"}))
    body = body.replace('"__HERE__"', value)
    got, answer = await post(client, body.encode())
    assert got == status and text in answer["error"] + " ".join(answer.get("problems", []))
    assert await box.rows() == []
    assert sample(registry, "augur_webhook_requests_total", code="503") is None


async def test_an_unparsable_generator_url_is_stored_without_it(make_client: MakeClient) -> None:
    client, box, _ = await make_client(enrich=False)
    status, _ = await post(client, payload({**alert(), "generatorURL": "http://[::1"}))
    assert status == 200
    (row,) = await box.rows()
    assert row["generator_url"] == ""


async def test_nan_and_infinity_are_not_json_even_where_ignored(make_client: MakeClient) -> None:
    client, box, _ = await make_client(enrich=False)
    good = json.dumps(payload()).encode()
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        body = good[:-1] + b', "extra": ' + literal + b"}"
        status, answer = await post(client, body)
        assert status == 400 and "NaN and Infinity" in answer["error"]
    assert await box.rows() == []
    # The words inside strings are text, not literals.
    status, _ = await post(client, payload(alert(note="NaN Infinity")))
    assert status == 200


async def test_duplicate_keys_last_wins_as_in_go(make_client: MakeClient) -> None:
    client, box, _ = await make_client(enrich=False)
    body = json.dumps(payload(alert("First"))).replace(
        '"alertname": "First"', '"alertname": "First", "alertname": "Second"'
    )
    status, _ = await post(client, body.encode())
    assert status == 200
    (row,) = await box.rows()
    assert json.loads(row["labels"])["alertname"] == "Second"


async def test_a_megabyte_of_bad_label_names_gets_a_short_answer(make_client: MakeClient) -> None:
    client, box, _ = await make_client(enrich=False)
    labels = {f"bad-{i}-" + "x" * 1000: "v" for i in range(1100)}
    status, answer = await post(client, payload({**alert(), "labels": labels}))
    assert status == 422
    _answer_is_short(answer)
    assert "labels: 1100 problems; label name 'bad-0-" in " ".join(answer["problems"])
    assert await box.rows() == []


async def test_ten_thousand_alerts_in_one_group(make_client: MakeClient) -> None:
    client, box, _ = await make_client(enrich=False, max_body_bytes=8 << 20)
    alerts = [alert(f"A{i}") for i in range(10_000)]
    status, answer = await post(client, payload(*alerts))
    assert (status, answer["inserted"]) == (200, 10_000)
    assert await box.awaiting_count() == 10_000


async def test_backlog_over_max_backlog_is_503_with_retry_after(
    make_client: MakeClient, registry: CollectorRegistry
) -> None:
    client, box, _ = await make_client(enrich=False, max_backlog=5, retry_after="7s")
    status, _ = await post(client, payload(*(alert(f"A{i}") for i in range(10))))
    assert status == 200  # a body is taken whole; the next one waits
    async with client.post("/webhook", json=payload(alert("Later"))) as resp:
        assert resp.status == 503 and resp.headers["Retry-After"] == "7"
        assert "webhook.max_backlog (5)" in (await resp.json())["error"]
    assert sample(registry, "augur_webhook_throttled_total", reason="backlog") == 1
    assert await box.awaiting_count() == 10


async def test_bytes_in_flight_over_the_bound_are_503_then_taken(
    make_client: MakeClient, registry: CollectorRegistry
) -> None:
    client, box, receiver = await make_client(enrich=False, max_inflight_bytes=4096)
    first = json.dumps(payload(alert("Slow"), groupKey="x" * 5000)).encode()
    release = asyncio.Event()

    async def slowly() -> AsyncIterator[bytes]:
        yield first[:4500]  # past the bound alone, which a request alone may be
        await release.wait()
        yield first[4500:]

    slow = asyncio.create_task(post(client, slowly()))
    while receiver.inflight_bytes < 4500:  # noqa: ASYNC110 - until the slow body's start is read
        await asyncio.sleep(0.01)
    while sample(registry, "augur_webhook_requests_total", code="503") is None:
        async with client.post("/webhook", json=payload(alert("Other"))) as resp:
            if resp.status == 503:
                assert resp.headers["Retry-After"] == "10"
                assert "max_inflight_bytes" in (await resp.json())["error"]
    release.set()
    assert (await slow)[0] == 200
    assert (sample(registry, "augur_webhook_throttled_total", reason="inflight_bytes") or 0) >= 1
    # With the slow body answered, the bound is free again.
    assert (await post(client, payload(alert("Other"))))[0] == 200
    assert {json.loads(r["labels"])["alertname"] for r in await box.rows()} >= {"Slow", "Other"}


async def test_a_body_that_stalls_is_408(make_client: MakeClient) -> None:
    client, box, _ = await make_client(enrich=False, read_timeout="200ms")

    async def stalls() -> AsyncIterator[bytes]:
        yield b'{"version": "4",'
        await asyncio.Event().wait()

    status, answer = await post(client, stalls())
    assert status == 408 and "web.read_timeout (0.2 s)" in answer["error"]
    assert await box.rows() == []
