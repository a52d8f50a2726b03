"""`augur model eval`: per-class and per-language figures, next to a hand-written keyword baseline.

The figures land in `docs/model-card.md` between `CARD_BEGIN` and `CARD_END`, so the rest of the
card stays prose written by people and a re-run replaces only the numbers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from exporter.text.encoder import normalize_alert_text

CARD_BEGIN = "<!-- BEGIN augur model eval: generated, edit by re-running the command below -->"
CARD_END = "<!-- END augur model eval -->"
LANGUAGES = {"en": "English", "zh": "Chinese"}
# CJK unified ideographs (and extension A, compatibility block): what makes a text Chinese here.
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

# A rule set of the kind an operator writes by hand, in English, first match wins: specific
# subjects (certificates, fans, backups, rollouts) before resources, resources before symptoms,
# since "disk write errors" is a disk problem before it is an error. Written from general
# knowledge of alert wording and checked only on the dev split, never on test texts.
KEYWORD_RULES: tuple[tuple[str, str], ...] = (
    (
        "security",
        r"certificate|\bcerts?\b|\bssl\b|\btls\b|unauthori[sz]ed|forbidden|\b40[13]\b|"
        r"login|brute.?force|intrusion|vulnerab|\bcve\b|attack|malware|audit|privilege|"
        r"authenticat|password|secret|firewall|\bwaf\b|suspicious",
    ),
    (
        "hardware",
        r"hardware|\bfans?\b|temperature|overheat|thermal|power supply|\bpsu\b|\bups\b|"
        r"battery|voltage|\bipmi\b|\bbmc\b|chassis|sensor|\bgpu\b|raid controller|"
        r"motherboard|\bnvme\b.*(fail|error)",
    ),
    (
        "data_integrity",
        r"backup|corrupt|checksum|data loss|inconsisten|integrity|replication (broken|stopped|"
        r"failed|error)|restore|snapshot|mismatch|split.?brain|\bwal\b",
    ),
    (
        "deployment",
        r"deploy|rollout|roll.?back|release|\bhelm\b|upgrade|image pull|imagepullbackoff|"
        r"\bargo|canary|config(uration)? (change|reload)|version",
    ),
    (
        "disk",
        r"\bdisks?\b|filesystem|file system|\binodes?\b|\bvolumes?\b|storage|partition|"
        r"mount|\biops\b|\bsmart\b|read.?only|\bpvc?\b|space (left|low)|out of space",
    ),
    ("memory", r"memory|\bmem\b|\boom|out of memory|\bswap|\bheap\b|\brss\b|\becc\b"),
    ("cpu", r"\bcpu|processor|load average|\bload\b|throttl|\bsteal\b|context switch"),
    (
        "network",
        r"network|packet|interface|\beth\d|\bnic\b|bandwidth|\bdns\b|\btcp\b|\budp\b|"
        r"link (down|flap)|\bbgp\b|\broute|\bping\b|connection (refused|reset)|conntrack|"
        r"retransmi|\bvpn\b|ingress|egress",
    ),
    (
        "latency",
        r"latency|slow|response time|\bp9[59]\b|duration|timeout|timed out|\blag\b|delay|"
        r"too long",
    ),
    (
        "availability",
        r"\bdown\b|unavailable|unreachable|crash|restart|not ready|health.?check|absent|"
        r"missing|offline|outage|no (data|response)|stopped|dead",
    ),
    ("errors", r"error|\b5\d\d\b|\b5xx\b|exception|fail|panic|fatal|reject"),
    (
        "saturation",
        r"queue|saturat|\bfull\b|limit|capacity|exhaust|backlog|too many|quota|cardinality|"
        r"pool|connections|pending|usage (is )?high",
    ),
)
BASELINE_FALLBACK = "other"


class EvalDataError(Exception):
    """An evaluation file cannot be read; the message names the file and line."""


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
class LabelledText:
    """One evaluation row: the normalised text, its true category and where it came from."""

    text: str
    category: str
    where: str  # "file:line"

    @property
    def language(self) -> str:
        """`zh` if the text holds Han characters, else `en` (detected by script, not a field)."""
        return language_of(self.text)


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


def language_of(text: str) -> str:
    """`zh` for text holding Han characters, `en` otherwise."""
    return "zh" if _HAN.search(text) else "en"


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


class KeywordBaseline:
    """English regular expressions per category, first match wins, else `other`."""

    def __init__(self, rules: Sequence[tuple[str, str]] = KEYWORD_RULES) -> None:
        """Compile the (category, pattern) rules, case-insensitively."""
        self.rules = [(cat, re.compile(pattern, re.IGNORECASE)) for cat, pattern in rules]

    def match(self, text: str) -> str | None:
        """The category of the first rule that matches, or None."""
        for category, pattern in self.rules:
            if pattern.search(text):
                return category
        return None

    def predict(self, texts: Sequence[str]) -> list[str]:
        """One category per text."""
        return [self.match(t) or BASELINE_FALLBACK for t in texts]


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


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A Markdown table padded to line up in a terminal as well."""
    cells = [[str(c) for c in header], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    return [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [
        line(r) for r in cells[1:]
    ]


def _f(value: float) -> str:
    return f"{value:.3f}"


def _set_name(key: str) -> str:
    return "all" if key == "all" else LANGUAGES[key]


def render(ev: Evaluation, *, command: str, model_note: str) -> str:
    """The figures as Markdown: summary, per class, per class and language, confusion."""
    out = [
        "### Test figures next to a keyword baseline (`augur model eval`)",
        "",
        f"Command: `{command}`  ",
        f"Model: {model_note}.",
        "",
        "Language is detected by script: a text with Han characters counts as Chinese. The",
        "keyword baseline (`KEYWORD_RULES` in `exporter/text/evaluate.py`) is a first-match list",
        "of English regular expressions per category, of the kind written by hand, falling back",
        "to `other`; it was written once and looked at on the dev split only. It reads Chinese",
        "texts only through the ASCII words in them (CPU, OOM, Pod, SSL, 5xx).",
        "",
    ]
    out += _table(
        [
            "texts",
            "n",
            "model macro-F1",
            "model accuracy",
            "baseline macro-F1",
            "baseline accuracy",
            "baseline matched nothing",
        ],
        [
            [
                _set_name(key),
                m.n,
                f"**{_f(m.macro_f1)}**",
                _f(m.accuracy),
                _f(ev.baseline[key].macro_f1),
                _f(ev.baseline[key].accuracy),
                f"{ev.baseline_fallbacks[key]} ({ev.baseline_fallbacks[key] / m.n:.0%})",
            ]
            for key, m in ev.model.items()
        ],
    )
    m_all, b_all = ev.model["all"], ev.baseline["all"]
    out += ["", "Per category, all texts (P precision, R recall):", ""]
    out += _table(
        [
            "category",
            "n",
            "model P",
            "model R",
            "model F1",
            "baseline P",
            "baseline R",
            "baseline F1",
        ],
        [
            [
                name,
                c.support,
                _f(c.precision),
                _f(c.recall),
                _f(c.f1),
                _f(b_all.per_class[name].precision),
                _f(b_all.per_class[name].recall),
                _f(b_all.per_class[name].f1),
            ]
            for name, c in m_all.per_class.items()
        ],
    )
    langs = [k for k in ev.model if k != "all"]
    if langs:
        out += ["", "F1 per category and language:", ""]
        header = ["category"]
        for who in ("model", "baseline"):
            header += [f"{who} {LANGUAGES[k]} (n)" for k in langs]
        rows = []
        for name in m_all.per_class:
            row = [name]
            for scores in (ev.model, ev.baseline):
                for k in langs:
                    c = scores[k].per_class.get(name)
                    row.append(f"{_f(c.f1)} ({c.support})" if c else "–")
            rows.append(row)
        out += _table(header, rows)
    short = [_ABBREV.get(name, name) for name in ev.labels]
    out += ["", "Confusion matrix of the model, all texts (rows: true, columns: predicted):", ""]
    out += _table(
        ["true \\ predicted", *short],
        [
            [name, *(str(v) if v else "·" for v in row)]
            for name, row in zip(ev.labels, m_all.confusion.tolist(), strict=True)
            if sum(row)
        ],
    )
    return "\n".join(out) + "\n"


_ABBREV = {
    "memory": "mem",
    "network": "net",
    "availability": "avail",
    "latency": "lat",
    "errors": "err",
    "saturation": "sat",
    "security": "sec",
    "data_integrity": "data",
    "deployment": "depl",
    "hardware": "hw",
}


def update_card(card: Path, section: str) -> str:
    """Replace the text between the card's markers with `section`; append them if absent.

    Returns what was done, for the command's output.
    """
    block = f"{CARD_BEGIN}\n\n{section.rstrip()}\n\n{CARD_END}"
    text = card.read_text(encoding="utf-8") if card.exists() else ""
    begin, end = text.find(CARD_BEGIN), text.find(CARD_END)
    if begin >= 0 and end > begin:
        text = text[:begin] + block + text[end + len(CARD_END) :]
        done = f"updated the figures in {card}"
    elif begin >= 0 or end >= 0:
        raise EvalDataError(f"{card}: only one of the markers {CARD_BEGIN!r} / {CARD_END!r}")
    else:
        text = (text.rstrip() + "\n\n" if text else "") + block + "\n"
        done = f"appended the figures to {card} (move the marked block where it belongs)"
    card.write_text(text, encoding="utf-8")
    return done


def to_json(ev: Evaluation) -> dict[str, Any]:
    """The evaluation as plain JSON types (for scripts and tests)."""

    def scores(s: Scores) -> dict[str, Any]:
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

    return {
        "labels": list(ev.labels),
        "model": {k: scores(v) for k, v in ev.model.items()},
        "baseline": {k: scores(v) for k, v in ev.baseline.items()},
        "baseline_fallbacks": dict(ev.baseline_fallbacks),
    }
