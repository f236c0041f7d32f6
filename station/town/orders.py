# The town's plans and rosters: read a TOML/JSON file, sign it with the town key, send it to a station's command
# topic, keep what was sent in the town database, and count each plan task's fulfilment from stored results.
from __future__ import annotations

import json
import secrets
import sqlite3
import time
import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Any

from station.errors import Refused, StationError
from station.protocol import topics
from station.protocol.messages import MAX_TTL_S, build_order
from station.protocol.plans import ORDER_BODIES, PLAN_FIELDS, ROSTER_FIELDS
from station.protocol.signing import unverified_payload

SENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS sent_orders (
  station TEXT NOT NULL, kind TEXT NOT NULL, order_id TEXT NOT NULL, version INTEGER NOT NULL,
  sent_at TEXT NOT NULL, message BLOB NOT NULL, PRIMARY KEY (station, kind, version)) WITHOUT ROWID;
"""


def _plain(value: Any) -> Any:
    """TOML dates (window.from = 2026-03-01, unquoted) become the YYYY-MM-DD text the command carries."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, date | datetime):
        return value.isoformat()[:10]
    return value


def load_body(path: str | Path, kind: str) -> dict:
    """The order's body from FILE.toml or FILE.json, checked exactly as the station will check it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        doc = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:   # tomllib.TOMLDecodeError and JSONDecodeError are ValueErrors
        raise StationError(f"{path}: cannot read the {kind}: {exc}") from None
    fields = PLAN_FIELDS if kind == "plan" else ROSTER_FIELDS
    body = _plain(doc)
    if not isinstance(body, dict):
        raise StationError(f"{path}: a {kind} file holds one object with {', '.join(fields)}")
    try:
        ORDER_BODIES[kind]({"v": 1, "station": "", "cmd": kind, "nonce": "", "expires": 0, "issued_at": 0, **body})
    except Refused as exc:
        raise StationError(f"{path}: {exc}") from None
    return body


def send(broker, station_path: str, kind: str, body: dict, key, kid: str, *, ttl_s: int = 3600,
         db_path: str | Path | None = None, wait_s: float = 0.0, timeout: float = 10.0) -> dict:
    """Sign and publish (QoS 1, not retained: a resend of an old order must not wait on the broker for a
    station). With wait_s, read the station's retained status first (a station already at this version or
    a newer one would refuse it: nothing is sent) and then watch it until it reports this version."""
    from station.protocol.mqtt import make_client

    if not 60 <= ttl_s <= MAX_TTL_S:
        raise StationError(f"--ttl {ttl_s}: must be 60..{MAX_TTL_S} seconds (a station refuses longer)")
    now = int(time.time())
    message = build_order(key, kid, station_path, kind, body, secrets.token_hex(16), now + ttl_s, now)
    client, addr = make_client(broker, f"nongan-town-send-{secrets.token_hex(4)}")
    seen: dict[str, int] = {}
    status_topic = topics.station_topic(station_path, "status")

    def on_message(c, userdata, msg) -> None:
        try:
            seen["version"] = int(json.loads(msg.payload).get(f"{kind}_version") or 0)
        except (ValueError, TypeError, AttributeError):
            pass

    client.on_message = on_message
    try:
        client.connect(addr.host, addr.port)
    except OSError as exc:
        raise StationError(f"broker {broker.url}: {exc}") from None
    client.loop_start()
    try:
        if wait_s > 0:
            client.subscribe(status_topic, qos=1)
            settle = time.monotonic() + min(2.0, wait_s)
            while time.monotonic() < settle and "version" not in seen:
                time.sleep(0.05)
            if seen.get("version", 0) >= body["version"]:
                return {"station": station_path, "kind": kind, "version": body["version"], "bytes": 0,
                        "applied": False, "station_version": seen["version"], "not_sent": True}
        info = client.publish(topics.station_topic(station_path, "cmd"), message, qos=1, retain=False)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise StationError(f"broker {broker.url} did not acknowledge the {kind} within {timeout:.0f} s")
        if db_path is not None:
            record_sent(db_path, station_path, kind, body, message)
        applied = None
        if wait_s > 0:
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and seen.get("version", 0) != body["version"]:
                time.sleep(0.2)
            applied = seen.get("version", 0) == body["version"]
    finally:
        client.disconnect()
        client.loop_stop()
    return {"station": station_path, "kind": kind, "version": body["version"], "bytes": len(message),
            "applied": applied, "station_version": seen.get("version")}


def record_sent(db_path: str | Path, station: str, kind: str, body: dict, message: bytes) -> None:
    db = sqlite3.connect(db_path)
    try:
        db.executescript(SENT_SCHEMA)
        db.execute("INSERT OR REPLACE INTO sent_orders VALUES (?, ?, ?, ?, ?, ?)",
                   (station, kind, body.get("plan_id") or body.get("roster_id"), body["version"],
                    datetime.now().astimezone().isoformat(timespec="seconds"), message))
        db.commit()
    finally:
        db.close()


def latest_plans(db: sqlite3.Connection) -> dict[str, dict]:
    """station → the body of the newest plan the town sent it (none if the table does not exist yet)."""
    from station.town import db as dbmod

    if not dbmod.columns(db, "sent_orders"):  # works on SQLite and PostgreSQL alike, without a failed query
        return {}
    rows = db.execute("SELECT station, message FROM sent_orders WHERE kind='plan' ORDER BY version").fetchall()
    return {station: unverified_payload(bytes(m)) for station, m in rows}


def fulfilment(db: sqlite3.Connection, station: str | None = None) -> list[dict]:
    """Per station and task of its newest plan: distinct samples whose usable first result cites the task."""
    out = []
    for path, plan in sorted(latest_plans(db).items()):
        if station not in (None, path, path.rsplit("/", 1)[-1]):
            continue
        done: dict[str, set[str]] = {}
        for (message,) in db.execute("SELECT message FROM results WHERE station=? AND kind='result'", (path,)):
            try:
                p = unverified_payload(bytes(message))
            except StationError:
                continue
            if p.get("task") and p.get("kind", "result") == "result" and not p.get("retest") \
                    and p.get("verdict") in ("negative", "positive", "suspect"):
                done.setdefault(p["task"], set()).add((p.get("sample") or {}).get("id"))
        for t in plan["tasks"]:
            out.append({"station": path, "plan_id": plan["plan_id"], "version": plan["version"],
                        "task": t["task_id"], "product": t["product"], "done": len(done.get(t["task_id"], ())),
                        "quota": t["quota"], "deadline": t["deadline"]})
    return out
