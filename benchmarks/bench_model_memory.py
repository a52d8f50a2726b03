"""The text model's memory against its speed, for onnxruntime session options and tokenizing.

Each variant runs in a fresh process, one after the other in one run: RSS after importing
exporter.app (what augur holds before the model), after loading the TextModel, and after
`--calls` single-text calls of embed_and_classify on the hand-written dev/test texts, with the
mean time of a call. `default` is the model as augur loads it; each other variant changes one
thing. `--rounds` runs the list again, `default` first and last in each, so the drift of the
machine's load shows beside the differences.

    .venv/bin/python benchmarks/bench_model_memory.py [--calls 1000] [--variants a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "no_cpu_arena": {"enable_cpu_mem_arena": False},
    "no_mem_pattern": {"enable_mem_pattern": False},
    "no_arena_no_pattern": {"enable_cpu_mem_arena": False, "enable_mem_pattern": False},
    "env_allocators": {"config:session.use_env_allocators": "1"},
    "opt_basic": {"graph_optimization_level": "ORT_ENABLE_BASIC"},
    "opt_extended": {"graph_optimization_level": "ORT_ENABLE_EXTENDED"},
    "threads_2": {"intra_op_num_threads": 2},
    "tokenizer_encode": {},  # Tokenizer.encode per text instead of encode_batch
    "no_malloc_trim": {},  # without release_freed_memory() after the load
}
"""Name -> SessionOptions overrides (TextModel's `session_options`)."""


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB, from /proc/self/status."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def measure(name: str, calls: int) -> dict[str, Any]:
    """One variant, in this process: RSS at each step and the mean call time."""
    import exporter.app  # noqa: F401  (what augur has imported before the model)

    before = rss_mb()[0]
    import onnxruntime as ort

    from exporter import heap
    from exporter.text.encoder import TextModel, normalize_alert_text

    overrides = dict(VARIANTS[name])
    level = overrides.get("graph_optimization_level")
    if isinstance(level, str):
        overrides["graph_optimization_level"] = getattr(ort.GraphOptimizationLevel, level)
    if overrides.get("config:session.use_env_allocators"):
        ort.create_and_register_allocator(
            ort.OrtMemoryInfo(
                "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
            ),
            ort.OrtArenaCfg(0, -1, -1, -1),
        )
    if name == "no_malloc_trim":  # the model as loaded before release_freed_memory() was added
        heap.release_freed_memory = lambda: None
    started = time.perf_counter()
    model = TextModel(REPO / "models" / "onnx", threads=1, session_options=overrides)
    load_seconds = time.perf_counter() - started
    loaded = rss_mb()[0]
    if name == "tokenizer_encode":
        tokenizer = model._tokenizer  # the same tokenizer, one text at a time without a pool
        model._tokenizer.encode_batch = lambda texts: [tokenizer.encode(t) for t in texts]
    texts = []
    for path in sorted((REPO / "models" / "data").glob("alerts-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            texts.append(normalize_alert_text(json.loads(line)["text"]))
    model.embed_and_classify(texts[:4])
    started = time.perf_counter()
    categories = []
    for i in range(calls):
        categories.append(model.embed_and_classify([texts[i % len(texts)]])[1][0].category)
    per_call = (time.perf_counter() - started) / calls
    after, peak = rss_mb()
    return {
        "variant": name,
        "import_mb": round(before, 1),
        "loaded_mb": round(loaded, 1),
        "after_calls_mb": round(after, 1),
        "peak_mb": round(peak, 1),
        "model_mb": round(after - before, 1),
        "ms_per_call": round(1000 * per_call, 2),
        "load_s": round(load_seconds, 2),
        "categories": categories[: len(texts)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.calls)))
        return
    names = args.variants.split(",")
    names = ["default", *[n for n in names if n != "default"], "default"] * args.rounds
    print(f"{os.cpu_count()} cores, load {os.getloadavg()}, {args.calls} calls per variant")
    print(
        "| variant | RSS after import | after load | after calls | peak | model's share "
        "| ms per call | vs default | same categories |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    reference: dict[str, Any] | None = None
    for name in names:
        out = subprocess.run(
            [sys.executable, __file__, "--one", name, "--calls", str(args.calls)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        reference = reference or row
        same = row["categories"] == reference["categories"]
        ratio = row["ms_per_call"] / reference["ms_per_call"]
        print(
            f"| {name} | {row['import_mb']} MB | {row['loaded_mb']} MB "
            f"| {row['after_calls_mb']} MB "
            f"| {row['peak_mb']} MB | {row['model_mb']} MB | {row['ms_per_call']} | {ratio:.2f}x "
            f"| {'yes' if same else 'NO'} |",
            flush=True,
        )
    print(f"load at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
