"""The model card section of `augur model eval`: the figures as Markdown, and writing them in.

The figures land in `docs/model-card.md` between `CARD_BEGIN` and `CARD_END`, so the rest of the
card stays prose written by people and a re-run replaces only the numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from exporter.text.evaluate import Evaluation
from exporter.text.labelled import LANGUAGES, EvalDataError

CARD_BEGIN = "<!-- BEGIN augur model eval: generated, edit by re-running the command below -->"
CARD_END = "<!-- END augur model eval -->"


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
        "keyword baseline (`KEYWORD_RULES` in `exporter/text/baseline.py`) is a first-match list",
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
    "traffic": "traf",
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
