"""Which intent a question asks for: its E5 embedding against the phrasings' embeddings.

An intent's score is the cosine similarity of the question to its nearest phrasing (the
embeddings are L2-normalised, so a dot product). Below THRESHOLD the question is not answered:
the best intents are offered instead and no query runs. Everything here is deterministic: the
same model and the same phrasings give the same embeddings, and ties break by intent name.

The phrasings' embeddings (~300 texts, a few seconds on one core) are computed once per model
and phrasing set and kept in memory, keyed by the model manifest's sha256 and the phrasings.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from exporter.assistant.catalog import CATALOG, Intent
from exporter.assistant.phrasings import OUT_OF_SCOPE, PHRASINGS
from exporter.assistant.slots import Known, fill, mentioned
from exporter.text.entities import language_of

THRESHOLD = 0.85
"""Best-intent similarity below which augur says it cannot answer (tuned on the dev split)."""
MARGIN = 0.04
"""Intents scoring within this of the best compete on the slots the question names."""
ALTERNATIVES = 3
MAX_EMBED_CHARS = 2000
"""A longer question is cut before embedding (the model sees 256 tokens anyway)."""


class Embedder(Protocol):
    """What matching needs of the text model (TextModel and ReloadableModel both fit)."""

    @property
    def sha256(self) -> str:
        """Identifies the model's files: the cache key of the phrasings' embeddings."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings, one row per text."""


@dataclass
class Match:
    """The intent a question asks for (None: below the threshold), its score and slots."""

    intent: Intent | None
    score: float
    alternatives: list[tuple[str, float]]
    """The closest intents, best first (the best included), with their scores."""
    slots: dict[str, str] = field(default_factory=dict)
    lang: str = "en"

    def to_json(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "intent": self.intent.name if self.intent else None,
            "score": round(self.score, 4),
            "alternatives": [{"intent": n, "score": round(s, 4)} for n, s in self.alternatives],
            "slots": dict(self.slots),
            "lang": self.lang,
        }


@dataclass(frozen=True)
class _Index:
    names: tuple[str, ...]
    """Intent name of each row of `vectors`."""
    vectors: np.ndarray


_CACHE: dict[tuple[str, str], _Index] = {}
_LOCK = threading.Lock()


def _fingerprint(phrasings: Mapping[str, Mapping[str, Sequence[str]]]) -> str:
    text = json.dumps(phrasings, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


NONE = "(none)"
"""The index's name for the out-of-scope phrasings."""


def index(
    model: Embedder, phrasings: Mapping[str, Mapping[str, Sequence[str]]] = PHRASINGS
) -> _Index:
    """The phrasings' (and OUT_OF_SCOPE's) embeddings for `model`, computed once and cached."""
    phrasings = {**phrasings, NONE: OUT_OF_SCOPE}
    key = (model.sha256, _fingerprint(phrasings))
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        names: list[str] = []
        texts: list[str] = []
        for name in sorted(phrasings):
            for lang in sorted(phrasings[name]):
                for text in phrasings[name][lang]:
                    names.append(name)
                    texts.append(text)
        built = _Index(tuple(names), model.embed(texts))
        _CACHE[key] = built
        return built


def scores(vector: np.ndarray, built: _Index) -> list[tuple[str, float]]:
    """Every intent with its best phrasing's similarity to `vector`, best first."""
    sims = built.vectors @ vector
    best: dict[str, float] = {}
    for name, sim in zip(built.names, sims.tolist(), strict=True):
        if sim > best.get(name, -2.0):
            best[name] = float(sim)
    return sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))


def _fit(named: set[str], intent: Intent, score: float) -> tuple[int, int, float]:
    # an intent that could not run (a required slot unnamed) loses to one that could
    return len(named & set(intent.slots)), -len(set(intent.required) - named), score


def match(
    question: str,
    model: Embedder,
    known: Known | None = None,
    *,
    lang: str | None = None,
    threshold: float = THRESHOLD,
    margin: float = MARGIN,
    catalog: Mapping[str, Intent] = CATALOG,
    phrasings: Mapping[str, Mapping[str, Sequence[str]]] = PHRASINGS,
) -> Match:
    """The intent of `question`, its slots (checked against `known` names), or why none."""
    text = " ".join(question[:MAX_EMBED_CHARS].split())
    lang = lang or language_of(text)
    if not text:
        return Match(None, 0.0, [], {}, lang)
    everything = scores(model.embed([text])[0], index(model, phrasings))
    ranked = [(n, s) for n, s in everything if n in catalog]
    out_of_scope = dict(everything).get(NONE, -1.0)
    if not ranked:
        return Match(None, 0.0, [], {}, lang)
    known = known or Known()
    named = mentioned(text, known)
    best = ranked[0][1]
    # Among near-equal intents, the one that can use what the question names wins: "cpu of
    # db-01" names a host, so host_cpu rather than top_cpu_hosts; then one it can run.
    near = [(n, s) for n, s in ranked if s >= best - margin]
    name, score = max(near, key=lambda ns: _fit(named, catalog[ns[0]], ns[1]))
    ranked.remove((name, score))
    alternatives = [(name, score), *ranked][:ALTERNATIVES]
    if best < threshold or out_of_scope > best:
        return Match(None, best, alternatives, {}, lang)
    intent = catalog[name]
    return Match(intent, score, alternatives, fill(text, intent.slots, known), lang)
