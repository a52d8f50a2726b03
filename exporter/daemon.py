"""`augur run`: load the configuration, set up the logs and serve until SIGTERM.

Exit codes: 0 stopped, 1 could not start, 2 invalid configuration. The application (and what
it imports: aiohttp, numpy, onnxruntime) is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from exporter import __version__, logs
from exporter.config import flags

log = logging.getLogger("augur.cli")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config` and the flags that override single settings."""
    flags.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Serve with the loaded configuration; the exit code."""
    from exporter import app

    cfg = flags.load_config(args)
    if cfg is None:
        return 2
    logs.setup(cfg.log.level, cfg.log.format)
    log.info("starting", extra={"version": __version__, "config": str(args.config or "")})
    try:
        asyncio.run(app.serve(cfg, load=flags.loader(args)))
    except app.StartupError as exc:
        log.error("startup_failed", extra={"error": str(exc)})
        return 1
    return 0
