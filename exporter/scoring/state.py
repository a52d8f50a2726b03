"""Snapshots of what the detectors learned, in SQLite, so a restart does not start cold.

One row per (query, detector): the detector's own `state_version`, the `settings_hash` of the
settings it was built with (column `fingerprint`: a new name would orphan existing files), and
its `dump_state()` as JSON. A row whose version or settings differ from the running
detector's is discarded with a log line, never fed to it: an incompatible snapshot must not
crash augur or, worse, score with the wrong model.

The database is opened in WAL mode; every call is short and blocking, so callers run it in
the executor.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("augur.state")

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


def settings_hash(settings: Any) -> str:
    """A short stable hash of a detector's settings (anything JSON can render)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class StateStore:
    """Detector snapshots in one SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # One connection shared by executor threads; the lock serialises them.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(SCHEMA)

    def save(
        self, query: str, detector: str, version: int, settings: str, state: dict[str, Any]
    ) -> int:
        """Write one snapshot, replacing the previous one; returns its size in bytes."""
        text = json.dumps(state, separators=(",", ":"), allow_nan=True)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO detector_state VALUES (?, ?, ?, ?, ?, ?)",
                (query, detector, version, settings, time.time(), text),
            )
        return len(text)

    def load(self, query: str, detector: str, version: int, settings: str) -> dict[str, Any] | None:
        """The snapshot for (query, detector) if it matches `version` and `settings`."""
        with self._lock:
            row = self._db.execute(
                "SELECT version, fingerprint, saved_at, state FROM detector_state "
                "WHERE query = ? AND detector = ?",
                (query, detector),
            ).fetchone()
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

    def forget_others(self, keep: set[tuple[str, str]]) -> int:
        """Delete snapshots of queries/detectors no longer configured; returns how many."""
        with self._lock:
            rows = self._db.execute("SELECT query, detector FROM detector_state").fetchall()
            stale = [r for r in rows if (r[0], r[1]) not in keep]
            self._db.executemany(
                "DELETE FROM detector_state WHERE query = ? AND detector = ?", stale
            )
        return len(stale)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
