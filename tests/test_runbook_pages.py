"""augur's runbook pages on the real app, served as `augur run` serves it, behind basic auth.

`/runbooks/` lists the runbooks of `enrich.knowledge_dir`, `/runbooks/<name>` shows one in the
language asked for (or the one there is); anything but a known name is a 404, however it is
spelled; the Markdown renderer lets no markup of the file through.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from serving import running
from test_web_auth import HASH, PASSWORD, basic, raw

from exporter.config.alerts import RUNBOOKS_DIR
from exporter.config.root import Config
from exporter.demo.procs import free_port
from exporter.web.markdown import render

ALICE = basic("alice", PASSWORD)
Served = tuple[str, aiohttp.ClientSession]


def make_config(tmp_path: Path, knowledge_dir: Path = RUNBOOKS_DIR) -> Config:
    web_file = tmp_path / "web.yml"
    web_file.write_text(yaml.safe_dump({"basic_auth_users": {"alice": HASH}}), encoding="utf-8")
    data: dict[str, Any] = {
        "prometheus": {"url": "http://127.0.0.1:1", "timeout": "1s", "retries": 0},
        "web": {"listen_address": f"127.0.0.1:{free_port()}", "config_file": str(web_file)},
        "state": {"path": str(tmp_path / "augur.db")},
        "enrich": {"knowledge_dir": str(knowledge_dir)},
    }
    return Config.model_validate(data)


async def _serve(cfg: Config) -> AsyncIterator[Served]:
    async with running(cfg), aiohttp.ClientSession(headers=ALICE) as session:
        yield f"http://{cfg.web.listen_address}", session


@pytest.fixture
async def shipped(tmp_path: Path) -> AsyncIterator[Served]:
    async for served in _serve(make_config(tmp_path)):
        yield served


@pytest.fixture
async def own(tmp_path: Path) -> AsyncIterator[Served]:
    """An operator's folder: one runbook in Chinese only, one without a language in its name,
    one that tries to smuggle markup, and a file whose name cannot be a page's."""
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "queue.zh.md").write_text("# 队列积压\n\n消费者跟不上。\n", encoding="utf-8")
    (folder / "payments.md").write_text("# Payments down\n\nCall the PSP.\n", encoding="utf-8")
    (folder / "evil.en.md").write_text(
        "---\ncategory: other\n---\n# <script>alert(1)</script> title\n\n"
        '<img src=x onerror="alert(1)"> [click](javascript:alert(1)) [ok](https://ok.example/a)\n'
        "\n```\n</code><script>alert(2)</script>\n```\n",
        encoding="utf-8",
    )
    (folder / "has space.md").write_text("# Not a page\n", encoding="utf-8")
    async for served in _serve(make_config(tmp_path, folder)):
        yield served


async def get(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, str]:
    async with session.get(url, allow_redirects=False, **kwargs) as resp:
        return resp.status, await resp.text()


async def test_a_page_in_the_language_asked_for(shipped: Served) -> None:
    url, session = shipped
    status, en = await get(session, url + "/runbooks/latency?lang=en")
    assert status == 200
    assert "<h1>Latency high: slow responses</h1>" in en and '<html lang="en">' in en
    assert "<code>histogram_quantile(0.99, sum by (le, route)" in en
    assert "category: latency" not in en  # the front-matter is not shown
    assert 'name="viewport"' in en  # readable on a phone
    assert not re.search(r"<(?:link|script|img)\b", en)  # self-contained
    status, zh = await get(session, url + "/runbooks/latency?lang=zh")
    assert status == 200 and "<h1>响应延迟过高</h1>" in zh
    assert '<html lang="zh">' in zh
    # Without ?lang=, the browser's language; without either, English.
    _, by_header = await get(
        session, url + "/runbooks/latency", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}
    )
    assert '<html lang="zh">' in by_header
    _, default = await get(session, url + "/runbooks/latency")
    assert '<html lang="en">' in default
    async with session.get(url + "/runbooks/latency") as resp:
        assert resp.content_type == "text/html" and resp.charset == "utf-8"
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]


async def test_the_index_lists_every_runbook(shipped: Served) -> None:
    url, session = shipped
    status, body = await get(session, url + "/runbooks/")
    assert status == 200
    names = {p.name.split(".")[0] for p in RUNBOOKS_DIR.glob("*.md")}
    for name in names:
        assert f'<a href="{name}">{name}</a>' in body
    assert 'href="latency?lang=zh"' in body and 'href="latency?lang=en"' in body
    status, _ = await get(session, url + "/runbooks")
    assert status == 302


async def test_a_runbook_in_one_language_serves_the_other(own: Served) -> None:
    url, session = own
    status, body = await get(session, url + "/runbooks/queue?lang=en")
    assert status == 200 and "<h1>队列积压</h1>" in body and '<html lang="zh">' in body
    status, body = await get(session, url + "/runbooks/payments?lang=zh")
    assert status == 200 and "<h1>Payments down</h1>" in body
    status, body = await get(session, url + "/runbooks/")
    assert "queue" in body and "payments" in body and "has space" not in body


async def test_nothing_of_the_file_runs_in_the_browser(own: Served) -> None:
    url, session = own
    status, body = await get(session, url + "/runbooks/evil")
    assert status == 200
    assert "<script" not in body and "<img" not in body and 'href="javascript' not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; title" in body
    assert "[click](javascript:alert(1))" in body  # shown as text, not made a link
    assert '<a href="https://ok.example/a" rel="noopener noreferrer">ok</a>' in body
    assert "&lt;/code&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in body


@pytest.mark.parametrize(
    "path",
    [
        "/runbooks/nope",
        "/runbooks/has%20space",
        "/runbooks/..%2F..%2Fetc%2Fpasswd",
        "/runbooks/%2e%2e%2fapp.py",
        "/runbooks/latency.en.md",
        "/runbooks/latency%00",
        "/runbooks/latency%2Fx",
        "/runbooks/latency/",
    ],
)
async def test_only_known_names_are_served(own: Served, path: str) -> None:
    url, session = own
    async with session.get(url + path, allow_redirects=False) as resp:
        assert resp.status == 404, path


async def test_traversal_sent_byte_for_byte_is_a_404(shipped: Served) -> None:
    url, _ = shipped
    port = int(url.rsplit(":", 1)[1])
    auth = ALICE["Authorization"].encode()
    for target in (
        b"/runbooks/../../etc/passwd",
        b"/runbooks/..%2f..%2fREADME",
        b"/runbooks/%2e%2e/%2e%2e/README",
        b"/runbooks/\\..\\..\\README",
        b"/runbooks/disk%00.en.md",
    ):
        head = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth
        answer = await raw(port, head + b"\r\nConnection: close\r\n\r\n")
        status = answer.split(b"\r\n", 1)[0]
        assert status.split()[1] in (b"404", b"400"), (target, status)
        assert b"root:" not in answer and b"# augur" not in answer


async def test_the_pages_need_basic_auth(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    async with running(cfg), aiohttp.ClientSession() as session:
        url = f"http://{cfg.web.listen_address}"
        for path in ("/runbooks/", "/runbooks/latency", "/runbooks/nope"):
            assert (await get(session, url + path))[0] == 401
            assert (await get(session, url + path, headers=basic("alice", "wrong")))[0] == 401
        assert (await get(session, url + "/runbooks/latency", headers=ALICE))[0] == 200
        _, landing = await get(session, url + "/", headers=ALICE)
        assert 'href="runbooks/"' in landing


def test_the_renderer_keeps_the_runbooks_subset() -> None:
    html = render(
        "# Title\n\nA *para* with **bold**, `a<b`\nand more.\n\n- one\n  continued\n- two\n\n"
        "1. first\n2. second\n\n## Part\n```sh\nrm -rf <dir>\n```\n"
    )
    assert html.split("\n") == [
        "<h1>Title</h1>",
        "<p>A *para* with <strong>bold</strong>, <code>a&lt;b</code> and more.</p>",
        "<ul><li>one continued</li><li>two</li></ul>",
        "<ol><li>first</li><li>second</li></ol>",
        "<h2>Part</h2>",
        "<pre><code>rm -rf &lt;dir&gt;</code></pre>",
    ]
    assert render('[x](https://a.example/?q="><script>)') == (
        '<p><a href="https://a.example/?q=&quot;&gt;&lt;script&gt;" '
        'rel="noopener noreferrer">x</a></p>'
    )
    assert render("<b onclick=x>hi</b> [y](ftp://h/) [z](data:text/html,x)") == (
        "<p>&lt;b onclick=x&gt;hi&lt;/b&gt; [y](ftp://h/) [z](data:text/html,x)</p>"
    )
