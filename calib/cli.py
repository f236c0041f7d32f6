# The `calib` command for technicians over SSH: calibrations from standards, typed cutoffs, history, transfer, QC.
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys

from station.errors import SeriesRefused, StationError

REFUSED = 3  # exit status of a series that cannot support a cutoff (2 is any other error)


def technician() -> str:
    """Who is calibrating: the SSH login, not root, when they went through sudo."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="calib", description="strip-type calibration per strip type and lot: cutoffs "
                                "measured from standards, semi-quantitative curves, QC control charts")
    p.add_argument("--home", metavar="DIR", help="station home (default $STATION_HOME)")
    sub = p.add_subparsers(dest="command", required=True)
    sh = sub.add_parser("show", help="the calibration in force per strip type (or one by id)")
    sh.add_argument("--id", help="show this calibration in full (an id or a unique prefix)")
    sh.add_argument("--json", action="store_true")
    s = sub.add_parser("set", help="record a typed cutoff for a strip type (standards are better: calib standards)")
    s.add_argument("--strip-type", required=True)
    s.add_argument("--cutoff", type=float, required=True, help="T/C ratio below which a competitive strip is positive")
    s.add_argument("--lot", help="cassette lot this calibration was made with")
    s.add_argument("--note", "--reason", dest="reason", default="")
    h = sub.add_parser("history", help="every calibration ever accepted, oldest first")
    h.add_argument("--strip-type")
    h.add_argument("--lot")
    h.add_argument("--json", action="store_true")
    e = sub.add_parser("export", help="write calibrations as a file signed with the station key")
    e.add_argument("--out", required=True, metavar="FILE")
    e.add_argument("--strip-type")
    e.add_argument("--lot")
    i = sub.add_parser("import", help="accept calibrations from a signed export after checking it")
    i.add_argument("file", metavar="FILE")
    i.add_argument("--trust", metavar="JWK", help="public JWK of the station that exported it (default: this one)")
    st = sub.add_parser("standards", help="calibrate from standard solutions on cassettes")
    ssub = st.add_subparsers(dest="standards_command", required=True)
    f = ssub.add_parser("fit", help="read a dilution series, fit the 4PL, recommend a cutoff (and accept it)")
    f.add_argument("--strip-type", required=True)
    f.add_argument("--lot", required=True)
    f.add_argument("--series", required=True, metavar="FILE", help="CSV 'photo,concentration', photos relative to it")
    f.add_argument("--limit", type=float, required=True, help="the legal limit (maximum residue limit)")
    f.add_argument("--unit", default="mg/kg")
    f.add_argument("--json", action="store_true")
    f.add_argument("--plot", metavar="PNG", help="draw the curve, its points, LOD, cutoff and residuals")
    f.add_argument("--accept", action="store_true", help="store it as the calibration for this strip type and lot")
    f.add_argument("--reason", default="calibration from standards")
    f.add_argument("--by", default=None, help="technician id (default: your login)")
    g = ssub.add_parser("run", help="guided: lay each standard, the station photographs it, then fit and accept "
                        "(stop the daemon first: it holds the camera)")
    g.add_argument("--strip-type", required=True)
    g.add_argument("--lot", required=True)
    g.add_argument("--limit", type=float, required=True, help="the legal limit (maximum residue limit)")
    g.add_argument("--unit", default="mg/kg")
    g.add_argument("--levels", default="0,0.25,0.5,1,2,4", help="concentrations as multiples of the limit")
    g.add_argument("--photos", type=int, default=1, help="photographs per level (each cassette on one is a replicate)")
    g.add_argument("--reason", default="calibration from standards (guided)")
    g.add_argument("--by", default=None, help="technician id (default: your login)")
    qc = sub.add_parser("qc", help="daily control cards per lot: Levey–Jennings and Westgard rules")
    qsub = qc.add_subparsers(dest="qc_command", required=True)
    qa = qsub.add_parser("add", help="record a control card's T/C")
    qa.add_argument("--lot", required=True)
    qa.add_argument("--tc", type=float, required=True)
    qa.add_argument("--at", help="RFC 3339 time of the reading (default now)")
    qs = qsub.add_parser("show", help="the lot's QC state: target, latest reading, rule hits, block")
    qs.add_argument("--lot", required=True)
    qs.add_argument("--json", action="store_true")
    qch = qsub.add_parser("chart", help="draw the Levey–Jennings chart")
    qch.add_argument("--lot", required=True)
    qch.add_argument("--out", required=True, metavar="PNG")
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
        from station.home import home_from

        home = home_from(args.home)
        if args.command == "standards":
            from calib.commands import run_standards

            return run_standards(home, args)
        if args.command == "qc":
            from calib.commands import run_qc

            return run_qc(home, args)
        from calib import commands

        return {"show": commands.run_show, "set": commands.run_set, "history": commands.run_history,
                "export": commands.run_export, "import": commands.run_import}[args.command](home, args)
    except SeriesRefused as exc:
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, "refused": str(exc)}))
        print(f"calib: refused: {exc}", file=sys.stderr)
        return REFUSED
    except StationError as exc:
        if os.environ.get("DEBUG"):
            raise
        print(f"calib: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
