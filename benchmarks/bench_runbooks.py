"""Runbook matching across languages: how often an alert gets its own category's runbook.

The hand-written dev (or test) texts of models/data/ are classified by the shipped model and
matched, as the enricher does, against the shipped runbooks three ways: all of them (English
and Chinese), English ones only, Chinese ones only: a team with runbooks in one language. For
each alert language it prints the share of alerts given a runbook of their labelled category
and how many were given another category's.

    .venv/bin/python benchmarks/bench_runbooks.py [--split dev|test]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from exporter.config.alerts import RUNBOOK_MIN_SCORE, RUNBOOKS_DIR
from exporter.text import TextModel
from exporter.text.entities import language_of
from exporter.text.knowledge import KnowledgeBase
from exporter.text.labelled import read_labelled

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("dev", "test"), default="dev")
    args = parser.parse_args()
    model = TextModel(REPO / "models" / "onnx")
    rows = read_labelled(
        sorted((REPO / "models" / "data").glob("alerts-*.jsonl")), model.labels, split=args.split
    )
    texts = [r.text for r in rows]
    langs = [language_of(t) for t in texts]
    embeddings, classes = model.embed_and_classify(texts)
    print(
        f"{len(texts)} {args.split} texts; rule: similarity + category boost >= {RUNBOOK_MIN_SCORE}"
    )
    print("| runbooks | alerts | n | own category's runbook | another category's |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="augur-runbooks-") as tmp:
        for only in ("", "en", "zh"):
            folder = Path(tmp) / (only or "both")
            folder.mkdir()
            for path in RUNBOOKS_DIR.glob(f"*.{only}.md" if only else "*.md"):
                shutil.copy(path, folder / path.name)
            kb = KnowledgeBase(folder, model, categories=model.labels)
            assert kb.load() == []
            category = {rb.title: rb.category for rb in kb.runbooks}
            matches = kb.best_many(
                texts, [c.category for c in classes], langs, [""] * len(texts), embeddings
            )
            for lang in ("en", "zh"):
                idx = [i for i, x in enumerate(langs) if x == lang]
                found = [(m, rows[i].category) for i in idx if (m := matches[i]) is not None]
                own = sum(category[m.title] == truth for m, truth in found)
                print(
                    f"| {only or 'both'} | {lang} | {len(idx)} | {own / len(idx):.1%} "
                    f"| {len(found) - own} |"
                )


if __name__ == "__main__":
    main()
