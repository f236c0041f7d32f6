# `station plan`: the town's test plan in force and each task's progress, counted from the journal's records.
from __future__ import annotations

import argparse

from station.cli.common import add_home, home_of, print_json, table
from station.journal import Journal
from station.orders import Orders, progress
from station.protocol.signing import unverified_payload


def add_parser(sub) -> None:
    p = sub.add_parser("plan", help="the town's test plan and each task's progress (done/quota, days left)")
    add_home(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    home = home_of(args)
    orders = Orders(home.root)
    plan = orders.body("plan")
    payloads = []
    if plan is not None and home.journal.exists():
        # Our own journal (the daemon checks it at every start); a reader needs no integrity scan.
        with Journal(home.journal, check=False) as journal:
            payloads = [unverified_payload(e.message) for e in journal.iter_entries()]
    rows = progress(orders.tasks, payloads)
    if args.json:
        print_json({"plan": None if plan is None else {"plan_id": plan["plan_id"], "version": plan["version"],
                                                       "issued_at": plan.get("issued_at")},
                    "tasks": rows})
        return 0
    if plan is None:
        print("no plan: the town has not sent one to this station yet")
        return 0
    print(f"plan {plan['plan_id']} version {plan['version']}")
    print(table([[r["task"], r["product"], ",".join(r["analytes"]), f"{r['done']}/{r['quota']}",
                  f"{r['window']['from']}..{r['window']['to']}", r["deadline"],
                  r["days_left"] if r["days_left"] >= 0 else f"overdue {-r['days_left']}",
                  "open" if r["open"] else "closed"] for r in rows],
                ["task", "product", "analytes", "done", "window", "deadline", "days left", ""]))
    return 0
