"""Rebuild a Hugging Face BertModel folder (config, safetensors, tokenizer.json) from E5S1."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from exporter.modelbuild.e5s1 import E5S1
from exporter.modelbuild.vocab import PrunedVocab

# Tensor names in E5S1 (per layer) -> names in a transformers BertLayer.
_LAYER_KEYS = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}
_EMB_KEYS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


def bert_config(m: E5S1, vocab_size: int) -> dict[str, Any]:
    """The transformers config of multilingual-e5-small, with sizes taken from the file."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": m.hidden,
        "initializer_range": 0.02,
        "intermediate_size": m.ffn,
        "layer_norm_eps": m.eps,
        "max_position_embeddings": m.max_positions,
        "num_attention_heads": m.heads,
        "num_hidden_layers": m.layers,
        "pad_token_id": m.pad,
        "position_embedding_type": "absolute",
        "type_vocab_size": m.type_vocab_size,
        "vocab_size": vocab_size,
    }


def bert_state_dict(m: E5S1) -> dict[str, np.ndarray]:
    """Map E5S1 tensors one to one onto BertModel's (pooler-less) state dict."""
    out = {hf: np.ascontiguousarray(m.tensors[src]) for src, hf in _EMB_KEYS.items()}
    for layer in range(m.layers):
        for src, hf in _LAYER_KEYS.items():
            t = m.tensors[f"l{layer}.{src}"]
            out[f"encoder.layer.{layer}.{hf}"] = np.ascontiguousarray(t)
    return out


def nmt_nfkc_charsmap() -> bytes:
    """SentencePiece's built-in `nmt_nfkc` precompiled charsmap, taken from a throwaway model."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    buf = io.BytesIO()
    # The normaliser spec does not depend on the training text; any tiny corpus will do.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["abc def ghi", "jkl mno pqr"] * 10),
        model_writer=buf,
        model_type="char",
        vocab_size=25,
        normalization_rule_name="nmt_nfkc",
        minloglevel=2,
    )
    proto = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined,unused-ignore]
    proto.ParseFromString(buf.getvalue())
    charsmap: bytes = proto.normalizer_spec.precompiled_charsmap
    if not charsmap:
        raise RuntimeError("sentencepiece produced no precompiled charsmap for nmt_nfkc")
    return charsmap


def build_tokenizer(
    pieces: list[str], scores: np.ndarray, unk_id: int, bos: str, eos: str, charsmap: bytes
) -> Tokenizer:
    """XLM-R's fast tokenizer: nmt_nfkc + space collapsing, Metaspace, Unigram, `<s> $A </s>`."""
    vocab = [(p, float(s)) for p, s in zip(pieces, scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, pieces.index(bos)), (eos, pieces.index(eos))],
    )
    # Special pieces must never be produced by splitting ordinary text like "<s>".
    tok.add_special_tokens([p for p in ("<s>", "<pad>", "</s>", "<unk>", "<mask>") if p in pieces])
    return tok


def write_hf_folder(m: E5S1, out: Path, vocab: PrunedVocab | None = None) -> Path:
    """Write config.json, model.safetensors and tokenizer.json for a BertModel into `out`.

    With `vocab`, only its pieces are kept: embedding rows and tokenizer ids are both renumbered.
    """
    from safetensors.numpy import save_file

    state = bert_state_dict(m)
    pieces, scores = m.pieces, m.scores
    if vocab is not None:
        word = "embeddings.word_embeddings.weight"
        state[word] = np.ascontiguousarray(state[word][vocab.old_ids])
        pieces, scores = vocab.pieces, vocab.scores
    vocab_size = state["embeddings.word_embeddings.weight"].shape[0]
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(bert_config(m, vocab_size), indent=2) + "\n")
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    bos, eos, unk = m.pieces[m.bos], m.pieces[m.eos], m.pieces[m.unk]
    tok = build_tokenizer(pieces, scores, pieces.index(unk), bos, eos, nmt_nfkc_charsmap())
    tok.save(str(out / "tokenizer.json"))
    return out
