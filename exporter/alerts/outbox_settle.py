"""The outbox's look-backs: alerts enriched before their settle time, earlier firing alerts.

An alert enriched sooner than `enrich.related_settle` after its start is stored with a
`settle_at`; once that has passed, the worker asks `unsettled` for it, re-enriches its related
part and its summary (which names a cause found only now) and stores them with
`store_settled`, which clears `settle_at` whatever came of it (so each alert is looked at once
more, never twice) and, when an annotation changed, bumps the alert's version and makes it due
to every replica, which takes the re-post of the same labels as an update of its annotations.
`firing_between` gives `chain.py` the firing enriched alerts that started in a time range, for
the first links of a chain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from exporter.alerts.outbox_file import OutboxFile
from exporter.alerts.outbox_schema import Earlier, Unsettled


def _json(value: dict[str, str]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


class SettlingOutbox(OutboxFile):
    """The outbox's file with the settle-time operations; `Outbox` adds the rest."""

    async def unsettled(self, now: float, limit: int) -> list[Unsettled]:
        """Up to `limit` firing enriched alerts whose related anomalies are due a second look."""

        def unsettled() -> list[Unsettled]:
            rows = self._db.execute(
                "SELECT id, labels, annotations, starts_at, generator_url, enrichment "
                "FROM outbox_alerts "
                "WHERE settle_at <= ? AND enriched = 1 AND state = 'firing' "
                "ORDER BY settle_at LIMIT ?",
                (now, limit),
            ).fetchall()
            return [
                Unsettled(r[0], json.loads(r[1]), json.loads(r[2]), r[3], r[4], json.loads(r[5]))
                for r in rows
            ]

        return await self._run(unsettled)

    async def next_settle(self) -> float | None:
        """When the next firing alert's related anomalies are due a second look, if any are."""
        at = await self._run(
            lambda: self._db.execute(
                "SELECT MIN(settle_at) FROM outbox_alerts WHERE enriched = 1 AND state = 'firing'"
            ).fetchone()[0]
        )
        return None if at is None else float(at)

    async def store_settled(self, updates: Mapping[int, dict[str, str]], now: float) -> int:
        """Merge each alert's re-enriched annotations into its enrichment, once; returns how many
        changed (and are due to every replica now, as an update Alertmanager takes by labels).

        An alert is settled whether or not anything changed: it is never looked at again.
        """

        def store() -> int:
            changed = 0
            for alert_id, notes in updates.items():
                row = self._db.execute(
                    "SELECT enrichment FROM outbox_alerts WHERE id = ? AND settle_at IS NOT NULL",
                    (alert_id,),
                ).fetchone()
                if row is None:
                    continue
                old = json.loads(row[0])
                new = {k: v for k, v in {**old, **notes}.items() if v}
                if new == old:
                    self._db.execute(
                        "UPDATE outbox_alerts SET settle_at = NULL WHERE id = ?", (alert_id,)
                    )
                    continue
                self._db.execute(
                    "UPDATE outbox_alerts SET enrichment = ?, settle_at = NULL, "
                    "version = version + 1 WHERE id = ?",
                    (_json(new), alert_id),
                )
                self._db.execute(
                    "UPDATE outbox_deliveries SET due_at = ?, pending = 1 WHERE alert_id = ?",
                    (now, alert_id),
                )
                changed += 1
            return changed

        return await self._run(self._transaction, store)

    async def firing_between(self, begin: str, end: str, limit: int) -> list[Earlier]:
        """Up to `limit` firing enriched alerts started in [begin, end) (`format_time` text),
        the latest first."""

        def between() -> list[Earlier]:
            rows = self._db.execute(
                "SELECT id, labels, starts_at, enrichment FROM outbox_alerts "
                "WHERE enriched = 1 AND state = 'firing' AND starts_at >= ? AND starts_at < ? "
                "ORDER BY starts_at DESC LIMIT ?",
                (begin, end, limit),
            ).fetchall()
            return [
                Earlier(r[0], json.loads(r[1]), r[2], json.loads(r[3]).get("augur_entities", ""))
                for r in rows
            ]

        return await self._run(between)
