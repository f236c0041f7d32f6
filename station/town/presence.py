# Station presence: online/offline changes seen in status messages, and the offline time they add up to.
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from station.protocol.wire import now_rfc3339
from station.town import db as dbmod

STALE_S = 3600.0    # an "online" station the town has not heard from for an hour counts as offline since then


def note(db: Any, path: str, state: object, now: float | None, retained: bool) -> None:
    """Note a change between online and offline (inside the status message's transaction). A retained status
    replayed on subscribe tells a change that happened while the town was away: dated at the last contact."""
    if state not in ("online", "offline"):
        return
    last = db.execute("SELECT state FROM presence WHERE station=? ORDER BY at DESC LIMIT 1", (path,)).fetchone()
    if last is not None and last[0] == state:
        return
    at = now_rfc3339(now)
    if retained:
        seen = db.execute("SELECT last_seen FROM stations WHERE station=?", (path,)).fetchone()
        if last is None or not seen or not seen[0]:
            return
        at = seen[0]
    db.execute("INSERT INTO presence VALUES (?,?,?) ON CONFLICT DO NOTHING", (path, at, state))


def _stamp(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC) if text else None
    except ValueError:
        return None


def offline_s(db: Any, path: str, last_seen: str | None, start: datetime, end: datetime,
               now: datetime) -> float:
    """Seconds of the month the station was offline: between an "offline" status (its last will) and the next
    "online", and after the last contact of a station that fell silent without a will for over STALE_S."""
    if "state" not in dbmod.columns(db, "presence"):
        return 0.0
    rows = [(_stamp(at), state) for at, state in db.execute(
        "SELECT at, state FROM presence WHERE station=? ORDER BY at", (path,)).fetchall()]
    stop = min(end, now)
    spans: list[tuple[datetime, datetime]] = []
    for i, (at, state) in enumerate(rows):
        if at is None or state != "offline":
            continue
        nxt = next((t for t, s in rows[i + 1:] if t is not None and s == "online"), None)
        spans.append((at, nxt or stop))
    seen = _stamp(last_seen)
    if seen is not None and (not rows or rows[-1][1] == "online") and (stop - seen).total_seconds() > STALE_S:
        spans.append((seen, stop))
    return sum(max(0.0, (min(b, stop) - max(a, start)).total_seconds()) for a, b in spans)
