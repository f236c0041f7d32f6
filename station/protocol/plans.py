# The bodies of the town's `plan` and `roster` commands: strict shapes with bounded sizes, one validator each.
# Pure: messages.verify_command checks signature, expiry and nonce, then hands the fields to these.
from __future__ import annotations

import re
from datetime import date

from station.errors import Refused

MAX_TASKS = 200
MAX_ANALYTES = 20
MAX_QUOTA = 100_000
MAX_PRODUCERS = 2000
MAX_VERSION = 2**53          # a version must survive JSON in any language
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")

# Envelope fields every order carries besides its body (verify_command checks them).
ENVELOPE = ("v", "station", "cmd", "nonce", "expires", "issued_at")
PLAN_FIELDS = ("plan_id", "version", "tasks")
ROSTER_FIELDS = ("roster_id", "version", "producers")


def _keys(obj: object, allowed: tuple[str, ...], kind: str, where: str, optional: tuple[str, ...] = ()) -> dict:
    if not isinstance(obj, dict):
        raise Refused(kind, f"{where} must be an object")
    extra = sorted(set(obj) - set(allowed) - set(optional))
    if extra:
        raise Refused(kind, f"{where}: unknown field {extra[0]!r} (allowed: {', '.join(allowed + optional)})")
    missing = [k for k in allowed if k not in obj]
    if missing:
        raise Refused(kind, f"{where}: missing field {missing[0]!r}")
    return obj


def _text(value: object, kind: str, where: str, limit: int, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()) or len(value) > limit \
            or not value.isprintable():
        raise Refused(kind, f"{where} must be printable text of {0 if empty else 1}..{limit} characters, "
                      f"got {str(value)[:40]!r}")
    return value


def _ident(value: object, kind: str, where: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise Refused(kind, f"{where} must be an id of 1..64 letters, digits and _.:- , got {str(value)[:40]!r}")
    return value


def _count(value: object, kind: str, where: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise Refused(kind, f"{where} must be an integer in {low}..{high}, got {str(value)[:40]!r}")
    return value


def _day(value: object, kind: str, where: str) -> date:
    try:
        if isinstance(value, str) and _DAY.match(value):
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise Refused(kind, f"{where} must be a date YYYY-MM-DD, got {str(value)[:40]!r}")


def check_plan(p: dict) -> dict:
    """The plan's body ({plan_id, version, tasks}) as sent, or Refused naming the first bad field."""
    _keys(p, ENVELOPE + PLAN_FIELDS, "plan", "plan")
    _ident(p["plan_id"], "plan", "plan_id")
    _count(p["version"], "plan", "version", 1, MAX_VERSION)
    tasks = p["tasks"]
    if not isinstance(tasks, list) or not 1 <= len(tasks) <= MAX_TASKS:
        raise Refused("plan", f"tasks must be a list of 1..{MAX_TASKS} tasks")
    seen: set[str] = set()
    for i, t in enumerate(tasks):
        where = f"tasks[{i}]"
        _keys(t, ("task_id", "product", "analytes", "quota", "window", "deadline"), "plan", where)
        tid = _ident(t["task_id"], "plan", f"{where}.task_id")
        if tid in seen:
            raise Refused("plan", f"{where}.task_id {tid!r} appears twice")
        seen.add(tid)
        _text(t["product"], "plan", f"{where}.product", 64)
        analytes = t["analytes"]
        if not isinstance(analytes, list) or not 1 <= len(analytes) <= MAX_ANALYTES:
            raise Refused("plan", f"{where}.analytes must be a list of 1..{MAX_ANALYTES} analytes")
        for j, a in enumerate(analytes):
            _text(a, "plan", f"{where}.analytes[{j}]", 64)
        if len(set(analytes)) != len(analytes):
            raise Refused("plan", f"{where}.analytes lists an analyte twice")
        _count(t["quota"], "plan", f"{where}.quota", 1, MAX_QUOTA)
        w = _keys(t["window"], ("from", "to"), "plan", f"{where}.window")
        start, end = _day(w["from"], "plan", f"{where}.window.from"), _day(w["to"], "plan", f"{where}.window.to")
        if end < start:
            raise Refused("plan", f"{where}.window ends ({end}) before it starts ({start})")
        if _day(t["deadline"], "plan", f"{where}.deadline") < start:
            raise Refused("plan", f"{where}.deadline {t['deadline']} is before the window opens ({start})")
    return {k: p[k] for k in PLAN_FIELDS}


def check_roster(p: dict) -> dict:
    """The roster's body ({roster_id, version, producers}) as sent, or Refused naming the first bad field."""
    _keys(p, ENVELOPE + ROSTER_FIELDS, "roster", "roster")
    _ident(p["roster_id"], "roster", "roster_id")
    _count(p["version"], "roster", "version", 1, MAX_VERSION)
    producers = p["producers"]
    if not isinstance(producers, list) or len(producers) > MAX_PRODUCERS:
        raise Refused("roster", f"producers must be a list of at most {MAX_PRODUCERS} producers")
    seen: set[str] = set()
    for i, r in enumerate(producers):
        where = f"producers[{i}]"
        _keys(r, ("id", "name", "contact", "origin"), "roster", where)
        pid = _text(r["id"], "roster", f"{where}.id", 128)
        if pid in seen:
            raise Refused("roster", f"{where}.id {pid!r} appears twice")
        seen.add(pid)
        _text(r["name"], "roster", f"{where}.name", 64)
        _text(r["contact"], "roster", f"{where}.contact", 64, empty=True)
        _text(r["origin"], "roster", f"{where}.origin", 128, empty=True)
    return {k: p[k] for k in ROSTER_FIELDS}


ORDER_BODIES = {"plan": check_plan, "roster": check_roster}
