"""The model's answers for alert texts that differ only in names and addresses.

In a storm one rule fires for hundreds of pods or hosts, and its texts differ only in the
volatile parts: `Pod api-7d9f8b6c5-x2k4p is crash looping` and `... api-7d9f8b6c5-q9z7b ...`.
`template_key` masks those parts (UUIDs and long hex ids, Kubernetes pod and ReplicaSet
suffixes, IP addresses, host names of 3+ DNS labels, the number of a numbered name such as
`node-17`) and `TemplateCache` keeps, per key, the embedding and verdict of the first text the
model read with that key, if the model was decided on it (`decided`). A text whose key is new
is read by the model itself. Words are never masked, nor are standalone numbers (`93.5%`): the
model's answer moves with them. benchmarks/eval_template_cache.py measures how often a cached
answer equals the model's own (docs/model-card.md, "Repeated templates").
"""

from __future__ import annotations

import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from exporter.text.encoder import Classification

# Kubernetes names random suffixes from this alphabet (no vowels, no 0, 1, 3): a word with a
# vowel is never taken for one.
_K8S = "[bcdfghjklmnpqrstvwxz2456789]"
MASKS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "uuid",
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I),
    ),
    # a Deployment's pod (`-<replicaset hash>-<pod suffix>`) or a DaemonSet's (`-<suffix>`)
    ("pod", re.compile(rf"(?<=-)(?:{_K8S}{{6,10}}-)?{_K8S}{{5}}\b")),
    # container ids, commits, trace ids: a digit and a letter, 7 hex characters or more
    ("hex", re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,}\b", re.I)),
    ("ipv6", re.compile(r"(?<![\w:])(?:[0-9a-f]{0,4}:){3,7}[0-9a-f]{1,4}(?![\w:])", re.I)),
    # lower case, 3 labels or more: `db1.prod.example.com`, not `nvidia.com/gpu` or `java.lang.X`
    (
        "host",
        re.compile(
            r"\b[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+"
            r"\.(?:com|net|org|io|local|internal|lan|svc|cluster\.local)\b"
        ),
    ),
    ("ipv4", re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b")),
    # the number of a numbered name: `host-12`, `node_7`, `web-3` of `web-3:9100` (its port
    # kept); not of a lower-case word that makes the number a code (`_NOT_ORDINALS`)
    (
        "ordinal",
        re.compile(r"\b(?P<name>[a-z][a-z0-9]*(?:[-_][a-z][a-z0-9]*)*)[-_](?P<value>\d+)\b"),
    ),
    # every other run of digits, decimals included: `93.5%` and `7%` alike
    ("number", re.compile(r"\d+(?:[.,]\d+)*")),
)
"""What `template_key` can mask, in order; each kind becomes `<kind>` in the key."""
MASKED = frozenset(("uuid", "pod", "hex", "ipv6", "host", "ipv4", "ordinal"))
"""The kinds masked by default: standalone numbers are kept, because the model's category for
`NotReady for 854 minutes` and `for 32 minutes` differs often enough to matter (model card)."""


_NOT_ORDINALS = frozenset(
    "code status http exit raid error errors port level sev severity tier p v version type "
    "class priority rc signal".split()
)
"""Words whose number says what happened (`exit_code_137`, `raid-1`, `p-99`), not which one."""


def _ordinal(match: re.Match[str]) -> str:
    name = match["name"]
    if re.split(r"[-_]", name)[-1] in _NOT_ORDINALS:
        return match[0]
    return f"{name}{match[0][len(name)]}<ordinal>"


def template_key(text: str, kinds: frozenset[str] = MASKED) -> str:
    """`text` with its names and numbers masked: texts of one rule's storm share this key."""
    for kind, pattern in MASKS:
        if kind == "ordinal" and kind in kinds:
            text = pattern.sub(_ordinal, text)
        elif kind in kinds:
            text = pattern.sub(f"<{kind}>", text)
    return text


MIN_MARGIN = 0.5
"""An answer is shared only if its category leads the runner-up by this much probability: the
model's own category for a text and for its variants agreed in every measured pair above it,
and in 95 % of them without a gate (benchmarks/eval_template_cache.py, docs/model-card.md)."""


def decided(verdict: Classification) -> bool:
    """Whether the model is sure enough of `verdict` for other texts of its template to share it."""
    top = verdict.top3
    return len(top) < 2 or top[0][1] - top[1][1] >= MIN_MARGIN


class Answer(NamedTuple):
    """What the model said of the first text of a key: its embedding and verdict."""

    embedding: np.ndarray
    verdict: Classification


class CacheMetrics:
    """The cache's counters at /metrics.

    augur_model_cache_hits_total 1830.0
    augur_model_cache_misses_total 170.0
    augur_model_cache_entries 170.0
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register the counters in `registry`."""
        self.hits = Counter(
            "augur_model_cache_hits",
            "Alert texts answered from the model's template cache (same words as a text the "
            "model read, other names and numbers).",
            registry=registry,
        )
        self.misses = Counter(
            "augur_model_cache_misses",
            "Alert texts the text model read itself because no text of theirs was cached.",
            registry=registry,
        )
        self.entries = Gauge(
            "augur_model_cache_entries",
            "Templates in the model's cache (model.cache_size at most; emptied on a reload).",
            registry=registry,
        )


class TemplateCache:
    """A bounded LRU map from template key to Answer, safe to share between model threads."""

    def __init__(self, size: int, metrics: CacheMetrics | None = None) -> None:
        """Keep at most `size` answers (0 keeps none)."""
        self.size = max(0, size)
        self.metrics = metrics
        self.hits = 0
        self.misses = 0
        self._answers: OrderedDict[str, Answer] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Answers held now."""
        return len(self._answers)

    def lookup(self, keys: Sequence[str]) -> list[Answer | None]:
        """The cached answer per key, None where the model must read the text."""
        with self._lock:
            found = [self._answers.get(key) for key in keys]
            for key, answer in zip(keys, found, strict=True):
                if answer is not None:
                    self._answers.move_to_end(key)
        return found

    def store(self, answers: dict[str, Answer]) -> None:
        """Remember answers, dropping the least recently used past `size`."""
        if not self.size:
            return
        with self._lock:
            self._answers.update(answers)
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)
            entries = len(self._answers)
        if self.metrics is not None:
            self.metrics.entries.set(entries)

    def clear(self) -> None:
        """Forget every answer (a new model may answer otherwise)."""
        with self._lock:
            self._answers.clear()
        if self.metrics is not None:
            self.metrics.entries.set(0)

    def nbytes(self) -> int:
        """Memory the answers hold: keys, embeddings and verdicts (an estimate from getsizeof)."""
        with self._lock:
            answers = list(self._answers.items())
        total = sys.getsizeof(self._answers)
        for key, (embedding, verdict) in answers:
            total += sys.getsizeof(key) + sys.getsizeof(embedding) + sys.getsizeof(verdict)
            total += sum(sys.getsizeof(pair) for pair in verdict.top3)
        return total

    def count(self, *, hits: int, misses: int) -> None:
        """Count texts answered from the cache and texts the model read."""
        with self._lock:
            self.hits += hits
            self.misses += misses
        if self.metrics is not None:
            self.metrics.hits.inc(hits)
            self.metrics.misses.inc(misses)
