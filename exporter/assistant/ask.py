"""One question through the pipeline: match the intent -> fill its slots -> run its query.

Whatever the user typed reaches Prometheus only as slot values, and only after the catalogue
checked them against Prometheus's own label values and escaped them (exporter/assistant/
answer.py); the question itself is never part of a query. A question that matches no intent,
lacks a required slot, names something Prometheus does not know, or finds no data is answered
with the reason and the closest intents, and no made-up query runs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from exporter.assistant.answer import Answer, NoData, NotAvailable, SlotError, run
from exporter.assistant.catalog import CATALOG
from exporter.assistant.match import Embedder, Match, match
from exporter.assistant.slots import LABELS_FOR_KNOWN, Known, known_from_labels
from exporter.config.alerts import AlertmanagerConfig
from exporter.prometheus.client import PrometheusClient
from exporter.text.entities import language_of

MAX_QUESTION_CHARS = 2000
"""Longer questions are refused: no question about monitoring needs more."""
KNOWN_TTL_SECONDS = 60.0
"""How long label values read from Prometheus are reused between questions."""

_MESSAGES = {
    "en": {
        "empty": "Ask a question, e.g. “which hosts have the highest CPU usage?”.",
        "too_long": "The question is longer than {limit} characters; ask it shorter.",
        "no_intent": "I cannot answer that question. Closest things I can answer: {alts}.",
        "missing": "To answer “{title}” I need the {slot}; name it in the question.",
        "slot": "I cannot answer “{title}”: {why}",
        "no_data": "No data for “{title}”: {why}",
        "not_available": "Prometheus has no metrics to answer “{title}”: {why}",
    },
    "zh": {
        "empty": "请提一个问题，例如“哪些服务器 CPU 使用率最高？”。",
        "too_long": "问题超过 {limit} 个字符，请缩短。",
        "no_intent": "这个问题我无法回答。我能回答的最接近的问题：{alts}。",
        "missing": "要回答“{title}”，需要在问题中指明 {slot}。",
        "slot": "无法回答“{title}”：{why}",
        "no_data": "“{title}”没有数据：{why}",
        "not_available": "Prometheus 中没有回答“{title}”所需的指标：{why}",
    },
}


@dataclass
class AskResult:
    """A question's outcome: the match and the answer, or why it could not be answered."""

    question: str
    lang: str
    answered: bool
    reason: str = ""
    """Why it could not be answered, in `lang`; empty when answered."""
    match: Match | None = None
    answer: Answer | None = None
    missing: list[str] = field(default_factory=list)
    """Required slots the question did not fill."""

    @property
    def alternatives(self) -> list[tuple[str, float]]:
        """The closest intents, best first."""
        return self.match.alternatives if self.match else []

    def to_json(self) -> dict[str, Any]:
        """The JSON of `augur ask --json` and `POST /api/v1/ask`."""
        answer = None
        if self.answer is not None:
            a = self.answer
            answer = {
                "intent": a.intent,
                "lang": a.lang,
                "sentence": a.sentence,
                "columns": list(a.columns),
                "rows": [list(r) for r in a.rows],
                "promql": list(a.promql),
            }
        return {
            "question": self.question[:MAX_QUESTION_CHARS],
            "lang": self.lang,
            "answered": self.answered,
            "reason": self.reason,
            "match": self.match.to_json() if self.match else None,
            "answer": answer,
            "missing": list(self.missing),
            "alternatives": [
                {"intent": n, "title": _title(n, self.lang), "score": round(s, 4)}
                for n, s in self.alternatives
            ],
        }


def _title(name: str, lang: str) -> str:
    intent = CATALOG.get(name)
    if intent is None:
        return name
    return intent.title.get(lang) or intent.title.get("en") or name


def _say(lang: str, key: str, **values: object) -> str:
    return _MESSAGES.get(lang, _MESSAGES["en"])[key].format(**values)


class KnownLabels:
    """Label values from Prometheus for slot filling, read at most every KNOWN_TTL_SECONDS."""

    def __init__(self, client: PrometheusClient, ttl: float = KNOWN_TTL_SECONDS) -> None:
        """Read through `client`."""
        self.client = client
        self.ttl = ttl
        self._known: Known | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> Known:
        """The known values, fresh within the TTL; a label that fails to read counts as empty."""
        async with self._lock:
            if self._known is None or time.monotonic() - self._at > self.ttl:
                results = await asyncio.gather(
                    *(self.client.label_values(n) for n in LABELS_FOR_KNOWN),
                    return_exceptions=True,
                )
                values = {
                    name: r if isinstance(r, list) else []
                    for name, r in zip(LABELS_FOR_KNOWN, results, strict=True)
                }
                self._known = known_from_labels(values)
                self._at = time.monotonic()
            return self._known


async def ask(
    question: str,
    model: Embedder,
    client: PrometheusClient,
    *,
    known: Known | KnownLabels | None = None,
    lang: str | None = None,
    now: float | None = None,
    alertmanager_url: str | None = None,
    alertmanager: AlertmanagerConfig | None = None,
) -> AskResult:
    """Answer `question` from Prometheus through `client`; the model runs in a worker thread.

    `alertmanager_url` is where `related_anomalies` reads the enriched alerts, with
    `alertmanager`'s credentials and TLS when it is one of its `urls`."""
    lang = lang if lang in _MESSAGES else language_of(question[:MAX_QUESTION_CHARS])
    if len(question) > MAX_QUESTION_CHARS:
        reason = _say(lang, "too_long", limit=MAX_QUESTION_CHARS)
        return AskResult(question, lang, False, reason)
    if not question.strip():
        return AskResult(question, lang, False, _say(lang, "empty"))
    if known is None:
        known = KnownLabels(client)
    names = await known.get() if isinstance(known, KnownLabels) else known
    found = await asyncio.to_thread(match, question, model, names, lang=lang)
    return await answer(
        question,
        found,
        client,
        now=now,
        alertmanager_url=alertmanager_url,
        alertmanager=alertmanager,
    )


async def answer(
    question: str,
    found: Match,
    client: PrometheusClient,
    *,
    now: float | None = None,
    alertmanager_url: str | None = None,
    alertmanager: AlertmanagerConfig | None = None,
) -> AskResult:
    """Run the matched intent, or say why it cannot be."""
    lang = found.lang
    if found.intent is None:
        alts = "; ".join(_title(n, lang) for n, _ in found.alternatives) or "—"
        return AskResult(question, lang, False, _say(lang, "no_intent", alts=alts), found)
    intent = found.intent
    title = _title(intent.name, lang)
    missing = [s for s in intent.required if s not in found.slots]
    if missing:
        reason = _say(lang, "missing", title=title, slot=", ".join(missing))
        return AskResult(question, lang, False, reason, found, missing=missing)
    try:
        at = time.time() if now is None else now
        result = await run(
            intent,
            found.slots,
            lang,
            client,
            at,
            alertmanager_url=alertmanager_url,
            alertmanager=alertmanager,
        )
    except SlotError as exc:
        return AskResult(question, lang, False, _say(lang, "slot", title=title, why=exc), found)
    except NoData as exc:
        return AskResult(question, lang, False, _say(lang, "no_data", title=title, why=exc), found)
    except NotAvailable as exc:
        reason = _say(lang, "not_available", title=title, why=exc)
        return AskResult(question, lang, False, reason, found)
    return AskResult(question, lang, True, "", found, result)
