"""Labelled alert texts: reading the JSONL files `augur model eval` scores.

`row_text` is also how `augur model classify` turns a JSON row into the model's input, so both
commands normalise text exactly as the webhook path does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from exporter.text.encoder import normalize_alert_text
from exporter.text.entities import language_of

LANGUAGES = {"en": "English", "zh": "Chinese"}


class EvalDataError(Exception):
    """An evaluation file cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class LabelledText:
    """One evaluation row: the normalised text, its true category and where it came from."""

    text: str
    category: str
    where: str  # "file:line"

    @property
    def language(self) -> str:
        """`zh` if the text holds Han characters, else `en` (detected by script, not a field)."""
        return language_of(self.text)


def row_text(row: object) -> str:
    """The model's input for one JSON row: `text`, or `summary` and `description`.

    Raises ValueError naming what is wrong; the text is normalised as the webhook path does.
    """
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    if "text" in row:
        if not isinstance(row["text"], str):
            raise ValueError('"text" must be a string')
        text = normalize_alert_text(row["text"])
    else:
        if "summary" not in row and "description" not in row:
            raise ValueError('missing fields: give "text", or "summary" and/or "description"')
        for key in ("summary", "description"):
            if not isinstance(row.get(key, ""), str):
                raise ValueError(f'"{key}" must be a string')
        text = normalize_alert_text(row.get("summary", ""), row.get("description", ""))
    if not text:
        raise ValueError("empty text: nothing to classify")
    return text


def read_labelled(
    paths: Iterable[Path], labels: Sequence[str], split: str | None = None
) -> list[LabelledText]:
    """Rows of JSONL files with a `category`; keep only `split` if given. Strict: any bad row
    raises EvalDataError, since figures from silently skipped rows would mislead."""
    known = set(labels)
    out = []
    for path in paths:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise EvalDataError(f"{path}: cannot read ({exc})") from None
        for number, line in enumerate(lines, 1):
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
                text = row_text(row)
            except ValueError as exc:  # JSONDecodeError is a ValueError
                raise EvalDataError(f"{where}: {exc}") from None
            if split is not None and row.get("split") != split:
                continue
            category = row.get("category")
            if category not in known:
                raise EvalDataError(
                    f"{where}: category {category!r} is not one of the model's: "
                    + ", ".join(labels)
                )
            out.append(LabelledText(text, str(category), where))
    if not out:
        which = f' with split "{split}"' if split else ""
        raise EvalDataError(f"no rows{which} in {', '.join(map(str, paths))}")
    return out
