"""The outbox's SQLite file as a resource: opened checked, one thread, and the disk's failures.

`OutboxFile` is what `Outbox` stands on: it opens the file (a damaged one is moved aside and
replaced, see `exporter.sqlite_files`), runs every call on one dedicated thread, and turns
SQLite's errors into the outbox's own. A call that finds the file damaged while augur runs
replaces it on that thread and raises `OutboxDamaged`; a volume that is full, read-only or
failing raises `OutboxUnavailable` and changes nothing, so the call succeeds once the volume
does. Either way the webhook answers 503 and Alertmanager retries. It also keeps the count of
stored alerts that `outbox.max_alerts` bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from exporter.alerts.outbox_schema import OutboxDamaged, OutboxUnavailable, connect
from exporter.self_metrics import StorageMetrics
from exporter.sqlite_files import (
    Damaged,
    is_damage,
    open_or_replace,
    replace_damaged,
    unwritable,
)

T = TypeVar("T")

LOST = (
    "alerts in it not yet delivered are lost; Alertmanager re-sends those still firing on "
    "its repeat_interval"
)


class OutboxFile:
    """The outbox's database and thread; `Outbox` adds the operations."""

    def __init__(
        self,
        path: Path,
        replicas: Sequence[str],
        now: float | None = None,
        *,
        max_alerts: int | None = None,
        metrics: StorageMetrics | None = None,
    ) -> None:
        """Open (blocking); prefer `Outbox.open`, which does this off the event loop."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.replicas = tuple(replicas)
        self.max_alerts = max_alerts
        self.metrics = metrics
        self._alerts = 0
        """Alerts stored (what `max_alerts` bounds); changed only on the outbox's thread."""
        self._broken = False
        """The file was replaced but the fresh one could not be opened yet: retry per call."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="augur-outbox")
        self._closed = False
        if metrics is not None:
            metrics.corruptions.labels("outbox")
            metrics.failures.labels("outbox")
        try:
            self._db = self._open(time.time() if now is None else now)
        except BaseException:
            self._executor.shutdown(wait=False)
            raise
        if metrics is not None:
            metrics.outbox_alerts.set_function(lambda: self._alerts)
            metrics.outbox_bytes.set_function(self._bytes)
            metrics.outbox_max_alerts.set(max_alerts or 0)

    def _open(self, now: float) -> sqlite3.Connection:
        db = open_or_replace(self.path, "outbox", connect, LOST, self._count_damage)
        self._db = db
        try:
            self._sync_replicas(now)
            self._alerts = int(db.execute("SELECT COUNT(*) FROM outbox_alerts").fetchone()[0])
        except BaseException:
            db.close()
            raise
        self._broken = False
        return db

    def _count_damage(self) -> None:
        if self.metrics is not None:
            self.metrics.corruptions.labels("outbox").inc()

    def _bytes(self) -> float:
        size = 0
        for name in (self.path, Path(f"{self.path}-wal")):
            with contextlib.suppress(OSError):
                size += name.stat().st_size
        return float(size)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError("the outbox is closed (augur is shutting down)")
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._guarded, fn, *args
        )

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        # On the outbox's thread: nothing else touches the file while it is replaced.
        try:
            if self._broken:
                self._open(time.time())
            return fn(*args)
        except OutboxUnavailable:
            raise
        except (sqlite3.Error, Damaged, OSError) as exc:
            if is_damage(exc):
                self._replace(str(exc))
                raise OutboxDamaged(
                    f"the outbox {self.path} is damaged ({exc}); it was moved aside and a "
                    "fresh one is open: try again"
                ) from exc
            if self.metrics is not None:
                self.metrics.failures.labels("outbox").inc()
            self._settle()
            why = unwritable(exc, self.path) or "SQLite failed"
            raise OutboxUnavailable(f"cannot use the outbox {self.path}: {why} ({exc})") from exc

    def _settle(self) -> None:
        # A failed COMMIT may leave the transaction open; the next BEGIN would fail forever.
        if self._broken or not self._db.in_transaction:
            return
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            self._db.close()
            self._broken = True

    def _replace(self, reason: str) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        self._broken = True
        try:
            replace_damaged(self.path, "outbox", reason, LOST, self._count_damage)
        except OSError as exc:
            raise OutboxUnavailable(
                f"the outbox {self.path} is damaged ({reason}) and cannot be moved aside: {exc}"
            ) from exc
        # If the fresh file cannot be opened now (the volume is full), the next call retries.
        with contextlib.suppress(sqlite3.Error, Damaged, OSError):
            self._open(time.time())

    def _transaction(self, fn: Callable[[], T]) -> T:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = fn()
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return result

    def _sync_replicas(self, now: float) -> None:
        # The configured replicas may have changed since the last run: a new one gets every
        # firing alert, a removed one is forgotten.
        def sync() -> None:
            marks = ",".join("?" * len(self.replicas))
            self._db.execute(
                f"DELETE FROM outbox_deliveries WHERE replica NOT IN ({marks})", self.replicas
            )
            for replica in self.replicas:
                self._db.execute(
                    "INSERT OR IGNORE INTO outbox_deliveries (alert_id, replica, due_at, pending) "
                    "SELECT id, ?, ?, 1 FROM outbox_alerts WHERE state = 'firing'",
                    (replica, now),
                )

        self._transaction(sync)

    async def close(self) -> None:
        """Finish queued calls and close the database; closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._db.close)
        self._executor.shutdown(wait=True)
