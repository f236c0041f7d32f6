# What the town keeps of the messages it refuses: a count per (source, code), a capped sample of evidence,
# and log lines limited per (source, code), so junk from the broker can fill neither the disk nor the log.
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from station.protocol.wire import now_rfc3339
from station.town.verify import LOUD, Refuse, evidence

log = logging.getLogger("station.town")

SCHEMA = """
CREATE TABLE IF NOT EXISTS refusal_counts (
  source TEXT NOT NULL, code TEXT NOT NULL, n INTEGER NOT NULL, first_at TEXT NOT NULL, last_at TEXT NOT NULL,
  PRIMARY KEY (source, code)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refusals_by_source ON refusals (station, code, id);
"""

# Refusals on a topic no trusted key signs for are counted under this source: the topic path of an
# unauthenticated message is whatever the sender typed, and each one must not become a "station".
UNTRUSTED = "(untrusted)"
EVIDENCE_PER_KEY = 50        # newest evidence rows kept per (source, code)
EVIDENCE_PER_MINUTE = 20     # at most this many evidence rows written per (source, code) per minute
LOG_EVERY_S = 60.0           # one log line per (source, code) per this many seconds, with the number held back


@dataclass
class _Budget:
    window_start: float = 0.0
    written: int = 0
    last_log: float = -1e9
    held_back: int = 0


@dataclass
class RefusalBook:
    """Records refusals into the store's connection (inside the caller's transaction)."""

    db: Any    # sqlite3.Connection or db.PgConnection; its tables come from schema.create
    budgets: dict[tuple[str, str], _Budget] = field(default_factory=dict)

    def record(self, topic: str, source: str | None, r: Refuse, payload: bytes, now: float | None) -> None:
        """Count the refusal; keep its evidence and log it unless this (source, code) has had its share."""
        src = source or UNTRUSTED
        at = now_rfc3339(now)
        self.db.execute("INSERT INTO refusal_counts VALUES (?,?,1,?,?) ON CONFLICT (source, code) "
                        "DO UPDATE SET n=refusal_counts.n+1, last_at=excluded.last_at", (src, r.code, at, at))
        b = self.budgets.setdefault((src, r.code), _Budget())
        t = time.monotonic()
        if t - b.window_start >= 60.0:
            b.window_start, b.written = t, 0
        if b.written < EVIDENCE_PER_MINUTE:
            b.written += 1
            self.db.execute(
                "INSERT INTO refusals (received_at, topic, station, seq, code, detail, message) VALUES (?,?,?,?,?,?,?)",
                (at, topic[:256], source, r.seq, r.code, r.detail[:1000], evidence(r.code, payload)))
            same = "station IS NULL" if source is None else "station = ?"
            key = (r.code,) if source is None else (source, r.code)
            self.db.execute(
                f"DELETE FROM refusals WHERE {same} AND code=? AND id <= (SELECT id FROM refusals WHERE {same} "
                "AND code=? ORDER BY id DESC LIMIT 1 OFFSET ?)", (*key, *key, EVIDENCE_PER_KEY))
        if t - b.last_log >= LOG_EVERY_S:
            more = f" (and {b.held_back} more like it since the last line)" if b.held_back else ""
            (log.error if r.code in LOUD else log.warning)(
                "REFUSED %s %s#%s [%s] %s%s", topic[:256], src, r.seq if r.seq is not None else "-",
                r.code, r.detail[:300], more)
            b.last_log, b.held_back = t, 0
        else:
            b.held_back += 1
