# The month's figures (月报) per station, product and analyte, computed from the signed messages the town stores.
# Read-only. Every figure comes from the stored message bytes (the signed record), not from derived columns.
from __future__ import annotations

import re
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path

from station.errors import SignatureError, TownOptionError
from station.protocol.signing import unverified_payload
from station.town import db as dbmod
from station.town import presence
from station.town.alerts import QC_EXPECT

LATE_S = 3600.0     # a result received more than an hour after it was read arrived late (outage, backlog)


def town_tz(name: str = "Asia/Shanghai") -> tzinfo:
    """The zone the month is counted in: a result read at 23:30 Beijing time belongs to that Beijing day."""
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except Exception:   # no tzdata on the machine: China has kept UTC+8 without daylight saving since 1991
        if name != "Asia/Shanghai":
            raise TownOptionError(f"--tz {name!r}: unknown time zone (is tzdata installed?)") from None
        return timezone(timedelta(hours=8), "CST")


def month_window(month: str, tz_name: str) -> tuple[tzinfo, datetime, datetime]:
    """(zone, first instant of the month, first instant of the next) in the town's time zone."""
    year, mon = parse_month(month)
    tz = town_tz(tz_name)
    return tz, datetime(year, mon, 1, tzinfo=tz), datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=tz)


def open_readonly(db_path: str | Path) -> sqlite3.Connection:
    """Reports and exports only read: a read-only connection cannot change the evidence by mistake."""
    return dbmod.connect(db_path, readonly=True)


def parse_month(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d{4})-(\d{2})", text or "")
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise TownOptionError(f"--month {text!r}: expected YYYY-MM, e.g. 2026-11")
    return int(m.group(1)), int(m.group(2))


def _stamp(text: str | None) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


@dataclass
class StationMonth:
    """One row of the report: what one station did in the month."""

    station: str
    tests: int = 0
    positives: int = 0
    negatives: int = 0
    invalid: int = 0
    retests: int = 0
    retest_positive: int = 0
    retest_negative: int = 0
    confirmed_positives: int = 0
    qc_runs: int = 0
    qc_passed: int = 0
    withheld: int = 0
    late: int = 0
    unsynced_clock: int = 0
    missing_seq: int = 0
    refusals: int = 0
    plan_done: int = 0      # the newest plan the town sent (town plan send --db): samples done, capped per task
    plan_quota: int = 0
    last_seen: str | None = None
    offline_hours: float = 0.0

    @property
    def plan(self) -> str:
        """"done/quota (percent)" of the newest plan the town sent this station, or "no plan"."""
        if not self.plan_quota:
            return "no plan"
        return f"{self.plan_done}/{self.plan_quota} ({self.plan_done / self.plan_quota:.0%})"

    @property
    def village(self) -> str:
        return self.station.split("/")[2] if self.station.count("/") >= 3 else ""

    @property
    def qc_basis(self) -> str:
        """QC runs on reference samples when the station made any; otherwise the strips' control lines."""
        return "qc-runs" if self.qc_runs else "control-line"

    @property
    def qc_pass_rate(self) -> float | None:
        if self.qc_runs:
            return self.qc_passed / self.qc_runs
        return (self.tests - self.invalid) / self.tests if self.tests else None


@dataclass
class MonthReport:
    month: str
    tz: str
    stations: list[StationMonth]
    products: dict[tuple[str, str, str], Counter] = field(default_factory=dict)   # (station, type, analyte)
    daily: dict[str, Counter] = field(default_factory=dict)                        # YYYY-MM-DD -> counts
    positives: list[dict] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(getattr(s, name) for s in self.stations)


def selected(path: str, village: str | None, station: str | None) -> bool:
    parts = path.split("/")
    if station and station not in (path, parts[-1]):
        return False
    return not village or village in ("/".join(parts[:3]), parts[2] if len(parts) > 2 else "")


def build(db_path: str | Path, month: str, *, village: str | None = None, station: str | None = None,
          tz_name: str = "Asia/Shanghai", now: datetime | None = None) -> MonthReport:
    """The report for `month` (YYYY-MM in tz_name); `village` (name or district/town/village) or `station`
    (id or full path) narrows it."""
    tz, start, end = month_window(month, tz_name)
    db = open_readonly(db_path)
    try:
        return _build(db, month, tz_name, tz, start, end, village, station, now or datetime.now(UTC))
    finally:
        db.close()


def when_read(body: dict, received_at: str) -> datetime | None:
    """When the result was read: the station's stamp if its clock was synced, else when the town received it."""
    t = body.get("time") if isinstance(body.get("time"), dict) else {}
    return (_stamp(t.get("read_at")) if t.get("clock_synced") is True else None) or _stamp(received_at)


def _build(db: sqlite3.Connection, month: str, tz_name: str, tz: tzinfo, start: datetime, end: datetime,
           village: str | None, station: str | None, now: datetime) -> MonthReport:
    # Rows are pre-selected by a window one day wider than the month on both stamps, then placed exactly.
    lo = (start - timedelta(days=2)).astimezone(UTC).isoformat()[:19]
    hi = (end + timedelta(days=2)).astimezone(UTC).isoformat()[:19]
    rows = db.execute(
        "SELECT station, seq, kind, message, received_at FROM results WHERE (received_at >= ? AND received_at < ?)"
        " OR (read_at >= ? AND read_at < ?)", (lo, hi, lo, hi)).fetchall()
    stations: dict[str, StationMonth] = {}
    for (path,) in db.execute("SELECT station FROM stations UNION SELECT station FROM results"):
        if selected(path, village, station):
            stations[path] = StationMonth(path)
    if station and not stations:
        raise TownOptionError(f"--station {station!r}: no such station in the database")
    if village and not stations:
        raise TownOptionError(f"--village {village!r}: no station of that village in the database")
    report = MonthReport(month, tz_name, [])
    month_rows: list[tuple[datetime, str, int, dict, str]] = []
    for path, seq, kind, message, received_at in rows:
        sm = stations.get(path)
        if sm is None:
            continue
        try:
            body = unverified_payload(bytes(message))   # verified at receipt; `town show --trust` re-verifies
        except SignatureError:
            continue
        when = when_read(body, received_at) if kind == "result" else _stamp(received_at)
        if when is None or not start <= when < end:
            continue
        if kind != "result":
            sm.withheld += 1
            continue
        month_rows.append((when, path, seq, body, received_at))
    earlier = _earlier_tests(db, month_rows, start)
    for when, path, seq, body, received_at in sorted(month_rows, key=lambda r: (r[0], r[1], r[2])):
        _count(report, stations[path], when.astimezone(tz), path, seq, body, earlier, received_at)
    for path, sm in stations.items():
        sm.missing_seq = _missing(db, path)
        sm.refusals = db.execute("SELECT COUNT(*) FROM refusals WHERE station=? AND received_at >= ? AND "
                                 "received_at < ?", (path, start.astimezone(UTC).isoformat()[:19],
                                                     end.astimezone(UTC).isoformat()[:19])).fetchone()[0]
        sm.last_seen = db.execute("SELECT last_seen FROM stations WHERE station=?", (path,)).fetchone()[0] \
            if _has_column(db, "stations", "last_seen") else None
        sm.offline_hours = round(presence.offline_s(db, path, sm.last_seen, start, end, now) / 3600.0, 2)
    from station.town.orders import fulfilment

    for row in fulfilment(db):
        if row["station"] in stations:
            stations[row["station"]].plan_done += min(row["done"], row["quota"])
            stations[row["station"]].plan_quota += row["quota"]
    report.stations = sorted(stations.values(), key=lambda s: s.station)
    return report


def _earlier_tests(db: sqlite3.Connection, month_rows: list, start: datetime) -> dict[tuple, list[str]]:
    """(sample, analyte) -> verdicts of its tests before the month began, so a re-test early in the month of a
    sample first tested last month counts as a re-test."""
    samples = sorted({(r[3].get("sample") or {}).get("id") for r in month_rows} - {None})
    out: dict[tuple, list[str]] = defaultdict(list)
    for i in range(0, len(samples), 500):
        chunk = samples[i:i + 500]
        q = f"SELECT message, received_at FROM results WHERE kind='result' AND sample IN ({','.join('?' * len(chunk))})"
        for message, received_at in db.execute(q, chunk):
            try:
                body = unverified_payload(bytes(message))
            except SignatureError:
                continue
            when = when_read(body, received_at)
            if when is not None and when < start:
                out[((body.get("sample") or {}).get("id"), (body.get("strip") or {}).get("analyte"))].append(
                    body.get("verdict"))
    return out


def _count(report: MonthReport, sm: StationMonth, local: datetime, path: str, seq: int, body: dict,
           seen: dict[tuple, list[str]], received_at: str) -> None:
    sample = body.get("sample") if isinstance(body.get("sample"), dict) else {}
    strip = body.get("strip") if isinstance(body.get("strip"), dict) else {}
    verdict = body.get("verdict")
    if body.get("kind") == "qc":   # a daily control card (issue 11) is no test of a producer's goods
        sm.qc_runs += 1
        sm.qc_passed += (body.get("qc") or {}).get("passed") is True
        return
    expect = QC_EXPECT.get(sample.get("qc")) if isinstance(sample.get("qc"), str) else None
    if expect is not None:         # a reference-material QC run is no test of a producer's goods
        sm.qc_runs += 1
        sm.qc_passed += verdict == expect
        return
    sm.tests += 1
    sm.positives += verdict == "positive"
    sm.negatives += verdict == "negative"
    sm.invalid += verdict == "invalid"
    t = body.get("time") if isinstance(body.get("time"), dict) else {}
    sm.unsynced_clock += t.get("clock_synced") is not True
    read, got = _stamp(t.get("read_at")), _stamp(received_at)
    if t.get("clock_synced") is True and read and got and (got - read).total_seconds() > LATE_S:
        sm.late += 1
    key = (sample.get("id"), strip.get("analyte"))
    before = seen[key]
    rt = body.get("retest") if isinstance(body.get("retest"), dict) else None
    if rt is not None or before:   # the record says it re-tests `of`; older records: the same sample seen before
        sm.retests += 1
        sm.retest_positive += verdict == "positive"
        sm.retest_negative += verdict == "negative"
        sm.confirmed_positives += rt.get("status") in ("confirmed_positive", "resolved_positive") if rt else \
            verdict == "positive" and "positive" in before
    before.append(verdict)
    pc = report.products.setdefault((path, str(strip.get("type")), str(strip.get("analyte"))), Counter())
    pc["tests"] += 1
    pc["positives"] += verdict == "positive"
    day = report.daily.setdefault(local.date().isoformat(), Counter())
    day["tests"] += 1
    day["positives"] += verdict == "positive"
    if verdict == "positive":
        report.positives.append({"station": path, "seq": seq, "time": local.isoformat(timespec="minutes"),
                                 "sample": sample.get("id"), "producer": sample.get("producer"),
                                 "analyte": strip.get("analyte"), "strip": strip.get("type"),
                                 "retest": rt is not None or len(before) > 1})


def _missing(db: sqlite3.Connection, path: str) -> int:
    """Seqs known to exist (stored or claimed by a checkpoint) that the town does not hold, as of now."""
    last = max(db.execute("SELECT COALESCE(MAX(seq), 0) FROM results WHERE station=?", (path,)).fetchone()[0],
               db.execute("SELECT COALESCE(MAX(seq), 0) FROM checkpoints WHERE station=?", (path,)).fetchone()[0])
    held = db.execute("SELECT COUNT(*) FROM results WHERE station=?", (path,)).fetchone()[0]
    return last - held


def _has_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    return column in dbmod.columns(db, table)
