# Test helper: dilution series photographed by the lab generator from a hidden 4PL, written as a series CSV.
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from station.decide.fourpl import Curve
from station.lab.photogen import random_scene, render
from station.lab.photogen.scene import random_lines
from station.striptypes import BUILTIN_STRIP_TYPES

STRIP = "pesticide-generic"
LIMIT = 0.5  # mg/kg
HIDDEN = Curve(a=1.25, b=1.4, c=0.8 * LIMIT, d=0.12)
LEVELS = (0.0, LIMIT / 4, LIMIT / 2, LIMIT, 2 * LIMIT, 4 * LIMIT)
STRIP_CV = 0.03  # cassette-to-cassette spread of the true T/C, on top of the reader's own noise
RESOLUTION = (800, 600)  # small photographs: the reader reads T/C to about 0.015 at this size


def photo(path: Path, tcs: list[float], seed: int) -> list[dict]:
    """One photograph with a cassette per true T/C (left to right = slot order); returns the truth cassettes."""
    rng = np.random.default_rng(seed)
    st = BUILTIN_STRIP_TYPES[STRIP]
    scene = random_scene(rng, strip_type=STRIP, n_cassettes=len(tcs), resolution=RESOLUTION, qr=False,
                         length_frac=0.55, c_peak=0.4)
    # Slots are numbered left to right: give the T/C values in that order so the caller knows which is which.
    order = sorted(range(len(tcs)), key=lambda i: scene["cassettes"][i]["center"][0])
    for slot, i in enumerate(order):
        scene["cassettes"][i]["lines"] = random_lines(rng, st, tc=tcs[slot], c_peak=float(rng.uniform(0.35, 0.5)))
    img, truth = render(scene, rng)
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return copy.deepcopy(truth["cassettes"])


def true_tcs(conc: float, rng: np.random.Generator, n: int = 3) -> list[float]:
    return [float(HIDDEN.tc(conc) * (1 + rng.normal(0, STRIP_CV))) for _ in range(n)]


def write_series(folder: Path, rows: list[tuple[str, float]], name: str = "series.csv") -> Path:
    path = folder / name
    path.write_text("photo,concentration\n" + "".join(f"{p},{c:g}\n" for p, c in rows), encoding="utf-8")
    return path


def dilution_series(folder: Path, seed: int = 7, outlier: float = 0.35, per_level: int = 2) -> dict:
    """Six levels, `per_level` photographs of three cassettes each; at 2 × limit the first photograph's slot 1
    is spoiled by +outlier (a cassette read too pale, as a badly run strip would be)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows, truth = [], {}
    for k, conc in enumerate(LEVELS):
        for j in range(per_level):
            tcs = true_tcs(conc, rng)
            if conc == 2 * LIMIT and j == 0:
                tcs[1] += outlier
            name = f"std-{k}-{j}.jpg"
            photo(folder / name, tcs, seed * 100 + k * 10 + j)
            rows.append((name, conc))
            truth[name] = tcs
    return {"csv": write_series(folder, rows), "rows": rows, "truth": truth, "outlier": ("std-4-0.jpg", 1)}


def calib(home: Path, *args: str) -> subprocess.CompletedProcess:
    """The technician's `calib --home HOME ARGS` as a real process, output captured."""
    return subprocess.run([sys.executable, "-m", "calib.cli", "--home", str(home), *args], capture_output=True,
                          text=True, timeout=120)
