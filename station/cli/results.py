# `station results`: the local results with their delivery state, read straight from the journal.
from __future__ import annotations

import argparse

from station.cli.common import add_home, home_of, print_json, table
from station.errors import StationError
from station.journal import Journal
from station.protocol.signing import unverified_payload
from station.receipt import qr_text, station_id_of


def add_parser(sub) -> None:
    p = sub.add_parser("results", help="list local results and their delivery state")
    add_home(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=50, help="newest N results (default 50)")
    p.set_defaults(func=run)


def delivery(entry) -> str:
    if entry.quarantined:
        return f"quarantined: {entry.quarantined}"
    if entry.acked:
        return "acked by town"
    return "published, awaiting town ack" if entry.published else "queued"


def _verify_url(home) -> str:
    """[receipt] verify_url, or "" when the config cannot be read: listing results must not need it."""
    from station.config import load_config

    try:
        return load_config(home.root).receipt.verify_url
    except StationError:
        return ""


def run(args: argparse.Namespace) -> int:
    home = home_of(args)
    if not home.journal.exists():
        raise StationError(f"{home.journal}: no journal yet (has the daemon run in this home?)")
    # The daemon may hold the journal open; a reader needs no integrity scan, the daemon ran one at start.
    verify_url = _verify_url(home)
    with Journal(home.journal, check=False) as journal:
        entries = journal.entries(limit=args.limit)
        stats = journal.stats()
    out = []
    payloads = [unverified_payload(e.message) for e in entries]  # our own journal: checked at every start
    for e, payload in zip(entries, payloads, strict=True):
        out.append({"seq": e.seq, "id": e.id, "sample": e.sample_id, "verdict": e.verdict,
                    "tc_ratio": payload["reading"].get("tc_ratio"), "read_at": payload["time"]["read_at"],
                    "slot": payload["strip"]["slot"], "tray_slot": payload["sample"].get("slot"),
                    "delivery": delivery(e),                    "kind": payload.get("kind", "result"),
                    "lot": payload["strip"].get("lot"), "qc": payload.get("qc"), "retest": payload.get("retest"),
                    "chain": chain_of(payload, payloads),
                    # the text of the receipt's QR: the town's page for this signed record
                    "receipt_qr": qr_text(verify_url, station_id_of(payload), e.seq, e.msg_hash)})
    if args.json:
        print_json({"results": out, "last_seq": stats.last_seq, "acked_seq": stats.acked_seq,
                    "unacked": stats.unacked})
        return 0
    from station.cli.press import slot_text

    rows = [[r["seq"], r["sample"], slot_text(r), r["verdict"],
             "-" if r["tc_ratio"] is None else f"{r['tc_ratio']:.3f}", r["lot"] or "-", r["chain"] or "-",
             r["read_at"], r["delivery"]] for r in out]
    print(table(rows, ["seq", "sample", "slot", "verdict", "T/C", "lot", "QC / re-test", "read at", "delivery"]))
    print(f"{stats.last_seq} results; town acknowledged up to seq {stats.acked_seq}; {stats.unacked} not yet "
          "acknowledged")
    return 0


def chain_of(payload: dict, shown: list[dict]) -> str | None:
    """A QC record's outcome, a re-test's place in its chain, or where a first positive's chain stands (among
    the results shown)."""
    if payload.get("kind") == "qc":
        qc = payload["qc"]
        return f"QC {qc['control']} control {'passed' if qc['passed'] else 'FAILED'}"
    rt = payload.get("retest")
    if rt:
        return f"re-test {rt['round']} of {rt['of']}: {rt['status']}"
    if payload["verdict"] != "positive":
        return None
    later = [p["retest"] for p in shown if (p.get("retest") or {}).get("of") == payload["id"]]
    last = max(later, key=lambda r: r["round"]) if later else None
    return f"first test: {last['status']}" if last else "first test: awaiting re-test"
