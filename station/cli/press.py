# `station press`: exactly what the physical button does; prints the results of that press once recorded.
from __future__ import annotations

import argparse

from station.cli.common import add_home, home_of, print_json, table
from station.control import request


def add_parser(sub) -> None:
    p = sub.add_parser("press", help="press the button (through the running daemon)")
    add_home(p)
    p.add_argument("--no-wait", action="store_true", help="return at once instead of waiting for results")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--sample", help="sample id to record (default: QR on the photograph, else generated)")
    p.add_argument("--slot", type=int, help="the tray slot just laid (a tray of several slots); the reply "
                   "comes when that slot's result is recorded, while the other slots keep counting")
    p.add_argument("--strip-type", help="strip type for this sample (default: the configured one)")
    p.add_argument("--task", help="the town plan's task this sample counts toward (default: the only open task "
                   "for the strip's analyte and the product, if exactly one; see `station plan`)")
    p.add_argument("--product", help="the product sampled, as the town's plan names it (e.g. 韭菜)")
    p.add_argument("--retest-of", metavar="ID", help="re-test the sample of this positive result (e.g. st-0001:12); "
                   "without it, the next test of a sample positive today is its re-test")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    home = home_of(args)
    reply = request(home.control_socket, {"cmd": "press", "wait": not args.no_wait, "sample": args.sample,
                                           "strip_type": args.strip_type, "task": args.task,
                                           "product": args.product, "retest_of": args.retest_of, "slot": args.slot},
                    # The daemon always answers, after incubation if the strip type needs it.
                    timeout=15 if args.no_wait else 3600)
    if args.json:
        print_json(reply)
    elif reply.get("queued"):
        print(f"pressed: slot {reply['slot']}" if reply.get("slot") else "pressed")
    else:
        print_reply(reply)
    return 0 if reply.get("ok") else 1


def print_reply(reply: dict) -> None:
    """The results of a press (or a control card) in a table, then what the operator must do next."""
    rows = [[r["id"], r["sample"], slot_text(r), r["verdict"], "-" if r["tc_ratio"] is None else
             f"{r['tc_ratio']:.3f}", ",".join(r["quality"]) or "-", r.get("task") or "-", mark_of(r)]
            for r in reply.get("results", [])]
    if rows:
        print(table(rows, ["id", "sample", "slot", "verdict", "T/C", "quality", "task", "retest / QC"]))
    for r in reply.get("results", []):
        if r.get("retest_required"):
            of = (r.get("retest") or {}).get("of", r["id"])
            print(f"RE-TEST sample {r['sample']}: lay a new cassette of it, then `station press --retest-of {of}`")
    if reply.get("retake"):
        print(f"retake: {reply['retake']}")
    if reply.get("error"):
        print(f"error: {reply['error']}")


def mark_of(r: dict) -> str:
    if r.get("qc"):
        return f"QC {r['qc']['control']} {'PASSED' if r['qc']['passed'] else 'FAILED'}"
    if r.get("retest"):
        return f"round {r['retest']['round']} of {r['retest']['of']}: {r['retest']['status']}"
    return "re-test required" if r.get("retest_required") else "-"


def slot_text(r: dict) -> str:
    """The tray slot the card was laid in; on a one-slot tray, the cassette's place in the photograph (from 0)."""
    return str(r["tray_slot"]) if r.get("tray_slot") is not None else f"#{r['slot']}"
