"""The headless-browser helper (tests/browser.py) on small local pages with Chinese text."""

from __future__ import annotations

import json
import struct
import threading
import zlib
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import find_chromium, ink_share, is_blank, read_png, render, visible_text

PAGE = """<!doctype html>
<html lang="zh"><head><meta charset="utf-8"><title>不应出现在文本里</title>
<style>body { font: 28px sans-serif; margin: 16px; } #late { color: #b00; }</style></head>
<body><h1>哪些服务器 CPU 使用率过高?</h1>
<p id="late">等待数据…</p>
<script>
  // Written only after a timer and a fetch: the DOM and the screenshot must wait for both.
  setTimeout(() => fetch("answer.json").then(r => r.json()).then(a => {
    document.getElementById("late").textContent = a.sentence;
  }), 300);
</script></body></html>
"""
ANSWER = "web-01 的 CPU 使用率最高：93%"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server on a free loopback port serving tmp_path/site; yields its base URL."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text(PAGE, encoding="utf-8")
    (root / "answer.json").write_text(json.dumps({"sentence": ANSWER}), encoding="utf-8")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_render_waits_for_scripts_and_shows_chinese(site: str, tmp_path: Path) -> None:
    page = render(f"{site}/index.html", out=tmp_path / "shot.png")
    assert page.png == tmp_path / "shot.png"
    assert ANSWER in page.dom and "等待数据" not in page.dom
    assert page.text.startswith("哪些服务器 CPU 使用率过高? " + ANSWER)
    assert "不应出现" not in page.text and "fetch(" not in page.text  # head and script are not text
    pixels = read_png(page.png)
    assert pixels.shape[:2] == (844, 390)  # the default window: a phone held upright
    assert not is_blank(pixels)
    # Two lines of large text on a phone screen: some ink, most of the page still white.
    assert 0.005 < ink_share(pixels) < 0.5
    # The late paragraph is red (#b00): the script's text was painted, not only put in the DOM.
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert red.sum() > 50


def test_window_size_is_the_screenshot_size(site: str, tmp_path: Path) -> None:
    page = render(f"{site}/index.html", 800, 300, out=tmp_path / "wide.png")
    assert read_png(page.png).shape[:2] == (300, 800)


def test_chinese_glyphs_are_drawn(tmp_path: Path) -> None:
    """Without a CJK font every character is the same empty box: two texts would look alike."""
    lines = ("磁盘使用率", "告警已触发")
    (tmp_path / "glyphs.html").write_text(
        '<!doctype html><meta charset="utf-8"><style>div { position: absolute; left: 0; '
        "height: 100px; font: 64px sans-serif; }</style>"
        + "".join(f'<div style="top: {i * 100}px">{t}</div>' for i, t in enumerate(lines)),
        encoding="utf-8",
    )
    pixels = read_png(
        render((tmp_path / "glyphs.html").as_uri(), 400, 200, out=tmp_path / "g.png").png
    )
    first, second = pixels[:100], pixels[100:200]
    assert ink_share(first) > 0.02 and ink_share(second) > 0.02
    assert (first != second).any(axis=2).mean() > 0.02


def test_renders_without_out_get_files_of_their_own(tmp_path: Path) -> None:
    (tmp_path / "a.html").write_text("<!doctype html><p>一</p>", encoding="utf-8")
    first, second = (render((tmp_path / "a.html").as_uri(), 100, 100) for _ in range(2))
    assert first.png != second.png and first.png.parent == second.png.parent
    assert first.png.is_file() and second.png.is_file() and first.text == "一" == second.text


def test_blank_page_is_blank(tmp_path: Path) -> None:
    (tmp_path / "white.html").write_text("<!doctype html><body></body>", encoding="utf-8")
    (tmp_path / "black.html").write_text(
        "<!doctype html><body style='background:#000'></body>", encoding="utf-8"
    )
    white = render((tmp_path / "white.html").as_uri(), 200, 100, out=tmp_path / "w.png")
    black = render((tmp_path / "black.html").as_uri(), 200, 100, out=tmp_path / "b.png")
    assert is_blank(white.png) and ink_share(white.png) == 0.0
    assert is_blank(black.png) and ink_share(black.png) == 1.0
    assert white.text == "" == black.text


def test_is_blank_sees_a_small_mark() -> None:
    pixels = np.full((100, 100, 3), 255, dtype=np.uint8)
    assert is_blank(pixels)
    pixels[40:44, 40:44] = 0  # 16 of 10,000 pixels: a full stop
    assert not is_blank(pixels) and ink_share(pixels) == 16 / 10_000


def _png(pixels: np.ndarray, filters: list[int]) -> bytes:
    """Encode RGB `pixels` with the given filter on each row: the decoder's reference."""
    height, width, bpp = pixels.shape
    rows = pixels.reshape(height, width * bpp).astype(np.int64)
    raw = bytearray()
    for y, kind in enumerate(filters):
        line, up = rows[y], rows[y - 1] if y else np.zeros_like(rows[0])
        left = np.concatenate([np.zeros(bpp, dtype=np.int64), line[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, dtype=np.int64), up[:-bpp]])
        p = left + up - upleft
        pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
        predictor = [0, left, up, (left + up) // 2, paeth][kind]
        raw += bytes([kind]) + ((line - predictor) % 256).astype(np.uint8).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(raw)))
        + chunk(b"IEND", b"")
    )


def test_read_png_undoes_every_filter(tmp_path: Path) -> None:
    rng = np.random.default_rng(16)
    pixels = rng.integers(0, 256, size=(10, 7, 3), dtype=np.uint8)
    path = tmp_path / "filters.png"
    path.write_bytes(_png(pixels, [0, 1, 2, 3, 4, 4, 3, 2, 1, 0]))
    assert np.array_equal(read_png(path), pixels)


def test_visible_text_skips_what_is_not_shown() -> None:
    dom = "<html><head><title>t</title><style>p{}</style></head><body><p>a &amp;\n b</p><script>x</script><template>y</template>c</body></html>"
    assert visible_text(dom) == "a & b c"


def test_missing_chromium_skips_but_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        find_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must not be skipped"):
        find_chromium()
