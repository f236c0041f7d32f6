# The journal's tables and the rows read back from them: Entry, JournalStats, Checkpoint.
from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

APPLICATION_ID = 0x4E474A31  # "NGJ1": tells a journal apart from any other SQLite file
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    message BLOB NOT NULL,
    msg_hash TEXT NOT NULL,
    prev TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('negative', 'positive', 'invalid')),
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
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY,
    head TEXT NOT NULL,
    station_jws BLOB NOT NULL,
    town_jws BLOB
);
CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, expires_unix REAL NOT NULL);
CREATE INDEX IF NOT EXISTS nonces_expiry ON nonces (expires_unix);
"""



def create_tables(db: sqlite3.Connection) -> None:
    """Tables, application_id and user_version in one IMMEDIATE transaction: a crash leaves all or nothing."""
    db.executescript(
        f"BEGIN IMMEDIATE; {SCHEMA} PRAGMA application_id={APPLICATION_ID};"
        f" PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
    )


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
