"""augur's SQLite files when the disk fails them: damaged (moved aside) or unwritable (refused).

augur keeps two SQLite files: the detectors' snapshots (`scoring/state.py`, disposable) and
the alert outbox (`alerts/outbox.py`). A file that is *damaged* — SQLite says it is corrupt
or not a database, `PRAGMA quick_check` fails, its `user_version` is a newer augur's, or it
was emptied to 0 bytes while its write-ahead log survived — is moved aside with its -wal and
-shm to `<name>.corrupt-<UTC time>`, reported in one error line and counted, and a fresh
file takes its place. A volume that is full or read-only is not damage: nothing is moved,
and the caller gets an error that says which.

`quick_check` reads every page once, measured on the development machine: a 566 MB outbox
(640,000 alerts) 0.5 s from the page cache and 9 s cold; 88 MB (100,000 alerts, the default
`outbox.max_alerts`) 0.1 s and 1.2 s. `integrity_check` also verifies every index (3.5x the
time warm), which is not worth a slower start.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

log = logging.getLogger("augur.storage")

T = TypeVar("T")

# SQLite's primary result codes (https://sqlite.org/rescode.html).
_PERM, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 3, 8, 10, 11, 13, 14, 26


class Damaged(Exception):
    """The file cannot be used as it is (corrupt, truncated, a newer schema); says which."""


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def is_damage(exc: BaseException) -> bool:
    """Whether `exc` says the file itself is damaged (not locked, full or read-only)."""
    if isinstance(exc, Damaged):
        return True
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = _code(exc)
    if code is not None:
        return code in (_CORRUPT, _NOTADB)
    text = str(exc)
    return "malformed" in text or "not a database" in text


def unwritable(exc: BaseException, path: Path | None = None) -> str | None:
    """What the volume refused, when that is what `exc` says: full, read-only, I/O error.

    With the file's `path`, the volume itself is asked too: SQLite reports a read-only or full
    volume at open as "unable to open database file" (it cannot create the -shm and -wal).
    """
    code = _code(exc)
    number = exc.errno if isinstance(exc, OSError) else None
    volume = _volume(path.parent) if path is not None and code in (_CANTOPEN, _PERM) else None
    if code == _FULL or number == errno.ENOSPC or volume == "full":
        return "the volume is full"
    if code == _READONLY or number == errno.EROFS or volume == "read-only":
        return "the file or its volume is read-only"
    if code in (_PERM, _CANTOPEN) or number in (errno.EACCES, errno.EPERM):
        return "augur may not create or write the file there"
    if code == _IOERR or number == errno.EIO:
        return "the volume answered with an I/O error"
    return None


def _volume(folder: Path) -> str | None:
    try:
        stat = os.statvfs(folder)
    except OSError:
        return None
    if stat.f_flag & os.ST_RDONLY:
        return "read-only"
    return "full" if stat.f_bavail == 0 else None


def check(db: sqlite3.Connection, known_version: int) -> None:
    """Raise `Damaged` unless the open file passes `quick_check` and is of a known version."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > known_version:
        raise Damaged(
            f"its schema version is {version}, this augur knows up to {known_version} "
            "(written by a newer augur)"
        )
    problems = [str(row[0]) for row in db.execute("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        raise Damaged("quick_check failed: " + "; ".join(problems))


def _sidecars(path: Path) -> list[Path]:
    return [path, Path(f"{path}-wal"), Path(f"{path}-shm")]


def truncated(path: Path) -> bool:
    """Whether the file is 0 bytes long while its write-ahead log is not (a cut-off file)."""
    try:
        return path.stat().st_size == 0 and Path(f"{path}-wal").stat().st_size > 0
    except FileNotFoundError:
        return False


def move_aside(path: Path) -> Path:
    """Rename the file and its -wal and -shm to `<name>.corrupt-<UTC time>`; the new name."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for source, dest in zip(_sidecars(path), _sidecars(target), strict=True):
        if source.exists():
            os.replace(source, dest)
    return target


def replace_damaged(
    path: Path, store: str, reason: str, lost: str, on_damage: Callable[[], None] | None
) -> None:
    """Move the damaged file aside, say so at error level and count it (`on_damage`)."""
    moved = move_aside(path)
    log.error(
        "storage_damaged",
        extra={
            "store": store,
            "path": str(path),
            "reason": reason,
            "moved_to": str(moved),
            "lost": lost,
            "hint": "augur goes on with a fresh file; keep the moved one to investigate",
        },
    )
    if on_damage is not None:
        on_damage()


def open_or_replace(
    path: Path,
    store: str,
    connect: Callable[[Path], T],
    lost: str,
    on_damage: Callable[[], None] | None,
) -> T:
    """`connect(path)`; if the file is damaged, replace it with a fresh one and connect to that.

    `connect` must close what it opened before it raises. Other errors (an unwritable volume)
    propagate: see `unwritable`.
    """
    try:
        if truncated(path):
            raise Damaged("it is 0 bytes long but its write-ahead log is not: it was cut off")
        return connect(path)
    except (Damaged, sqlite3.DatabaseError) as exc:
        if not is_damage(exc):
            raise
        reason = str(exc)
    replace_damaged(path, store, reason, lost, on_damage)
    return connect(path)
