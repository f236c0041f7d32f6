# `station assay-eval DIR`: score a labelled folder of photographs and print the assay's metrics.
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from station.striptypes import BUILTIN_STRIP_TYPES, DEFAULT_STRIP_TYPE


def add_parser(sub) -> None:
    p = sub.add_parser("assay-eval", help="measure the assay on a labelled (or freshly generated) photo set",
                       description="Score every IMAGE.jpg that has an IMAGE.json truth sidecar and print "
                                   "detection, ratio error, linearity, repeatability and gate hit rates.")
    p.add_argument("dir", nargs="?", metavar="DIR", help="labelled folder (with --generate: where to write)")
    p.add_argument("--generate", type=int, metavar="N", help="first generate N labelled photographs into DIR")
    p.add_argument("--seed", type=int, default=None, help="generator seed (default: from the clock, printed)")
    p.add_argument("--out", metavar="DIR", help="same as DIR, for --generate")
    p.add_argument("--strip-type", default=DEFAULT_STRIP_TYPE, choices=sorted(BUILTIN_STRIP_TYPES))
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for --generate")
    p.add_argument("--brands", type=int, metavar="K", help="evaluate K generated cassette brands instead (N "
                   "photographs each, --generate N, default 60): each read unconfigured and after calib learn")
    p.add_argument("--brand-seed", type=int, default=1000, help="first brand seed for --brands (tests use < 1000)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def _progress(args: argparse.Namespace, msg: str) -> None:
    if not args.quiet:
        print(msg, file=sys.stderr, flush=True)


def _generate(args: argparse.Namespace, out: Path) -> None:
    from station.lab.photogen.dataset import generate

    seed = args.seed if args.seed is not None else int(time.time())
    out.mkdir(parents=True, exist_ok=True)
    _progress(args, f"generating {args.generate} photographs, seed {seed}, into {out}")
    for k, (name, data, truth) in enumerate(generate(args.generate, seed, args.strip_type, args.jobs), 1):
        (out / f"{name}.jpg").write_bytes(data)
        (out / f"{name}.json").write_text(json.dumps(truth))
        if k % max(1, args.generate // 20) == 0 or k == args.generate:
            _progress(args, f"  generated {k}/{args.generate}")


def run(args: argparse.Namespace) -> int:
    from station.cli.score import score_file  # OpenCV: imported when the command runs, not when parsing
    from station.lab.metrics import compute

    folder = args.out or args.dir
    if not folder:
        print("station assay-eval: give DIR (or --out DIR with --generate N)", file=sys.stderr)
        return 2
    out = Path(folder)
    if args.brands:
        from station.lab.brand_eval import run_brands

        return run_brands(args, out)
    if args.generate:
        _generate(args, out)
    if not out.is_dir():
        print(f"station assay-eval: {out}: not a directory", file=sys.stderr)
        return 2
    images = sorted(p for p in out.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                    and p.with_suffix(".json").exists())
    if not images:
        print(f"station assay-eval: {out}: no images with .json truth sidecars", file=sys.stderr)
        return 2
    st = BUILTIN_STRIP_TYPES[args.strip_type]
    records = []
    for k, path in enumerate(images, 1):
        try:
            truth = json.loads(path.with_suffix(".json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"station assay-eval: {path.with_suffix('.json')}: {exc}", file=sys.stderr)
            return 2
        t0 = time.perf_counter()
        score, _ = score_file(str(path), st)
        ms = (time.perf_counter() - t0) * 1000
        records.append((truth, score.to_json(image=str(path)), ms))
        if k % max(1, len(images) // 20) == 0 or k == len(images):
            _progress(args, f"  scored {k}/{len(images)}")
    result = compute(records)
    rows = result["rows"]
    if args.json:
        json.dump({"dir": str(out), "images": len(images), "strip_type": st.name,
                   "metrics": [{"name": r.name, "value": r.value, "target": r.target, "pass": r.ok,
                                "detail": r.detail} for r in rows]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"{len(images)} photographs in {out}, strip type {st.name}")
        print(f"{'metric':<44} {'value':>10}  {'target':<22} {'result':<6} detail")
        for r in rows:
            v = "-" if r.value is None else f"{r.value:.4f}" if abs(r.value) < 100 else f"{r.value:.0f}"
            res = {True: "PASS", False: "FAIL", None: ""}[r.ok]
            print(f"{r.name:<44} {v:>10}  {r.target:<22} {res:<6} {r.detail}")
    return 0 if all(r.ok is not False for r in rows) else 1
