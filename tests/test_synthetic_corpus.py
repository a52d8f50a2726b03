"""benchmarks/synthetic_corpus.py: NAB's layout, labels that fit the data, and determinism."""

from __future__ import annotations

import contextlib
import csv
import functools
import importlib.util
import io
import json
import math
import re
import sys
from datetime import datetime
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from exporter.backtest import nab

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "synthetic_corpus.py"
DAYS = 3
ROWS = DAYS * 288
CATEGORIES = {
    "spikes", "dips", "level_shifts", "variance_changes", "trend_changes", "seasonal_breaks",
    "clean_seasonal", "clean_noise", "counts",
}  # fmt: skip
CLEAN = {"clean_seasonal", "clean_noise"}
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


@functools.cache
def load() -> ModuleType:
    """The script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("synthetic_corpus", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses resolve their annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def generate(out: Path, *extra: str) -> tuple[int, str]:
    """Run the script's main() on a small corpus; returns its exit code and what it printed."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = load().main(["--out", str(out), "--days", str(DAYS), *extra])
    return int(code), buffer.getvalue()


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root`, by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One small corpus on the default seed, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("synthetic")
    code, printed = generate(out)
    assert code == 0
    return out, printed


def read(path: Path) -> tuple[list[str], list[str]]:
    """A data file's header check, timestamps and value texts."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["timestamp", "value"]
    return [r[0] for r in rows[1:]], [r[1] for r in rows[1:]]


def test_layout_and_summary(corpus: tuple[Path, str]) -> None:
    out, printed = corpus
    assert printed.count("\n") == 1 and "54 files" in printed and str(out) in printed
    assert {p.name for p in (out / "data").iterdir()} == CATEGORIES
    for category in CATEGORIES:
        files = sorted((out / "data" / category).glob("*.csv"))
        assert len(files) == 6, category
        for path in files:
            stamps, values = read(path)
            assert len(stamps) == ROWS
            assert all(STAMP.match(s) for s in stamps)
            seconds = np.array([datetime.fromisoformat(s).timestamp() for s in stamps])
            assert set(np.diff(seconds)) == {300.0}, f"{path}: rows are not regular"
            numbers = np.array([float(v) for v in values])
            assert np.isfinite(numbers).all() and (numbers >= 0).all()
            if category == "counts" or path.stem == "db_connections":
                assert all(v.isdigit() for v in values), f"{path}: counts must be integers"
            if path.stem == "cpu_percent":
                assert numbers.max() <= 100


def test_labels_fit_the_data(corpus: tuple[Path, str]) -> None:
    out, _ = corpus
    raw = json.loads((out / "labels" / "combined_windows.json").read_text())
    data = {p.relative_to(out / "data").as_posix() for p in (out / "data").rglob("*.csv")}
    assert set(raw) == data
    labelled = {c: 0 for c in CATEGORIES}
    for name, windows in raw.items():
        category = name.split("/")[0]
        stamps, _ = read(out / "data" / name)
        if category in CLEAN:
            assert windows == [], name
            continue
        labelled[category] += bool(windows)
        assert len(windows) <= 3
        if not windows:
            assert category == "counts", f"{name}: an anomalous category's file has no anomaly"
            continue
        # NAB's labeller: int(10 % of the rows / anomalies) rows, centred, so 2 * (that // 2) + 1.
        width = 2 * (int(0.1 * ROWS / len(windows)) // 2) + 1
        previous_end = math.floor(0.15 * ROWS) - 1
        for start, end in windows:
            assert start.endswith(".000000") and end.endswith(".000000")
            first, last = stamps.index(start[:19]), stamps.index(end[:19])
            assert last - first + 1 == width, name
            assert first > previous_end, f"{name}: window in probation or overlapping"
            assert last <= ROWS - 1
            previous_end = last
    # Every anomalous category has labelled files; counts also has clean, bursty ones.
    assert all(labelled[c] >= 1 for c in CATEGORIES - CLEAN)
    assert labelled["counts"] < 6
    # augur's NAB scorer accepts the labels: a detector that never fires scores 0.
    windows = nab.load_windows(out / "labels" / "combined_windows.json")
    never = {}
    for name in data:
        stamps, _ = read(out / "data" / name)
        never[name] = (np.array(stamps, dtype="datetime64[s]"), np.zeros(len(stamps)))
    score = nab.score_corpus(never, windows, nab.PROFILES["standard"], 1.0)
    assert score.normalized == pytest.approx(0.0)
    assert score.total.windows_missed == sum(len(w) for w in raw.values())


def test_same_seed_same_bytes(corpus: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = corpus
    code, _ = generate(tmp_path / "again")
    assert code == 0
    assert snapshot(tmp_path / "again") == snapshot(out)


def test_other_seed_other_data(corpus: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = corpus
    code, printed = generate(tmp_path / "other", "--seed", "7")
    assert code == 0 and "seed 7" in printed
    mine, theirs = snapshot(out), snapshot(tmp_path / "other")
    assert mine.keys() == theirs.keys()
    assert all(mine[name] != theirs[name] for name in mine)


def test_refuses_to_mix_with_another_corpus(tmp_path: Path) -> None:
    stray = tmp_path / "data" / "realKnownCause" / "nyc_taxi.csv"
    stray.parent.mkdir(parents=True)
    stray.write_text("timestamp,value\n")
    code, printed = generate(tmp_path)
    assert code == 2 and printed == ""
    assert not (tmp_path / "labels").exists()
