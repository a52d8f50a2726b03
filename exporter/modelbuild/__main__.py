"""`python -m exporter.modelbuild --out models/onnx`: build the shipped text model end to end."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

try:
    from exporter.modelbuild.build import BuildOptions, build
    from exporter.modelbuild.source import SourceError
except ImportError as exc:  # the build tools are an extra, not a runtime dependency
    sys.exit(f"error: {exc.name} is missing; the model build needs `pip install .[build]`")

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the build, print the headline figures."""
    parser = argparse.ArgumentParser(prog="python -m exporter.modelbuild", description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "models" / "onnx")
    parser.add_argument(
        "--work",
        type=Path,
        default=REPO / "build" / "modelbuild",
        help="intermediate files (HF folder, fp32 ONNX); not shipped",
    )
    parser.add_argument(
        "--corpus", type=Path, default=REPO.parent / "shared" / "data" / "alerts" / "corpus.jsonl"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=REPO / "models" / "data",
        help="folder of hand-written *.jsonl examples",
    )
    parser.add_argument("--quant", choices=("int8", "q4"), default="int8")
    parser.add_argument(
        "--keep-fp32-layers",
        type=int,
        default=0,
        help="int8 only: FFN output projections left in fp32 (the most harmful first)",
    )
    parser.add_argument(
        "--smooth-alpha",
        type=float,
        default=0.8,
        help="int8 only: SmoothQuant migration strength before quantising; 0 turns it off",
    )
    parser.add_argument(
        "--no-gptq",
        dest="gptq",
        action="store_false",
        help="int8 only: round the weights to the nearest step instead of by GPTQ",
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if not 0 <= args.smooth_alpha <= 1:
        parser.error(f"--smooth-alpha must be between 0 (off) and 1, not {args.smooth_alpha}")
    if args.keep_fp32_layers < 0:
        parser.error(f"--keep-fp32-layers cannot be negative, not {args.keep_fp32_layers}")
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("augur.modelbuild").setLevel(logging.INFO)
    for noisy in ("onnxruntime", "root", "optimum", "transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    if not args.corpus.is_file():
        parser.error(f"corpus not found: {args.corpus} (pass --corpus)")
    opts = BuildOptions(
        out=args.out,
        work=args.work,
        corpus=args.corpus,
        data=args.data,
        quant=args.quant,
        keep_fp32_layers=args.keep_fp32_layers,
        threads=args.threads,
        smooth_alpha=args.smooth_alpha,
        gptq=args.gptq,
    )
    try:
        manifest = build(opts)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, rep in manifest["evaluation"].items():
        print(
            f"{name:30s} n={rep['n']:4d} macro-F1 {rep['macro_f1']:.3f} "
            f"(fp32 {rep['fp32_macro_f1']:.3f}) agreement {rep['quantized_vs_fp32_agreement']:.2%} "
            f"({rep['quantized_vs_fp32_differ']} differ)"
        )
    total = sum(f["bytes"] for f in manifest["files"].values())
    print(f"wrote {args.out} ({total / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
