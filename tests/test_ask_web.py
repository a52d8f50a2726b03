"""`POST /api/v1/ask`, `GET /ask` and the landing page's question box, on augur's real app in
front of a real Prometheus; the pages rendered in headless Chromium and checked from the DOM and
the screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import bcrypt
import pytest
import yaml
from browser import is_blank, render
from serving import running

from exporter.assistant.ask import MAX_QUESTION_CHARS
from exporter.assistant.ask_web import MAX_BODY_BYTES
from exporter.config.load import load
from exporter.demo.procs import Process, Sample, free_port

USER, PASSWORD = "ops", "s3cret-pass"
ANSWERED = "how many requests per second does each service get"
"""A question the backfilled data answers."""


@pytest.fixture
def prometheus(prometheus_factory: Callable[..., Process]) -> Process:
    now = time.time()
    samples = [
        Sample("up", {"job": "node", "instance": f"{h}:9100"}, now - 60 * i, 1.0)
        for h in ("web-01", "db-01")
        for i in range(10)
    ]
    samples += [
        Sample("http_requests_total", {"job": s, "service": s, "code": "200"}, now - 60 * i,
               6000.0 - 100 * i)
        for s in ("checkout", "search")
        for i in range(10)
    ]  # fmt: skip
    return prometheus_factory(samples=samples)


@pytest.fixture
async def augur(prometheus: Process, tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    cfg = load(
        overrides={
            ("prometheus", "url"): prometheus.url,
            ("web", "listen_address"): f"127.0.0.1:{port}",
            ("state", "path"): str(tmp_path / "state.db"),
        }
    )
    async with running(cfg):
        yield f"http://127.0.0.1:{port}"


async def post(url: str, body: bytes | str) -> tuple[int, Any]:
    data = body.encode() if isinstance(body, str) else body
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/api/v1/ask", data=data) as resp,
    ):
        return resp.status, await resp.json()


async def test_api(augur: str) -> None:
    status, body = await post(augur, json.dumps({"question": ANSWERED}))
    assert status == 200 and body["answered"], body
    assert body["match"]["intent"] == "request_rate_by_service" and body["answer"]["promql"]
    status, body = await post(augur, '{"question": "明天天气怎么样", "lang": "zh"}')
    assert status == 200 and not body["answered"] and len(body["alternatives"]) == 3
    assert body["lang"] == "zh" and "无法回答" in body["reason"]
    for bad in ("not json", "[1]", '{"question": 5}', '{"question": " "}',
                '{"question": "up", "lang": "fr"}'):  # fmt: skip
        status, body = await post(augur, bad)
        assert status == 400 and body["error"], bad
    status, _ = await post(augur, '{"question": "%s"}' % ("x" * (MAX_QUESTION_CHARS + 1)))
    assert status == 413
    status, _ = await post(augur, b'{"question": "' + b"x" * MAX_BODY_BYTES + b'"}')
    assert status == 413


async def test_ask_box_and_answer_page_in_a_browser(augur: str) -> None:
    landing = await asyncio.to_thread(render, f"{augur}/")
    assert '<form action="ask" method="get"' in landing.dom and 'name="q"' in landing.dom
    assert not is_blank(landing.png)
    _, body = await post(augur, json.dumps({"question": ANSWERED}))
    page = await asyncio.to_thread(render, f"{augur}/ask?q={quote(ANSWERED)}")
    assert '<table class="answer">' in page.dom
    for row in body["answer"]["rows"]:
        assert f"<td>{html.escape(row[0])}</td>" in page.dom
    assert "PromQL" in page.text
    for expr in body["answer"]["promql"]:
        assert f"<code>{html.escape(expr, quote=False)}</code>" in page.dom
    assert not is_blank(page.png)
    refused = await asyncio.to_thread(render, f"{augur}/ask?q={quote('讲个笑话吧')}")
    assert 'class="reason"' in refused.dom and 'class="alternatives"' in refused.dom
    assert "<script" not in page.dom  # works without JS


async def test_same_auth_as_every_page(prometheus: Process, tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    web_file = tmp_path / "web.yml"
    web_file.write_text(yaml.safe_dump({"basic_auth_users": {USER: hashed}}), encoding="utf-8")
    port = free_port()
    cfg = load(
        overrides={
            ("prometheus", "url"): prometheus.url,
            ("web", "listen_address"): f"127.0.0.1:{port}",
            ("web", "config_file"): str(web_file),
            ("state", "path"): str(tmp_path / "state.db"),
        }
    )
    url = f"http://127.0.0.1:{port}"
    async with running(cfg), aiohttp.ClientSession() as session:
        async with session.get(f"{url}/ask?q=up") as resp:
            assert resp.status == 401
        async with session.post(f"{url}/api/v1/ask", json={"question": "up"}) as resp:
            assert resp.status == 401
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        headers = {"Authorization": f"Basic {token}"}
        async with session.get(f"{url}/ask?q={quote(ANSWERED)}", headers=headers) as resp:
            assert resp.status == 200 and '<table class="answer">' in await resp.text()
