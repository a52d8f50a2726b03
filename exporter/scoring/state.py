"""Snapshots of what the detectors learned, in SQLite, so a restart does not start cold.

One row per (query, detector): the detector's own `state_version`, the `settings_hash` of the
settings it was built with (column `fingerprint`: a new name would orphan existing files), and
its `dump_state()` as JSON. A row whose version or settings differ from the running
detector's is discarded with a log line, never fed to it: an incompatible snapshot must not
crash augur or, worse, score with the wrong model.

The database is opened in WAL mode; every call is short and blocking, so callers run it in
the executor. The snapshots are disposable: a damaged file (at open or found by a call) is
moved aside with one error line and `augur_storage_corruptions_total{store="state"}`, and
the detectors start cold (they learn again from Prometheus). Only a volume that refuses the
file at start stops augur, with an error that says so (`exporter.sqlite_files.unwritable`).

And one row per query in `history`: its look-back as float32 bytes, so a restart fetches only
the gap since the snapshot instead of the whole look-back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from exporter.scoring.history import Snapshot
from exporter.self_metrics import StorageMetrics
from exporter.sqlite_files import check, is_damage, open_or_replace, replace_damaged

log = logging.getLogger("augur.state")

T = TypeVar("T")

SCHEMA_VERSION = 1
"""The `PRAGMA user_version` this augur writes; a file with a higher one is a newer augur's."""
LOST = "the detectors' snapshots in it are lost: they start cold and learn again"

SCHEMA = """
CREATE TABLE IF NOT EXISTS detector_state (
    query       TEXT NOT NULL,
    detector    TEXT NOT NULL,
    version     INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    saved_at    REAL NOT NULL,
    state       TEXT NOT NULL,
    PRIMARY KEY (query, detector)
)
"""
HISTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    query       TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    saved_at    REAL NOT NULL,
    tick        INTEGER NOT NULL,
    keys        TEXT NOT NULL,
    last        BLOB NOT NULL,
    "values"    BLOB NOT NULL
)
"""


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        if db.execute("SELECT COUNT(*) FROM sqlite_schema").fetchone()[0]:
            check(db, SCHEMA_VERSION)
        db.execute(SCHEMA)
        db.execute(HISTORY_SCHEMA)  # added later, in the same schema version: only a new table
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.close()
        raise
    return db


def settings_hash(settings: Any) -> str:
    """A short stable hash of a detector's settings (anything JSON can render)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class StateStore:
    """Detector snapshots in one SQLite file."""

    def __init__(self, path: Path, metrics: StorageMetrics | None = None) -> None:
        """Open (blocking) or create the file; a damaged one is replaced by an empty one.

        Raises SQLite's or the OS's error when the volume refuses the file.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.metrics = metrics
        if metrics is not None:
            metrics.corruptions.labels("state")
            metrics.failures.labels("state")
        # One connection shared by executor threads; the lock serialises them.
        self._lock = threading.Lock()
        self._db = open_or_replace(path, "state", _connect, LOST, self._count_damage)
        self._broken = False
        """The damaged file was moved aside but no fresh one could be opened: retry per call."""

    def _count_damage(self) -> None:
        if self.metrics is not None:
            self.metrics.corruptions.labels("state").inc()

    def _call(self, fn: Callable[[], T], fresh: Callable[[], T]) -> T:
        """`fn()` under the lock; if it finds the file damaged, replace it and return `fresh()`."""
        with self._lock:
            try:
                if self._broken:
                    self._db = open_or_replace(
                        self.path, "state", _connect, LOST, self._count_damage
                    )
                    self._broken = False
                return fn()
            except sqlite3.DatabaseError as exc:
                if not is_damage(exc):
                    if self.metrics is not None:
                        self.metrics.failures.labels("state").inc()
                    raise
                self._db.close()
                self._broken = True
                replace_damaged(self.path, "state", str(exc), LOST, self._count_damage)
                self._db = _connect(self.path)
                self._broken = False
                return fresh()

    def save(
        self, query: str, detector: str, version: int, settings: str, state: dict[str, Any]
    ) -> int:
        """Write one snapshot, replacing the previous one; returns its size in bytes."""
        text = json.dumps(state, separators=(",", ":"), allow_nan=True)

        def save() -> None:
            self._db.execute(
                "INSERT OR REPLACE INTO detector_state VALUES (?, ?, ?, ?, ?, ?)",
                (query, detector, version, settings, time.time(), text),
            )

        # Into the fresh file when the old one was found damaged.
        self._call(save, save)
        return len(text)

    def load(self, query: str, detector: str, version: int, settings: str) -> dict[str, Any] | None:
        """The snapshot for (query, detector) if it matches `version` and `settings`."""
        row = self._call(
            lambda: self._db.execute(
                "SELECT version, fingerprint, saved_at, state FROM detector_state "
                "WHERE query = ? AND detector = ?",
                (query, detector),
            ).fetchone(),
            lambda: None,
        )
        if row is None:
            return None
        saved_version, saved_settings, saved_at, text = row
        context = {"query": query, "detector": detector, "saved_at": saved_at}
        if saved_version != version:
            log.warning(
                "state_discarded",
                extra={
                    **context,
                    "reason": f"snapshot version {saved_version}, this augur writes {version}",
                },
            )
            return None
        if saved_settings != settings:
            log.info(
                "state_discarded",
                extra={**context, "reason": "the detector's settings changed since the snapshot"},
            )
            return None
        try:
            state = json.loads(text)
        except ValueError as exc:
            log.warning("state_discarded", extra={**context, "reason": f"unreadable: {exc}"})
            return None
        if not isinstance(state, dict):
            log.warning("state_discarded", extra={**context, "reason": "not a JSON object"})
            return None
        return state

    def save_history(self, query: str, settings: str, snap: Snapshot) -> int:
        """Write a query's history snapshot, replacing the previous one; returns its bytes."""
        keys = json.dumps(snap.keys, separators=(",", ":"))

        def save() -> None:
            self._db.execute(
                "INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?, ?, ?, ?)",
                (query, settings, time.time(), snap.tick, keys, snap.last, snap.values),
            )

        self._call(save, save)
        return snap.nbytes + len(keys)

    def load_history(self, query: str, settings: str) -> Snapshot | None:
        """The query's history snapshot if it was taken with the same `settings`."""
        row = self._call(
            lambda: self._db.execute(
                'SELECT fingerprint, tick, keys, last, "values" FROM history WHERE query = ?',
                (query,),
            ).fetchone(),
            lambda: None,
        )
        if row is None or row[0] != settings:
            return None
        try:
            keys = [tuple(tuple(pair) for pair in key) for key in json.loads(row[2])]
        except (ValueError, TypeError) as exc:
            log.warning("history_discarded", extra={"query": query, "reason": str(exc)})
            return None
        return Snapshot(int(row[1]), keys, bytes(row[3]), bytes(row[4]))

    def forget_others(self, keep: set[tuple[str, str]]) -> int:
        """Delete snapshots of queries/detectors no longer configured; returns how many."""

        def forget() -> int:
            rows = self._db.execute("SELECT query, detector FROM detector_state").fetchall()
            stale = [r for r in rows if (r[0], r[1]) not in keep]
            self._db.executemany(
                "DELETE FROM detector_state WHERE query = ? AND detector = ?", stale
            )
            queries = {q for q, _ in keep}
            gone = [
                (q,) for (q,) in self._db.execute("SELECT query FROM history") if q not in queries
            ]
            self._db.executemany("DELETE FROM history WHERE query = ?", gone)
            return len(stale) + len(gone)

        return self._call(forget, lambda: 0)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
