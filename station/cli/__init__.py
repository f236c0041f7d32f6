# The `station` command: parses arguments and hands each sub-command to its own module.
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from station import __version__
from station.errors import StationError

# One module per sub-command, each with add_parser(subparsers) and run(args) -> int.
SUBCOMMANDS = ("init", "run", "press", "status", "results", "pubkey", "doctor", "score", "town", "certs")
# Sub-commands from the lab wing, which needs a checkout (it is left out of the Pi wheel): registered when
# the parser is built, and simply absent where station.lab is not installed.
LAB_SUBCOMMANDS = ("station.lab.assay_eval",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="station", description="Nong'an rapid-test station")
    parser.add_argument("--version", action="version", version=f"station {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"station.cli.{name}").add_parser(sub)
    for module in LAB_SUBCOMMANDS:
        try:
            importlib.import_module(module).add_parser(sub)
        except ModuleNotFoundError as exc:
            if exc.name not in ("station.lab", module):
                raise
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except StationError as exc:
        if os.environ.get("DEBUG"):
            traceback.print_exc()
        print(f"station {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
