"""`augur ask "question"`: answer one question from Prometheus; `augur ask --eval FILE` scores
the matcher on labelled questions offline.

Exit codes: 0 answered (or the evaluation ran), 1 could not answer (the reason and the closest
intents are printed) or Prometheus failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from exporter.config import flags
from exporter.text.classify import add_model_flags, load_model

USAGE = 'augur: ask needs a question, e.g. augur ask "which targets are down?"'
REPO_WORLD = Path(__file__).resolve().parents[2] / "models" / "data" / "ask-world.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The question, Prometheus flags, `--json`, `--lang`, `--eval` and the model flags."""
    parser.description = (
        "Ask the monitoring a question in English or Chinese; prints a table, one sentence and "
        "the PromQL it ran. Exit 0 answered, 1 could not answer, 2 usage or config error."
    )
    parser.add_argument("question", nargs="?", help='e.g. "哪些服务器 CPU 使用率过高?"')
    flags.add_source_arguments(
        parser,
        "Alertmanager whose enriched alerts `related_anomalies` reads "
        "(default: the first of alertmanager.urls)",
    )
    parser.add_argument("--json", action="store_true", help="print the AskResult as JSON")
    parser.add_argument(
        "--lang", choices=["en", "zh"], help="answer language (default: the question's)"
    )
    parser.add_argument(
        "--eval",
        type=Path,
        metavar="FILE.jsonl",
        help="score intent and slot accuracy on labelled questions, offline (no Prometheus)",
    )
    parser.add_argument(
        "--world",
        type=Path,
        default=REPO_WORLD,
        metavar="FILE.json",
        help="known label values for --eval (default models/data/ask-world.json)",
    )
    add_model_flags(parser)


def run(args: argparse.Namespace) -> int:
    """Answer the question or run the evaluation; the exit code."""
    if args.eval is not None:
        return _evaluate(args)
    if not args.question:
        print(
            'augur: ask needs a question, e.g. augur ask "which hosts are down?"', file=sys.stderr
        )
        return 2
    if args.config is None and args.prometheus_url is None:
        print("augur: ask needs --config or --prometheus.url", file=sys.stderr)
        return 2
    cfg = flags.load_source(args, "augur")
    if cfg is None:
        return 2
    model = load_model(args)
    if model is None:
        return 2
    from exporter.prometheus.answer import PrometheusError

    try:
        result = asyncio.run(_ask(args.question, cfg, model, args.lang, args.alertmanager_url))
    except PrometheusError as exc:
        print(f"augur: Prometheus failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else _text(result))
    return 0 if result["answered"] else 1


async def _ask(
    question: str, cfg: Any, model: Any, lang: str | None, alertmanager: str | None
) -> dict[str, Any]:
    from exporter.assistant.ask import ask
    from exporter.prometheus.client import PrometheusClient, make_session

    session = make_session(cfg.prometheus)
    try:
        client = PrometheusClient.from_config(cfg.prometheus, session)
        alertmanager = alertmanager or next(iter(cfg.alertmanager.urls), None)
        result = await ask(
            question,
            model,
            client,
            lang=lang,
            alertmanager_url=alertmanager,
            alertmanager=cfg.alertmanager,  # its credentials and TLS for its own urls
        )
    finally:
        await session.close()
    return result.to_json()


def _text(result: dict[str, Any]) -> str:
    lines = []
    answer = result["answer"]
    if answer is None:
        lines.append(result["reason"])
        for alt in result["alternatives"]:
            lines.append(f"  - {alt['title']} ({alt['intent']}, {alt['score']:.2f})")
        return "\n".join(lines)
    lines.append(answer["sentence"])
    rows = [answer["columns"], *answer["rows"]]
    widths = [max(len(str(r[i])) for r in rows if i < len(r)) for i in range(len(rows[0]))]
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)))
    lines.append("")
    lines.extend(f"PromQL: {q}" for q in answer["promql"])
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> int:
    from exporter.assistant.evaluate import evaluate, report
    from exporter.assistant.slots import load_world

    if not args.world.is_file():
        print(f"augur: {args.world}: no world file; pass --world FILE.json", file=sys.stderr)
        return 2
    try:
        known = load_world(args.world)
        rows = [json.loads(line) for line in args.eval.read_text(encoding="utf-8").splitlines()]
    except (OSError, ValueError) as exc:
        print(f"augur: cannot read {args.eval} or {args.world}: {exc}", file=sys.stderr)
        return 2
    model = load_model(args)
    if model is None:
        return 2
    print(report(evaluate(rows, model, known)))
    return 0
