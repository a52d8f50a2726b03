"""Render a page in headless Chromium for tests: its DOM after scripts ran, a screenshot, its text.

Debian's `chromium` package is the browser (scripts/setup.sh installs it with `fonts-noto-cjk`,
without which Chinese renders as empty boxes). One Chromium process per page prints the DOM and
writes the PNG, so the page and its scripts run once. `--virtual-time-budget` lets timers and
fetches finish before either is taken: Chromium fast-forwards the page's clock and waits for
network requests, so a test needs no sleep. Without Chromium a test skips and says how to
install it, except on CI (`CI=true`), where a missing browser must fail the run instead.

The PNG is read with zlib and numpy (no imaging library), enough to tell a blank page from a
rendered one and to measure how much of the page is drawn on.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

BROWSERS = ("chromium", "chromium-browser")
INSTALL_HINT = "apt-get install chromium fonts-noto-cjk (scripts/setup.sh does this)"
TIMEOUT = 60.0  # one render takes ~1.5 s on 2 shared cores; a hung browser must not hang the test
WHITE_TOLERANCE = 8  # a channel within this of 255 still counts as white (anti-aliasing fringes)
BLANK_SHARE = 0.001  # below this share of pixels off the dominant colour, a page shows nothing


class BrowserError(RuntimeError):
    """Chromium ran but did not render the page; the message carries what it printed."""


@dataclass(frozen=True)
class Rendered:
    """A rendered page: the serialised DOM after scripts ran, its screenshot and visible text."""

    dom: str
    png: Path
    text: str


def find_chromium() -> str:
    """The Chromium binary; skips the test without one, or fails it when CI=true."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    reason = f"headless Chromium not found on PATH ({', '.join(BROWSERS)}): {INSTALL_HINT}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI=true, so the browser tests must not be skipped")
    pytest.skip(reason)


def render(
    url: str,
    width: int = 390,
    height: int = 844,
    *,
    out: Path | None = None,
    budget_ms: int = 5000,
) -> Rendered:
    """Load `url` in a `width`x`height` window (default: a phone's) and return what it shows.

    The screenshot goes to `out` (a PNG path; by default a new file in a temporary directory
    of this process, removed when it exits).
    `budget_ms` is the page's virtual time before DOM and screenshot are taken. Blocking for
    ~1.5 s: a coroutine whose loop serves the page calls `await asyncio.to_thread(render, url)`.
    """
    chromium = find_chromium()
    png = out if out is not None else _default_png()
    png.unlink(missing_ok=True)
    # A profile of its own: parallel tests and helpers would otherwise share ~/.config/chromium
    # and one browser would refuse to start while another holds its lock.
    with tempfile.TemporaryDirectory(prefix="augur-chromium-") as profile:
        argv = [
            *(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"),
            *("--hide-scrollbars", "--force-device-scale-factor=1", "--mute-audio"),
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={png}",
            "--dump-dom",
            url,
        ]
        # A session of its own, so a hung browser goes with its zygote and renderers.
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            stdout, stderr = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise BrowserError(f"chromium did not finish {url} within {TIMEOUT:g} s") from exc
    dom = stdout.decode("utf-8", errors="replace")
    if proc.returncode != 0 or not png.is_file() or not dom.strip():
        raise BrowserError(
            f"chromium exited {proc.returncode} on {url} "
            f"(screenshot {'written' if png.is_file() else 'missing'}, DOM {len(dom)} chars): "
            + _stderr_tail(stderr)
        )
    return Rendered(dom=dom, png=png, text=visible_text(dom))


@functools.cache
def _shots() -> Path:
    # One directory per process, removed at exit: renders without `out` leave nothing in /tmp.
    path = Path(tempfile.mkdtemp(prefix="augur-browser-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def _default_png() -> Path:
    fd, name = tempfile.mkstemp(prefix="page-", suffix=".png", dir=_shots())
    os.close(fd)
    return Path(name)


def _stderr_tail(stderr: bytes, lines: int = 8) -> str:
    # Headless Chromium always complains about the missing D-Bus; those lines explain nothing.
    kept = [
        line
        for line in stderr.decode("utf-8", errors="replace").splitlines()
        if "dbus" not in line.lower() and line.strip()
    ]
    return "\n".join(kept[-lines:]) or "(nothing on stderr)"


class _TextParser(HTMLParser):
    """Collects the text a reader sees: no script, style, template or head content."""

    HIDDEN = frozenset({"script", "style", "template", "head", "title", "noscript"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN and self.hidden:
            self.hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def visible_text(dom: str) -> str:
    """The DOM's readable text, whitespace collapsed to single spaces."""
    parser = _TextParser()
    parser.feed(dom)
    parser.close()
    return " ".join(" ".join(parser.parts).split())


# -- PNG ------------------------------------------------------------------------------------------

_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel (8-bit only)


def read_png(path: Path) -> np.ndarray:
    """The pixels of an 8-bit, non-interlaced PNG as a (height, width, channels) uint8 array."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    pos, header, idat = 8, b"", bytearray()
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour not in _CHANNELS or interlace:
        raise ValueError(
            f"{path}: only 8-bit non-interlaced grey/RGB(A) PNGs are read "
            f"(depth {depth}, colour type {colour}, interlace {interlace})"
        )
    bpp = _CHANNELS[colour]
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(bytes(idat)), dtype=np.uint8)
    rows = raw[: height * (stride + 1)].reshape(height, stride + 1)
    pixels = np.zeros((height, stride), dtype=np.uint8)
    previous = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        pixels[y] = _unfilter(int(rows[y, 0]), rows[y, 1:], previous, bpp)
        previous = pixels[y]
    return pixels.reshape(height, width, bpp)


def _unfilter(kind: int, line: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """Undo one scanline's PNG filter (RFC 2083, 6.2): None, Sub, Up, Average, Paeth."""
    if kind == 0:
        return line
    if kind == 2:
        added: np.ndarray = line + prev  # uint8 arithmetic wraps modulo 256, as the filter does
        return added
    if kind == 1:  # each byte adds the reconstructed one bpp to its left: a running sum
        sums = np.cumsum(line.reshape(-1, bpp).astype(np.int64), axis=0) % 256
        return sums.astype(np.uint8).reshape(-1)
    # Average and Paeth need the reconstructed left neighbour: byte by byte.
    cur, up = bytearray(line.tobytes()), prev.tobytes()
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = up[i]
        if kind == 3:
            cur[i] = (cur[i] + (a + b) // 2) & 0xFF
            continue
        c = up[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
    return np.frombuffer(bytes(cur), dtype=np.uint8)


def _colour(pixels: np.ndarray) -> np.ndarray:
    """The colour samples only: grey or RGB, the alpha channel dropped."""
    return pixels[..., :1] if pixels.shape[2] <= 2 else pixels[..., :3]


def ink_share(png: Path | np.ndarray) -> float:
    """The share of pixels that are not white: how much of the picture is drawn on, 0 to 1."""
    colour = _colour(read_png(png) if isinstance(png, Path) else png)
    drawn = (colour < 255 - WHITE_TOLERANCE).any(axis=2)
    return float(drawn.mean())


def is_blank(png: Path | np.ndarray) -> bool:
    """Whether the picture shows nothing: (almost) every pixel has its most common colour.

    White is not assumed: a page that failed to paint can be black or grey as well.
    """
    colour = _colour(read_png(png) if isinstance(png, Path) else png)
    flat = colour.reshape(-1, colour.shape[2])
    values, counts = np.unique(flat, axis=0, return_counts=True)
    dominant = values[counts.argmax()]
    off = (np.abs(flat.astype(np.int16) - dominant).max(axis=1) > WHITE_TOLERANCE).mean()
    return bool(off < BLANK_SHARE)
