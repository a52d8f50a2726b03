"""The outbox: every accepted alert on disk before the webhook answers, until every replica has it.

One row per incident of a source alert, keyed by (fingerprint, startsAt) so that the same
alert from two Alertmanager replicas or a re-sent group is one row. The webhook stores a row
raw (`enriched = 0`, the source alert kept as JSON): it is accepted but not sendable. The
enrichment worker later stores the enriched label set and augur's annotations and makes it
sendable. Each row also carries the source's newest annotations and its state: `firing`,
`resolved` (the source said so) or `expired` (not seen for the resolve timeout), which may
change while the row awaits enrichment. A delivery row per (alert, replica) says when to post
next and whether the current state has reached that replica; a `version` bumped on every
change keeps a post that raced with a change from marking the newer state as delivered.

The tables, their migrations and the row types (`Record`, `Accepted`, `Entry`, `Awaiting`)
are in `outbox_schema`; they are re-exported here.

SQLite in WAL mode with `synchronous=FULL`: a commit is on disk when `accept` returns. All
calls run on one dedicated thread, which also serialises them; the methods are coroutines.
`OutboxFile` opens the file, runs that thread and handles a damaged file or a full volume:
every method may raise `OutboxUnavailable` (or its `OutboxDamaged`, `OutboxFull`).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from exporter.alerts.outbox_schema import (
    Accepted,
    Awaiting,
    Entry,
    Key,
    OutboxDamaged,
    OutboxFull,
    OutboxUnavailable,
    Record,
    State,
    Unsettled,
)
from exporter.alerts.outbox_settle import SettlingOutbox
from exporter.self_metrics import StorageMetrics

__all__ = [
    "STALE_FIRING_SECONDS",
    "Accepted",
    "Awaiting",
    "Entry",
    "Key",
    "Outbox",
    "OutboxDamaged",
    "OutboxFull",
    "OutboxUnavailable",
    "Record",
    "State",
    "Unsettled",
]

STALE_FIRING_SECONDS = 60.0
"""A firing notification this soon after the source's resolution is a late replica's, ignored.

Unclustered replicas can deliver a notification computed before the resolution just after it;
a real re-fire with the same startsAt follows Alertmanager timing the alert out (minutes).
"""


def _json(value: dict[str, str]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


class Outbox(SettlingOutbox):
    """The SQLite outbox; open it with `await Outbox.open(path, replicas)`."""

    @classmethod
    async def open(
        cls,
        path: Path,
        replicas: Sequence[str],
        now: float | None = None,
        *,
        max_alerts: int | None = None,
        metrics: StorageMetrics | None = None,
    ) -> Outbox:
        """Open or create the outbox at `path` for these replicas, off the event loop.

        A damaged file is moved aside and replaced (logged, counted); an unwritable volume
        raises SQLite's or the OS's error. With `max_alerts`, `accept` refuses new alerts
        beyond that many stored ones (`OutboxFull`).
        """
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1) as once:
            return await loop.run_in_executor(
                once,
                lambda: cls(path, replicas, now, max_alerts=max_alerts, metrics=metrics),
            )

    async def accept(self, records: Sequence[Record], now: float) -> Accepted:
        """Store a notification's alerts in one durable transaction.

        Raises `OutboxFull` (storing nothing) when its new alerts would pass `max_alerts`,
        `OutboxUnavailable` when the volume refuses the write, `OutboxDamaged` when the file
        was found damaged and replaced: each means "answer 503, Alertmanager retries".
        """

        def accept() -> Accepted:
            done = self._transaction(lambda: self._accept(records, now))
            self._alerts += done.inserted
            return done

        return await self._run(accept)

    def _accept(self, records: Sequence[Record], now: float) -> Accepted:
        done = Accepted()
        for rec in records:
            row = self._db.execute(
                "SELECT id, state, changed_at FROM outbox_alerts "
                "WHERE fingerprint = ? AND starts_at = ?",
                (rec.fingerprint, rec.starts_at),
            ).fetchone()
            if row is None:
                if rec.status == "resolved":
                    done.ignored.append("unknown_resolved")
                    continue
                if self.max_alerts is not None and self._alerts + done.inserted >= self.max_alerts:
                    raise OutboxFull(
                        f"the outbox holds {self._alerts} alerts, its bound (outbox.max_alerts "
                        f"= {self.max_alerts}): new alerts wait until delivered ones are purged"
                    )
                cursor = self._db.execute(
                    "INSERT INTO outbox_alerts (fingerprint, starts_at, state, version, ends_at, "
                    "labels, annotations, enrichment, generator_url, last_seen, changed_at, "
                    "enriched, source) VALUES (?, ?, 'firing', 1, NULL, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        rec.fingerprint,
                        rec.starts_at,
                        _json(rec.labels),
                        _json(rec.annotations),
                        _json(rec.enrichment),
                        rec.generator_url,
                        now,
                        now,
                        int(rec.source is None),
                        rec.source,
                    ),
                )
                self._db.executemany(
                    "INSERT INTO outbox_deliveries (alert_id, replica, due_at, pending) "
                    "VALUES (?, ?, ?, 1)",
                    [(cursor.lastrowid, replica, now) for replica in self.replicas],
                )
                done.inserted += 1
                continue
            alert_id, state, changed_at = row
            self._db.execute(
                "UPDATE outbox_alerts SET last_seen = ?, annotations = ? WHERE id = ?",
                (now, _json(rec.annotations), alert_id),
            )
            if rec.status == "resolved" and state != "resolved":
                self._change(alert_id, "resolved", rec.ends_at or now, now)
                done.changed += 1
            elif rec.status == "firing" and state == "expired":
                self._change(alert_id, "firing", None, now)
                done.changed += 1
            elif rec.status == "firing" and state == "resolved":
                if changed_at > now - STALE_FIRING_SECONDS:
                    done.ignored.append("late_firing")
                else:
                    self._change(alert_id, "firing", None, now)
                    done.changed += 1
            else:
                done.refreshed += 1
        return done

    def _change(self, alert_id: int, state: State, ends_at: float | None, now: float) -> None:
        self._db.execute(
            "UPDATE outbox_alerts SET state = ?, ends_at = ?, version = version + 1, "
            "changed_at = ? WHERE id = ?",
            (state, ends_at, now, alert_id),
        )
        self._db.execute(
            "UPDATE outbox_deliveries SET due_at = ?, pending = 1, attempts = 0, "
            "last_error = NULL WHERE alert_id = ?",
            (now, alert_id),
        )

    async def awaiting(self, limit: int, *, newest_first: bool = False) -> list[Awaiting]:
        """Up to `limit` alerts awaiting enrichment, in the order accepted (or the reverse)."""

        def awaiting() -> list[Awaiting]:
            rows = self._db.execute(
                "SELECT id, labels, source FROM outbox_alerts WHERE enriched = 0 "
                f"ORDER BY id {'DESC' if newest_first else ''} LIMIT ?",
                (limit,),
            ).fetchall()
            return [Awaiting(r[0], json.loads(r[1]), r[2] or "") for r in rows]

        return await self._run(awaiting)

    async def store_enrichment(
        self,
        enriched: Sequence[tuple[int, dict[str, str], dict[str, str]]],
        now: float,
        settle: Mapping[int, float] | None = None,
    ) -> list[int]:
        """Store (alert id, enriched labels, augur's annotations) and make those alerts sendable.

        `settle` says when an alert's related anomalies are to be looked at once more
        (`unsettled`). In one durable transaction; returns the ids of the alerts that were still
        awaiting enrichment (those now stored).
        """
        settle = settle or {}

        def store() -> list[int]:
            done: list[int] = []
            for alert_id, labels, augur in enriched:
                cursor = self._db.execute(
                    "UPDATE outbox_alerts SET labels = ?, enrichment = ?, enriched = 1, "
                    "source = NULL, settle_at = ?, version = version + 1 "
                    "WHERE id = ? AND enriched = 0",
                    (_json(labels), _json(augur), settle.get(alert_id), alert_id),
                )
                if cursor.rowcount:
                    done.append(alert_id)
                    # Whatever state the alert reached meanwhile (resolved, expired) is due now.
                    self._db.execute(
                        "UPDATE outbox_deliveries SET due_at = ?, pending = 1 WHERE alert_id = ?",
                        (now, alert_id),
                    )
            return done

        return await self._run(self._transaction, store)

    async def due(self, replica: str, now: float, limit: int) -> list[Entry]:
        """Up to `limit` deliveries due to `replica`, oldest incident first."""
        return await self._run(self._due, replica, now, limit)

    def _due(self, replica: str, now: float, limit: int) -> list[Entry]:
        # Oldest first: a resolved old incident must reach Alertmanager before a new incident
        # of the same label set, or it would overwrite the new one there.
        rows = self._db.execute(
            "SELECT a.id, a.version, a.state, a.starts_at, a.ends_at, a.labels, a.annotations, "
            "a.enrichment, a.generator_url FROM outbox_deliveries d "
            "JOIN outbox_alerts a ON a.id = d.alert_id "
            "WHERE d.replica = ? AND d.due_at <= ? AND a.enriched = 1 "
            "ORDER BY a.starts_at, a.id LIMIT ?",
            (replica, now, limit),
        ).fetchall()
        return [
            Entry(
                alert_id=r[0],
                version=r[1],
                state=r[2],
                starts_at=r[3],
                ends_at=r[4],
                labels=json.loads(r[5]),
                annotations={**json.loads(r[6]), **json.loads(r[7])},
                generator_url=r[8],
            )
            for r in rows
        ]

    async def delivered(
        self, replica: str, entries: Sequence[Entry], repost_at: float, *, error: str = ""
    ) -> None:
        """Record that `replica` took these entries; firing ones are due again at `repost_at`.

        With `error`, Alertmanager refused them as invalid: they are not retried until the
        alert changes, and the error is kept.
        """
        await self._run(
            self._transaction, lambda: self._delivered(replica, entries, repost_at, error)
        )

    def _delivered(
        self, replica: str, entries: Sequence[Entry], repost_at: float, error: str
    ) -> None:
        # The version check leaves a delivery due when its alert changed while being posted.
        self._db.executemany(
            "UPDATE outbox_deliveries SET pending = 0, attempts = 0, last_error = ?, due_at = ? "
            "WHERE alert_id = ? AND replica = ? "
            "AND (SELECT version FROM outbox_alerts WHERE id = ?) = ?",
            [
                (
                    error or None,
                    repost_at if e.state == "firing" and not error else None,
                    e.alert_id,
                    replica,
                    e.alert_id,
                    e.version,
                )
                for e in entries
            ],
        )

    async def retry(self, replica: str, entries: Sequence[Entry], at: float, error: str) -> None:
        """Record a failed post of these entries to `replica`; try again at `at`."""

        def retry() -> None:
            self._db.executemany(
                "UPDATE outbox_deliveries SET attempts = attempts + 1, last_error = ?, "
                "due_at = ? WHERE alert_id = ? AND replica = ?",
                [(error, at, e.alert_id, replica) for e in entries],
            )

        await self._run(self._transaction, retry)

    async def expire(self, now: float, resolve_timeout: float) -> int:
        """Resolve firing alerts not seen for `resolve_timeout`; returns how many."""

        def expire() -> int:
            ids = [
                r[0]
                for r in self._db.execute(
                    "SELECT id FROM outbox_alerts WHERE state = 'firing' AND last_seen < ?",
                    (now - resolve_timeout,),
                )
            ]
            for alert_id in ids:
                self._change(alert_id, "expired", now, now)
            return len(ids)

        return await self._run(self._transaction, expire)

    async def purge(self, now: float, retention: float) -> int:
        """Delete finished alerts delivered everywhere and older than `retention`."""

        def purge() -> int:
            ids = [
                (r[0],)
                for r in self._db.execute(
                    "SELECT id FROM outbox_alerts a WHERE state != 'firing' AND enriched = 1 "
                    "AND changed_at < ? "
                    "AND NOT EXISTS (SELECT 1 FROM outbox_deliveries d "
                    "WHERE d.alert_id = a.id AND d.pending = 1)",
                    (now - retention,),
                )
            ]
            self._db.executemany("DELETE FROM outbox_deliveries WHERE alert_id = ?", ids)
            self._db.executemany("DELETE FROM outbox_alerts WHERE id = ?", ids)
            return len(ids)

        def purge_and_count() -> int:
            purged = self._transaction(purge)
            self._alerts -= purged
            return purged

        return await self._run(purge_and_count)

    async def _scalar(self, sql: str, *args: Any) -> Any:
        return await self._run(lambda: self._db.execute(sql, args).fetchone()[0])

    async def pending(self) -> int:
        """Deliveries whose current state has not yet reached their replica."""
        return int(await self._scalar("SELECT COUNT(*) FROM outbox_deliveries WHERE pending = 1"))

    async def awaiting_count(self) -> int:
        """Alerts accepted but not yet enriched."""
        return int(await self._scalar("SELECT COUNT(*) FROM outbox_alerts WHERE enriched = 0"))

    async def next_due(self, replica: str) -> float | None:
        """When the next delivery to `replica` is due (unix seconds), if any is."""
        # Alerts awaiting enrichment are not sendable: their due times do not count yet.
        due = await self._scalar(
            "SELECT MIN(d.due_at) FROM outbox_deliveries d JOIN outbox_alerts a "
            "ON a.id = d.alert_id WHERE d.replica = ? AND a.enriched = 1",
            replica,
        )
        return None if due is None else float(due)

    async def rows(self) -> list[dict[str, Any]]:
        """Every stored alert with its deliveries, for tests and debugging."""

        def rows() -> list[dict[str, Any]]:
            self._db.row_factory = sqlite3.Row
            try:
                alerts = [dict(r) for r in self._db.execute("SELECT * FROM outbox_alerts")]
                for alert in alerts:
                    alert["deliveries"] = {
                        r["replica"]: dict(r)
                        for r in self._db.execute(
                            "SELECT * FROM outbox_deliveries WHERE alert_id = ?", (alert["id"],)
                        )
                    }
            finally:
                self._db.row_factory = None
            return alerts

        return await self._run(rows)
