"""GPTQ rounding of the int8 weights (build-time): smaller layer-output error, same int8 format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx", reason="GPTQ is part of the model build: pip install -e '.[build]'")

from exporter.modelbuild.export import quantize_int8
from exporter.modelbuild.gptq import (
    QMAX,
    apply,
    nearest,
    output_error,
    quantize_weight,
)


def _layer(
    seed: int, k: int = 64, n: int = 32, rows: int = 2000, loud_inputs: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random weight, fitting inputs and held-out inputs from the same distribution.

    Inputs are correlated, with a few loud channels (as in a transformer); a few large weights
    per column make the int8 step coarse for the rest (as SmoothQuant's scaled rows do).
    """
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(k, k)) / np.sqrt(k)
    w = rng.normal(size=(k, n)) * 0.05
    w[:2] *= 6.0
    x = rng.normal(size=(2 * rows, k)) @ mixing
    if loud_inputs:
        x[:, 2:5] *= 8.0
    return w, x[:rows], x[rows:]


@pytest.mark.parametrize("act_order", [True, False])
def test_gptq_cuts_the_output_error_of_nearest_rounding(act_order: bool) -> None:
    w, x, held = _layer(0)
    h = x.T @ x
    q, scale = quantize_weight(w, h, act_order=act_order)
    plain = output_error(w, nearest(w), h)
    ours = output_error(w, q * scale, h)
    print(f"\nrelative output error: nearest {plain:.2e}, GPTQ {ours:.2e}")
    assert ours < 0.6 * plain
    # and on inputs it was not fitted to, drawn the same way
    h_held = held.T @ held
    assert output_error(w, q * scale, h_held) < 0.6 * output_error(w, nearest(w), h_held)


def test_gptq_keeps_onnxruntimes_int8_format() -> None:
    w, x, _ = _layer(1)
    q, scale = quantize_weight(w, x.T @ x)
    assert q.dtype == np.int8 and q.shape == w.shape
    assert np.abs(q.astype(int)).max() <= QMAX
    np.testing.assert_allclose(scale, np.abs(w).max(axis=0) / 127, rtol=1e-6)


def test_uncorrelated_inputs_give_plain_rounding() -> None:
    # With H diagonal no other input can cancel a row's error, so nothing is moved.
    w, _, _ = _layer(2)
    q, scale = quantize_weight(w, np.diag(np.linspace(1.0, 3.0, w.shape[0])))
    np.testing.assert_array_equal(q, np.clip(np.round(w / scale), -QMAX, QMAX).astype(np.int8))


def test_an_input_that_is_always_zero_is_harmless() -> None:
    w, x, _ = _layer(3)
    x[:, 5] = 0.0
    q, scale = quantize_weight(w, x.T @ x)
    assert np.isfinite(scale).all()
    assert not q[5].any()  # it never contributes, so it is stored as zero


def _matmul_model(w: np.ndarray, path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="proj")],
        "proj",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", w.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", w.shape[1]])],
        [numpy_helper.from_array(w.astype(np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x.astype(np.float32)})[0])


def test_apply_rewrites_onnxruntimes_int8_weights(tmp_path: Path) -> None:
    # quiet inputs, so that int8 activations (one scale per tensor) do not drown the weights' part
    w, fit, held = _layer(4, loud_inputs=False)
    fp32 = _matmul_model(w, tmp_path / "fp32.onnx")
    plain_model = quantize_int8(fp32, tmp_path / "nearest.onnx", per_channel=True)
    rounded = quantize_int8(fp32, tmp_path / "gptq.onnx", per_channel=True)
    report = apply(fp32, rounded, {"x": fit.T @ fit})
    assert report["layers"] == 1
    assert report["output_error_gptq"] < report["output_error_rounding"]
    exact = held @ w
    err_nearest = np.linalg.norm(_run(plain_model, held) - exact)
    err_gptq = np.linalg.norm(_run(rounded, held) - exact)
    print(f"\nheld-out output error through onnxruntime: {err_nearest:.4f} -> {err_gptq:.4f}")
    assert err_gptq < err_nearest  # 2.12 -> 1.83: int8 activations are the rest of the error
    import onnx
    from onnx import numpy_helper

    stored = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(rounded)).graph.initializer}
    q, scale = quantize_weight(w.astype(np.float32), fit.T @ fit)  # the graph holds float32
    np.testing.assert_array_equal(stored["w_quantized"], q)
    np.testing.assert_array_equal(stored["w_scale"], scale)


def test_apply_refuses_scales_it_did_not_compute(tmp_path: Path) -> None:
    w, x, _ = _layer(5)
    fp32 = _matmul_model(w, tmp_path / "fp32.onnx")
    per_tensor = quantize_int8(fp32, tmp_path / "int8.onnx", per_channel=False)
    with pytest.raises(RuntimeError, match="not max\\|w\\|/127 per channel"):
        apply(fp32, per_tensor, {"x": x.T @ x})
