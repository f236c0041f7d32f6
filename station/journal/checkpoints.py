# Signed chain-head checkpoints kept in the journal: the station's statement and the town's countersignature.
from __future__ import annotations

import sqlite3
from pathlib import Path

from station.errors import JournalError
from station.journal.schema import Checkpoint, Entry, checkpoint_from_row


class CheckpointsMixin:
    """Journal methods for the checkpoints table; split out so journal.py stays one readable file."""

    path: Path
    _db: sqlite3.Connection

    def get(self, seq: int) -> Entry | None: ...  # provided by Journal

    def _write(self, sql: str, params=()) -> int: ...  # provided by Journal

    def add_checkpoint(self, seq: int, head: str, station_jws: bytes) -> None:
        """Record a signed statement of the chain head at seq; head must be that entry's hash."""
        entry = self.get(seq)
        if entry is None:
            raise JournalError(f"{self.path}: checkpoint at seq {seq}: no such entry")
        if entry.msg_hash != head:
            raise JournalError(f"{self.path}: checkpoint at seq {seq}: head {head} is not the entry hash "
                               f"{entry.msg_hash}")
        existing = self._db.execute("SELECT station_jws FROM checkpoints WHERE seq = ?", (seq,)).fetchone()
        if existing is not None:
            if bytes(existing[0]) != bytes(station_jws):
                raise JournalError(f"{self.path}: a different checkpoint at seq {seq} already exists")
            return
        self._write("INSERT INTO checkpoints (seq, head, station_jws) VALUES (?, ?, ?)",
                    (seq, head, bytes(station_jws)))

    def countersign_checkpoint(self, seq: int, town_jws: bytes) -> None:
        row = self._db.execute("SELECT town_jws FROM checkpoints WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise JournalError(f"{self.path}: countersignature for seq {seq}: no such checkpoint")
        if row[0] is not None:
            if bytes(row[0]) != bytes(town_jws):
                raise JournalError(f"{self.path}: checkpoint {seq} already has a different countersignature")
            return
        self._write("UPDATE checkpoints SET town_jws = ? WHERE seq = ?", (bytes(town_jws), seq))

    def latest_checkpoint(self, countersigned: bool = False) -> Checkpoint | None:
        cond = "WHERE town_jws IS NOT NULL" if countersigned else ""
        row = self._db.execute(
            f"SELECT seq, head, station_jws, town_jws FROM checkpoints {cond} ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return checkpoint_from_row(row)
