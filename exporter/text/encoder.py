"""The shipped text model: verified loading, E5 sentence embeddings and the category head."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from exporter import heap

MANIFEST = "manifest.json"
QUERY_PREFIX = "query: "  # E5 was trained with this prefix for classification and similarity
CATEGORIES = (
    "cpu",
    "memory",
    "disk",
    "network",
    "availability",
    "latency",
    "traffic",
    "errors",
    "saturation",
    "security",
    "data_integrity",
    "deployment",
    "hardware",
    "other",
)
"""The fixed category set of the design; the head is trained on exactly these, in this order."""

DEFAULT_MAX_TOKENS = 256
DEFAULT_BATCH_SIZE = 1
"""One text per run. int8 dynamic quantisation scales activations per batch tensor, so in a
batch a borderline text's category would depend on its batch mates; alone, every alert's
category is its own, and batching buys little throughput (docs/model-card.md measures both)."""
DISABLED_OPTIMIZERS: tuple[str, ...] = ("SkipLayerNormFusion",)
"""onnxruntime's fusion of each residual Add + LayerNormalization into SkipLayerNormalization
has a slower CPU kernel than the pair it replaces and embeddings no closer to fp32, so the
build and the runtime skip it (docs/benchmarks.md; bench_model.py keeps it as a baseline)."""

# A template action's body stops at the next `{{` as well as at `}}`: `.*?` alone would scan
# to the end of the text from every unclosed `{{`, quadratic on a summary of `{{` x 32,000.
_TEMPLATE = re.compile(r"\{\{-?((?:(?!\{\{|\}\}).)*?)-?\}\}", re.DOTALL)
_LABEL_REF = re.compile(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)")
_WHITESPACE = re.compile(r"\s+")
_SENTENCE_END = (".", "!", "?", "。", "！", "？", ":", "：")


def open_session(
    path: Path, threads: int, overrides: Mapping[str, Any] | None = None
) -> ort.InferenceSession:
    """The CPU session the runtime serves with; the build measures through the same one.

    `overrides` sets other SessionOptions attributes by name (`enable_cpu_mem_arena`...), and
    session config entries by `config:` + key: bench_model_memory.py compares them.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    for name, value in (overrides or {}).items():
        if name.startswith("config:"):
            options.add_session_config_entry(name.removeprefix("config:"), str(value))
        else:
            setattr(options, name, value)
    return ort.InferenceSession(
        str(path),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(DISABLED_OPTIMIZERS),
    )


class ModelError(Exception):
    """The model files are missing, altered or inconsistent; the message says which and why."""


class Classification(NamedTuple):
    """A category, its probability and the three most likely (category, probability) pairs."""

    category: str
    confidence: float
    top3: tuple[tuple[str, float], ...]


def _fill_template(match: re.Match[str]) -> str:
    body = match.group(1)
    label = _LABEL_REF.search(body)
    if label:
        return label.group(1)
    if "$value" in body:
        return "N"
    return ""  # control actions such as `with`, `end`, `.`: they carry no words


def normalize_alert_text(summary: str, description: str = "", alertname: str = "") -> str:
    """One line of text for the model from an alert's summary and description.

    Prometheus template actions become the label's name (`{{ $labels.instance }}` -> `instance`)
    or `N` for `{{ $value }}`: the training corpus holds templates while real webhooks hold the
    filled-in values, and both pass through here. The alert name is used only when there is no
    other text, so English rules (which have names) and Chinese texts look alike to the head.
    """
    parts = []
    for raw in (summary, description):
        text = _WHITESPACE.sub(" ", _TEMPLATE.sub(_fill_template, raw or "")).strip()
        if text:
            parts.append(text)
    if not parts and alertname:
        parts.append(re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", alertname.strip()))
    if len(parts) == 2 and not parts[0].endswith(_SENTENCE_END):
        parts[0] += "."
    return _WHITESPACE.sub(" ", " ".join(parts)).strip()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_files(model_dir: Path, manifest: dict[str, Any]) -> None:
    """Check every file the manifest lists against its sha256; raise ModelError on a mismatch."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ModelError(f"{model_dir / MANIFEST}: no 'files' table with sha256 sums")
    for name, meta in sorted(files.items()):
        path = model_dir / name
        if not path.is_file():
            raise ModelError(f"{path}: listed in {MANIFEST} but missing; rebuild or restore it")
        actual = sha256_file(path)
        if actual != meta["sha256"]:
            raise ModelError(
                f"{path}: sha256 {actual} does not match {meta['sha256']} in {MANIFEST}; "
                "the file is corrupt or was replaced without rebuilding the manifest"
            )


def read_manifest(model_dir: Path) -> dict[str, Any]:
    """The model's manifest.json as a mapping; ModelError if it is missing or not one."""
    path = model_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: not found; is {model_dir} a built model directory?") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return manifest


@dataclass(frozen=True)
class _Head:
    """Linear softmax head: probabilities = softmax(embedding @ weight.T + bias)."""

    labels: tuple[str, ...]
    weight: np.ndarray
    bias: np.ndarray

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        logits = embeddings @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float32)


class TextModel:
    """The multilingual E5 encoder (ONNX int8) plus the category head, loaded and verified."""

    def __init__(
        self,
        model_dir: Path,
        *,
        threads: int = 1,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        session_options: Mapping[str, Any] | None = None,
    ) -> None:
        """Load and verify the files of `model_dir`; raise ModelError if anything is off."""
        self.model_dir = model_dir
        self.manifest = read_manifest(model_dir)
        verify_files(model_dir, self.manifest)
        try:
            encoder = model_dir / self.manifest["encoder"]
            tokenizer = model_dir / self.manifest["tokenizer"]
            head = model_dir / self.manifest["head"]
            self.labels: tuple[str, ...] = tuple(self.manifest["labels"])
        except (KeyError, TypeError) as exc:
            raise ModelError(f"{model_dir / MANIFEST}: missing entry {exc}") from None
        self.name = str(self.manifest.get("name", "unknown"))
        self.version = str(self.manifest.get("version", "unknown"))
        self.sha256 = sha256_file(model_dir / MANIFEST)
        self.batch_size = max(1, batch_size)

        self._tokenizer = Tokenizer.from_file(str(tokenizer))
        self._tokenizer.enable_truncation(max_length=max_tokens)
        self._pad_id = int(self.manifest.get("pad_id", 1))

        self._session = open_session(encoder, threads, session_options)
        self._head = self._load_head(head)
        heap.release_freed_memory()

    def _load_head(self, path: Path) -> _Head:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            labels = tuple(str(x) for x in doc["labels"])
            weight = np.asarray(doc["weight"], dtype=np.float32)
            bias = np.asarray(doc["bias"], dtype=np.float32)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: not a head file ({exc})") from None
        if labels != self.labels:
            raise ModelError(f"{path}: labels {labels} differ from {MANIFEST} {self.labels}")
        if weight.shape != (len(labels), self.dim) or bias.shape != (len(labels),):
            raise ModelError(f"{path}: weight {weight.shape} / bias {bias.shape} do not fit")
        return _Head(labels, weight, bias)

    @property
    def dim(self) -> int:
        """Embedding width (384 for multilingual-e5-small)."""
        shape = self._session.get_outputs()[0].shape
        return int(shape[-1])

    def _encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch([QUERY_PREFIX + t for t in texts])
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        (out,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
        return np.asarray(out, dtype=np.float32)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised sentence embeddings [len(texts), dim], with the E5 `query: ` prefix."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # similar lengths share a batch so little compute goes to padding
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = self._encode_batch([texts[i] for i in rows])
        return out

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Category probabilities [len(texts), len(labels)] in the order of `labels`."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self._head.probabilities(self.embed(texts))

    def classify(self, texts: Sequence[str]) -> list[Classification]:
        """Most likely category, its probability and the top three, for each text."""
        return self._verdicts(self.probabilities(texts))

    def embed_and_classify(self, texts: Sequence[str]) -> tuple[np.ndarray, list[Classification]]:
        """The embeddings and the verdicts of one encoder pass (retrieval reuses the vectors)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32), []
        embeddings = self.embed(texts)
        return embeddings, self._verdicts(self._head.probabilities(embeddings))

    def _verdicts(self, probabilities: np.ndarray) -> list[Classification]:
        result = []
        for row in probabilities:
            top = np.argsort(-row, kind="stable")[:3]
            top3 = tuple((self.labels[i], float(row[i])) for i in top)
            result.append(Classification(top3[0][0], top3[0][1], top3))
        return result
