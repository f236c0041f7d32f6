# QC records and re-test chains as columns of the town's results, so reports and alerts can join on them.
from __future__ import annotations

from typing import Any


def chain_columns(db: Any, path: str, seq: int, body: dict) -> None:
    """The signed message stays the truth; these columns only index it (record_kind, retest_of, retest_status)."""
    rt = body.get("retest") if isinstance(body.get("retest"), dict) else {}
    kind = body.get("kind") if body.get("kind") in ("result", "qc") else "result"
    of, status = rt.get("of"), rt.get("status")
    db.execute("UPDATE results SET record_kind=?, retest_of=?, retest_status=? WHERE station=? AND seq=?",
               (kind, of[:200] if isinstance(of, str) else None,
                status[:40] if isinstance(status, str) else None, path, seq))
