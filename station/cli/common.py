# Arguments and helpers shared by the sub-commands that work on a station home.
from __future__ import annotations

import argparse
import json
import sys

from station.home import Home, home_from


def add_home(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", metavar="DIR", help="station home (default $STATION_HOME or "
                        "/var/lib/nongan-station)")


def home_of(args: argparse.Namespace) -> Home:
    return home_from(getattr(args, "home", None))


def print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*[str(c) for c in r]) for r in [header, *rows])
