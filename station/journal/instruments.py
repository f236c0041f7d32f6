# The journal's side of serial instruments: the duplicate key written with each result, faults kept as evidence.
"""claim() runs inside Journal.append's transaction, so a result and its (instrument, record, stamp)
key commit together: after a SIGKILL either both are there or neither, and a replay after restart is
recognised. InstrumentLog is a second connection on the same WAL file, for reads any thread may do
(the reader threads ask for the last stored record) and for the reader-fault rows."""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from station.errors import DuplicateRecord, JournalError

# Record numbers wrap (65535 → 1) and instruments keep ~500: a key seen more than this many records ago
# from the same instrument is a new test that reuses the number, not a duplicate.
WRAP_WINDOW = 2000
MAX_RAW = 16384  # evidence kept per fault; a garbage burst is counted, not stored


def instrument_key(name: str, serial: str | None) -> str:
    """Records are identified per physical instrument: a swapped reader on the same port starts afresh."""
    return f"{name}|{serial or ''}"


def claim(key: str, record: int, stamp: str) -> Callable[[sqlite3.Connection, int], None]:
    def write(db: sqlite3.Connection, seq: int) -> None:
        top = db.execute("SELECT MAX(nth) FROM instrument_records WHERE instrument = ?", (key,)).fetchone()[0] or 0
        row = db.execute("SELECT nth FROM instrument_records WHERE instrument = ? AND record = ? AND stamp = ?",
                         (key, record, stamp)).fetchone()
        if row and top - row[0] < WRAP_WINDOW:
            raise DuplicateRecord(f"{key} record {record}{' ' + stamp if stamp else ''} is already stored")
        db.execute("INSERT OR REPLACE INTO instrument_records (instrument, record, stamp, seq, nth)"
                   " VALUES (?, ?, ?, ?, ?)", (key, record, stamp, seq, top + 1))

    return write


class InstrumentLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        # check_same_thread off: reads come from reader threads; sqlite serialises use of one connection.
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0, check_same_thread=False)

    def close(self) -> None:
        self._db.close()

    def last_record(self, key: str) -> int | None:
        """The record number most recently stored from this instrument, or None."""
        row = self._db.execute("SELECT record FROM instrument_records WHERE instrument = ? ORDER BY nth DESC LIMIT 1",
                               (key,)).fetchone()
        return row[0] if row else None

    def last_for(self, name: str) -> tuple[int, int, str | None] | None:
        """(record, seq, serial) of the newest result from any unit configured as name."""
        row = self._db.execute("SELECT record, seq, instrument FROM instrument_records WHERE instrument LIKE ?"
                               " ESCAPE '\\' ORDER BY seq DESC LIMIT 1", (_like(name) + "|%",)).fetchone()
        return (row[0], row[1], row[2].split("|", 1)[1] or None) if row else None

    def add_fault(self, name: str, kind: str, message: str, raw: bytes) -> None:
        try:
            self._db.execute("INSERT INTO reader_faults (instrument, kind, message, raw, at_unix)"
                             " VALUES (?, ?, ?, ?, ?)", (name, kind, message, bytes(raw[:MAX_RAW]), time.time()))
        except sqlite3.Error as exc:
            raise JournalError(f"{self.path}: reader fault of {name} not kept: {exc}") from None

    def faults(self, name: str | None = None, limit: int = 100) -> list[tuple[str, str, str, bytes]]:
        where, args = ("WHERE instrument = ?", (name,)) if name else ("", ())
        rows = self._db.execute(f"SELECT instrument, kind, message, raw FROM reader_faults {where} ORDER BY id DESC"
                                " LIMIT ?", (*args, limit)).fetchall()
        return [(a, b, c, bytes(d)) for a, b, c, d in rows]


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
