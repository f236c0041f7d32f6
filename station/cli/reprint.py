# `station reprint ID`: print a result's receipt again, through the running daemon's printer worker.
from __future__ import annotations

import argparse
import re

from station.cli.common import add_home, home_of, print_json
from station.control import request
from station.errors import StationError

_ID = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9_.-]*:)?([0-9]{1,18})")


def add_parser(sub) -> None:
    p = sub.add_parser("reprint", help="print a result's receipt again (e.g. after the paper ran out)")
    add_home(p)
    p.add_argument("id", help="result seq (12) or result id (st-0001:12), as `station results` shows")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def seq_of(text: str) -> int:
    m = _ID.fullmatch(text.strip())
    if not m or int(m.group(1)) < 1:
        raise StationError(f"reprint {text!r}: expected a result seq (12) or id (st-0001:12)")
    return int(m.group(1))


def run(args: argparse.Namespace) -> int:
    reply = request(home_of(args).control_socket, {"cmd": "reprint", "seq": seq_of(args.id)}, timeout=90)
    if args.json:
        print_json(reply)
    elif reply.get("ok"):
        print(f"result {reply['seq']}: receipt printed" + (" with certificate" if reply.get("certificate") else ""))
    else:
        print(f"error: {reply.get('error') or 'receipt not printed'}")
    return 0 if reply.get("ok") else 1
