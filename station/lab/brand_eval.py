# `station assay-eval --brands K`: generated brands never tuned on, each read unconfigured and after `calib learn`.
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from station.assay.learn import learn
from station.decide.verdict import read_photo
from station.lab.metrics import compute
from station.lab.photogen.brands import make_brand
from station.lab.photogen.dataset import generate
from station.lab.photogen.render import render_jpeg
from station.lab.photogen.scene import random_scene
from station.striptypes import BUILTIN_STRIP_TYPES, DEFAULT_STRIP_TYPE

SHOWN = ("cassette detection recall", "phantom cassettes", "clean strips wrongly gated", "T/C abs error, mean",
         "T/C abs error, p95", "repeatability CV, worst group", "control line absent -> invalid",
         "gross misreads (abs error > 0.2)")


def reference(brand: dict[str, Any], seed: int) -> bytes:
    """The technician's one photograph: one clean negative card of the brand, upright-ish, mid-tray."""
    rng = np.random.default_rng([seed, 3, brand["seed"]])
    data, _ = render_jpeg(random_scene(rng, brand=brand, n_cassettes=1, tc=1.0, c_peak=0.5, qr=False,
                                       resolution=(1640, 1232)), rng)
    return data


def _row(result: dict[str, Any]) -> dict[str, Any]:
    return {r.name: (r.value, r.detail) for r in result["rows"] if r.name in SHOWN}


def _fmt(name: str, v: tuple[float | None, str]) -> str:
    value, detail = v
    if value is None:
        return "-"
    if name == "clean strips wrongly gated":
        return f"{detail} gated: {100 * (1 - value):.1f}% scored"
    if name in ("phantom cassettes", "gross misreads (abs error > 0.2)"):
        return f"{value:.0f}"
    return f"{value:.3f}" + (f" ({detail})" if name == "control line absent -> invalid" else "")


def run_brands(args: argparse.Namespace, out: Path) -> int:
    seed = args.seed if args.seed is not None else int(time.time())
    first = args.brand_seed
    n = args.generate or 60
    print(f"{args.brands} brands from brand seed {first}, {n} photographs each, set seed {seed}", file=sys.stderr)
    default = BUILTIN_STRIP_TYPES[DEFAULT_STRIP_TYPE]
    pooled: dict[str, list] = {"unconfigured": [], "learned": []}
    table = []
    for b in range(first, first + args.brands):
        brand = make_brand(b)
        folder = out / f"brand-{b}"
        folder.mkdir(parents=True, exist_ok=True)
        ref = reference(brand, seed)
        (folder / "reference.jpg").write_bytes(ref)
        got = learn(cv2.imdecode(np.frombuffer(ref, np.uint8), cv2.IMREAD_COLOR), name=brand["name"],
                    analyte="imidacloprid")
        recs: dict[str, list] = {"unconfigured": [], "learned": []}
        for name, data, truth in generate(n, seed, jobs=args.jobs, brand_seed=b):
            (folder / f"{name}.jpg").write_bytes(data)
            (folder / f"{name}.json").write_text(json.dumps(truth))
            t0 = time.perf_counter()
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            rec = read_photo(img, default).to_json()
            recs["unconfigured"].append((truth, rec, (time.perf_counter() - t0) * 1000))
            if got.strip_type is not None:
                t0 = time.perf_counter()
                img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                rec = read_photo(img, got.strip_type).to_json()
                recs["learned"].append((truth, rec, (time.perf_counter() - t0) * 1000))
        desc = f"{brand['name']} rim {brand['rim_style']}, membrane {brand['tone']}, well {brand['well_shape']}"
        for mode, r in recs.items():
            # Repeat groups are numbered per set: keep each brand's apart when pooling.
            pooled[mode] += [({**t, "group": f"{b}-{t['group']}"} if "group" in t else t, s, ms) for t, s, ms in r]
            row = _row(compute(r)) if r else None
            table.append((desc, mode, row, None if mode == "unconfigured" or got.strip_type else got.refused))
        print(f"  {desc}: done", file=sys.stderr)
    for mode, r in pooled.items():
        table.append(("POOLED", mode, _row(compute(r)) if r else None, None))
    for desc, mode, row, refused in table:
        print(f"{desc} [{mode}]")
        if row is None:
            print(f"    not learned: {refused}")
            continue
        for name in SHOWN:
            print(f"    {name:<40} {_fmt(name, row[name])}")
    return 0
