# Group commit: several results in one transaction (one fsync), each in its own savepoint.
"""For serial instruments a replay or a fast reader delivers records in bursts; one fsync per record
caps the journal at ~150 records/s on an SD card, one per burst does not. Each item has its own
savepoint, so a duplicate (DuplicateRecord from its `also`) or an item whose message fails its
checks is left out alone, without a seq, and the others still commit. This is Journal.append's
insert, repeated; if Journal gains an append_many, this module can become a call to it."""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from station.errors import JournalError, StationError
from station.journal.chain import check_message
from station.journal.damage import damage_or_error
from station.journal.journal import Journal
from station.journal.schema import Entry
from station.protocol.result import GENESIS_PREV, RESULT_VERDICTS
from station.protocol.wire import message_hash


@dataclass(frozen=True)
class Item:
    make: Callable[[int, str], bytes]
    verdict: str
    sample_id: str | None
    also: Callable[[sqlite3.Connection, int], None] | None = None


def append_batch(journal: Journal, items: list[Item]) -> list[Entry | StationError]:
    """Journal items in order, durable when this returns; per item its Entry, or the StationError
    (DuplicateRecord, RecordError …) that kept it out. A journal failure raises and records none."""
    for it in items:
        if it.verdict not in RESULT_VERDICTS:
            raise JournalError(f"{journal.path}: verdict {it.verdict!r} is not journaled")
    db = journal._db  # the same connection and transaction discipline as Journal.append
    journal._begin(f"cannot start append of {len(items)}; results NOT recorded")
    out: list[Entry | StationError] = []
    try:
        row = db.execute("SELECT seq, msg_hash FROM results ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS_PREV)
        for it in items:
            db.execute("SAVEPOINT item")
            try:
                message = it.make(seq, prev)
                rid = check_message(journal.path, message, seq, prev, it.verdict, it.sample_id)
                h, mono, prio = message_hash(message), time.monotonic(), it.verdict == "positive"
                db.execute(
                    "INSERT INTO results (seq, id, message, msg_hash, prev, verdict, sample_id, image_path,"
                    " created_monotonic, priority) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                    (seq, rid, message, h, prev, it.verdict, it.sample_id, mono, int(prio)))
                if it.also is not None:
                    it.also(db, seq)
            except StationError as exc:
                db.execute("ROLLBACK TO item")
                db.execute("RELEASE item")
                out.append(exc)
                continue
            db.execute("RELEASE item")
            out.append(Entry(seq, rid, message, h, prev, it.verdict, it.sample_id, None, False, False, None, mono,
                             prio))
            seq, prev = seq + 1, h
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        journal._rollback()
        raise damage_or_error(journal.path, exc, f"append of {len(items)} failed; results NOT recorded") from None
    except BaseException:
        journal._rollback()
        raise
    return out
