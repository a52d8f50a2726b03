"""GPTQ rounding for the int8 weights: make each layer's output error small, not each weight's.

Plain int8 rounds every weight to its nearest step (per output channel, scale max|w| / 127),
so each layer's error is the sum of independent rounding errors. GPTQ (Frantar et al. 2023,
"GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers") rounds the
input rows one at a time and, using H = X^T X of the layer's real inputs, moves the rounding
error of each row onto the rows not yet rounded, where the inputs can cancel it. The result is
still ordinary per-channel int8 with the same scales, so it runs on onnxruntime's usual
kernels at the same speed; only which integers are stored differs.

This encoder's weights come from a 4-bit (Q4_0, block 32) file: they lie on a grid of a
different step in every block of 32, which per-channel int8 cannot follow, so rounding the
weights was the larger part of the int8 error (3.6e-4 of the 5.5e-4 mean 1 - cosine to fp32
with plain rounding; measured with the activations left in float).

Written by hand: onnxruntime's quantisation tools offer GPTQ only for 4-bit MatMulNBits
weights, and neural-compressor's version needs its own static-quantisation pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from exporter.modelbuild.export import capture_inputs, weighted_nodes

DAMP = 0.01  # fraction of the mean diagonal added to H: the paper's default
BLOCK = 128  # rows rounded before the rest are updated in one matrix product (speed only)
QMAX = 127  # onnxruntime's symmetric int8 weights use -127..127


def input_hessians(
    fp32_path: Path, texts: Sequence[str], tokenizer_path: Path
) -> dict[str, np.ndarray]:
    """X^T X of every weighted node's input over `texts`, keyed by the input's name."""
    sums: dict[str, np.ndarray] = {}
    pending: dict[str, list[np.ndarray]] = {}
    rows = 0

    def flush() -> None:
        for name, parts in pending.items():
            x = np.concatenate(parts)
            sums[name] = sums.get(name, 0) + (x.T @ x).astype(np.float64)
        pending.clear()

    for acts in capture_inputs(fp32_path, texts, tokenizer_path):
        for name, x in acts.items():
            pending.setdefault(name, []).append(x)
        rows += next(iter(acts.values())).shape[0]
        if rows >= 4096:  # one larger product instead of one per text: 10x faster
            flush()
            rows = 0
    flush()
    return sums


def channel_scales(weight: np.ndarray) -> np.ndarray:
    """onnxruntime's symmetric per-channel scale of a [in, out] weight: max|w| / 127 per column."""
    return np.asarray(np.maximum(np.abs(weight).max(axis=0) / QMAX, 1e-12))


def nearest(weight: np.ndarray) -> np.ndarray:
    """`weight` rounded to its nearest int8 step, dequantised: what plain int8 stores."""
    scale = channel_scales(weight)
    return np.asarray(np.clip(np.round(weight / scale), -QMAX, QMAX) * scale)


def quantize_weight(
    weight: np.ndarray, hessian: np.ndarray, damp: float = DAMP, act_order: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """GPTQ-round a [in, out] weight to int8 with per-output-channel scales.

    Returns (q, scale): int8 [in, out] and float32 [out], with w ~ q * scale. `act_order`
    rounds the inputs with the largest energy first (the paper's "desc_act" variant).
    """
    w = np.array(weight, dtype=np.float64)
    k = w.shape[0]
    scale = channel_scales(w)
    h = np.array(hessian, dtype=np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[dead, :] = 0.0
    order = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(k)
    w = w[order]
    h = h[np.ix_(order, order)]
    h[np.diag_indices(k)] += damp * np.mean(np.diag(h))
    # upper Cholesky factor of H^-1: row i holds how the not-yet-rounded rows absorb row i's error
    u = np.linalg.cholesky(np.linalg.inv(h)).T
    q = np.zeros_like(w)
    for start in range(0, k, BLOCK):
        stop = min(start + BLOCK, k)
        block = w[start:stop].copy()
        errors = np.zeros_like(block)
        ub = u[start:stop, start:stop]
        for i in range(stop - start):
            q[start + i] = np.clip(np.round(block[i] / scale), -QMAX, QMAX)
            err = (block[i] - q[start + i] * scale) / ub[i, i]
            block[i:] -= np.outer(ub[i, i:], err)
            errors[i] = err
        w[stop:] -= u[start:stop, stop:].T @ errors
    out = np.empty_like(q)
    out[order] = q
    return out.astype(np.int8), scale.astype(np.float32)


def output_error(weight: np.ndarray, approx: np.ndarray, hessian: np.ndarray) -> float:
    """||X (W - W')||^2 / ||X W||^2 over the calibration inputs X (H = X^T X)."""
    d = (approx - weight).astype(np.float64)
    w = weight.astype(np.float64)
    return float(np.trace(d.T @ hessian @ d) / np.trace(w.T @ hessian @ w))


def apply(fp32_path: Path, int8_path: Path, hessians: dict[str, np.ndarray]) -> dict[str, float]:
    """Rewrite the int8 weights of `int8_path` (onnxruntime's quantize_dynamic output) by GPTQ.

    Nodes left in float are skipped. onnxruntime's own scale must equal ours, or the stored
    integers would mean something else: a different onnxruntime rounding scheme stops the build.
    """
    fp32 = onnx.load(str(fp32_path))
    weights = {i.name: i for i in fp32.graph.initializer}
    model = onnx.load(str(int8_path))
    stored = {i.name: i for i in model.graph.initializer}
    plain_err, gptq_err = [], []
    for node in weighted_nodes(fp32):
        name = node.input[1]
        if f"{name}_quantized" not in stored:
            continue  # kept in fp32
        w = numpy_helper.to_array(weights[name]).astype(np.float32)
        h = hessians[node.input[0]]
        q, scale = quantize_weight(w, h)
        theirs = numpy_helper.to_array(stored[f"{name}_scale"])
        if theirs.shape != scale.shape or not np.allclose(theirs, scale, rtol=1e-5):
            raise RuntimeError(
                f"{name}: onnxruntime's int8 scales are not max|w|/127 per channel; "
                "GPTQ's integers would not match them"
            )
        stored[f"{name}_quantized"].CopyFrom(numpy_helper.from_array(q, f"{name}_quantized"))
        stored[f"{name}_scale"].CopyFrom(numpy_helper.from_array(scale, f"{name}_scale"))
        plain_err.append(output_error(w, nearest(w), h))
        gptq_err.append(output_error(w, q.astype(np.float32) * scale, h))
    onnx.save(model, str(int8_path))
    return {
        "layers": len(gptq_err),
        "damp": DAMP,
        "act_order": True,
        "output_error_rounding": float(f"{np.mean(plain_err):.3e}"),
        "output_error_gptq": float(f"{np.mean(gptq_err):.3e}"),
    }
