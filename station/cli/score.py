# `station score IMAGE...`: read cassettes in photographs and print one reading per cassette.
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from station.errors import StationError
from station.striptypes import BUILTIN_STRIP_TYPES, DEFAULT_STRIP_TYPE, StripType

if TYPE_CHECKING:
    import numpy as np

    from station.assay.scores import ImageScore


def read_image(path: str) -> tuple[np.ndarray | None, str | None]:
    """(BGR image, None) or (None, a one-line reason naming the file)."""
    from station.decode import decode_image  # OpenCV inside, so `station --help` works where it is broken
    from station.errors import ImageError

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}"
    try:
        return decode_image(data, path), None
    except ImageError as exc:
        return None, f"cannot read {exc}"


def score_file(path: str, strip_type: StripType, *, want_debug: bool = False) -> tuple[ImageScore, np.ndarray | None]:
    from station.assay.scores import ImageScore
    from station.decide.verdict import read_photo

    img, err = read_image(path)
    if img is None:
        return ImageScore([], strip_type.name, error=err), None
    return read_photo(img, strip_type, want_debug=want_debug), img


def add_parser(sub) -> None:
    p = sub.add_parser("score", help="read colloidal-gold cassettes in photographs",
                       description="Find every cassette in each photograph and read its lines.")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="print one JSON array, one object per image")
    p.add_argument("--strip-type", default=None, metavar="NAME",
                   help=f"strip type (default {DEFAULT_STRIP_TYPE}, or with --home the station's own); "
                        f"built-in: {', '.join(sorted(BUILTIN_STRIP_TYPES))}")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--catalog", metavar="FILE", help="read with the [[strip_types]] of this TOML file too "
                                                       "(written by `calib learn --out`)")
    src.add_argument("--home", metavar="DIR", help="read exactly as the station in DIR would: its config, "
                                                   "learned strip types and current calibrations")
    p.add_argument("--debug-dir", metavar="DIR", help="write an annotated image per photograph here")
    p.set_defaults(func=run)


def resolve_strip_type(args: argparse.Namespace) -> tuple[StripType, str | None]:
    """The strip type to read with, from the built-ins, a catalog file or the station home; and a note saying which."""
    if args.home:
        from station.config import load_config
        from station.decide.catalog import daemon_catalog
        from station.home import home_from

        home = home_from(args.home)
        cfg = load_config(home.root)
        catalog, ids = daemon_catalog(cfg.strip_types, home.root)
        name = args.strip_type or cfg.assay.strip_type
        where = f"station {home.root}"
    elif args.catalog:
        from station.decide.catalog import load_catalog_file

        catalog, ids = {**BUILTIN_STRIP_TYPES, **load_catalog_file(args.catalog)}, {}
        name, where = args.strip_type or DEFAULT_STRIP_TYPE, args.catalog
    else:
        catalog, ids, name, where = BUILTIN_STRIP_TYPES, {}, args.strip_type or DEFAULT_STRIP_TYPE, "built-in"
    if name not in catalog:
        raise StationError(f"strip type {name!r} not in {where}; known: {', '.join(sorted(catalog))}")
    st = catalog[name]
    note = None
    if args.home:
        cal = f"calibration {ids[name].id}, lot {ids[name].lot}" if name in ids else "no calibration"
        note = f"reading as {where}: strip type {name}, cutoff {st.cutoff} ({cal})"
    return st, note


def _table(results: list[dict]) -> str:
    lines = []
    for r in results:
        lines.append(r["image"])
        if r["error"]:
            lines.append(f"  error: {r['error']}")
            continue
        if not r["strips"]:
            lines.append(f"  {r.get('reason') or 'no cassette found'}")
            continue
        lines.append(f"  {'slot':>4}  {'center':>13}  {'T/C':>6}  {'C':>3}  {'verdict':<8}  quality")
        for s in r["strips"]:
            ratio = "-" if s["tc_ratio"] is None else f"{s['tc_ratio']:.3f}"
            centre = f"{s['center'][0]:.0f},{s['center'][1]:.0f}"
            lines.append(f"  {s['slot']:>4}  {centre:>13}  {ratio:>6}  {'yes' if s['control_line'] else 'no':>3}"
                         f"  {s['verdict']:<8}  {','.join(s['quality']) or 'ok'}")
            if s.get("reason"):
                lines.append(f"        {s['reason']}")
            if s.get("qr"):
                lines.append(f"        qr: {s['qr']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import cv2

    from station.assay.debug import render_debug

    try:
        st, note = resolve_strip_type(args)
    except StationError as exc:
        print(f"station score: {exc}", file=sys.stderr)
        return 2
    if note:
        print(note, file=sys.stderr)
    want_debug = bool(args.debug_dir)
    if want_debug:
        try:
            os.makedirs(args.debug_dir, exist_ok=True)
        except OSError as exc:
            raise StationError(f"--debug-dir {args.debug_dir}: cannot create the folder: {exc.strerror or exc}") \
                from None
    results, unreadable = [], 0
    for path in args.images:
        score, img = score_file(path, st, want_debug=want_debug)
        if score.error:
            unreadable += 1
        results.append(score.to_json(image=path))
        if want_debug and img is not None:
            out = Path(args.debug_dir) / (Path(path).stem + ".debug.jpg")
            if not cv2.imwrite(str(out), render_debug(img, score)):
                print(f"station score: cannot write {out}", file=sys.stderr)
    if args.json:
        json.dump(results, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(_table(results))
    return 1 if unreadable else 0
