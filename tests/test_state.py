"""Detector snapshots in SQLite: round trip, and incompatible snapshots discarded, not fed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from exporter.scoring.state import StateStore, settings_hash


def test_round_trip_and_replace(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "sub" / "augur.db")
    settings = settings_hash({"order": [1, 1, 1]})
    assert store.load("q", "arima", 1, settings) is None
    store.save("q", "arima", 1, settings, {"series": {"a": [0.5, float("nan")]}})
    store.save("q", "arima", 1, settings, {"series": {"a": [0.7]}})
    store.close()
    # A new process sees the last snapshot.
    again = StateStore(tmp_path / "sub" / "augur.db")
    assert again.load("q", "arima", 1, settings) == {"series": {"a": [0.7]}}
    again.close()


def test_wal_mode(tmp_path: Path) -> None:
    StateStore(tmp_path / "s.db").close()
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_other_version_is_discarded_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = StateStore(tmp_path / "s.db")
    store.save("q", "arima", 1, "x", {"a": 1})
    assert store.load("q", "arima", 2, "x") is None
    record = next(r for r in caplog.records if r.getMessage() == "state_discarded")
    assert "snapshot version 1, this augur writes 2" in record.__dict__["reason"]
    store.close()


def test_changed_settings_or_garbage_are_discarded(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    store.save("q", "arima", 1, settings_hash({"order": [1, 1, 1]}), {"a": 1})
    assert store.load("q", "arima", 1, settings_hash({"order": [2, 1, 1]})) is None
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute("UPDATE detector_state SET state = '{not json'")
    assert store.load("q", "arima", 1, settings_hash({"order": [1, 1, 1]})) is None
    store.close()


def test_forget_others(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    for query in ("a", "b", "c"):
        store.save(query, "arima", 1, "x", {})
    assert store.forget_others({("a", "arima")}) == 2
    assert store.load("a", "arima", 1, "x") == {}
    assert store.load("b", "arima", 1, "x") is None
    store.close()


def test_settings_hash_is_stable_and_order_free() -> None:
    assert settings_hash({"b": 1, "a": [1, 2]}) == settings_hash({"a": [1, 2], "b": 1})
    assert settings_hash({"a": 1}) != settings_hash({"a": 2})
