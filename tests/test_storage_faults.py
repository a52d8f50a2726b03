"""Storage faults on real SQLite files: damaged outbox or snapshots, a full or read-only volume.

A damaged file (garbage, cut in half, emptied with its WAL left, a newer augur's schema,
pages overwritten while augur runs) is moved aside to `<name>.corrupt-<time>`, logged once at
error level, counted, and replaced by a fresh one. A full or read-only volume (a real tmpfs
mounted for the test: tests run as root) moves nothing: the outbox raises `OutboxUnavailable`
and works again once the volume does. `outbox.max_alerts` refuses new alerts past the bound.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exporter.alerts.outbox import Outbox, OutboxDamaged, OutboxFull, OutboxUnavailable, Record
from exporter.scoring.state import StateStore
from exporter.self_metrics import StorageMetrics
from exporter.sqlite_files import unwritable

A = "http://127.0.0.1:1"
T0 = 1_700_000_000.0
PAGE = 4096


def record(i: int, *, size: int = 300, status: str = "firing") -> Record:
    return Record(
        fingerprint=f"fp-{i}",
        starts_at="2023-11-14T22:13:20Z",
        status="resolved" if status == "resolved" else "firing",
        ends_at=None,
        labels={"alertname": f"A{i}"},
        annotations={"summary": "x" * size},
        enrichment={},
        generator_url="",
    )


class Store:
    """An isolated registry's storage metrics, read back by name."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.metrics = StorageMetrics(self.registry)

    def value(self, name: str, store: str | None = None) -> float | None:
        return self.registry.get_sample_value(name, {} if store is None else {"store": store})


def aside(path: Path) -> list[str]:
    """The names the file was moved aside to (its -wal and -shm went along)."""
    found = path.parent.glob(path.name + ".corrupt-*")
    return sorted(p.name for p in found if not p.name.endswith(("-wal", "-shm")))


def damage_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "storage_damaged"]


async def filled_outbox(path: Path, alerts: int) -> None:
    box = await Outbox.open(path, [A], T0)
    await box.accept([record(i) for i in range(alerts)], T0)
    await box.close()  # closing checkpoints: every row is in the main file


def half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def spoil(path: Path, damage: str) -> None:
    """Damage a closed outbox file as a failing disk or a careless hand would."""
    if damage == "garbage":
        path.write_bytes(os.urandom(3 * PAGE))
    elif damage == "half":
        half(path)
    elif damage == "newer":
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA user_version = 7")
    else:  # emptied, its WAL left behind
        Path(f"{path}-wal").write_bytes(os.urandom(PAGE))
        path.write_bytes(b"")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("garbage", "file is not a database"),
        ("half", ""),
        ("newer", "schema version is 7, this augur knows up to 1"),
        ("emptied_with_wal", "0 bytes long but its write-ahead log is not"),
    ],
)
async def test_damaged_outbox_at_open_is_moved_aside_and_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str, reason: str
) -> None:
    path = tmp_path / "outbox.db"
    await filled_outbox(path, 200)
    spoil(path, damage)
    store = Store()
    box = await Outbox.open(path, [A], T0, metrics=store.metrics)
    try:
        assert await box.rows() == []  # fresh
        assert (await box.accept([record(1)], T0)).inserted == 1
    finally:
        await box.close()
    (moved,) = aside(path)
    assert (path.parent / moved).stat().st_size > 0 or damage == "emptied_with_wal"
    (line,) = damage_lines(caplog)
    assert line.levelno == logging.ERROR
    assert line.__dict__["store"] == "outbox" and line.__dict__["moved_to"].endswith(moved)
    assert reason in line.__dict__["reason"]
    assert "repeat_interval" in line.__dict__["lost"]
    assert store.value("augur_storage_corruptions_total", "outbox") == 1.0


async def test_emptied_outbox_without_wal_says_it_created_a_new_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="augur")
    path = tmp_path / "outbox.db"
    await filled_outbox(path, 50)
    path.write_bytes(b"")  # the previous run's rows are gone: augur cannot know, but says so
    box = await Outbox.open(path, [A], T0)
    await box.close()
    # Once when the test made it, once more after it was emptied.
    created = [r for r in caplog.records if r.getMessage() == "outbox_created"]
    assert [r.__dict__["path"] for r in created] == [str(path)] * 2
    assert damage_lines(caplog) == [] and aside(path) == []


async def test_outbox_damaged_while_running_is_replaced_and_the_next_call_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Pages of the live file overwritten with garbage.

    The test first checkpoints the WAL from a connection of its own (as a backup tool would):
    SQLite then re-reads pages from the file. A page whose newer copy is still in the outbox's
    WAL or cache is not read, so damage under it goes unseen (and the next checkpoint
    overwrites it).
    """
    path = tmp_path / "outbox.db"
    store = Store()
    box = await Outbox.open(path, [A], T0, metrics=store.metrics)
    try:
        await box.accept([record(i) for i in range(200)], T0)
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with path.open("r+b") as f:
            f.seek(PAGE)  # page 2 onwards; page 1 holds the header
            f.write(os.urandom(path.stat().st_size - PAGE))
        with pytest.raises(OutboxDamaged, match="moved aside and a fresh one is open"):
            await box.accept([record(0)], T0 + 1)
        assert (await box.accept([record(0)], T0 + 2)).inserted == 1
        assert await box.pending() == 1  # the fresh outbox's truth, not a stale count
        assert store.value("augur_outbox_alerts") == 1.0
    finally:
        await box.close()
    assert len(damage_lines(caplog)) == 1 and len(aside(path)) == 1
    assert store.value("augur_storage_corruptions_total", "outbox") == 1.0


async def test_outbox_bound_refuses_new_alerts_but_not_their_resolutions(tmp_path: Path) -> None:
    store = Store()
    box = await Outbox.open(tmp_path / "outbox.db", [A], T0, max_alerts=3, metrics=store.metrics)
    try:
        await box.accept([record(i) for i in range(3)], T0)
        with pytest.raises(OutboxFull, match=r"outbox.max_alerts = 3"):
            await box.accept([record(2), record(3)], T0 + 1)
        assert len(await box.rows()) == 3  # nothing of the refused notification was stored
        # Known alerts still change: a resolution must never wait for room.
        assert (await box.accept([record(0, status="resolved")], T0 + 2)).changed == 1
        assert store.value("augur_outbox_alerts") == 3.0
        assert store.value("augur_outbox_max_alerts") == 3.0
        bytes_ = store.value("augur_outbox_bytes")
        assert bytes_ is not None and bytes_ > 0
        # The resolved alert delivered and past retention is purged: room for one more.
        (entry,) = [e for e in await box.due(A, T0 + 2, 10) if e.state == "resolved"]
        await box.delivered(A, [entry], T0 + 2)
        assert await box.purge(T0 + 10, retention=1) == 1
        assert (await box.accept([record(3)], T0 + 11)).inserted == 1
    finally:
        await box.close()


@contextmanager
def tmpfs(mount: Path, size: str = "1m") -> Iterator[Path]:
    """A real tmpfs at `mount`: a volume that fills up, and can be made read-only."""
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (tests need root for the volume cases)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs (see `tmpfs`)."""
    with tmpfs(tmp_path / "volume") as mount:
        yield mount


def remount(volume: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(volume)], check=True)


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def fill(volume: Path) -> Path:
    filler = volume / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * PAGE)
        except OSError:
            pass
    return filler


async def test_full_volume_answers_unavailable_and_recovers_when_space_returns(
    volume: Path,
) -> None:
    store = Store()
    box = await Outbox.open(volume / "outbox.db", [A], T0, metrics=store.metrics)
    try:
        await box.accept([record(0)], T0)
        filler = fill(volume)
        # Larger than what the WAL already holds: it must grow, and cannot.
        with pytest.raises(OutboxUnavailable, match="the volume is full") as refused:
            await box.accept([record(1, size=200_000)], T0 + 1)
        assert not isinstance(refused.value, OutboxDamaged)
        assert store.value("augur_storage_failures_total", "outbox") == 1.0
        filler.unlink()
        assert (await box.accept([record(1, size=200_000)], T0 + 2)).inserted == 1
        assert len(await box.rows()) == 2
    finally:
        await box.close()
    assert aside(volume / "outbox.db") == []
    assert store.value("augur_storage_corruptions_total", "outbox") == 0.0


async def test_read_only_volume_is_a_clear_error_not_damage(volume: Path) -> None:
    await filled_outbox(volume / "outbox.db", 5)
    StateStore(volume / "augur.db").close()
    remount(volume, "ro")
    with pytest.raises(sqlite3.OperationalError) as outbox_error:
        await Outbox.open(volume / "outbox.db", [A], T0)
    with pytest.raises(sqlite3.OperationalError) as state_error:
        StateStore(volume / "augur.db")
    for error, name in ((outbox_error.value, "outbox.db"), (state_error.value, "augur.db")):
        assert unwritable(error, volume / name) == "the file or its volume is read-only", error
    assert files(volume) == ["augur.db", "outbox.db"]  # nothing moved aside


@pytest.mark.parametrize("damage", ["garbage", "half", "newer"])
def test_damaged_snapshots_are_moved_aside_and_start_cold(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    path = tmp_path / "augur.db"
    store = StateStore(path)
    for i in range(40):
        store.save(f"q{i}", "arima", 1, "x", {"series": list(range(300))})
    store.close()
    if damage == "garbage":
        path.write_bytes(os.urandom(3 * PAGE))
    elif damage == "half":
        half(path)
    else:
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA user_version = 2")
    metrics = Store()
    again = StateStore(path, metrics.metrics)
    assert again.load("q1", "arima", 1, "x") is None
    again.save("q1", "arima", 1, "x", {"a": 1})
    assert again.load("q1", "arima", 1, "x") == {"a": 1}
    again.close()
    assert len(aside(path)) == 1
    (line,) = damage_lines(caplog)
    assert line.__dict__["store"] == "state" and "start cold" in line.__dict__["lost"]
    assert metrics.value("augur_storage_corruptions_total", "state") == 1.0


def test_snapshots_damaged_while_running_are_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "augur.db"
    metrics = Store()
    store = StateStore(path, metrics.metrics)
    for i in range(40):
        store.save(f"q{i}", "arima", 1, "x", {"series": list(range(300))})
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with path.open("r+b") as f:
        f.seek(PAGE)
        f.write(os.urandom(path.stat().st_size - PAGE))
    assert store.load("q1", "arima", 1, "x") is None  # found damaged: replaced, starts cold
    assert store.save("q1", "arima", 1, "x", {"a": 1}) > 0
    assert store.load("q1", "arima", 1, "x") == {"a": 1}
    store.close()
    assert len(damage_lines(caplog)) == 1 and len(aside(path)) == 1
    assert metrics.value("augur_storage_corruptions_total", "state") == 1.0
