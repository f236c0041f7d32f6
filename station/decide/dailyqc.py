# Daily control cards per lot: the pass rule, the QC record's fields, and today's gate from the QC records.
from __future__ import annotations

from datetime import date, datetime

CONTROLS = ("negative", "positive")


def qc_sample_id(strip_type: str, lot: str, control: str) -> str:
    """The sample id a QC record carries: the journal finds a lot's control cards by it."""
    return f"qc:{strip_type}:{lot}:{control}"


def judge(control: str, verdict: str) -> tuple[bool, str]:
    """A negative control must read negative (which needs a valid control line); a positive one positive."""
    if verdict == control:
        return True, f"{control} control read {verdict} as it must"
    if verdict == "invalid":
        return False, f"{control} control card invalid: no control line (C) read"
    return False, f"{control} control read {verdict}; it must read {control}"


def qc_fields(control: str, lot: str, strip_type: str, verdict: str) -> dict:
    passed, reason = judge(control, verdict)
    return {"kind": "qc", "qc": {"control": control, "lot": lot, "strip_type": strip_type, "passed": passed,
                                 "reason": reason}}


def local_date(read_at: str) -> date:
    """The station's local date of a record's UTC stamp: "today" is the operator's day, not UTC's."""
    return datetime.fromisoformat(read_at.replace("Z", "+00:00")).astimezone().date()


def latest_today(records: list[dict], strip_type: str, lot: str, today: date) -> dict[str, dict | None]:
    """control -> today's latest QC record for this strip type and lot (records in any order), or None."""
    out: dict[str, dict | None] = dict.fromkeys(CONTROLS)
    for rec in sorted(records, key=lambda r: r["seq"]):
        qc = rec.get("qc")
        if rec.get("kind") != "qc" or not isinstance(qc, dict) or qc.get("lot") != lot \
                or qc.get("strip_type") != strip_type or local_date(rec["time"]["read_at"]) != today:
            continue
        out[qc["control"]] = rec
    return out


def gate_refusal(latest: dict[str, dict | None], strip_type: str, lot: str) -> str | None:
    """Samples on a lot are taken once today's latest negative and positive control cards both passed. A
    failed card blocks the lot until that control is run again and passes; every card, failed ones too, is a
    signed record the town sees."""
    failed = [r for r in latest.values() if r is not None and not r["qc"]["passed"]]
    if failed:
        r = failed[-1]
        return (f"lot {lot} of {strip_type} blocked: the {r['qc']['control']} control card failed today "
                f"(result {r['id']}: {r['qc']['reason']}); check the cards and run it again: "
                f"`station qc --control {r['qc']['control']}`")
    missing = [c for c in CONTROLS if latest[c] is None]
    if missing:
        cards = " and ".join(missing)
        return (f"lot {lot} of {strip_type}: today's QC is not done; run the {cards} control card"
                f"{'s' if len(missing) > 1 else ''} first (`station qc --control {missing[0]}`)")
    return None
