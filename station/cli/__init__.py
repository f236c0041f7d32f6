# The `station` command: parses arguments and hands each sub-command to its own module.
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from station import __version__
from station.errors import DeviceError, StationError

# One module per sub-command, each with add_parser(subparsers) and run(args) -> int.
SUBCOMMANDS = ("init", "run", "press", "status", "results", "pubkey", "doctor", "score", "readers", "update",
               "plan", "roster", "lot", "qc", "reprint")
# Sub-commands of the wings the firmware never imports: (module, registering function). They are imported only
# in build_parser, so `import station.cli` loads no wing. The lab needs a checkout (it is left out of the Pi
# wheel), so its sub-commands are simply absent where station.lab is not installed.
WING_SUBCOMMANDS = (("station.town.cli", "add_town_parser"), ("station.town.cli", "add_certs_parser"),
                    ("station.lab.assay_eval", "add_parser"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="station", description="Nong'an rapid-test station")
    parser.add_argument("--version", action="version", version=f"station {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"station.cli.{name}").add_parser(sub)
    for module, register in WING_SUBCOMMANDS:
        try:
            getattr(importlib.import_module(module), register)(sub)
        except ModuleNotFoundError as exc:
            if exc.name not in ("station.lab", module) or not module.startswith("station.lab"):
                raise
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (StationError, DeviceError) as exc:  # a device error is no StationError: drivers/ stands alone
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
