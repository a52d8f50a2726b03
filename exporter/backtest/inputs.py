"""What a backtest reads: its input series (CSV folders in NAB's layout) and its settings file.

`InputSeries` is one input series whatever its source; `history.py` makes them from a Prometheus
range. Every problem with an input is a `BacktestError`, which the command reports with exit
code 2.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from exporter.detectors.base import FloatArray


class BacktestError(Exception):
    """A problem with the command line, the configuration or the input data (exit code 2)."""


@dataclass(frozen=True)
class InputSeries:
    """One input series: `name` is its output path relative to `--out` (`cat/file.csv`)."""

    name: str
    stamps: tuple[str, ...]
    """Timestamps as written in the output (the input's own text for CSV files)."""
    times: FloatArray
    """Unix seconds."""
    values: FloatArray
    query: str | None = None
    """Only this query's detectors score it (series pulled with a query's own expression)."""


def read_folder(root: Path) -> list[InputSeries]:
    """Every `*.csv` under `root`, named by its path relative to `root`, biggest first."""
    if not root.is_dir():
        raise BacktestError(f"{root}: no such directory")
    files = sorted(root.rglob("*.csv"), key=lambda p: (-p.stat().st_size, str(p)))
    if not files:
        raise BacktestError(f"{root}: no .csv files found")
    return [load_csv(path, path.relative_to(root).as_posix()) for path in files]


def load_csv(path: Path, name: str) -> InputSeries:
    """A `timestamp,value` CSV with a header row; timestamps ISO 8601 or unix seconds."""
    stamps, times, values = [], [], []
    with path.open(newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if line == 1 or not row:
                continue
            if len(row) < 2:
                raise BacktestError(f"{path}:{line}: expected timestamp,value, got {row!r}")
            stamps.append(row[0])
            times.append(parse_time(row[0], f"{path}:{line}"))
            try:
                values.append(float(row[1]) if row[1].strip() else math.nan)
            except ValueError:
                raise BacktestError(f"{path}:{line}: value {row[1]!r} is not a number") from None
    if not values:
        raise BacktestError(f"{path}: no data rows")
    return InputSeries(name, tuple(stamps), np.array(times), np.array(values))


def parse_time(text: str, where: str) -> float:
    """Unix seconds from ISO 8601 (naive means UTC, as in NAB) or a number."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BacktestError(
            f"{where}: timestamp {text!r} is neither ISO 8601 nor unix seconds"
        ) from None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def read_settings(path: Path) -> dict[str, Any]:
    """The YAML settings file (the daemon's format); empty if it holds nothing."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise BacktestError(f"{path}: cannot read the file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise BacktestError(f"{path}: not valid YAML: {exc}") from None
    return data if isinstance(data, dict) else {}
