"""`GET /report` on augur's real web server, behind its basic auth, and the page it serves
rendered in headless Chromium at a phone's size (tests/browser.py).
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import numpy as np
import pytest
import yaml
from browser import render
from matplotlib.image import imread
from report_world import STEP, world
from serving import running

from exporter.config.root import Config
from exporter.demo.procs import Process, free_port, start_prometheus

PASSWORD = "correct horse battery staple"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
AUTH = {"Authorization": "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()}
NOW = int(time.time()) // STEP * STEP
PHONE = 390, 844
# Headless Chromium lays a window out at least 500 px wide, so the page is shown in a phone-sized
# iframe (srcdoc: same origin, so the wrapper's script can read it). After load the script
# writes onto the wrapper's body whether the page is wider than the phone and how many images
# decoded and fit; Chromium's --dump-dom prints those attributes.
WRAPPER = """<!doctype html><html><head><meta charset="utf-8">
<style>body {{ margin: 0; }} iframe {{ border: 0; display: block; }}</style></head><body>
<iframe id="phone" width="{w}" height="{h}" srcdoc="{page}"></iframe>
<script>
const frame = document.getElementById("phone");
frame.addEventListener("load", () => {{
  const doc = frame.contentDocument, win = frame.contentWindow, imgs = [...doc.images];
  document.body.dataset.overflow = String(doc.documentElement.scrollWidth > win.innerWidth);
  document.body.dataset.images = String(imgs.filter(
    i => i.naturalWidth > 0 && i.getBoundingClientRect().width <= win.innerWidth).length);
  document.body.dataset.width = String(win.innerWidth);
  document.body.dataset.sections = [...doc.querySelectorAll("section")].map(s => s.id).join(" ");
}});
</script></body></html>"""


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    proc = start_prometheus(tmp_path_factory.mktemp("prometheus"), samples=world(NOW))
    yield proc
    proc.stop()


@pytest.fixture
async def served(
    prometheus: Process, tmp_path: Path
) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    web_file = tmp_path / "web.yml"
    web_file.write_text(yaml.safe_dump({"basic_auth_users": {"alice": HASH}}), encoding="utf-8")
    address = f"127.0.0.1:{free_port()}"
    data: dict[str, Any] = {
        "prometheus": {"url": prometheus.url},
        "web": {"listen_address": address, "config_file": str(web_file)},
        "state": {"path": str(tmp_path / "augur.db")},
    }
    async with running(Config.model_validate(data)), aiohttp.ClientSession() as session:
        yield f"http://{address}", session


async def test_the_report_needs_a_user(served: tuple[str, aiohttp.ClientSession]) -> None:
    base, session = served
    async with session.get(f"{base}/report?since=1h") as response:
        assert response.status == 401
        assert "augur" not in await response.text() or "report" not in await response.text()
    async with session.get(f"{base}/report?since=1h", headers=AUTH) as response:
        assert response.status == 200
        assert response.content_type == "text/html"


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("since=30d", "since: '30d' is outside 5m..7d"),
        ("since=x", "since: not a duration"),
        ("lang=de", "lang: 'de' is not one of en, zh"),
        ("format=pdf", "format: 'pdf' is not one of html, md"),
        ("top=500", "top: 500 is outside 1..50"),
    ],
)
async def test_bad_parameters_are_400_with_the_reason(
    served: tuple[str, aiohttp.ClientSession], query: str, reason: str
) -> None:
    base, session = served
    async with session.get(f"{base}/report?{query}", headers=AUTH) as response:
        assert response.status == 400
        assert (await response.text()).startswith(reason)


async def test_markdown_is_served_with_inline_images(
    served: tuple[str, aiohttp.ClientSession],
) -> None:
    base, session = served
    async with session.get(f"{base}/report?format=md&lang=zh&top=1", headers=AUTH) as response:
        assert response.status == 200 and response.content_type == "text/markdown"
        text = await response.text()
    assert text.startswith("# augur 报告：最近 1d")
    assert text.count("](data:image/png;base64,") == 1


async def test_the_page_renders_on_a_phone(
    served: tuple[str, aiohttp.ClientSession], tmp_path: Path
) -> None:
    base, session = served
    async with session.get(f"{base}/report?since=24h&lang=zh", headers=AUTH) as response:
        page = await response.text()
    # Chromium cannot send the credentials: it opens the served page saved in a file, which
    # works only because the page is self-contained.
    path = tmp_path / "phone.html"
    w, h = PHONE
    path.write_text(WRAPPER.format(w=w, h=h, page=html.escape(page)), encoding="utf-8")
    rendered = render(path.as_uri(), w, h)
    sections = "summary series incidents alerts forecasts chains"
    assert f'data-sections="{sections}"' in rendered.dom
    assert f'data-width="{w}"' in rendered.dom
    assert 'data-images="2"' in rendered.dom  # both plots decoded and fit the screen
    assert 'data-overflow="false"' in rendered.dom  # wide tables scroll inside their box
    shot = imread(rendered.png)
    assert shot.shape[:2] == (h, w)
    colours = np.unique((shot[..., :3].reshape(-1, 3) * 255).astype(np.uint8), axis=0)
    assert len(colours) > 20  # text and headings drawn, not a blank page
