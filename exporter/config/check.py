"""`augur check-config`: load the configuration as `augur run` would and summarise it.

Exit codes: 0 valid, 2 invalid (every problem listed on stderr).
"""

from __future__ import annotations

import argparse

from exporter.config import flags
from exporter.config.durations import format_duration


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `augur run`: the same inputs are checked."""
    flags.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Print the configuration's summary (0), or its problems (2)."""
    cfg = flags.load_config(args)
    if cfg is None:
        return 2
    queries = cfg.effective_queries()
    source = "built-in defaults" if not cfg.queries else "configured"
    print(f"{args.config or '(no file)'}: configuration is valid")
    print(f"  prometheus: {cfg.prometheus.url}")
    print(f"  poll interval: {format_duration(cfg.poll.interval)}")
    print(f"  queries ({source}): {len(queries)}")
    for q in queries:
        print(
            f"    {q.name}: {', '.join(q.detectors)} over {format_duration(q.lookback)} "
            f"at {format_duration(q.step)} steps"
        )
    return 0
