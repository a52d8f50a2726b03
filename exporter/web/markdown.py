"""Runbook Markdown -> HTML: a small renderer, hand-written because no Markdown library is one of
augur's dependencies (aiohttp, prometheus-client, numpy, statsmodels, onnxruntime, tokenizers,
pydantic, PyYAML, bcrypt), and the runbooks need only a subset.

What it renders: `#`..`######` headings, paragraphs, `-`/`*`/`1.` list items (a line indented
under an item continues it), fenced code blocks (```), and inline `code`, **bold** and
[links](https://…). Everything else is text. It is safe by construction: every character of
the source is HTML-escaped before any tag is added, raw HTML is shown as text, and a link is
made only for an `http://` or `https://` target (anything else, `javascript:` included, stays
text).
"""

from __future__ import annotations

import html
import re

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t#]*$")
_ITEM = re.compile(r"^[ \t]{0,3}(?:[-*+]|(\d{1,9})[.)])[ \t]+(.*)$")
_FENCE = re.compile(r"^[ \t]{0,3}(```|~~~)")
# Applied to escaped text: `code` first (its inside is left alone), then links, then bold.
_INLINE = re.compile(
    r"(?P<code>`+)(?P<code_text>.+?)(?P=code)"
    r"|\[(?P<label>[^\]\n]+)\]\((?P<href>https?://[^\s()]+)\)"
    r"|\*\*(?P<bold>[^*\n]+?)\*\*"
)


def _inline(text: str) -> str:
    """One line or paragraph of Markdown as escaped HTML with its inline markup."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos : m.start()]))
        if m.group("code"):
            out.append(f"<code>{html.escape(m.group('code_text').strip())}</code>")
        elif m.group("href"):
            href = html.escape(m.group("href"), quote=True)
            label = html.escape(m.group("label"))
            out.append(f'<a href="{href}" rel="noopener noreferrer">{label}</a>')
        else:
            out.append(f"<strong>{html.escape(m.group('bold'))}</strong>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def render(markdown: str) -> str:
    """The HTML of a runbook's Markdown: block elements only, no `<html>` around them."""
    out: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []
    list_tag = ""
    fence = ""
    code: list[str] = []

    def flush() -> None:
        nonlocal list_tag
        if paragraph:
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if items:
            body = "".join(f"<li>{_inline(item)}</li>" for item in items)
            out.append(f"<{list_tag}>{body}</{list_tag}>")
            items.clear()
            list_tag = ""

    for line in markdown.replace("\r\n", "\n").split("\n"):
        if fence:
            if line.strip().startswith(fence):
                out.append(f"<pre><code>{html.escape(chr(10).join(code))}</code></pre>")
                fence, code = "", []
            else:
                code.append(line)
            continue
        if m := _FENCE.match(line):
            flush()
            fence = m.group(1)
            continue
        if not line.strip():
            flush()
            continue
        if m := _HEADING.match(line):
            flush()
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
            continue
        if m := _ITEM.match(line):
            tag = "ol" if m.group(1) else "ul"
            if paragraph or (items and tag != list_tag):
                flush()
            list_tag = tag
            items.append(m.group(2).strip())
            continue
        if items and line[:1] in " \t":
            items[-1] += " " + line.strip()  # a continuation line of the item above
            continue
        if items:
            flush()
        paragraph.append(line.strip())
    if fence:  # an unclosed fence runs to the end, as in CommonMark
        out.append(f"<pre><code>{html.escape(chr(10).join(code))}</code></pre>")
    flush()
    return "\n".join(out)
