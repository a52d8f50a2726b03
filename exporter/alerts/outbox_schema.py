"""The outbox's tables on disk, their migrations, and the row types the outbox takes and gives.

`outbox_alerts` holds one row per incident of a source alert, keyed by (fingerprint, startsAt);
`outbox_deliveries` one row per (alert, replica). `connect` opens the database the way the
outbox relies on (WAL, `synchronous=FULL`, autocommit so that the outbox owns its transactions)
and brings an older file up to date. The operations on these tables are in `outbox`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Key = tuple[str, str]
State = Literal["firing", "resolved", "expired"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox_alerts (
    id            INTEGER PRIMARY KEY,
    fingerprint   TEXT NOT NULL,
    starts_at     TEXT NOT NULL,
    state         TEXT NOT NULL,
    version       INTEGER NOT NULL,
    ends_at       REAL,
    labels        TEXT NOT NULL,
    annotations   TEXT NOT NULL,
    enrichment    TEXT NOT NULL,
    generator_url TEXT NOT NULL,
    last_seen     REAL NOT NULL,
    changed_at    REAL NOT NULL,
    enriched      INTEGER NOT NULL DEFAULT 1,
    source        TEXT,
    UNIQUE (fingerprint, starts_at)
);
CREATE TABLE IF NOT EXISTS outbox_deliveries (
    alert_id   INTEGER NOT NULL,
    replica    TEXT NOT NULL,
    due_at     REAL,
    pending    INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (alert_id, replica)
);
CREATE INDEX IF NOT EXISTS outbox_deliveries_due ON outbox_deliveries (replica, due_at);
CREATE INDEX IF NOT EXISTS outbox_deliveries_pending ON outbox_deliveries (replica)
    WHERE pending = 1;
CREATE INDEX IF NOT EXISTS outbox_alerts_seen ON outbox_alerts (state, last_seen);
"""
INDEXES_AFTER_MIGRATION = """
CREATE INDEX IF NOT EXISTS outbox_alerts_awaiting ON outbox_alerts (id) WHERE enriched = 0;
"""
MIGRATIONS = (
    # Outboxes written before enrichment moved behind the webhook hold enriched rows only.
    ("enriched", "ALTER TABLE outbox_alerts ADD COLUMN enriched INTEGER NOT NULL DEFAULT 1"),
    ("source", "ALTER TABLE outbox_alerts ADD COLUMN source TEXT"),
)


def connect(path: Path) -> sqlite3.Connection:
    """Open (blocking) the outbox database at `path`, creating or migrating its tables."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit survives power loss, which is what the webhook's 200 promises.
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(outbox_alerts)")}
    for column, sql in MIGRATIONS:
        if column not in columns:
            db.execute(sql)
    db.executescript(INDEXES_AFTER_MIGRATION)
    return db


@dataclass(frozen=True, slots=True)
class Record:
    """One alert of an accepted notification, ready to be stored."""

    fingerprint: str
    starts_at: str
    status: Literal["firing", "resolved"]
    ends_at: float | None
    labels: dict[str, str]
    """The label set (enriched, or the source's while `source` is set); used only on insert."""
    annotations: dict[str, str]
    """The source's annotations; the newest replace the stored ones."""
    enrichment: dict[str, str]
    """augur's annotations; used only when the row is created."""
    generator_url: str
    source: str | None = None
    """The source alert as JSON when it is still to be enriched: the row is not sendable yet."""


@dataclass
class Accepted:
    """What `accept` did with a notification's records."""

    inserted: int = 0
    changed: int = 0
    refreshed: int = 0
    ignored: list[str] = field(default_factory=list)  # unknown_resolved or late_firing, each


@dataclass(frozen=True, slots=True)
class Entry:
    """A delivery due to one replica: the stored alert as it is to be posted now."""

    alert_id: int
    version: int
    state: State
    starts_at: str
    ends_at: float | None
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str


@dataclass(frozen=True, slots=True)
class Awaiting:
    """A stored alert awaiting enrichment: its source alert as JSON and its stored labels."""

    alert_id: int
    labels: dict[str, str]
    source: str
