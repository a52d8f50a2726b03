"""`augur classify`: alert texts classified by the text model from the command line.

The model flags and loading are shared with `augur model eval` (`text/model_command.py`).
onnxruntime is imported inside the command, so `augur --help` and `augur run` do not pay for it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from exporter.config.alerts import MODEL_HINT, ModelConfig
from exporter.config.load import env_name

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from exporter.text.encoder import Classification, TextModel

MAX_TEXT_BYTES = 16 * 1024
"""Longer alert texts are refused: the model reads ~1,000 characters at most (256 tokens), and
anything this size is a log or a stack trace pasted into an annotation, not a description."""
FILE_CHUNK = 64  # lines classified together, so output streams on big files
LOW_CONFIDENCE = 0.4  # below this the linear head is unsure (docs/model-card.md, Limits)


def default_model_dir() -> Path:
    """`AUGUR_MODEL_DIR` if set, else the model augur came with (`shipped_model_dir`)."""
    env = os.environ.get(env_name(("model", "dir")))
    return Path(env) if env else ModelConfig().dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The texts, `--file`, `--json` and the model flags."""
    parser.description = (
        "Classify alert text (English or Chinese) with the text model. Texts longer than the "
        "model's 256 tokens are truncated (a note says so); texts over "
        f"{MAX_TEXT_BYTES // 1024} KiB are refused."
    )
    parser.add_argument("text", nargs="*", help='alert text, e.g. "服务器 CPU 使用率过高"')
    parser.add_argument(
        "--file",
        type=Path,
        metavar="FILE.jsonl",
        help='one JSON object per line with "text", or "summary" and/or "description" '
        "(- for stdin); bad lines are reported on stderr by number and skipped, exit 1",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print JSON: each input object with "category", "confidence" and "scores" added',
    )
    add_model_flags(parser)


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """`--model-dir` and `--threads`."""
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


def load_model(args: argparse.Namespace) -> TextModel | None:
    """The text model the model flags name; None, with the reason printed, if it cannot load."""
    from exporter.text.encoder import ModelError, TextModel

    model_dir = args.model_dir or default_model_dir()
    try:
        return TextModel(model_dir, threads=max(1, args.threads))
    except ModelError as exc:
        print(f"augur: cannot load the text model: {exc}", file=sys.stderr)
        if not (model_dir / "manifest.json").is_file():
            print(f"augur: {MODEL_HINT}", file=sys.stderr)
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


def run(args: argparse.Namespace) -> int:
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
    model = load_model(args)
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
