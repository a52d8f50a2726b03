"""Intent and slot accuracy of the matcher on labelled questions (models/data/ask-questions.jsonl).

Intent accuracy: the share of questions whose predicted intent equals the label (None, "cannot
answer", included). Slot accuracy: the share of questions whose predicted slots all equal the
labelled ones, exactly, as a whole dict (a question with no slots counts as right when none are
predicted); a wrong intent usually means wrong slots too, so the two are not independent.
Both per split (`dev`, `test`) and overall, with the confusions listed.

Two more figures per split. A question whose normalised text (lower-case, letters and digits
only) equals a phrasing's (the catalogue's or an out-of-scope one) is matched by lookup, not by
generalisation: the accuracies are also given without such questions, with how many there were.
The false-accept rate is the share of out-of-catalogue questions (labelled intent None) that got
an intent anyway: an answer to something augur was not asked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exporter.assistant.match import THRESHOLD, Embedder, match
from exporter.assistant.phrasings import OUT_OF_SCOPE, PHRASINGS
from exporter.assistant.slots import Known


@dataclass
class Tally:
    """Counts of one split."""

    total: int = 0
    intents: int = 0
    slots: int = 0
    confusions: Counter[tuple[str, str]] = field(default_factory=Counter)
    slot_misses: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    seen: int = 0
    """Questions equal to a phrasing once normalised."""
    seen_intents: int = 0
    seen_slots: int = 0
    out_of_scope: int = 0
    """Questions labelled out of the catalogue (intent None)."""
    false_accepts: int = 0
    """Out-of-catalogue questions given an intent."""


def normalised(text: str) -> str:
    """Lower-case, letters and digits only (CJK included): what counts as the same wording."""
    return "".join(c for c in text.lower() if c.isalnum())


def _phrasing_texts(phrasings: Mapping[str, Mapping[str, Sequence[str]]]) -> frozenset[str]:
    tables = (*phrasings.values(), OUT_OF_SCOPE)
    return frozenset(normalised(p) for table in tables for ps in table.values() for p in ps)


def evaluate(
    rows: Iterable[Mapping[str, Any]],
    model: Embedder,
    known: Known,
    *,
    threshold: float = THRESHOLD,
    phrasings: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
) -> dict[str, Tally]:
    """Tallies per split and `all`."""
    tallies: dict[str, Tally] = {}
    known_texts = _phrasing_texts(phrasings or PHRASINGS)
    for row in rows:
        seen = normalised(str(row["q"])) in known_texts
        found = match(
            str(row["q"]), model, known, threshold=threshold, phrasings=phrasings or PHRASINGS
        )
        got = found.intent.name if found.intent else None
        want = row.get("intent")
        slots_want = {str(k): str(v) for k, v in (row.get("slots") or {}).items()}
        for split in (str(row.get("split", "dev")), "all"):
            tally = tallies.setdefault(split, Tally())
            tally.total += 1
            tally.seen += seen
            tally.out_of_scope += want is None
            tally.false_accepts += want is None and got is not None
            if got == want:
                tally.intents += 1
                tally.seen_intents += seen
            else:
                tally.confusions[(str(want), str(got))] += 1
            if found.slots == slots_want:
                tally.slots += 1
                tally.seen_slots += seen
            elif split != "all":
                tally.slot_misses.append((str(row.get("id", row["q"])), slots_want, found.slots))
    return tallies


def report(tallies: Mapping[str, Tally]) -> str:
    """The printed summary: accuracy per split, then the confusions and slot misses."""
    lines = [
        "slot accuracy = questions whose predicted slots all equal the labelled ones",
        "unseen = without the questions equal to a phrasing (lower-case, letters and digits only)",
        "false accepts = out-of-catalogue questions given an intent",
        f"{'split':<6} {'n':>4} {'intent':>8} {'slots':>8}   {'unseen n':>8} {'intent':>8} "
        f"{'slots':>8}   false accepts",
    ]
    for split in sorted(tallies, key=lambda s: (s == "all", s)):
        t = tallies[split]
        unseen = t.total - t.seen
        lines.append(
            f"{split:<6} {t.total:>4} {t.intents / max(1, t.total):>8.1%} "
            f"{t.slots / max(1, t.total):>8.1%}   {unseen:>8} "
            f"{(t.intents - t.seen_intents) / max(1, unseen):>8.1%} "
            f"{(t.slots - t.seen_slots) / max(1, unseen):>8.1%}   "
            f"{t.false_accepts}/{t.out_of_scope} = {t.false_accepts / max(1, t.out_of_scope):.1%}"
        )
    for split in sorted(s for s in tallies if s != "all"):
        t = tallies[split]
        for (want, got), n in sorted(t.confusions.items()):
            lines.append(f"{split} intent: {want} -> {got} x{n}")
        for qid, want_slots, got_slots in t.slot_misses:
            lines.append(f"{split} slots {qid}: want {want_slots} got {got_slots}")
    return "\n".join(lines)
