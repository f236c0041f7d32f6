# `station lot set|clear|show`: the cassette lot in use per strip type (cited by every record; gated by daily QC).
from __future__ import annotations

import argparse

from station.cli.common import add_home, home_of, print_json, table
from station.errors import LotError


def add_parser(sub) -> None:
    p = sub.add_parser("lot", help="set or show the cassette lot in use per strip type")
    ops = p.add_subparsers(dest="op", metavar="OP", required=True)
    s = ops.add_parser("set", help="put a lot in use for a strip type")
    add_home(s)
    s.add_argument("strip_type")
    s.add_argument("lot")
    s.add_argument("--expires", metavar="YYYY-MM-DD", help="last day the lot may be used (from the box)")
    c = ops.add_parser("clear", help="no lot for a strip type (records cite none; no daily QC gate)")
    add_home(c)
    c.add_argument("strip_type")
    sh = ops.add_parser("show", help="lots in use and the history of changes")
    add_home(sh)
    sh.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _known_types(home) -> set[str]:
    from station.config import load_config
    from station.decide.catalog import daemon_catalog

    cfg = load_config(home.root)
    return set(daemon_catalog(cfg.strip_types, home.root)[0])


def run(args: argparse.Namespace) -> int:
    from station.decide import lots

    home = home_of(args)
    if args.op in ("set", "clear"):
        known = _known_types(home)
        if args.strip_type not in known:
            raise LotError(f"strip type {args.strip_type[:60]!r} unknown; known: {', '.join(sorted(known))}")
        lot = lots.set_lot(home.root, args.strip_type, args.lot if args.op == "set" else None,
                           getattr(args, "expires", None))
        print(f"{args.strip_type}: lot {lot.lot} in use" + (f", expires {lot.expires}" if lot.expires else "")
              + "; run today's negative and positive control cards (`station qc`) before samples"
              if lot else f"{args.strip_type}: no lot set (records cite none; no daily QC gate)")
        return 0
    current, hist = lots.current(home.root), lots.history(home.root)
    if args.json:
        print_json({"lots": {k: vars(v) for k, v in current.items()}, "history": hist})
        return 0
    rows = [[v.strip_type, v.lot, v.expires or "-", v.set_at] for v in current.values()]
    print(table(rows, ["strip type", "lot", "expires", "set at"]) if rows else "no lot set")
    if hist:
        print(f"history ({len(hist)} changes, newest last):")
        for h in hist[-10:]:
            print(f"  {h['at']}  {h['strip_type']}: {h['lot'] or 'no lot'}"
                  + (f" (expires {h['expires']})" if h.get("expires") else ""))
    return 0
