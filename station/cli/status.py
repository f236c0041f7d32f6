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
            print(f"{k:>13}: {v}")
    return 0 if reply.get("ok") else 1
