"""Shared fixtures: real Prometheus/Alertmanager processes on free loopback ports."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir
from model_files import copy_model

from exporter.demo.procs import Process, Sample, find_binary, start_alertmanager, start_prometheus

# Hypothesis keeps its example database and caches in .hypothesis/ of the working directory;
# a test run writes nothing outside temporary paths, so: no database, caches under /tmp.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "augur-tests-hypothesis")
settings.register_profile("augur", database=None)
settings.load_profile("augur")


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Start real Prometheus servers; each call takes `start_prometheus`'s keyword arguments.

    `samples=[Sample(...)]` backfills history with promtool before the server starts. All
    servers started through the factory are stopped when the test ends.
    """
    started: list[Process] = []

    def start(samples: Iterable[Sample] = (), **kwargs: Any) -> Process:
        proc = start_prometheus(tmp_path / f"prometheus-{len(started)}", samples=samples, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def alertmanager_factory(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Start real Alertmanager servers with a given config mapping; stopped at test end."""
    started: list[Process] = []

    def start(config: dict[str, Any], **kwargs: Any) -> Process:
        proc = start_alertmanager(tmp_path / f"alertmanager-{len(started)}", config, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def augur_run_argv() -> Callable[[Path, int], list[str]]:
    """The command line of the real `augur run` on a loopback port, logging JSON to stderr."""

    def argv(config: Path, port: int) -> list[str]:
        return [
            *(sys.executable, "-m", "exporter.cli", "run", "--config", str(config)),
            *("--web.listen-address", f"127.0.0.1:{port}", "--log.format", "json"),
        ]

    return argv


@pytest.fixture
def promtool_check_metrics() -> Callable[[bytes], Awaitable[tuple[int, str]]]:
    """`promtool check metrics` on an exposition: its exit code and what it printed."""

    async def check(exposition: bytes) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            *(find_binary("promtool"), "check", "metrics"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(exposition), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    return check


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """A copy of the committed text model the test may alter (see `model_files.copy_model`)."""
    return copy_model(tmp_path / "onnx")
