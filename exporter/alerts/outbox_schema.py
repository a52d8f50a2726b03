"""The outbox's tables on disk, their migrations, and the row types the outbox takes and gives.

`outbox_alerts` holds one row per incident of a source alert, keyed by (fingerprint, startsAt);
`outbox_deliveries` one row per (alert, replica). `connect` opens the database the way the
outbox relies on (WAL, `synchronous=FULL`, autocommit so that the outbox owns its transactions)
and brings an older file up to date, after checking it (see `exporter.sqlite_files`). The
operations on these tables are in `outbox`; the errors it raises are here.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from exporter.sqlite_files import check

log = logging.getLogger("augur.alerts")

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
    settle_at     REAL,
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
    # When the related anomalies of an enriched alert are to be looked at once more.
    ("settle_at", "ALTER TABLE outbox_alerts ADD COLUMN settle_at REAL"),
)


SCHEMA_VERSION = 1
"""The `PRAGMA user_version` this augur writes; a file with a higher one is a newer augur's."""


class OutboxUnavailable(Exception):
    """The outbox cannot store or read now: its volume is full, read-only or failing. Retry."""


class OutboxDamaged(OutboxUnavailable):
    """The outbox was found damaged during this call: moved aside, a fresh one is open. Retry."""


class OutboxFull(OutboxUnavailable):
    """The outbox holds `outbox.max_alerts` alerts: new ones are refused until some finish."""


def connect(path: Path) -> sqlite3.Connection:
    """Open (blocking) the outbox database at `path`, checking, creating or migrating it.

    Raises `sqlite_files.Damaged` (or SQLite's own error) for a damaged file, after closing it.
    """
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit survives power loss, which is what the webhook's 200 promises.
        db.execute("PRAGMA synchronous=FULL")
        created = db.execute("SELECT COUNT(*) FROM sqlite_schema").fetchone()[0] == 0
        if not created:
            check(db, SCHEMA_VERSION)
        db.executescript(SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(outbox_alerts)")}
        for column, sql in MIGRATIONS:
            if column not in columns:
                db.execute(sql)
        db.executescript(INDEXES_AFTER_MIGRATION)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.close()
        raise
    if created:
        # Never silent: an outbox that was deleted or emptied looks exactly like a first start.
        log.info(
            "outbox_created",
            extra={"path": str(path), "note": "a new, empty outbox (none was there, or empty)"},
        )
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


@dataclass(frozen=True, slots=True)
class Unsettled:
    """An enriched, firing alert whose related anomalies are due to be looked at once more."""

    alert_id: int
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    generator_url: str
    enrichment: dict[str, str]
    """augur's annotations as the first enrichment wrote them."""


@dataclass(frozen=True, slots=True)
class Earlier:
    """A firing, enriched alert: its labels, start and `augur_entities` (for `chain.py`)."""

    alert_id: int
    labels: dict[str, str]
    starts_at: str
    entities: str
