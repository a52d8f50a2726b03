"""Entity extraction and text normalisation on hostile input: how long one alert's text can
stall the event loop.

`extract` runs on the event loop (it is cheap on real alerts), so its worst case matters: a
huge description (60,000 hosts, IPs and percentages) and, per pattern, a crafted repetition
that a backtracking regular expression would take quadratic time on (one did: 0.3 s for 5,000
repetitions). Prints each case's best of three and exits 1 when one is over its budget.

    .venv/bin/python benchmarks/bench_entities.py
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from exporter.text.encoder import normalize_alert_text
from exporter.text.entities import extract

HUGE_BUDGET = 0.2
"""Seconds: three texts of 20,000 hosts, IPs and percentages each."""
UNIT_BUDGET = 0.05
"""Seconds: one pattern unit repeated 5,000 times."""
UNITS = ("a-", "a.", "a-1-", "1.", "a:", "/a", "on a-", "服务 ", "::a")


def best_of_three(texts: list[str], run: Callable[[list[str]], object] | None = None) -> float:
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        if run is None:
            extract({}, texts)
        else:
            run(texts)
        timings.append(time.perf_counter() - started)
    return min(timings)


def main() -> int:
    huge = " ".join(f"web-{i}.example.com 10.0.{i // 250}.{i % 250} {i}%" for i in range(20_000))
    cases = [("3 × 20,000 hosts, IPs, percentages", [huge] * 3, HUGE_BUDGET)]
    cases += [(f"{unit!r} × 5,000", [unit * 5000], UNIT_BUDGET) for unit in UNITS]
    normalise = [("normalisation, '{{' × 32,000 (a 64 KB summary)", ["{{" * 32_000], UNIT_BUDGET)]
    over = 0
    print("| input | best of 3 | budget |")
    print("|---|---|---|")
    for name, texts, budget in cases + normalise:
        run = (lambda t: normalize_alert_text(t[0])) if name.startswith("normalisation") else None
        seconds = best_of_three(texts, run)
        flag = "" if seconds < budget else " **over**"
        over += bool(flag)
        print(f"| {name} | {seconds * 1000:.1f} ms{flag} | {budget * 1000:.0f} ms |")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
