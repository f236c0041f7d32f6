# `station town`: the reference town server (listen, show, pubkey) for demos, tests and town implementers.
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from station.errors import StationError


def add_parser(sub) -> None:
    p = sub.add_parser("town", help="reference town server: listen for results, show what it holds")
    tsub = p.add_subparsers(dest="town_command", metavar="TOWN_COMMAND", required=True)

    lp = tsub.add_parser("listen", help="subscribe to nongan/v1/#, verify, store, ack, ask for resends")
    lp.add_argument("--broker", required=True, metavar="URL", help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    lp.add_argument("--trust", required=True, metavar="DIR", help="station public keys (*.jwk, *.json)")
    lp.add_argument("--db", required=True, metavar="FILE", help="town SQLite database (created if missing)")
    lp.add_argument("--key", metavar="FILE", help="town Ed25519 signing key for acks/commands (created 0600 if "
                    "missing); without it nothing is acknowledged")
    lp.add_argument("--kid", default="town/1", help="kid of the town key (default town/1)")
    lp.add_argument("--ca", metavar="FILE", help="CA certificate (mqtts)")
    lp.add_argument("--cert", metavar="FILE", help="client certificate (mqtts)")
    lp.add_argument("--key-file", metavar="FILE", help="client certificate key (mqtts)")
    lp.add_argument("--client-id", help="MQTT client id (default: stable per --db, so the broker session resumes)")
    lp.add_argument("--resend-after", type=float, default=15.0, metavar="S",
                    help="ask a station to resend a gap that persists this long (default 15)")
    lp.add_argument("--duration", type=float, metavar="S", help="exit after S seconds (demos, tests)")
    lp.add_argument("-v", "--verbose", action="store_true", help="log every stored/duplicate message too")
    lp.set_defaults(func=run_listen)

    sp = tsub.add_parser("show", help="print results, refusals and gaps held in a town database")
    sp.add_argument("--db", required=True, metavar="FILE")
    sp.add_argument("--json", action="store_true", help="machine-readable, with each message exactly as received")
    sp.add_argument("--station", metavar="PATH", help="only this station (district/town/village/station)")
    sp.add_argument("--trust", metavar="DIR", help="re-verify every stored signature against these keys now")
    sp.set_defaults(func=run_show)

    kp = tsub.add_parser("pubkey", help="print the town public key as a JWK for stations to trust")
    kp.add_argument("--key", required=True, metavar="FILE", help="town signing key (created 0600 if missing)")
    kp.add_argument("--kid", default="town/1")
    kp.set_defaults(func=run_pubkey)


def run(args: argparse.Namespace) -> int:
    return args.func(args)


def run_pubkey(args: argparse.Namespace) -> int:
    from station.town import load_or_create_town_key, town_public_jwk

    key = load_or_create_town_key(args.key)
    print(json.dumps(town_public_jwk(key, args.kid), indent=2))
    return 0


def run_listen(args: argparse.Namespace) -> int:
    from station.town import TownBroker, TownListener, load_or_create_town_key

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s town %(levelname)s %(message)s")
    logging.getLogger("station.town").setLevel(logging.INFO)
    key = load_or_create_town_key(args.key) if args.key else None
    if key is None:
        logging.getLogger("station.town").warning("no --key: results are stored but never acknowledged")

    def outcome(out) -> None:
        if args.verbose and out.action in ("stored", "duplicate", "checkpoint"):
            logging.getLogger("station.town").info("%s", out)

    listener = TownListener(
        TownBroker(args.broker, args.ca, args.cert, args.key_file, client_id=args.client_id),
        args.trust, args.db, key, args.kid, resend_after_s=args.resend_after, on_outcome=outcome)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    listener.start()
    deadline = None if args.duration is None else time.monotonic() + args.duration
    try:
        while not done.wait(0.5):
            if listener.failed.is_set():
                # Paho would go on acknowledging messages that nothing stores: exit so a supervisor restarts us.
                raise StationError("the store worker died (see the log above); exiting so nothing is "
                                   "acknowledged that was not stored")
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        listener.stop()
    return 0


def _verify_now(trust, message: bytes) -> bool:
    from station.protocol.signing import jws_header, verify_jws

    try:
        trusted = trust.get(jws_header(message).get("kid"))
        return trusted is not None and bool(verify_jws(message, trusted[0]))
    except StationError:
        return False


def run_show(args: argparse.Namespace) -> int:
    from station.errors import TownStoreError
    from station.town_store import TownStore, TrustStore

    if not Path(args.db).is_file():
        raise TownStoreError(f"{args.db}: town database not found")
    store = TownStore(args.db)
    trust = TrustStore.load(args.trust) if args.trust else None
    stations = [args.station] if args.station else store.stations()
    out = {"stations": [], "refusal_counts": [], "refusals": []}
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
                "message": msg.decode("ascii", errors="replace"),
            })
        info = store.station_info(path)
        out["stations"].append({"station": path, **info, "gaps": store.gaps(path), "counters": store.counters(path),
                                "results": results})
    out["refusal_counts"] = [{"station": s, "code": c, "count": n} for s, c, n in store.refusal_counts()
                             if not args.station or s == args.station]
    out["refusals"] = [{"received_at": a, "topic": t, "station": s, "seq": q, "code": c, "reason": d}
                       for a, t, s, q, c, d in store.refusals(args.station)]
    store.close()
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    for st in out["stations"]:
        status = st["status"] or {}
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
    return 0
