# Damage told from trouble: which journal errors mean "set the file aside", and setting it aside.
from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from station.errors import JournalDamagedError, JournalError
from station.host.files import fsync_dir

_DAMAGE_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB


def damage_or_error(path: Path, exc: sqlite3.Error, doing: str) -> JournalError:
    """Only SQLite's own corruption codes count as damage; every other failure is trouble."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code in _DAMAGE_CODES:
        return JournalDamagedError(f"{path}: damaged journal ({doing}): {exc}")
    return JournalError(f"{path}: {doing}: {exc}")


def set_aside(path: str | Path) -> Path:
    """Move a damaged journal and its -wal/-shm aside (never delete: it is evidence).

    The suffixes stay after the new name so SQLite still finds the WAL when someone opens the
    damaged copy to recover rows from it.
    """
    path = Path(path)
    if not path.exists():
        raise JournalError(f"{path}: no journal file to move aside")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    dest = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while any(Path(f"{dest}{s}").exists() for s in ("", "-wal", "-shm")):
        n += 1
        dest = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    try:
        for suffix in ("-wal", "-shm", ""):  # main file last: a crash midway leaves it in place
            side = Path(f"{path}{suffix}")
            if side.exists():
                os.rename(side, f"{dest}{suffix}")
    except OSError as exc:
        raise JournalError(f"{path}: cannot move damaged journal to {dest}: {exc.strerror}") from None
    fsync_dir(path.parent)
    return dest
