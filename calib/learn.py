# `calib learn`: measure a reference photograph of a new cassette brand and store the strip type it defines.
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def run_learn(args: argparse.Namespace) -> int:
    from station.assay.learn import learn
    from station.cli.score import read_image
    from station.decide.catalog import CatalogStore, write_toml_entry
    from station.errors import StationError
    from station.home import home_from

    img, err = read_image(args.reference)
    if img is None:
        print(f"calib learn: {err}", file=sys.stderr)
        return 2
    names = tuple(n.strip() for n in args.lines.split(",") if n.strip())
    got = learn(img, name=args.name, analyte=args.analyte, fmt=args.format, line_names=names,
                incubation_s=args.incubation, cutoff=args.cutoff)
    if args.debug_dir:
        _debug(args, img, got)
    if got.strip_type is None:
        print(f"calib learn: {args.reference}: refused: {got.refused}", file=sys.stderr)
        return 1
    for quantity, value in got.measured:
        print(f"{quantity:<50} {value}")
    try:
        if args.out:
            write_toml_entry(Path(args.out), got.strip_type)
            print(f"strip type {args.name!r} written to {args.out} (station score --catalog {args.out} "
                  f"--strip-type {args.name})")
        else:
            home = home_from(args.home)
            if not home.config.is_file():
                raise StationError(f"{home.root}: not a station home (no {home.config.name}); give --home DIR "
                                   "or --out FILE.toml")
            store = CatalogStore(home.root)
            try:
                before = len(store.history(args.name))
                store.add(got.strip_type, source=os.path.abspath(args.reference))
            finally:
                store.close()
            again = f" (replaces the previous one, kept in history: {before} earlier)" if before else ""
            print(f"strip type {args.name!r} stored in {store.path}{again}; restart the daemon to use it")
    except (StationError, OSError) as exc:
        print(f"calib learn: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _debug(args: argparse.Namespace, img, got) -> None:
    import cv2
    import numpy as np

    out = img.copy()
    if got.box is not None:
        cv2.polylines(out, [np.int32(got.box)], True, (0, 200, 0), 2)
    if got.window_poly is not None:
        cv2.polylines(out, [np.int32(got.window_poly)], True, (255, 160, 0), 2)
    for name, pts in got.line_points:
        cv2.line(out, tuple(np.int32(pts[0])), tuple(np.int32(pts[1])), (0, 0, 255), 1)
        cv2.putText(out, name, tuple(np.int32(pts[1]) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 255), 2)
    if got.refused:
        cv2.putText(out, "refused: " + got.refused[:80], (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 255), 2)
    try:
        os.makedirs(args.debug_dir, exist_ok=True)
        path = Path(args.debug_dir) / (Path(args.reference).stem + ".learn.jpg")
        if not cv2.imwrite(str(path), out):
            raise OSError("OpenCV could not write it")
        print(f"debug picture: {path}", file=sys.stderr)
    except OSError as exc:
        print(f"calib learn: cannot write the debug picture into {args.debug_dir}: {exc}", file=sys.stderr)
