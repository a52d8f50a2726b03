"""The "Intents" section of docs/assistant.md, rendered from the catalogue and its templates.

`python -m exporter.assistant.catalog_doc docs/assistant.md` rewrites that section; a test
fails when the page and the templates differ, so the PromQL shown to readers is the PromQL run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from exporter.assistant.catalog import CATALOG
from exporter.assistant.labels import Bound
from exporter.assistant.templates import TEMPLATES

HEADING = "## Intents\n"
_NOW = 1_700_000_000.0
_EXAMPLE: dict[str, dict[str, object]] = {
    "host": {"instances": ("web-01:9100",), "host": "web-01"},
    "service": {"service": "payments"},
    "namespace": {"namespace": "shop"},
    "pod": {},
    "range": {"range_seconds": 3600.0},
    "topk": {"topk": 5},
    "time": {"time": _NOW - 3 * 3600},
    "alert": {"alert": "HighErrorRate"},
}
_RELATED = (
    "Reads the `augur_related` annotation of the alert from Alertmanager: "
    '`GET /api/v2/alerts?filter=alertname="HighErrorRate"`; without an Alertmanager URL the '
    "answer says it needs one.\n"
)


def render() -> str:
    """The section: every intent, its slots (`?` optional) and its PromQL per family."""
    out = [HEADING]
    for name, intent in CATALOG.items():
        slots = ", ".join(s + ("" if s in intent.required else "?") for s in intent.slots)
        out.append(f"\n### {name}\n\n{intent.title['en']} / {intent.title['zh']}. ")
        out.append(f"Slots: {slots or '-'}.\n\n")
        if name not in TEMPLATES:
            out.append(_RELATED)
            continue
        fields: dict[str, object] = {}
        for slot in intent.slots:
            fields.update(_EXAMPLE[slot])
        bound = Bound(now=_NOW, **fields)  # type: ignore[arg-type]
        for query in TEMPLATES[name].alternatives:
            out.append(f"- {query.family} (needs `{'`, `'.join(query.needs)}`):\n\n  ```promql\n")
            out.extend(f"  {value.build(bound)}\n" for value in query.values)
            out.append("  ```\n")
    return "".join(out)


def rewrite(page: Path) -> None:
    """Replace everything from the "## Intents" heading on with `render()`."""
    text = page.read_text(encoding="utf-8")
    head = text[: text.index(HEADING)] if HEADING in text else text + "\n"
    page.write_text(head + render(), encoding="utf-8")


if __name__ == "__main__":
    rewrite(Path(sys.argv[1]))
