# The town database's tables, and the additive migrations that let an older town database open unchanged.
from __future__ import annotations

import sqlite3
from typing import Any

from station.town import db as dbmod
from station.town.alerts import ALERTS_SCHEMA
from station.town.refusals import SCHEMA as REFUSALS_SCHEMA

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
  station TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,      -- kind: result | withheld
  message BLOB NOT NULL, msg_hash TEXT NOT NULL, prev TEXT, kid TEXT NOT NULL,
  sample TEXT, verdict TEXT, tc_ratio REAL, t_area REAL, c_area REAL, read_at TEXT,
  received_at TEXT NOT NULL, sig_ok INTEGER NOT NULL DEFAULT 1,
  PRIMARY KEY (station, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refusals (
  id INTEGER PRIMARY KEY, received_at TEXT NOT NULL, topic TEXT NOT NULL, station TEXT,
  seq INTEGER, code TEXT NOT NULL, detail TEXT NOT NULL, message BLOB);
CREATE TABLE IF NOT EXISTS counters (
  station TEXT NOT NULL, name TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (station, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
  station TEXT NOT NULL, seq INTEGER NOT NULL, head TEXT NOT NULL, message BLOB NOT NULL,
  jws_sha256 TEXT NOT NULL, received_at TEXT NOT NULL, state TEXT NOT NULL,  -- pending|verified|mismatch
  PRIMARY KEY (station, seq, jws_sha256)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stations (
  station TEXT PRIMARY KEY, contiguous INTEGER NOT NULL DEFAULT 0, status TEXT, status_at TEXT,
  last_ack BLOB, last_ack_seq INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
"""

# Columns added after the first release: (table, column, type). Added in place; old rows are backfilled.
ADDED_COLUMNS = (("stations", "last_seen", "TEXT"), ("results", "producer", "TEXT"),
                 # issue 11: QC records (record_kind 'qc') and re-test chains; NULL for older records
                 ("results", "record_kind", "TEXT"), ("results", "retest_of", "TEXT"),
                 ("results", "retest_status", "TEXT"))
# Station state changes seen in status messages (online/offline, with the time the town saw them): the monthly
# report's offline hours. One row per change, not per status message.
PRESENCE_SCHEMA = """
CREATE TABLE IF NOT EXISTS presence (
  station TEXT NOT NULL, at TEXT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (station, at, state)) WITHOUT ROWID;
"""
INDEXES = """
CREATE INDEX IF NOT EXISTS results_sample ON results (sample);
CREATE INDEX IF NOT EXISTS results_producer ON results (producer);
CREATE INDEX IF NOT EXISTS results_received ON results (received_at);
CREATE INDEX IF NOT EXISTS results_retest_of ON results (retest_of) WHERE retest_of IS NOT NULL;
"""


def create(db: Any) -> None:
    """Create or upgrade every table; idempotent, so each process opening the database may call it."""
    if dbmod.dialect(db) == "postgresql":
        _create_pg(db)
        return
    db.executescript(SCHEMA)
    db.executescript(PRESENCE_SCHEMA)
    db.executescript(REFUSALS_SCHEMA)
    db.executescript(ALERTS_SCHEMA)
    db.execute("BEGIN IMMEDIATE")    # two processes opening an old database at once: one of them migrates
    try:
        for table, column, typ in ADDED_COLUMNS:
            if column not in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {typ}")
                if (table, column) == ("results", "producer"):
                    _backfill_producer(db)
                if (table, column) == ("results", "retest_status"):
                    _backfill_chain(db)
                if (table, column) == ("stations", "last_seen"):
                    db.execute("UPDATE stations SET last_seen = (SELECT MAX(received_at) FROM results r "
                               "WHERE r.station = stations.station)")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    db.executescript(INDEXES)


def _create_pg(db: Any) -> None:
    # Even a no-op ALTER TABLE … IF NOT EXISTS takes an exclusive lock, which deadlocks with a listener already
    # writing: a complete schema is left alone. CREATE races with itself across sessions: one process at a time.
    if all(column in dbmod.columns(db, table) for table, column, _ in ADDED_COLUMNS) and \
            db.execute("SELECT to_regclass('presence') IS NOT NULL AND to_regclass('refusal_counts') IS NOT NULL"
                       ).fetchone()[0]:
        return
    db.execute("BEGIN")
    try:
        db.execute("SELECT pg_advisory_xact_lock(?)", (dbmod.SCHEMA_LOCK,))
        db.executescript(dbmod.pg_types(SCHEMA + ALERTS_SCHEMA + PRESENCE_SCHEMA))
        for table, column, typ in ADDED_COLUMNS:
            db.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {typ}")
        db.executescript(dbmod.pg_types(REFUSALS_SCHEMA) + INDEXES)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _backfill_producer(db: sqlite3.Connection) -> None:
    from station.errors import SignatureError
    from station.protocol.signing import unverified_payload

    rows = db.execute("SELECT station, seq, message FROM results WHERE kind='result'").fetchall()
    for station, seq, message in rows:
        try:
            producer = (unverified_payload(bytes(message)).get("sample") or {}).get("producer")
        except SignatureError:
            continue
        if isinstance(producer, str):
            db.execute("UPDATE results SET producer=? WHERE station=? AND seq=?", (producer, station, seq))


def _backfill_chain(db: sqlite3.Connection) -> None:
    """Records stored before the chain columns existed get them from their signed message."""
    from station.errors import SignatureError
    from station.protocol.signing import unverified_payload

    for station, seq, message in db.execute("SELECT station, seq, message FROM results WHERE kind='result'"
                                            ).fetchall():
        try:
            body = unverified_payload(bytes(message))
        except SignatureError:
            continue
        rt = body.get("retest") if isinstance(body.get("retest"), dict) else {}
        of, status = rt.get("of"), rt.get("status")
        db.execute("UPDATE results SET record_kind=?, retest_of=?, retest_status=? WHERE station=? AND seq=?",
                   ("qc" if body.get("kind") == "qc" else "result", of if isinstance(of, str) else None,
                    status if isinstance(status, str) else None, station, seq))
