"""Fidelity of the model's template cache: does a cached answer equal the model's own?

For every held-out test text (models/data, split `test`) and every rule of the corpus
(/work/shared/data/alerts/corpus.jsonl, its summary and description), this makes variants as a
storm would send them: the rule's `{{ $labels.instance }}`, `pod`, `node`... and `{{ $value }}`
filled with other hosts, pods, addresses and numbers, and in the hand-written (already filled-in)
texts every span `template_key` masks replaced by another of its kind. The first variant fills
the cache; each other variant with the same key would get its answer. Printed: how often the
keys agree (the hit rate), and over the hits how often the cached category equals the model's
own on that variant, the confidence difference, and the cosine of the two embeddings (runbook
retrieval reads the cached one).

    .venv/bin/python benchmarks/eval_template_cache.py [--variants 3] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from exporter.text.cache import MASKED, MASKS, template_key
from exporter.text.encoder import CATEGORIES, TextModel, normalize_alert_text
from exporter.text.labelled import read_labelled

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path("/work/shared/data/alerts/corpus.jsonl")
_TEMPLATE = re.compile(r"\{\{-?((?:(?!\{\{|\}\}).)*?)-?\}\}", re.DOTALL)
_LABEL_REF = re.compile(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)")
MARGINS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6)
_K8S = "bcdfghjklmnpqrstvwxz2456789"
VOLATILE_LABELS = {
    "instance",
    "pod",
    "pod_name",
    "host",
    "hostname",
    "node",
    "nodename",
    "ip",
    "address",
    "container_id",
    "server",
    "target",
}


def _k8s(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_K8S) for _ in range(n))


def _ip(rng: random.Random) -> str:
    return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _number(rng: random.Random, like: str = "") -> str:
    if "." in like or (not like and rng.random() < 0.4):
        return f"{rng.uniform(0, 1000):.{rng.randint(1, 3)}f}"
    return str(rng.randint(0, 10 ** rng.randint(1, 5)))


def _host(rng: random.Random) -> str:
    zone = rng.choice(["prod", "eu-west-1", "dc2"])
    return f"{rng.choice(['db', 'web', 'node'])}{rng.randint(1, 99)}.{zone}.example.com"


def _volatile_value(label: str, rng: random.Random) -> str:
    """What a storm varies for this label: an address, a host, a pod, a container id."""
    if label in ("pod", "pod_name"):
        return f"checkout-api-{_k8s(rng, 10)}-{_k8s(rng, 5)}"
    if label == "container_id":
        return "".join(rng.choice("0123456789abcdef") for _ in range(12)) + "9a"
    if label in ("node", "nodename", "hostname", "host", "server"):
        return rng.choice([f"node-{rng.randint(1, 300)}", _host(rng), f"ip-{_ip(rng)}"])
    return rng.choice(
        [f"{_ip(rng)}:{rng.choice([9100, 8080, 443])}", f"host-{rng.randint(1, 300)}:9100"]
    )


def fill_rule(text: str, rng: random.Random) -> str:
    """A corpus rule's template text as a webhook carries it, volatile labels at random."""

    def one(match: re.Match[str]) -> str:
        body = match.group(1)
        label = _LABEL_REF.search(body)
        if label:
            name = label.group(1)
            return _volatile_value(name, rng) if name in VOLATILE_LABELS else name
        if "$value" in body:
            return _number(rng)
        return ""

    return _TEMPLATE.sub(one, text or "")


_SAME_KIND: dict[str, Callable[[random.Random, str], str]] = {
    "uuid": lambda rng, _: "-".join(
        "".join(rng.choice("0123456789abcdef") for _ in range(n)) for n in (8, 4, 4, 4, 12)
    ),
    "pod": lambda rng, old: (f"{_k8s(rng, 10)}-" if "-" in old else "") + _k8s(rng, 5),
    "hex": lambda rng, old: "".join(rng.choice("0123456789abcdef") for _ in old[:-2]) + "9a",
    "ipv6": lambda rng, _: "fd00:" + ":".join(f"{rng.randint(0, 65535):x}" for _ in range(3)),
    "host": lambda rng, _: _host(rng),
    "ipv4": lambda rng, old: _ip(rng) + (f":{rng.choice([9100, 443])}" if ":" in old else ""),
    "ordinal": lambda rng, old: str(rng.randint(1, 300)) + (":9100" if ":" in old else ""),
    "number": lambda rng, old: _number(rng, old),
}


def _other(make: Callable[[random.Random, str], str], rng: random.Random, m: re.Match[str]) -> str:
    return make(rng, m.group(0))


def vary_filled(text: str, rng: random.Random, kinds: frozenset[str]) -> str:
    """A filled-in text with each span of a masked kind replaced by another of that kind."""
    for kind, pattern in MASKS:
        if kind in kinds:
            other = _SAME_KIND[kind]
            text = pattern.sub(partial(_other, other, rng), text)
    return text


def _vary(text: str, kinds: frozenset[str], rng: random.Random) -> str:
    return vary_filled(text, rng, kinds)


def bases(
    limit: int | None, kinds: frozenset[str]
) -> list[tuple[str, str, Callable[[random.Random], str]]]:
    """(source, template text, variant maker) for the test texts and the corpus rules."""
    out: list[tuple[str, str, Callable[[random.Random], str]]] = []
    paths = sorted((REPO / "models" / "data").glob("alerts-*.jsonl"))
    for row in read_labelled(paths, CATEGORIES, split="test"):
        out.append(("test", row.text, partial(_vary, row.text, kinds)))
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        rule = json.loads(line)
        summary, description = rule.get("summary", ""), rule.get("description", "")
        name = rule.get("alertname", "")

        def make(rng: random.Random, s: str = summary, d: str = description, n: str = name) -> str:
            return normalize_alert_text(fill_rule(s, rng), fill_rule(d, rng), n)

        out.append(("corpus", summary + " " + description, make))
    return out[:limit] if limit else out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=3, help="variants per text (>= 2)")
    parser.add_argument("--limit", type=int, default=None, help="first N texts only")
    parser.add_argument(
        "--kinds", default="", help="masked kinds, comma-separated (default: MASKED)"
    )
    parser.add_argument("--quiet", action="store_true", help="no line per differing pair")
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "onnx")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load {os.getloadavg()}")
    model = TextModel(args.model_dir, threads=1)
    rng = random.Random(13)
    stats: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    kinds = frozenset(args.kinds.split(",")) if args.kinds else MASKED
    print("masked: " + ", ".join(k for k, _ in MASKS if k in kinds))
    for source, _, make in bases(args.limit, kinds):
        texts = [make(rng) for _ in range(max(2, args.variants))]
        if len(set(texts)) == 1:  # nothing volatile in it: every variant is the same text
            stats.setdefault(source, {}).setdefault("static", []).append(1)
            continue
        s = stats.setdefault(source, {})
        s.setdefault("volatile", []).append(1)
        embeddings, verdicts = model.embed_and_classify(texts)
        first = template_key(texts[0], kinds)
        for i in range(1, len(texts)):
            if template_key(texts[i], kinds) != first:
                s.setdefault("miss", []).append(1)
                continue
            s.setdefault("agree", []).append(float(verdicts[i].category == verdicts[0].category))
            top = verdicts[0].top3
            s.setdefault("margin", []).append(top[0][1] - top[1][1])
            s.setdefault("dconf", []).append(abs(verdicts[i].confidence - verdicts[0].confidence))
            s.setdefault("cos", []).append(float(np.dot(embeddings[i], embeddings[0])))
            if verdicts[i].category != verdicts[0].category and not args.quiet:
                print(
                    f"  differs: {verdicts[0].category} {verdicts[0].confidence:.2f} "
                    f"<- {texts[0][:90]!r}\n"
                    f"           {verdicts[i].category} {verdicts[i].confidence:.2f} "
                    f"<- {texts[i][:90]!r}"
                )
    print(f"\n{time.perf_counter() - started:.0f} s; load {os.getloadavg()}")
    for source, s in stats.items():
        hits, misses = len(s.get("agree", [])), len(s.get("miss", []))
        static, volatile = len(s.get("static", [])), len(s.get("volatile", []))
        print(
            f"{source}: {static + volatile} texts, {volatile} with volatile parts; "
            f"{hits + misses} variant pairs, key shared by {hits} "
            f"({100 * hits / max(hits + misses, 1):.1f} %)"
        )
        if hits:
            agree = statistics.fmean(s["agree"])
            print(
                f"  cached category = model's own: {100 * agree:.2f} % "
                f"({hits - round(agree * hits)} of {hits} differ); |confidence diff| "
                f"mean {statistics.fmean(s['dconf']):.4f} max {max(s['dconf']):.3f}; "
                f"embedding cosine mean {statistics.fmean(s['cos']):.4f} min {min(s['cos']):.3f}"
            )
            for gate in MARGINS:
                rows = [
                    (a, d)
                    for a, d, m in zip(s["agree"], s["dconf"], s["margin"], strict=True)
                    if m >= gate
                ]
                print(
                    f"  cached only when top1 - top2 >= {gate:.2f}: {len(rows)} of {hits} pairs "
                    f"answered ({100 * len(rows) / hits:.1f} %), category equal in "
                    f"{100 * statistics.fmean([a for a, _ in rows] or [1.0]):.2f} %, "
                    f"|confidence diff| mean {statistics.fmean([d for _, d in rows] or [0.0]):.3f}"
                )


if __name__ == "__main__":
    main()
