# `station status`: what the running daemon is doing (state, outbox, disk, clock, lights).
from __future__ import annotations

import argparse

from station.cli.common import add_home, home_of, print_json
from station.control import request


def add_parser(sub) -> None:
    p = sub.add_parser("status", help="ask the running daemon for its state")
    add_home(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    reply = request(home_of(args).control_socket, {"cmd": "status"}, timeout=15)
    if args.json:
        print_json(reply)
    else:
        for k, v in reply.items():
            if k not in ("instruments", "slots"):
                print(f"{k:>13}: {v}")
        for slot in reply.get("slots") or []:
            print(slot_line(slot))
        for inst in reply.get("instruments") or []:
            print(instrument_line(inst))
    return 0 if reply.get("ok") else 1


def instrument_line(i: dict) -> str:
    """One instrument in a few words an operator can act on."""
    link = f"connected since {i['since']}" if i["connected"] else f"NOT connected ({i['detail']})"
    ident = i["identity"] or {}
    who = f"{ident.get('model')} serial {ident.get('serial')}" if ident else "identity unknown"
    last = f"last record {i['last_record']['record']} (seq {i['last_record']['seq']})" if i["last_record"] else \
        "no record yet"
    return (f"   instrument: {i['name']} [{i['dialect']}] {i['port']}: {link}; {who}; {last}; "
            f"{i['records']} records, {i['corrupt']} corrupt, {i['incomplete']} incomplete, "
            f"{i['duplicates']} duplicates ignored, {i['garbage_bytes']} noise bytes")


def slot_line(s: dict) -> str:
    """One tray slot: its state, sample and, while it incubates, the seconds left."""
    left = f", {s['left_s']:.0f} s left" if s.get("left_s") is not None else ""
    who = f" sample {s['sample']}" if s.get("sample") else ""
    who += f" producer {s['producer']}" if s.get("producer") else ""
    return f"      slot {s['slot']}: {s['state']}{left}{who}"
