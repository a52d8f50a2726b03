"""The outbox on real SQLite: idempotent accept, state changes, deliveries per replica, restarts."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import pytest

from exporter.alerts.outbox import STALE_FIRING_SECONDS, Outbox, Record

A, B = "http://127.0.0.1:1", "http://127.0.0.1:2"
T0 = 1_700_000_000.0
STARTS = "2023-11-14T22:13:20.000000Z"


def record(
    name: str = "Disk",
    status: Literal["firing", "resolved"] = "firing",
    *,
    starts_at: str = STARTS,
    ends_at: float | None = None,
    summary: str = "disk full",
) -> Record:
    return Record(
        fingerprint=f"fp-{name}",
        starts_at=starts_at,
        status=status,
        ends_at=ends_at,
        labels={"alertname": name, "augur_enriched": "true", "category": "disk"},
        annotations={"summary": summary},
        enrichment={"augur_category": "disk"},
        generator_url="",
    )


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    box = await Outbox.open(tmp_path / "outbox.db", [A, B], T0)
    yield box
    await box.close()


async def test_accept_is_idempotent_and_due_to_every_replica(outbox: Outbox) -> None:
    first = await outbox.accept([record()], T0)
    again = await outbox.accept([record(summary="disk fuller")], T0 + 5)
    assert (first.inserted, again.inserted, again.refreshed) == (1, 0, 1)
    rows = await outbox.rows()
    assert len(rows) == 1
    assert rows[0]["last_seen"] == T0 + 5
    for replica in (A, B):
        (entry,) = await outbox.due(replica, T0, 10)
        assert entry.state == "firing"
        # The source's newest annotations, plus augur's.
        assert entry.annotations == {"summary": "disk fuller", "augur_category": "disk"}
        assert entry.labels["augur_enriched"] == "true"
    assert await outbox.pending() == 2


async def test_delivered_firing_is_due_again_for_repost(outbox: Outbox) -> None:
    await outbox.accept([record()], T0)
    entries = await outbox.due(A, T0, 10)
    await outbox.delivered(A, entries, repost_at=T0 + 60)
    assert await outbox.due(A, T0 + 59, 10) == []
    assert len(await outbox.due(A, T0 + 60, 10)) == 1
    assert await outbox.next_due(A) == T0 + 60
    assert await outbox.pending() == 1  # B still waits


async def test_resolution_makes_it_due_and_a_racing_post_does_not_hide_it(outbox: Outbox) -> None:
    await outbox.accept([record()], T0)
    firing = await outbox.due(A, T0, 10)
    # The source resolves while the firing version is being posted.
    done = await outbox.accept([record(status="resolved", ends_at=T0 + 3)], T0 + 4)
    assert done.changed == 1
    await outbox.delivered(A, firing, repost_at=T0 + 60)
    (entry,) = await outbox.due(A, T0 + 4, 10)
    assert (entry.state, entry.ends_at) == ("resolved", T0 + 3)
    await outbox.delivered(A, [entry], repost_at=T0 + 64)
    assert await outbox.next_due(A) is None  # a resolved alert is posted once


async def test_resolved_never_seen_firing_is_ignored(outbox: Outbox) -> None:
    done = await outbox.accept([record(status="resolved", ends_at=T0)], T0)
    assert done.ignored == ["unknown_resolved"]
    assert await outbox.rows() == []


async def test_a_new_incident_is_a_new_row_posted_after_the_old_one(outbox: Outbox) -> None:
    await outbox.accept([record()], T0)
    await outbox.accept([record(status="resolved", ends_at=T0 + 1)], T0 + 1)
    later = "2023-11-14T22:30:00.000000Z"
    await outbox.accept([record(starts_at=later)], T0 + 2)
    entries = await outbox.due(A, T0 + 2, 10)
    # The old incident's resolution first, or Alertmanager would let it overwrite the new one.
    assert [(e.starts_at, e.state) for e in entries] == [(STARTS, "resolved"), (later, "firing")]


async def test_failed_post_is_retried_later_with_attempts_counted(outbox: Outbox) -> None:
    await outbox.accept([record()], T0)
    entries = await outbox.due(A, T0, 10)
    await outbox.retry(A, entries, T0 + 2, "connection refused")
    assert await outbox.due(A, T0 + 1, 10) == []
    assert len(await outbox.due(A, T0 + 2, 10)) == 1
    delivery = (await outbox.rows())[0]["deliveries"][A]
    assert (delivery["attempts"], delivery["last_error"]) == (1, "connection refused")
    assert delivery["pending"] == 1


async def test_refused_entry_is_not_retried_until_it_changes(outbox: Outbox) -> None:
    await outbox.accept([record()], T0)
    entries = await outbox.due(A, T0, 10)
    await outbox.delivered(A, entries, T0 + 60, error="HTTP 400: invalid label set")
    assert await outbox.next_due(A) is None
    assert (await outbox.rows())[0]["deliveries"][A]["last_error"] == "HTTP 400: invalid label set"
    await outbox.accept([record(status="resolved", ends_at=T0 + 5)], T0 + 5)
    assert len(await outbox.due(A, T0 + 5, 10)) == 1


async def test_unseen_alert_expires_and_a_later_notification_revives_it(outbox: Outbox) -> None:
    await outbox.accept([record()], T0)
    assert await outbox.expire(T0 + 299, resolve_timeout=300) == 0
    assert await outbox.expire(T0 + 301, resolve_timeout=300) == 1
    (entry,) = await outbox.due(A, T0 + 301, 10)
    assert (entry.state, entry.ends_at) == ("expired", T0 + 301)
    done = await outbox.accept([record()], T0 + 400)
    assert done.changed == 1
    (entry,) = await outbox.due(A, T0 + 400, 10)
    assert entry.state == "firing"


async def test_late_firing_from_another_replica_does_not_undo_a_resolution(outbox: Outbox) -> None:
    await outbox.accept([record()], T0)
    await outbox.accept([record(status="resolved", ends_at=T0 + 10)], T0 + 10)
    late = await outbox.accept([record()], T0 + 12)
    assert late.ignored == ["late_firing"]
    assert (await outbox.rows())[0]["state"] == "resolved"
    # Much later the same incident firing again is real (Alertmanager timed it out meanwhile).
    again = await outbox.accept([record()], T0 + 10 + STALE_FIRING_SECONDS + 1)
    assert again.changed == 1
    assert (await outbox.rows())[0]["state"] == "firing"


async def test_purge_keeps_firing_undelivered_and_recent_entries(outbox: Outbox) -> None:
    await outbox.accept([record("Firing"), record("Done"), record("Undelivered")], T0)
    await outbox.accept(
        [record("Done", "resolved", ends_at=T0), record("Undelivered", "resolved", ends_at=T0)],
        T0,
    )
    for replica in (A, B):
        done = [e for e in await outbox.due(replica, T0, 10) if e.labels["alertname"] == "Done"]
        await outbox.delivered(replica, done, T0 + 60)
    assert await outbox.purge(T0 + 100, retention=3600) == 0  # too recent
    assert await outbox.purge(T0 + 3601, retention=3600) == 1
    names = sorted(r["labels"] for r in await outbox.rows())
    assert [n for n in names if "Done" in n] == []
    assert len(names) == 2


async def test_survives_reopening_and_follows_the_configured_replicas(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = await Outbox.open(path, [A, B], T0)
    await box.accept([record("Firing"), record("Resolved")], T0)
    await box.accept([record("Resolved", "resolved", ends_at=T0)], T0)
    await box.close()
    # A restart with B replaced by C: nothing accepted is lost, C gets the firing alert.
    c = "http://127.0.0.1:3"
    again = await Outbox.open(path, [A, c], T0 + 10)
    try:
        assert len(await again.due(A, T0 + 10, 10)) == 2
        assert [e.labels["alertname"] for e in await again.due(c, T0 + 10, 10)] == ["Firing"]
        assert await again.due(B, T0 + 10, 10) == []
    finally:
        await again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_commits_are_synchronous_full(outbox: Outbox) -> None:
    # Per connection, so asked of the outbox's own: 2 is FULL (fsync on every commit).
    assert outbox._db.execute("PRAGMA synchronous").fetchone()[0] == 2


async def test_closed_outbox_refuses_work(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "o.db", [A], T0)
    await box.close()
    with pytest.raises(RuntimeError):
        await box.accept([record()], T0)


def raw(name: str = "Disk", status: Literal["firing", "resolved"] = "firing") -> Record:
    """A record as the webhook writes it: the source's labels and the source alert as JSON."""
    return Record(
        fingerprint=f"fp-{name}",
        starts_at=STARTS,
        status=status,
        ends_at=T0 + 3 if status == "resolved" else None,
        labels={"alertname": name},
        annotations={"summary": "disk full"},
        enrichment={},
        generator_url="",
        source='{"alertname": "' + name + '"}',
    )


async def test_accepted_raw_alert_is_sendable_only_once_enriched(outbox: Outbox) -> None:
    assert (await outbox.accept([raw("Old"), raw("New")], T0)).inserted == 2
    assert await outbox.due(A, T0 + 100, 10) == []
    assert await outbox.next_due(A) is None
    assert await outbox.awaiting_count() == 2
    assert await outbox.pending() == 4  # not delivered: counted as pending all along
    old, new = await outbox.awaiting(10)  # in the order accepted
    assert (old.labels, old.source) == ({"alertname": "Old"}, '{"alertname": "Old"}')
    labels = {"alertname": "Old", "augur_enriched": "true", "category": "disk"}
    stored = await outbox.store_enrichment([(old.alert_id, labels, {"augur_category": "disk"})], T0)
    assert stored == [old.alert_id]
    # Storing it again (a worker that raced a restart) changes nothing.
    assert await outbox.store_enrichment([(old.alert_id, {"x": "y"}, {})], T0 + 1) == []
    assert [a.alert_id for a in await outbox.awaiting(10)] == [new.alert_id]
    (entry,) = await outbox.due(A, T0, 10)
    assert entry.labels == labels
    assert entry.annotations == {"summary": "disk full", "augur_category": "disk"}
    assert await outbox.next_due(A) == T0


async def test_resolution_while_awaiting_enrichment_is_posted_after_it(outbox: Outbox) -> None:
    await outbox.accept([raw()], T0)
    assert (await outbox.accept([raw(status="resolved")], T0 + 4)).changed == 1
    assert await outbox.due(A, T0 + 4, 10) == []
    # Not purged while waiting, however old: its resolution has not reached anyone yet.
    assert await outbox.purge(T0 + 10_000, retention=0) == 0
    (waiting,) = await outbox.awaiting(10)
    await outbox.store_enrichment([(waiting.alert_id, {"alertname": "Disk"}, {})], T0 + 5)
    (entry,) = await outbox.due(A, T0 + 5, 10)
    assert (entry.state, entry.ends_at) == ("resolved", T0 + 3)


async def test_an_older_outbox_is_migrated_and_its_rows_stay_sendable(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with sqlite3.connect(path) as db:  # the schema before enrichment moved behind the webhook
        db.executescript(
            "CREATE TABLE outbox_alerts (id INTEGER PRIMARY KEY, fingerprint TEXT NOT NULL, "
            "starts_at TEXT NOT NULL, state TEXT NOT NULL, version INTEGER NOT NULL, "
            "ends_at REAL, labels TEXT NOT NULL, annotations TEXT NOT NULL, "
            "enrichment TEXT NOT NULL, generator_url TEXT NOT NULL, last_seen REAL NOT NULL, "
            "changed_at REAL NOT NULL, UNIQUE (fingerprint, starts_at));"
            "INSERT INTO outbox_alerts VALUES (1, 'fp', '2023-11-14T22:13:20.000000Z', "
            "'firing', 1, NULL, '{\"alertname\":\"Old\"}', '{}', '{}', '', 0, 0);"
        )
    db.close()
    box = await Outbox.open(path, [A], T0)
    try:
        assert await box.awaiting_count() == 0
        (entry,) = await box.due(A, T0, 10)
        assert entry.labels == {"alertname": "Old"}
        assert await box.next_settle() is None  # the settle_at column was added
    finally:
        await box.close()


async def test_a_settle_time_gives_one_second_look_and_a_changed_one_is_due_again(
    outbox: Outbox,
) -> None:
    await outbox.accept([raw("Same"), raw("Changed")], T0)
    same, changed = await outbox.awaiting(10)  # in the order accepted
    notes = {"augur_related": "none: no series", "augur_summary": "s"}
    stored = await outbox.store_enrichment(
        [(a.alert_id, a.labels, notes) for a in (same, changed)],
        T0,
        {same.alert_id: T0 + 180, changed.alert_id: T0 + 180},
    )
    assert stored == [same.alert_id, changed.alert_id]
    assert await outbox.next_settle() == T0 + 180
    assert await outbox.unsettled(T0 + 179, 10) == []  # not before its time
    await outbox.delivered(A, await outbox.due(A, T0, 10), T0 + 1000)  # re-posted later
    assert {u.alert_id for u in await outbox.unsettled(T0 + 180, 10)} == {
        same.alert_id,
        changed.alert_id,
    }
    (look,) = [u for u in await outbox.unsettled(T0 + 180, 10) if u.alert_id == same.alert_id]
    assert look.enrichment == notes and look.starts_at == STARTS
    new = {"augur_related": "likely cause: disk", "augur_cause": "likely cause: disk"}
    updates = {same.alert_id: {"augur_related": "none: no series"}, changed.alert_id: new}
    assert await outbox.store_settled(updates, T0 + 181) == 1
    # Each is settled, changed or not: there is no third look.
    assert await outbox.unsettled(T0 + 10_000, 10) == [] and await outbox.next_settle() is None
    assert await outbox.store_settled(updates, T0 + 182) == 0
    (entry,) = await outbox.due(A, T0 + 181, 10)  # only the changed one is due again at once
    assert entry.alert_id == changed.alert_id
    assert entry.annotations == {"summary": "disk full", "augur_summary": "s", **new}
