"""Training data, the grouped split, the softmax head (numpy) and the evaluation figures."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exporter.text.encoder import CATEGORIES, normalize_alert_text
from exporter.text.evaluate import score, scores_json

LABELS = CATEGORIES
TEST_FOLD = 0
N_FOLDS = 5

# The rule corpus predates the `traffic` category: its request-rate rules carry whatever class
# its keyword rules gave them (saturation, other). The build relabels them by this rule, stated
# before any model saw them and applied to the corpus text alone: the text speaks of the rate of
# requests, queries or API calls (or QPS), and of no error, timeout, latency, throttling or
# in-flight limit, which are how the system copes with demand, not the demand itself.
_TRAFFIC_SUBJECT = re.compile(
    r"\b(request|query|api call)s?\b[^.]{0,20}\b(rate|per (second|minute))|\bqps\b", re.I
)
_TRAFFIC_NOT = re.compile(
    r"error|fail|time(d)? ?out|timing out|latency|slow|throttl|in-flight", re.I
)


def corpus_label(category: str, text: str) -> str:
    """The corpus' silver label, or `traffic` where the text is about the demand's rate."""
    if _TRAFFIC_SUBJECT.search(text) and not _TRAFFIC_NOT.search(text):
        return "traffic"
    return category


@dataclass(frozen=True)
class Example:
    """One labelled text; `group` keeps an alert family on one side of the split."""

    text: str
    label: str
    lang: str
    source: str
    group: str
    split: str  # "train", "dev" or "test"


def fold_of(group: str) -> int:
    """Stable fold number of a group (sha256, so it does not depend on Python's hash seed)."""
    return int(hashlib.sha256(group.encode("utf-8")).hexdigest(), 16) % N_FOLDS


def load_corpus(path: Path) -> list[Example]:
    """The rule corpus; every rule of a service group falls in the same fold."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        group = row["service_group"]
        text = normalize_alert_text(row["summary"], row["description"], row["alertname"])
        out.append(
            Example(
                text=text,
                label=corpus_label(row["category"], text),
                lang="en",
                source=f"corpus:{row['source']}",
                group=group,
                split="test" if fold_of(group) == TEST_FOLD else "train",
            )
        )
    return out


ASK_FILES = "ask-*"
"""`augur ask`'s questions and test world in models/data: not alert texts, never trained on."""


def handwritten_files(data: Path) -> list[Path]:
    """The hand-written alert texts in `data`, in a fixed order: every JSONL file but `ask-*`."""
    return [p for p in sorted(data.glob("*.jsonl")) if not p.match(ASK_FILES)]


def load_handwritten(path: Path) -> list[Example]:
    """Hand-written JSONL (text, category, lang, source, split)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        out.append(
            Example(
                text=normalize_alert_text(row["text"]),
                label=row["category"],
                lang=row["lang"],
                source=row["source"],
                group=f"{path.name}:{row['text']}",
                split=row["split"],
            )
        )
    return out


@dataclass(frozen=True)
class Head:
    """A linear softmax head on the raw (L2-normalised) embedding."""

    weight: np.ndarray  # [classes, dim]
    bias: np.ndarray  # [classes]

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Unnormalised scores [N, classes]."""
        return np.asarray(x @ self.weight.T + self.bias)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Index of the most likely class for each row."""
        return np.asarray(np.argmax(self.logits(x), axis=1))


def train_head(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    l2: float,
    sample_weight: np.ndarray | None = None,
) -> Head:
    """Class-balanced multinomial logistic regression, solved to convergence by L-BFGS.

    The problem is convex and solved to its optimum, so the head does not depend on rounding,
    BLAS threads or summation order, and neither does the L2 penalty the dev set picks (a
    first-order loop stopped early does: docs/model-card.md). Features are standardised for
    the solver and the scaling is then folded into the weights, so serving is one product.
    `sample_weight` scales single texts (the build's weight of the silver-labelled corpus);
    the classes are balanced on the weighted counts.
    """
    from scipy.optimize import minimize

    x = x.astype(np.float64)
    mu = x.mean(axis=0)
    sigma = x.std(axis=0) + 1e-6
    z = (x - mu) / sigma
    n, d = z.shape
    extra = np.ones(n) if sample_weight is None else sample_weight.astype(np.float64)
    counts = np.bincount(y, weights=extra, minlength=n_classes)
    # balanced weights: every class contributes equally, which is what macro-F1 rewards
    sample_w = extra * (extra.sum() / (n_classes * np.maximum(counts, 1e-9)))[y]
    onehot = np.eye(n_classes)[y]

    def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: n_classes * d].reshape(n_classes, d)
        b = theta[n_classes * d :]
        logits = z @ w.T + b
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        loss = -np.sum(sample_w * log_p[np.arange(n), y]) / n + 0.5 * l2 * np.sum(w * w)
        g = (np.exp(log_p) - onehot) * sample_w[:, None] / n
        return float(loss), np.concatenate([(g.T @ z + l2 * w).ravel(), g.sum(axis=0)])

    result = minimize(
        loss_and_grad,
        np.zeros(n_classes * d + n_classes),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 5000, "gtol": 1e-8},
    )
    if not result.success:
        raise RuntimeError(f"head training did not converge: {result.message}")
    w = result.x[: n_classes * d].reshape(n_classes, d)
    b = result.x[n_classes * d :]
    weight = w / sigma
    bias = b - weight @ mu
    return Head(weight.astype(np.float32), bias.astype(np.float32))


def f1_report(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """`augur model eval`'s figures on class indices: accuracy, macro-F1, per class, confusion."""
    names = list(labels)
    truth = [names[int(k)] for k in y_true]
    return scores_json(score(truth, [names[int(k)] for k in y_pred], names))
