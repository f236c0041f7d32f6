# `station qc`: read a daily control card through the running daemon; it is recorded as a QC record.
from __future__ import annotations

import argparse

from station.cli.common import add_home, home_of, print_json
from station.cli.press import print_reply
from station.control import request


def add_parser(sub) -> None:
    p = sub.add_parser("qc", help="read a negative or positive control card for the lot in use (daily QC)")
    add_home(p)
    p.add_argument("--control", required=True, choices=("negative", "positive"), help="which control card lies on "
                   "the tray")
    p.add_argument("--strip-type", help="strip type of the card (default: the configured one)")
    p.add_argument("--slot", type=int, help="tray slot the card lies in (multi-slot trays)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    req = {"cmd": "press", "wait": True, "qc": args.control, "strip_type": args.strip_type}
    if args.slot is not None:
        req["slot"] = args.slot  # taken by trays with slots; a one-slot station reads the card in view
    reply = request(home_of(args).control_socket, req, timeout=3600)
    if args.json:
        print_json(reply)
        return 0 if reply.get("ok") else 1
    print_reply(reply)
    results = reply.get("results") or []
    passed = bool(results) and all(r.get("qc", {}).get("passed") for r in results)
    for r in results:
        print(f"{args.control} control: {'PASSED' if r['qc']['passed'] else 'FAILED'} ({r['qc']['reason']}); "
              f"lot {r['qc']['lot']}")
    return 0 if reply.get("ok") and passed else 1
