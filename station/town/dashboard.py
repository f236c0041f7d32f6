# What the dashboard shows, as plain data: stations, today's results, search, one result re-verified, a receipt
# checked. Read-only queries on a connection opened read-only (mode=ro), one per request.
from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from station.errors import SignatureError
from station.protocol.signing import jws_header, unverified_payload, verify_jws
from station.town import db as dbmod
from station.town.alerts import Alert, recent
from station.town.monthly import town_tz

if TYPE_CHECKING:
    from station.town.trust import TrustStore

STATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
RECEIPT_H = re.compile(r"[0-9a-f]{16}")


def connect(db_path: str | Path) -> sqlite3.Connection:
    db = dbmod.connect(db_path, readonly=True, timeout=10.0)
    db.row_factory = sqlite3.Row     # PgConnection gives rows readable by name too
    return db


def stations(db: sqlite3.Connection, now: datetime | None = None) -> list[dict]:
    """One dict per station: the retained status the listener stored, last contact, what the town holds."""
    out = []
    for r in db.execute("SELECT s.station, s.contiguous, s.status, s.status_at, s.last_seen, "
                        "(SELECT COUNT(*) FROM results x WHERE x.station = s.station) AS held, "
                        "(SELECT MAX(seq) FROM results x WHERE x.station = s.station) AS top "
                        "FROM stations s ORDER BY s.station"):
        try:
            status = json.loads(r["status"]) if r["status"] else {}
        except ValueError:
            status = {}
        status = status if isinstance(status, dict) else {}
        disk = status.get("disk") if isinstance(status.get("disk"), dict) else {}
        out.append({"station": r["station"], "id": r["station"].rsplit("/", 1)[-1],
                    "online": status.get("state") == "online", "state": status.get("state"),
                    "activity": status.get("activity"), "last_seen": r["last_seen"] or r["status_at"],
                    "outbox": status.get("outbox"), "clock_synced": status.get("clock_synced"),
                    "disk_free_mb": disk.get("free_mb"), "disk_used_pct": disk.get("used_pct"),
                    "contiguous": r["contiguous"], "missing": (r["top"] or 0) - r["held"]})
    return out


def _row(r: sqlite3.Row) -> dict:
    d = dict(r)
    d["id"] = d["station"].rsplit("/", 1)[-1]
    return d


COLUMNS = "station, seq, kind, sample, producer, verdict, tc_ratio, read_at, received_at, msg_hash"


def today(db: sqlite3.Connection, now: datetime | None = None, tz: str = "Asia/Shanghai") -> list[dict]:
    """Results received since local midnight, positives first, then newest first."""
    now = now or datetime.now(UTC)
    local = now.astimezone(town_tz(tz))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
    since = midnight.isoformat()[:19]
    rows = db.execute(f"SELECT {COLUMNS} FROM results WHERE received_at >= ? ORDER BY "
                      "verdict = 'positive' DESC, received_at DESC LIMIT 500", (since,)).fetchall()
    return [_row(r) for r in rows]


def search(db: sqlite3.Connection, q: str) -> list[dict]:
    """Results whose sample id or producer contains q (case-insensitive for ASCII), newest first."""
    q = q.strip()[:128]
    if not q:
        return []
    like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = db.execute(f"SELECT {COLUMNS} FROM results WHERE sample LIKE ? ESCAPE '\\' OR producer LIKE ? "
                      "ESCAPE '\\' ORDER BY received_at DESC LIMIT 200", (like, like)).fetchall()
    return [_row(r) for r in rows]


def alerts(db: sqlite3.Connection, limit: int = 20) -> list[Alert]:
    return recent(db, limit)


@dataclass
class Checked:
    """One stored result with its signature checked now (or not: `verified` says which)."""

    station: str
    seq: int
    kind: str
    message: bytes
    msg_hash: str
    body: dict
    received_at: str
    signature: str        # "ok" | "bad" | "unknown-key" | "not-checked"
    chain: str            # "linked" | "broken" | "unknown" (predecessor not held)


def find(db: sqlite3.Connection, station_id: str, seq: int, trust: TrustStore | None) -> list[Checked]:
    """Every stored result with this station id and seq (ids are unique per town; a clash shows them all)."""
    out = []
    rows = db.execute("SELECT station, seq, kind, message, msg_hash, prev, received_at FROM results "
                      "WHERE seq = ? AND (station = ? OR station LIKE ?)",
                      (seq, station_id, "%/" + station_id)).fetchall()
    for r in rows:
        if r["station"].rsplit("/", 1)[-1] != station_id:
            continue
        message = bytes(r["message"])
        try:
            body = unverified_payload(message)
        except SignatureError:
            body = {}
        before = db.execute("SELECT msg_hash FROM results WHERE station=? AND seq=?",
                            (r["station"], seq - 1)).fetchone()
        chain = "linked" if (seq == 1 and r["prev"] == "0" * 64) or (before and before[0] == r["prev"]) else \
            ("broken" if before else "unknown")
        out.append(Checked(r["station"], seq, r["kind"], message, r["msg_hash"], body, r["received_at"],
                           _signature(message, r["station"], trust), chain))
    return out


def _signature(message: bytes, station: str, trust: TrustStore | None) -> str:
    if trust is None:
        return "not-checked"
    try:
        header = jws_header(message)
        found = trust.get(header.get("kid"))
        if found is None or found[1] != station:
            return "unknown-key"
        verify_jws(message, found[0], typ=header.get("typ"))
        return "ok"
    except SignatureError:
        return "bad"


def receipt(db: sqlite3.Connection, station_id: str, seq: int, h: str, trust: TrustStore | None) -> tuple[str, list]:
    """Does a printed receipt (station, seq, first 16 hex of the result message's SHA-256) match what the town
    holds? ("match" | "mismatch" | "not-found" | "withheld" | "bad-signature", the stored results)."""
    found = find(db, station_id, seq, trust)
    if not found:
        return "not-found", []
    for c in found:
        if c.msg_hash[:16] == h:
            if c.signature in ("bad", "unknown-key"):
                return "bad-signature", [c]
            return ("withheld" if c.kind == "withheld" else "match"), [c]
    return "mismatch", found


def local_time(stamp: str | None, tz: str = "Asia/Shanghai") -> str:
    """An RFC 3339 UTC stamp as town-local 'YYYY-MM-DD HH:MM:SS'."""
    if not stamp:
        return "-"
    try:
        t = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    return t.astimezone(town_tz(tz)).strftime("%Y-%m-%d %H:%M:%S")


def online_age(last_seen: str | None, now: datetime | None = None) -> timedelta | None:
    if not last_seen:
        return None
    try:
        return (now or datetime.now(UTC)) - datetime.fromisoformat(last_seen.replace("Z", "+00:00"))
    except ValueError:
        return None
