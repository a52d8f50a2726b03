"""The report written out: one self-contained HTML page (images as data: URIs, inline CSS, no
external asset; a phone's width: viewport meta, fluid images, tables that scroll sideways) or
Markdown with the plots as PNG files beside it (or inline data: URIs when served).
"""

from __future__ import annotations

import base64
import html

from exporter.assistant.report_sections import Section

_CSS = """
body { font-family: -apple-system, "Segoe UI", "Noto Sans CJK SC", sans-serif; margin: 0;
  padding: 1rem; max-width: 60rem; color: #222; line-height: 1.45; }
* { box-sizing: border-box; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: .85rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; white-space: nowrap; }
figure { margin: 1rem 0; } figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: .8rem; color: #555; overflow-wrap: anywhere; }
p { overflow-wrap: anywhere; }
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def to_html(parts: list[Section], lang: str) -> str:
    """The page: the first section's heading is its title."""
    e = html.escape
    title = parts[0].heading
    body: list[str] = []
    for part in parts:
        tag = "h1" if part is parts[0] else "h2"
        body.append(f'<section id="{e(part.id)}"><{tag}>{e(part.heading)}</{tag}>')
        body.extend(f"<p>{e(line)}</p>" for line in part.lines)
        if part.table is not None:
            head = "".join(f"<th>{e(c)}</th>" for c in part.table.columns)
            rows = "".join(
                "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>"
                for row in part.table.rows
            )
            body.append(
                f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
                f"<tbody>{rows}</tbody></table></div>"
            )
        for caption, png in part.images:
            body.append(
                f'<figure><img src="{_data_uri(png)}" alt="{e(caption)}">'
                f"<figcaption>{e(caption)}</figcaption></figure>"
            )
        body.append("</section>")
    return (
        f'<!doctype html>\n<html lang="{e(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(parts: list[Section], image_name: str | None) -> tuple[str, list[bytes]]:
    """The Markdown and the PNGs it links: `image_name` formats each file name from its index
    (`augur-report-{}.png`); None puts them inline as data: URIs."""
    out: list[str] = []
    pngs: list[bytes] = []
    for part in parts:
        out.append(("# " if part is parts[0] else "## ") + part.heading)
        out.append("")
        for line in part.lines:
            out += [line, ""]
        if part.table is not None:
            out.append("| " + " | ".join(_cell(c) for c in part.table.columns) + " |")
            out.append("|" + "---|" * len(part.table.columns))
            out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in part.table.rows]
            out.append("")
        for caption, png in part.images:
            target = image_name.format(len(pngs) + 1) if image_name else _data_uri(png)
            pngs.append(png)
            out += [f"![{_cell(caption).replace(']', ')')}]({target})", "", caption, ""]
    return "\n".join(out), pngs
