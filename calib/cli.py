# The `calib` command for technicians over SSH: show, set and list strip-type calibrations.
from __future__ import annotations

import argparse
import getpass
import os
import sys

from station.config import load_config
from station.decide.calibration import CalibrationStore
from station.errors import StationError
from station.home import home_from


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="calib", description="strip-type calibration (cutoffs per strip type and lot)")
    p.add_argument("--home", metavar="DIR", help="station home (default $STATION_HOME)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("show", help="current cutoff per strip type")
    s = sub.add_parser("set", help="record a new cutoff for a strip type")
    s.add_argument("--strip-type", required=True)
    s.add_argument("--cutoff", type=float, required=True, help="T/C ratio below which a competitive strip is positive")
    s.add_argument("--lot", help="cassette lot this calibration was made with")
    s.add_argument("--note", default="")
    h = sub.add_parser("history", help="every calibration ever recorded")
    h.add_argument("--strip-type")
    learn = sub.add_parser("learn", help="teach the station a new cassette brand from one reference photograph",
                           description="Measure one clean cassette (all lines visible: a negative competitive "
                                       "card or a control card) and write a [[strip_types]] entry.")
    learn.add_argument("reference", metavar="REFERENCE.jpg")
    learn.add_argument("--name", required=True, help="strip-type name, e.g. acme-pesticide")
    learn.add_argument("--analyte", required=True)
    learn.add_argument("--format", default="competitive", choices=("competitive", "sandwich"))
    learn.add_argument("--lines", default="T,C", help="line names from the sample well out, C last (T,C or T1,T2,T3,C)")
    learn.add_argument("--incubation", type=int, metavar="S", help="incubation time in seconds")
    learn.add_argument("--cutoff", type=float, help="T/C ratio below which a competitive strip is positive")
    dest = learn.add_mutually_exclusive_group()
    dest.add_argument("--out", metavar="FILE.toml", help="write into this TOML catalog (an entry of the same name "
                                                        "is replaced, others kept)")
    dest.add_argument("--home", metavar="DIR", default=argparse.SUPPRESS,
                      help="write into this station's catalog; a re-learnt name replaces the old entry, "
                           "which stays in history")
    learn.add_argument("--debug-dir", metavar="DIR", help="write an annotated picture of what was measured")
    return p


def learn_command(args: argparse.Namespace) -> int:
    from calib.learn import run_learn

    return run_learn(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "learn":
        return learn_command(args)
    try:
        home = home_from(args.home)
        cfg = load_config(home.root)
        store = CalibrationStore(home.root)
        if args.command == "set":
            if args.strip_type not in cfg.strip_types:
                known = ", ".join(sorted(cfg.strip_types))
                raise StationError(f"strip type {args.strip_type!r} unknown; known: {known}")
            cal = store.add(args.strip_type, args.cutoff, lot=args.lot, by=getpass.getuser(), note=args.note)
            print(f"calibration {cal.id}: {cal.strip_type} cutoff {cal.cutoff} (restart the daemon to apply)")
        elif args.command == "show":
            for name, st in sorted(cfg.strip_types.items()):
                cal = store.current(name)
                src = f"calibration {cal.id} ({cal.created_at}, by {cal.by})" if cal else "strip-type default"
                print(f"{name:<24} cutoff {cal.cutoff if cal else st.cutoff:<6} {src}")
        else:
            for cal in store.history(args.strip_type):
                print(f"{cal.created_at}  {cal.id}  {cal.strip_type:<24} cutoff {cal.cutoff:<6} lot {cal.lot or '-'}  "
                      f"by {cal.by}  {cal.note}")
        return 0
    except StationError as exc:
        if os.environ.get("DEBUG"):
            raise
        print(f"calib: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
