"""Intent and slot accuracy of the matcher on labelled questions (models/data/ask-questions.jsonl).

Intent accuracy: the share of questions whose predicted intent equals the label (None, "cannot
answer", included). Slot accuracy: the share of questions whose predicted slots all equal the
labelled ones, exactly, as a whole dict (a question with no slots counts as right when none are
predicted); a wrong intent usually means wrong slots too, so the two are not independent.
Both per split (`dev`, `test`) and overall, with the confusions listed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exporter.assistant.match import THRESHOLD, Embedder, match
from exporter.assistant.phrasings import PHRASINGS
from exporter.assistant.slots import Known


@dataclass
class Tally:
    """Counts of one split."""

    total: int = 0
    intents: int = 0
    slots: int = 0
    confusions: Counter[tuple[str, str]] = field(default_factory=Counter)
    slot_misses: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)


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
    for row in rows:
        found = match(
            str(row["q"]), model, known, threshold=threshold, phrasings=phrasings or PHRASINGS
        )
        got = found.intent.name if found.intent else None
        want = row.get("intent")
        slots_want = {str(k): str(v) for k, v in (row.get("slots") or {}).items()}
        for split in (str(row.get("split", "dev")), "all"):
            tally = tallies.setdefault(split, Tally())
            tally.total += 1
            if got == want:
                tally.intents += 1
            else:
                tally.confusions[(str(want), str(got))] += 1
            if found.slots == slots_want:
                tally.slots += 1
            elif split != "all":
                tally.slot_misses.append((str(row.get("id", row["q"])), slots_want, found.slots))
    return tallies


def report(tallies: Mapping[str, Tally]) -> str:
    """The printed summary: accuracy per split, then the confusions and slot misses."""
    lines = [
        "slot accuracy = questions whose predicted slots all equal the labelled ones",
        f"{'split':<6} {'n':>4} {'intent':>8} {'slots':>8}",
    ]
    for split in sorted(tallies, key=lambda s: (s == "all", s)):
        t = tallies[split]
        lines.append(
            f"{split:<6} {t.total:>4} {t.intents / max(1, t.total):>8.1%} "
            f"{t.slots / max(1, t.total):>8.1%}"
        )
    for split in sorted(s for s in tallies if s != "all"):
        t = tallies[split]
        for (want, got), n in sorted(t.confusions.items()):
            lines.append(f"{split} intent: {want} -> {got} x{n}")
        for qid, want_slots, got_slots in t.slot_misses:
            lines.append(f"{split} slots {qid}: want {want_slots} got {got_slots}")
    return "\n".join(lines)
