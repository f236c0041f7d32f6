# `station readers`: the serial ports attached (by id) and, with --probe, which dialect answers on each.
from __future__ import annotations

import argparse

from station.cli.common import print_json


def add_parser(sub) -> None:
    p = sub.add_parser("readers", help="list serial ports by id; --probe asks which instrument dialect answers")
    p.add_argument("ports", nargs="*", help="ports to look at besides those under --by-id")
    p.add_argument("--by-id", default="/dev/serial/by-id", help="where udev names serial ports (default: %(default)s)")
    p.add_argument("--probe", action="store_true", help="ask each port for its identity in each two-way dialect "
                   "(stop the station first: it holds its ports exclusively)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from drivers.reader.port import list_ports

    ports = list_ports(args.by_id) + [(p, os.path.realpath(p)) for p in args.ports]
    rows = []
    for path, target in ports:
        row = {"port": path, "tty": target}
        if args.probe:
            from drivers.reader.probe import probe

            dialect, ident, note = probe(path)
            row.update(dialect=dialect, serial=ident.serial if ident else None, note=note)
        rows.append(row)
    if args.json:
        print_json({"ok": True, "ports": rows})
    elif not rows:
        print(f"no serial ports under {args.by_id} (is the adapter plugged in? `dmesg | tail`)")
    for r in rows if not args.json else ():
        line = f"{r['port']} -> {r['tty']}"
        if args.probe:
            line += f": {r['dialect'] or '?'} ({r['note']})"
        print(line)
    return 0
