"""augur's runbook pages: `/runbooks/` lists the runbooks, `/runbooks/<name>` shows one.

The enriched alert's `augur_runbook` and `runbook_url` link here when no
`enrich.runbook_base_url` is set, so a notification's link opens on any phone. The pages are
the Markdown files of `enrich.knowledge_dir` (the shipped runbooks or the operator's),
rendered by exporter/web/markdown.py. A file `latency.en.md` is the page `latency` in English;
`?lang=zh|en` picks the language, else the browser's `Accept-Language`, else English, falling
back to whichever language exists. Only the names of the files found are served: a name is
looked up among them, never joined to a path. The pages sit behind the same basic auth as `/`
(exporter/web/auth.py).
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from exporter.text.knowledge import LANGUAGES, MAX_FILE_BYTES, page_name, title_and_body
from exporter.web.markdown import render

KNOWLEDGE_DIR = web.AppKey[Callable[[], Path]]("knowledge_dir")
"""The folder the pages are read from (`enrich.knowledge_dir`), asked for at each request: a
configuration reload may change it."""

_HEADERS = {
    # Nothing on the page may load or run anything: its only style is inline.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 0 auto; padding: 1rem;
  color: #1a1a1a; background: #fff; overflow-wrap: anywhere; }}
pre {{ background: #f4f4f4; padding: .6rem; overflow-x: auto; white-space: pre-wrap; }}
code {{ background: #f4f4f4; padding: 0 .2rem; font-size: .92em; }}
pre code {{ padding: 0; }}
nav {{ font-size: .9em; color: #555; }}
h1 {{ font-size: 1.5rem; }} h2 {{ font-size: 1.2rem; margin-top: 1.5rem; }}
</style></head>
<body>
<nav>{nav}</nav>
{body}
</body></html>
"""


@dataclass(frozen=True, slots=True)
class _Page:
    title: str
    html: str


def _pages(directory: Path) -> dict[str, dict[str, Path]]:
    """Page name -> language (`en`, `zh`, or `` for a file without one) -> file."""
    out: dict[str, dict[str, Path]] = {}
    paths = sorted(directory.glob("*.md")) if directory.is_dir() else []
    for path in paths:
        if (page := page_name(path)) and path.is_file():
            out.setdefault(page[0], {})[page[1]] = path
    return out


def _read(path: Path) -> _Page:
    """The file's title and HTML; blocking, run it in a thread."""
    raw = path.read_bytes()[:MAX_FILE_BYTES]
    title, text = title_and_body(raw.decode("utf-8", "replace").lstrip("\ufeff"))
    return _Page(title or path.name, render(text))


def _titles(pages: dict[str, dict[str, Path]]) -> dict[str, str]:
    """Each page's title, of its first file; blocking, run it in a thread."""
    out = {}
    for name, versions in pages.items():
        try:
            out[name] = _read(next(iter(versions.values()))).title
        except OSError:
            out[name] = ""
    return out


def _wanted(request: web.Request) -> list[str]:
    """The languages the reader asked for, best first: `?lang=`, then `Accept-Language`."""
    wanted = [request.query.get("lang", "").lower().split("-")[0]]
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(request.headers.get("Accept-Language", "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        try:
            q = float(params.strip().removeprefix("q=")) if params.strip() else 1.0
        except ValueError:
            q = 0.0
        if q > 0:  # q=0 is "not this one"
            ranked.append((-q, i, tag.strip().lower().split("-")[0]))
    wanted += [tag for _, _, tag in sorted(ranked)]
    return [w for w in (*wanted, *LANGUAGES) if w in LANGUAGES]


def _nav(links: list[tuple[str, str]]) -> str:
    return " · ".join(
        f'<a href="{html.escape(href)}">{html.escape(text)}</a>' for href, text in links
    )


async def page(request: web.Request) -> web.Response:
    """One runbook, in the language asked for or the one there is; 404 for any other name."""
    name = request.match_info["name"]
    pages = await asyncio.to_thread(_pages, request.app[KNOWLEDGE_DIR]())
    versions = pages.get(name)
    if versions is None:
        raise web.HTTPNotFound(text=f"404 Not Found: no runbook named {name[:100]!r}\n")
    # The language asked for, else a file without one, else whichever there is.
    lang = next((w for w in _wanted(request) if w in versions), "")
    path = versions.get(lang) or versions.get("") or next(iter(versions.values()))
    lang = next(k for k, v in versions.items() if v == path)
    try:
        shown = await asyncio.to_thread(_read, path)
    except OSError:
        raise web.HTTPNotFound(text=f"404 Not Found: runbook {name!r} cannot be read\n") from None
    others = [(f"{name}?lang={k}", k) for k in sorted(versions) if k and k != lang]
    body = _PAGE.format(
        lang=html.escape(lang or "en"),
        title=html.escape(shown.title),
        nav=_nav([("./", "runbooks"), *others]),
        body=shown.html,
    )
    return web.Response(text=body, content_type="text/html", headers=_HEADERS)


async def index(request: web.Request) -> web.Response:
    """Every runbook by name, with a link per language."""
    pages = await asyncio.to_thread(_pages, request.app[KNOWLEDGE_DIR]())
    titles = await asyncio.to_thread(_titles, pages)
    rows = []
    for name, versions in pages.items():
        title = titles[name]
        links = [(f"{name}?lang={lang}", lang) for lang in sorted(versions) if lang]
        rows.append(
            f'<li><a href="{html.escape(name)}">{html.escape(name)}</a> — '
            f"{html.escape(title)} {_nav(links)}</li>"
        )
    body = _PAGE.format(
        lang="en",
        title="augur runbooks",
        nav=_nav([("../", "augur")]),
        body="<h1>Runbooks</h1>\n<ul>\n" + "\n".join(rows) + "\n</ul>"
        if rows
        else "<h1>Runbooks</h1>\n<p>No runbooks (*.md files) found.</p>",
    )
    return web.Response(text=body, content_type="text/html", headers=_HEADERS)


async def _to_index(request: web.Request) -> web.Response:
    raise web.HTTPFound("runbooks/")


def add_routes(app: web.Application, knowledge_dir: Callable[[], Path]) -> None:
    """`/runbooks/` and `/runbooks/{name}`, reading the runbooks from `knowledge_dir()`."""
    app[KNOWLEDGE_DIR] = knowledge_dir
    app.router.add_get("/runbooks", _to_index)
    app.router.add_get("/runbooks/", index)
    app.router.add_get("/runbooks/{name}", page)
