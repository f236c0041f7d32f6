# What the town holds per station and village: read-only queries over the town store and `station town show`.
from __future__ import annotations

import math
import sqlite3
from typing import TYPE_CHECKING

from station.errors import StationError, WireFormatError
from station.protocol.wire import strict_loads

if TYPE_CHECKING:
    from station.town.store import TownStore
    from station.town.trust import TrustStore


class TownReports:
    """Read-only queries over the town database; TownStore inherits them, so reports never write."""

    db: sqlite3.Connection

    def results(self, path: str) -> list[sqlite3.Row]:
        self.db.row_factory = sqlite3.Row
        try:
            return self.db.execute("SELECT * FROM results WHERE station=? ORDER BY seq", (path,)).fetchall()
        finally:
            self.db.row_factory = None

    def refusals(self, path: str | None = None) -> list[tuple]:
        q = "SELECT received_at, topic, station, seq, code, detail FROM refusals"
        if path is None:
            return self.db.execute(q + " ORDER BY id").fetchall()
        return self.db.execute(q + " WHERE station=? ORDER BY id", (path,)).fetchall()

    def refusal_counts(self) -> list[tuple[str, str, int]]:
        """(source, code, count) of every refusal ever made; the refusals table keeps only a sample."""
        try:
            return self.db.execute("SELECT source, code, n FROM refusal_counts ORDER BY 1, 2").fetchall()
        except sqlite3.OperationalError:   # a database from before the counts table
            return self.db.execute("SELECT COALESCE(station,'?'), code, COUNT(*) FROM refusals GROUP BY 1, 2 "
                                   "ORDER BY 1, 2").fetchall()

    def counters(self, path: str) -> dict[str, int]:
        return dict(self.db.execute("SELECT name, n FROM counters WHERE station=?", (path,)).fetchall())

    def station_info(self, path: str) -> dict:
        row = self.db.execute("SELECT contiguous, status, status_at, last_ack_seq FROM stations WHERE station=?",
                              (path,)).fetchone()
        cp = self.db.execute("SELECT seq, state FROM checkpoints WHERE station=? ORDER BY seq DESC LIMIT 1",
                             (path,)).fetchone()
        return {
            "contiguous": row[0] if row else 0,
            "status": _status(row[1] if row else None),
            "status_at": row[2] if row else None,
            "last_ack_seq": row[3] if row else 0,
            "checkpoint": {"seq": cp[0], "state": cp[1]} if cp else None,
        }


def _status(text: str | None) -> dict | None:
    """A stored status as a JSON object; anything else (a row written before statuses were validated) is
    shown as unreadable rather than breaking the report for every station."""
    if not text:
        return None
    try:
        body = strict_loads(text, max_depth=8)
    except WireFormatError as exc:
        return {"state": "unreadable", "error": str(exc)}
    return body if isinstance(body, dict) else {"state": "unreadable", "error": "status is not a JSON object"}


def finite(obj: object) -> object:
    """The same structure with NaN and ±inf as None: `--json` must print standard JSON (RFC 8259)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def _verify_now(trust: TrustStore, message: bytes) -> bool:
    from station.protocol.signing import jws_header, verify_jws

    try:
        trusted = trust.get(jws_header(message).get("kid"))
        return trusted is not None and bool(verify_jws(message, trusted[0]))
    except StationError:
        return False


def holdings(store: TownStore, station: str | None = None, trust: TrustStore | None = None) -> dict:
    """Results, gaps, counters per station and the refusals, each message exactly as received. With `trust`,
    every stored signature is verified again now instead of reporting the verdict given at receipt."""
    stations = [station] if station else store.stations()
    out: dict = {"stations": [], "refusal_counts": [], "refusals": []}
    for path in stations:
        rows = store.results(path)
        results = []
        for r in rows:
            msg = bytes(r["message"])
            ok = _verify_now(trust, msg) if trust else bool(r["sig_ok"])
            results.append({
                "seq": r["seq"], "kind": r["kind"], "sample": r["sample"], "verdict": r["verdict"],
                "tc_ratio": r["tc_ratio"], "t_area": r["t_area"], "c_area": r["c_area"], "read_at": r["read_at"],
                "received_at": r["received_at"], "kid": r["kid"], "msg_hash": r["msg_hash"],
                "signature_ok": ok, "verified": "now" if trust else "at receipt",
                "record_kind": r["record_kind"] or "result", "retest_of": r["retest_of"],
                "retest_status": r["retest_status"],
                "message": msg.decode("ascii", errors="replace"),
            })
        info = store.station_info(path)
        out["stations"].append({"station": path, **info, "gaps": store.gaps(path), "counters": store.counters(path),
                                "results": results})
    out["refusal_counts"] = [{"station": s, "code": c, "count": n} for s, c, n in store.refusal_counts()
                             if not station or s == station]
    out["refusals"] = [{"received_at": a, "topic": t, "station": s, "seq": q, "code": c, "reason": d}
                       for a, t, s, q, c, d in store.refusals(station)]
    return finite(out)   # type: ignore[return-value]


def print_holdings(out: dict) -> None:
    """The human-readable form of holdings(): one block per station, then the refusals."""
    for st in out["stations"]:
        status = st["status"] if isinstance(st["status"], dict) else {}
        cp = st["checkpoint"]
        print(f"station {st['station']}: {len(st['results'])} stored, contiguous to {st['contiguous']}, "
              f"acked {st['last_ack_seq']}, status {status.get('state', '-')}"
              f"{', checkpoint ' + str(cp['seq']) + ' ' + cp['state'] if cp else ''}, "
              f"duplicates {st['counters'].get('duplicates', 0)}")
        if st["results"]:
            print(f"  {'seq':>6}  {'sample':<16} {'verdict':<10} {'T/C':>6} {'T':>8} {'C':>8}  "
                  f"{'received':<24} signature")
        for r in st["results"]:
            def f(v):
                return "-" if v is None else f"{v:.3f}"
            sig = ("OK" if r["signature_ok"] else "BAD") + (" (re-verified)" if r["verified"] == "now" else "")
            print(f"  {r['seq']:>6}  {str(r['sample'] or '-')[:16]:<16} {str(r['verdict'])[:10]:<10} "
                  f"{f(r['tc_ratio']):>6} {f(r['t_area']):>8} {f(r['c_area']):>8}  {r['received_at']:<24} {sig}")
        gaps = ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in st["gaps"]) or "none"
        print(f"  gaps: {gaps}")
    if out["refusal_counts"]:
        print("refusals:")
        for rc in out["refusal_counts"]:
            print(f"  {rc['station']:<40} {rc['code']:<20} {rc['count']}")
        for r in out["refusals"][-20:]:
            print(f"  {r['received_at']} {r['topic']} seq {r['seq'] if r['seq'] is not None else '-'}: "
                  f"[{r['code']}] {r['reason']}")
    else:
        print("refusals: none")
