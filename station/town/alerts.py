# Town alerts (风险预警): which stored causes raise one, recorded in the same transaction as the cause.
# The delivery worker (station/town/delivery.py) sends them later from the alerts table, so an alert survives a
# crash or a webhook that is down: the table is the outbox, exactly as the station's journal is.
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from station.protocol.wire import now_rfc3339
from station.town import db as dbmod

ALERTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
  id INTEGER PRIMARY KEY, kind TEXT NOT NULL, station TEXT, seq INTEGER, raised_at TEXT NOT NULL,
  detail TEXT NOT NULL, dedupe TEXT UNIQUE);
CREATE TABLE IF NOT EXISTS alert_cursors (
  webhook TEXT PRIMARY KEY, delivered INTEGER NOT NULL, updated_at TEXT NOT NULL) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Kind:
    """One kind of alert: its Chinese title for the robots and whether it is about a finding or about trust."""

    title: str
    severity: str   # finding | integrity | health


KINDS: dict[str, Kind] = {
    "positive": Kind("阳性检出", "finding"),
    "confirmed-positive": Kind("复检确认阳性", "finding"),
    "qc-failed": Kind("质控失败", "finding"),
    "silent": Kind("检测站失联", "health"),
    "gap": Kind("结果序号缺失", "integrity"),
    "equivocation": Kind("同一序号出现两份不同签名结果", "integrity"),
    "broken-chain": Kind("结果哈希链断裂", "integrity"),
    "wrong-path": Kind("密钥越权发布", "integrity"),
    "checkpoint-mismatch": Kind("检查点与已存结果不符", "integrity"),
}
# Refusal codes that mean a trusted station (or its key) misbehaves; junk from anyone else raises no alert.
REFUSAL_ALERTS = ("equivocation", "broken-chain", "wrong-path", "checkpoint-mismatch")
# Daily control cards are records of kind "qc" with a qc object (qc.passed). Older records marked a reference
# sample with {"qc": "expect-positive" | "expect-negative"}: a verdict other than the expected one failed.
QC_EXPECT = {"expect-positive": "positive", "expect-negative": "negative"}


@dataclass(frozen=True)
class Alert:
    """A row of the alerts table."""

    id: int
    kind: str
    station: str | None
    seq: int | None
    raised_at: str
    detail: dict

    @property
    def title(self) -> str:
        return KINDS[self.kind].title if self.kind in KINDS else self.kind


def raise_alert(db: sqlite3.Connection, kind: str, station: str | None, seq: int | None, detail: dict,
                dedupe: str | None = None, now: float | None = None) -> bool:
    """Insert one alert in the caller's transaction; False when `dedupe` says it was raised already."""
    if kind not in KINDS:
        raise ValueError(f"alert kind {kind!r} is not one of {', '.join(KINDS)}")
    dbmod.lock_alerts(db)
    cur = db.execute("INSERT INTO alerts (kind, station, seq, raised_at, detail, dedupe) "
                     "VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                     (kind, station, seq, now_rfc3339(now), json.dumps(detail, ensure_ascii=False), dedupe))
    return cur.rowcount == 1


def result_alerts(db: sqlite3.Connection, path: str, seq: int, body: dict, now: float | None = None) -> list[str]:
    """Alerts a freshly stored result raises: positive, confirmed positive (a re-test of a sample that was
    already positive for the same analyte), failed QC. Called inside the ingest transaction."""
    sample = body.get("sample") if isinstance(body.get("sample"), dict) else {}
    strip = body.get("strip") if isinstance(body.get("strip"), dict) else {}
    verdict, sample_id, analyte = body.get("verdict"), sample.get("id"), strip.get("analyte")
    detail = {"sample": sample_id, "producer": sample.get("producer"), "analyte": analyte,
              "strip": strip.get("type"), "verdict": verdict, "read_at": (body.get("time") or {}).get("read_at"),
              "tc_ratio": (body.get("reading") or {}).get("tc_ratio")}
    raised: list[str] = []
    qc = body.get("qc") if body.get("kind") == "qc" and isinstance(body.get("qc"), dict) else None
    if qc is not None:   # a daily control card (issue 11): it failed, or it is no finding at all
        if qc.get("passed") is not True:
            raise_alert(db, "qc-failed", path, seq, {**detail, "control": qc.get("control"), "lot": qc.get("lot"),
                                                     "reason": qc.get("reason")}, f"qc:{path}:{seq}", now)
            raised.append("qc-failed")
        return raised
    rt = body.get("retest") if isinstance(body.get("retest"), dict) else None
    if rt is not None:   # a re-test cites its first test: the station's own chain decides, no guessing by sample
        if rt.get("status") in ("confirmed_positive", "resolved_positive"):
            detail.update(first=rt.get("of"), round=rt.get("round"), status=rt.get("status"))
            raise_alert(db, "confirmed-positive", path, seq, detail, f"confirmed-positive:{path}:{seq}", now)
            raised.append("confirmed-positive")
        return raised
    expect = QC_EXPECT.get(sample.get("qc")) if isinstance(sample.get("qc"), str) else None
    if expect is not None:
        if verdict != expect:
            raise_alert(db, "qc-failed", path, seq, {**detail, "expected": expect}, f"qc:{path}:{seq}", now)
            raised.append("qc-failed")
        return raised    # a reference sample is not a finding about a producer
    if verdict == "positive":
        earlier = db.execute(
            "SELECT station, seq FROM results WHERE sample=? AND verdict='positive' AND NOT (station=? AND seq=?)"
            " LIMIT 50", (sample_id, path, seq)).fetchall() if sample_id is not None else []
        same_analyte = [r for r in earlier if _analyte(db, r[0], r[1]) == analyte]
        kind = "confirmed-positive" if same_analyte else "positive"
        if same_analyte:
            detail["first"] = f"{same_analyte[0][0]}#{same_analyte[0][1]}"
        raise_alert(db, kind, path, seq, detail, f"{kind}:{path}:{seq}", now)
        raised.append(kind)
    return raised


def _analyte(db: sqlite3.Connection, path: str, seq: int) -> str | None:
    from station.protocol.signing import unverified_payload

    row = db.execute("SELECT message FROM results WHERE station=? AND seq=?", (path, seq)).fetchone()
    try:
        return (unverified_payload(bytes(row[0])).get("strip") or {}).get("analyte") if row else None
    except Exception:   # a stored message is verified at receipt; a decode failure here only means "unknown"
        return None


def gap_alert(db: sqlite3.Connection, path: str, gaps: list[tuple[int, int]], now: float | None = None) -> bool:
    """One alert per gap, keyed by its upper end (which stays put while the bottom fills)."""
    new = False
    for a, b in gaps:
        missing = f"{a}..{b}" if a != b else str(a)
        new = raise_alert(db, "gap", path, b, {"missing": missing}, f"gap:{path}:{b}", now) or new
    return new


def silent_alerts(db: sqlite3.Connection, silent_after_s: float, now: float) -> list[str]:
    """Stations whose last message is older than silent_after_s: one alert per silence (keyed by last_seen)."""
    cutoff = now_rfc3339(now - silent_after_s)
    out = []
    # Already-alerted silences are filtered here, so the check (every second) writes nothing until one begins.
    for station, last_seen in db.execute(
            "SELECT station, last_seen FROM stations s WHERE last_seen IS NOT NULL AND last_seen < ? AND NOT EXISTS "
            "(SELECT 1 FROM alerts a WHERE a.dedupe = 'silent:' || s.station || ':' || s.last_seen)",
            (cutoff,)).fetchall():
        if raise_alert(db, "silent", station, None, {"last_seen": last_seen, "silent_after_s": silent_after_s},
                       f"silent:{station}:{last_seen}", now):
            out.append(station)
    return out


def pending(db: sqlite3.Connection, after_id: int, limit: int = 500) -> list[Alert]:
    rows = db.execute("SELECT id, kind, station, seq, raised_at, detail FROM alerts WHERE id > ? ORDER BY id "
                      "LIMIT ?", (after_id, limit)).fetchall()
    return [Alert(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]


def recent(db: sqlite3.Connection, limit: int = 50) -> list[Alert]:
    rows = db.execute("SELECT id, kind, station, seq, raised_at, detail FROM alerts ORDER BY id DESC LIMIT ?",
                      (limit,)).fetchall()
    return [Alert(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]
