# `station run`: the daemon in the foreground, logging to stderr; SIGTERM stops it cleanly.
from __future__ import annotations

import argparse
import logging
import os

from station.cli.common import add_home, home_of
from station.config import load_config


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run the station daemon in the foreground")
    add_home(p)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from station.app import Daemon

    logging.basicConfig(level=logging.DEBUG if args.verbose or os.environ.get("DEBUG") else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("paho").setLevel(logging.WARNING)
    home = home_of(args)
    cfg = load_config(home.root)
    Daemon(cfg, home).run()
    return 0
