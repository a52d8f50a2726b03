"""The shape of an intent's PromQL: alternative metric families, each with its queries.

A template lists alternatives in order of preference; the first whose metric names all exist
in this Prometheus is the one run. Each query is a function of the validated slots (`Bound`),
so a user's text can only reach it as a real label value, escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from exporter.assistant.labels import Bound

Build = Callable[[Bound], str]
Text = Mapping[str, str]
"""A text per language: `{"en": ..., "zh": ...}`."""


@dataclass(frozen=True)
class Value:
    """One value column: its header, its unit and the instant query that computes it."""

    column: Text
    unit: str
    """`percent`, `ratio`, `bytes`, `bytes/s`, `seconds`, `rate`, `cores`, `count`, `number`,
    `age` (seconds since a timestamp) or `` (no value shown: the row's labels say it all)."""
    build: Build


@dataclass(frozen=True)
class Query:
    """One way to answer: what it needs, which labels key a row, and its value queries."""

    family: str
    """What the user must run for it, as named in NotAvailable: `node_exporter`, `cAdvisor`..."""
    needs: tuple[str, ...]
    keys: tuple[str, ...]
    values: tuple[Value, ...]
    ascending: bool = False


@dataclass(frozen=True)
class Template:
    """An intent's alternatives and its sentences."""

    alternatives: tuple[Query, ...]
    lead: Text
    """The sentence's start: `{key}` is the first row, `{value}` its value, `{n}` the rows."""
    empty: Text
    """The sentence when the query found nothing."""
    rows: int = 10
    then: bool = True
    """Whether the sentence goes on with the next rows (`then db-01 71 %`)."""


def t(en: str, zh: str) -> Text:
    """A text in both languages."""
    return {"en": en, "zh": zh}
