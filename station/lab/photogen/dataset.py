# Labelled evaluation sets: a fixed mix of ordinary scenes, repeat photographs of one strip, and faults.
from __future__ import annotations

import copy
import multiprocessing
from collections.abc import Iterator
from typing import Any

import numpy as np

from station.lab.photogen.brands import brand_strip_type, dress, make_brand
from station.lab.photogen.render import render_jpeg
from station.lab.photogen.scene import RESOLUTIONS, random_cassette, random_scene
from station.striptypes import BUILTIN_STRIP_TYPES

# Share of the set per kind; "repeat" photographs come in groups of REPEATS of the same strip.
MIX = (
    ("normal", 0.50), ("repeat", 0.16), ("glare", 0.05), ("blur", 0.05), ("overexposed", 0.05),
    ("no_c", 0.04), ("faint_c", 0.04), ("empty_tray", 0.02), ("cut_off", 0.02), ("tilted", 0.02),
    ("underexposed", 0.015), ("face_down", 0.015), ("reversed", 0.02),
)
REPEATS = 12


def plan(n: int) -> list[str]:
    kinds: list[str] = []
    for kind, share in MIX:
        k = int(round(share * n))
        if kind == "repeat":
            k = max(REPEATS, (k // REPEATS) * REPEATS) if n >= 2 * REPEATS else 0
        kinds += [kind] * k
    kinds = kinds[:n]
    kinds += ["normal"] * (n - len(kinds))
    return kinds


def _group_strip(seed: int, group: int, strip_type: str,
                 brand: dict[str, Any] | None = None) -> tuple[dict[str, Any], float, tuple[int, int], int]:
    """One strip and the station that re-photographs it: its camera keeps resolution and JPEG quality."""
    rng = np.random.default_rng([seed, 1, group])
    st = BUILTIN_STRIP_TYPES[strip_type] if brand is None else brand_strip_type(brand)
    # Mid-range ratios with a clear C line: what a reader's repeatability is quoted at.
    strip = random_cassette(rng, st, tc=float(rng.uniform(0.4, 1.2)), c_peak=float(rng.uniform(0.25, 0.6)))
    if brand is not None:
        dress(strip, brand, rng)
    resolution = RESOLUTIONS[int(rng.integers(len(RESOLUTIONS)))]
    return strip, float(rng.uniform(0.3, 0.6)), resolution, int(rng.integers(75, 96))


def make_one(job: tuple) -> tuple[str, bytes, dict[str, Any]]:
    """Render photograph i of a set; each has its own random stream so sets can be made in parallel."""
    i, kind, seed, group, strip_type = job[:5]
    brand = make_brand(job[5]) if len(job) > 5 and job[5] is not None else None
    rng = np.random.default_rng([seed, 0, i] if brand is None else [seed, 0, i, brand["seed"]])
    scene_kw: dict[str, Any] = {"strip_type": strip_type, "brand": brand}
    if kind == "repeat":
        strip, length, resolution, quality = _group_strip(seed, group, strip_type, brand)
        scene = random_scene(rng, n_cassettes=1, length_frac=length, qr=False, resolution=resolution, **scene_kw)
        scene["camera"]["jpeg_quality"] = quality
        placed = scene["cassettes"][0]
        strip = copy.deepcopy(strip)
        strip.update({k: placed[k] for k in ("center", "angle", "length_px", "width_px")})
        scene["cassettes"][0] = strip
        scene["group"] = group
    elif kind == "normal":
        scene = random_scene(rng, **scene_kw)
    elif kind in ("blur", "overexposed", "underexposed", "empty_tray"):
        scene = random_scene(rng, faults=(kind,), **scene_kw)
    else:
        scene = random_scene(rng, cassette_faults=(kind,), **scene_kw)
    scene["kind"] = kind
    data, truth = render_jpeg(scene, rng)
    return f"{i:05d}", data, truth


def generate(n: int, seed: int, strip_type: str = "pesticide-generic", jobs: int = 1,
             brand_seed: int | None = None) -> Iterator[tuple[str, bytes, dict[str, Any]]]:
    """Yield (name, jpeg bytes, truth) for n photographs; the same seed gives the same set for any jobs."""
    kinds = plan(n)
    work, repeat_seen = [], 0
    for i, kind in enumerate(kinds):
        group = repeat_seen // REPEATS if kind == "repeat" else -1
        repeat_seen += kind == "repeat"
        work.append((i, kind, seed, group, strip_type, brand_seed))
    if jobs <= 1:
        yield from map(make_one, work)
        return
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        yield from pool.imap(make_one, work, chunksize=4)
