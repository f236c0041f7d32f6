# The journal's tables and the rows read back from them: Entry, JournalStats, Checkpoint.
from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from station.errors import JournalError

APPLICATION_ID = 0x4E474A31  # "NGJ1": tells a journal apart from any other SQLite file
SCHEMA_VERSION = 2  # 2: verdict 'suspect'; instrument_records and reader_faults tables

_CHECK_V1 = "CHECK (verdict IN ('negative', 'positive', 'invalid'))"
_CHECK_V2 = "CHECK (verdict IN ('negative', 'positive', 'invalid', 'suspect'))"

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    message BLOB NOT NULL,
    msg_hash TEXT NOT NULL,
    prev TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('negative', 'positive', 'invalid', 'suspect')),
    sample_id TEXT,
    image_path TEXT,
    created_monotonic REAL NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    published INTEGER NOT NULL DEFAULT 0,
    acked INTEGER NOT NULL DEFAULT 0,
    quarantined TEXT
);
-- Partial indexes stay as small as the outbox; the extra columns let stats() count without row reads.
CREATE INDEX IF NOT EXISTS results_unacked ON results (seq, published, acked) WHERE acked = 0;
CREATE INDEX IF NOT EXISTS results_unacked_priority ON results (seq, verdict, acked, priority)
    WHERE acked = 0 AND priority = 1;
CREATE INDEX IF NOT EXISTS results_quarantined ON results (seq) WHERE quarantined IS NOT NULL;
CREATE INDEX IF NOT EXISTS results_sample ON results (sample_id);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY,
    head TEXT NOT NULL,
    station_jws BLOB NOT NULL,
    town_jws BLOB
);
CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, expires_unix REAL NOT NULL);
CREATE INDEX IF NOT EXISTS nonces_expiry ON nonces (expires_unix);
""" + """
-- Serial instruments: which instrument record became which result (written in the result's own
-- transaction, so a SIGKILL never leaves a result without its duplicate key or the other way round),
-- and the evidence of reader faults (cut reports, bad checksums), which are never results.
CREATE TABLE IF NOT EXISTS instrument_records (
    instrument TEXT NOT NULL,
    record INTEGER NOT NULL,
    stamp TEXT NOT NULL DEFAULT '',
    seq INTEGER NOT NULL,
    nth INTEGER NOT NULL,
    PRIMARY KEY (instrument, record, stamp)
);
CREATE INDEX IF NOT EXISTS instrument_records_nth ON instrument_records (instrument, nth);
CREATE TABLE IF NOT EXISTS reader_faults (
    id INTEGER PRIMARY KEY,
    instrument TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    raw BLOB NOT NULL,
    at_unix REAL NOT NULL
);
"""



SAMPLE_INDEX = "CREATE INDEX IF NOT EXISTS results_sample ON results (sample_id)"


def create_tables(db: sqlite3.Connection) -> None:
    """Tables, application_id and user_version in one IMMEDIATE transaction: a crash leaves all or nothing."""
    db.executescript(
        f"BEGIN IMMEDIATE; {SCHEMA} PRAGMA application_id={APPLICATION_ID};"
        f" PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
    )


def upgrade(db: sqlite3.Connection, path: object) -> None:
    """Bring a version-1 journal to this version in one transaction, or refuse a journal from elsewhere.

    Version 2 only widens the verdict CHECK (adds 'suspect') and adds tables: no row is rewritten. SQLite
    cannot ALTER a CHECK, and loosening one changes nothing on disk, so the table's stored SQL is edited
    the way SQLite's ALTER TABLE documentation describes (writable_schema, schema_version bumped).
    """
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == 1:
        db.execute("BEGIN IMMEDIATE")
        try:
            # Read again under the write lock: another connection on the file may have upgraded it meanwhile.
            if db.execute("PRAGMA user_version").fetchone()[0] == 1:
                _widen_v1(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        version = db.execute("PRAGMA user_version").fetchone()[0]
    if version != SCHEMA_VERSION:
        raise JournalError(f"{path}: journal schema version {version}, this firmware reads {SCHEMA_VERSION}")


def _widen_v1(db: sqlite3.Connection) -> None:
    for stmt in SCHEMA.split(";"):
        if "instrument_records" in stmt or "reader_faults" in stmt:
            db.execute(stmt)
    cookie = db.execute("PRAGMA schema_version").fetchone()[0]
    db.execute("PRAGMA writable_schema=ON")
    db.execute("UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE type = 'table' AND name = 'results'",
               (_CHECK_V1, _CHECK_V2))
    db.execute(f"PRAGMA schema_version={cookie + 1}")
    db.execute("PRAGMA writable_schema=OFF")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


# The SELECT list every Entry is read with; entry_from_row unpacks it in this order.
COLUMNS = (
    "seq, id, message, msg_hash, prev, verdict, sample_id, image_path, published, acked, quarantined,"
    " created_monotonic, priority"
)


@dataclass(frozen=True)
class Entry:
    seq: int
    id: str
    message: bytes
    msg_hash: str
    prev: str
    verdict: str
    sample_id: str | None
    image_path: str | None
    published: bool
    acked: bool
    quarantined: str | None
    created_monotonic: float = 0.0
    priority: bool = False


@dataclass(frozen=True)
class JournalStats:
    last_seq: int
    acked_seq: int
    unacked: int
    unpublished: int  # unacknowledged and not yet PUBACKed since the last reset
    quarantined: int
    positives_unacked: int


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    head: str
    station_jws: bytes
    town_jws: bytes | None


def entry_from_row(row: tuple) -> Entry:
    """One row selected with COLUMNS, in that order."""
    seq, rid, msg, h, prev, verdict, sample, image, pub, ack, quar, mono, prio = row
    return Entry(
        seq, rid, bytes(msg), h, prev, verdict, sample, image, bool(pub), bool(ack), quar, mono, bool(prio)
    )


def checkpoint_from_row(row: tuple) -> Checkpoint:
    """One row of SELECT seq, head, station_jws, town_jws FROM checkpoints."""
    return Checkpoint(row[0], row[1], bytes(row[2]), None if row[3] is None else bytes(row[3]))


class Pending(NamedTuple):
    """One result waiting to be journaled: its message factory and the columns the outbox needs."""

    make_message: Callable[[int, str], bytes]
    verdict: str
    sample_id: str | None
    image_path: str | Path | None
    priority: bool | None = None
