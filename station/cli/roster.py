# `station roster`: the registered producers the town sent (cached in the home for receipts and certificates).
from __future__ import annotations

import argparse

from station.cli.common import add_home, home_of, print_json, table
from station.orders import Orders


def add_parser(sub) -> None:
    p = sub.add_parser("roster", help="the town's roster of registered producers")
    add_home(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    roster = Orders(home_of(args).root).body("roster")
    if args.json:
        print_json(roster)
        return 0
    if roster is None:
        print("no roster: the town has not sent one to this station yet")
        return 0
    print(f"roster {roster['roster_id']} version {roster['version']}: {len(roster['producers'])} producers")
    if roster["producers"]:
        print(table([[p["id"], p["name"], p["contact"] or "-", p["origin"] or "-"] for p in roster["producers"]],
                    ["id", "name", "contact", "origin"]))
    return 0
