"""`augur model eval`: per-class and per-language figures, next to a hand-written keyword baseline.

Scoring lives here; the labelled texts are read in `labelled`, the keyword baseline is in
`baseline`, and `card` renders an `Evaluation` as the model card's section.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from exporter.text.baseline import BASELINE_FALLBACK, KeywordBaseline
from exporter.text.labelled import LANGUAGES, LabelledText


class Classifier(Protocol):
    """What evaluation needs of the text model (TextModel and ReloadableModel have it)."""

    @property
    def labels(self) -> tuple[str, ...]:
        """The category names, in head order."""
        ...

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Category probabilities [len(texts), len(labels)]."""
        ...


@dataclass(frozen=True)
class ClassScores:
    """Precision, recall and F1 of one category, and how many texts truly belong to it."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Scores:
    """Figures of one classifier on one set of texts."""

    n: int
    accuracy: float
    macro_f1: float
    per_class: Mapping[str, ClassScores]
    confusion: np.ndarray  # rows: true category, columns: predicted, in label order


@dataclass(frozen=True)
class Evaluation:
    """Model and baseline scores on all texts and on each language present."""

    labels: tuple[str, ...]
    model: Mapping[str, Scores]  # "all", "en", "zh"
    baseline: Mapping[str, Scores]
    baseline_fallbacks: Mapping[str, int]  # texts where no keyword matched, per set


def score(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> Scores:
    """Accuracy, per-class figures and the macro-F1 over the categories present in y_true.

    Categories without true texts are left out of the macro average (as the build does), so a
    small test set is not scored on classes it cannot measure.
    """
    index = {name: i for i, name in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        confusion[index[t], index[p]] += 1
    per_class = {}
    for i, name in enumerate(labels):
        support = int(confusion[i].sum())
        if support == 0:
            continue
        tp = int(confusion[i, i])
        predicted = int(confusion[:, i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = ClassScores(precision, recall, f1, support)
    n = len(y_true)
    return Scores(
        n=n,
        accuracy=float(np.trace(confusion)) / n if n else 0.0,
        macro_f1=float(np.mean([c.f1 for c in per_class.values()])) if per_class else 0.0,
        per_class=per_class,
        confusion=confusion,
    )


def evaluate(
    model: Classifier, rows: Sequence[LabelledText], baseline: KeywordBaseline | None = None
) -> Evaluation:
    """Classify every row with the model and the baseline; score all rows and each language."""
    baseline = baseline or KeywordBaseline()
    labels = tuple(model.labels)
    texts = [r.text for r in rows]
    probs = model.probabilities(texts)
    model_pred = [labels[int(i)] for i in np.argmax(probs, axis=1)]
    matched = [baseline.match(t) for t in texts]
    base_pred = [m or BASELINE_FALLBACK for m in matched]
    sets = {"all": list(range(len(rows)))}
    for lang in LANGUAGES:
        idx = [i for i, r in enumerate(rows) if r.language == lang]
        if idx:
            sets[lang] = idx
    truth = [r.category for r in rows]

    def pick(values: Sequence[str], idx: Sequence[int]) -> list[str]:
        return [values[i] for i in idx]

    return Evaluation(
        labels=labels,
        model={k: score(pick(truth, v), pick(model_pred, v), labels) for k, v in sets.items()},
        baseline={k: score(pick(truth, v), pick(base_pred, v), labels) for k, v in sets.items()},
        baseline_fallbacks={k: sum(matched[i] is None for i in v) for k, v in sets.items()},
    )


def scores_json(s: Scores) -> dict[str, Any]:
    """One set's figures as plain JSON types, rounded to 4 places (eval and the build report)."""
    return {
        "n": s.n,
        "accuracy": round(s.accuracy, 4),
        "macro_f1": round(s.macro_f1, 4),
        "per_class": {
            k: {
                "precision": round(c.precision, 4),
                "recall": round(c.recall, 4),
                "f1": round(c.f1, 4),
                "support": c.support,
            }
            for k, c in s.per_class.items()
        },
        "confusion": s.confusion.tolist(),
    }


def to_json(ev: Evaluation) -> dict[str, Any]:
    """The evaluation as plain JSON types (for scripts and tests)."""
    return {
        "labels": list(ev.labels),
        "model": {k: scores_json(v) for k, v in ev.model.items()},
        "baseline": {k: scores_json(v) for k, v in ev.baseline.items()},
        "baseline_fallbacks": dict(ev.baseline_fallbacks),
    }
