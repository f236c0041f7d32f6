# Group commit: several results in one transaction (one fsync), each in its own savepoint.
"""For serial instruments a replay or a fast reader delivers records in bursts; one fsync per record
caps the journal at ~150 records/s on an SD card, one per burst does not. Each item has its own
savepoint, so a duplicate (DuplicateRecord from its `also`) or an item whose message fails its
checks is left out alone, without a seq, and the others still commit; each row goes in through
Journal._insert, the same as append_many's."""
from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from station.errors import JournalError, StationError
from station.journal.damage import damage_or_error
from station.journal.journal import Journal
from station.journal.schema import Entry
from station.protocol.result import GENESIS_PREV, RESULT_VERDICTS


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
                entry = journal._insert(seq, prev, it.make, it.verdict, it.sample_id, None, it.verdict == "positive")
                if it.also is not None:
                    it.also(db, seq)
            except StationError as exc:
                db.execute("ROLLBACK TO item")
                db.execute("RELEASE item")
                out.append(exc)
                continue
            db.execute("RELEASE item")
            out.append(entry)
            seq, prev = seq + 1, entry.msg_hash
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        journal._rollback()
        raise damage_or_error(journal.path, exc, f"append of {len(items)} failed; results NOT recorded") from None
    except BaseException:
        journal._rollback()
        raise
    return out
