"""Latency, throughput and peak RSS: the shipped ONNX model against the same model in torch.

`python -m exporter.modelbuild.bench [--model models/onnx] [--hf build/modelbuild/hf]`
Each engine runs in its own process so peak RSS is its own. The torch side needs the HF folder
that `python -m exporter.modelbuild` leaves in its work directory.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _texts(data: Path) -> list[str]:
    rows = []
    for path in sorted(data.glob("alerts-*.jsonl")):
        rows += [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    return rows


def _timings(one: Any, batch: Any, texts: list[str], rounds: int) -> dict[str, float]:
    one(texts[:4])  # warm-up: first runs allocate arenas
    lat = []
    for _ in range(rounds):
        for text in texts:
            t = time.perf_counter()
            one([text])
            lat.append(time.perf_counter() - t)
    t = time.perf_counter()
    for start in range(0, len(texts), 16):
        batch(texts[start : start + 16])
    elapsed = time.perf_counter() - t
    lat.sort()
    return {
        "one_text_median_ms": round(statistics.median(lat) * 1000, 2),
        "one_text_p90_ms": round(lat[int(0.9 * len(lat))] * 1000, 2),
        "batch16_texts_per_s": round(len(texts) / elapsed, 1),
    }


def _onnx(model: Path, texts: list[str], threads: int, rounds: int, q: Any) -> None:
    from exporter.text.encoder import TextModel

    t = time.perf_counter()
    m = TextModel(model, threads=threads, batch_size=16)
    load = time.perf_counter() - t
    out = _timings(m.classify, m.classify, texts, rounds)
    out["load_s"] = round(load, 2)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    q.put(out)


def _torch(hf: Path, texts: list[str], threads: int, rounds: int, q: Any) -> None:
    import torch
    from tokenizers import Tokenizer
    from transformers import BertModel

    torch.set_num_threads(threads)
    t = time.perf_counter()
    model = BertModel.from_pretrained(str(hf), add_pooling_layer=False).eval()
    tok = Tokenizer.from_file(str(hf / "tokenizer.json"))
    tok.enable_truncation(max_length=256)
    tok.enable_padding(pad_id=1, pad_token="<pad>")
    load = time.perf_counter() - t

    def embed(batch: list[str]) -> Any:
        enc = tok.encode_batch(["query: " + x for x in batch])
        ids = torch.tensor([e.ids for e in enc])
        mask = torch.tensor([e.attention_mask for e in enc])
        with torch.inference_mode():
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return torch.nn.functional.normalize(pooled, dim=-1)

    out = _timings(embed, embed, texts, rounds)
    out["load_s"] = round(load, 2)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    q.put(out)


def _run(target: Any, *args: Any) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, q))
    proc.start()
    result: dict[str, float] = q.get(timeout=900)
    proc.join()
    return result


def main() -> None:
    """Run both engines at 1 and 2 threads and print one JSON report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "onnx")
    parser.add_argument("--hf", type=Path, default=REPO / "build" / "modelbuild" / "hf")
    parser.add_argument("--data", type=Path, default=REPO / "models" / "data")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    texts = _texts(args.data)
    report: dict[str, Any] = {"texts": len(texts)}
    for threads in (1, 2):
        report[f"onnx_{threads}_threads"] = _run(_onnx, args.model, texts, threads, args.rounds)
        if args.hf.is_dir():
            report[f"torch_fp32_{threads}_threads"] = _run(_torch, args.hf, texts, threads, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
