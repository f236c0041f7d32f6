# Labelled evaluation sets: a fixed mix of ordinary scenes, repeat photographs of one strip, and faults.
from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from station.photogen.render import render_jpeg
from station.photogen.scene import random_cassette, random_scene

# Share of the set per kind; "repeat" photographs come in groups of REPEATS of the same strip.
MIX = (
    ("normal", 0.52), ("repeat", 0.16), ("glare", 0.05), ("blur", 0.05), ("overexposed", 0.05),
    ("no_c", 0.04), ("faint_c", 0.04), ("empty_tray", 0.02), ("cut_off", 0.02), ("tilted", 0.02),
    ("underexposed", 0.015), ("face_down", 0.015),
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


def _scene(kind: str, rng: np.random.Generator, strip_type: str) -> dict[str, Any]:
    if kind == "normal":
        return random_scene(rng, strip_type=strip_type)
    if kind in ("blur", "overexposed", "underexposed", "empty_tray"):
        return random_scene(rng, strip_type=strip_type, faults=(kind,))
    return random_scene(rng, strip_type=strip_type, cassette_faults=(kind,))


def generate(n: int, seed: int, strip_type: str = "pesticide-generic") -> Iterator[tuple[str, bytes, dict[str, Any]]]:
    """Yield (name, jpeg bytes, truth) for a set of n photographs; the same seed gives the same set."""
    from station.assay.striptype import BUILTIN_STRIP_TYPES

    st = BUILTIN_STRIP_TYPES[strip_type]
    rng = np.random.default_rng(seed)
    kinds = plan(n)
    group_strip: dict[str, Any] | None = None
    group = -1
    repeat_index = 0
    for i, kind in enumerate(kinds):
        if kind == "repeat":
            if repeat_index % REPEATS == 0:
                group += 1
                # Mid-range ratios with a clear C line: what a reader's repeatability is quoted at.
                group_strip = random_cassette(rng, st, tc=float(rng.uniform(0.4, 1.2)),
                                              c_peak=float(rng.uniform(0.25, 0.6)))
                group_len = float(rng.uniform(0.3, 0.6))
            repeat_index += 1
            scene = random_scene(rng, strip_type=strip_type, n_cassettes=1, length_frac=group_len, qr=False)
            placed = scene["cassettes"][0]
            strip = copy.deepcopy(group_strip)
            strip.update({k: placed[k] for k in ("center", "angle", "length_px", "width_px")})
            scene["cassettes"][0] = strip
            scene["group"] = group
        else:
            scene = _scene(kind, rng, strip_type)
        scene["kind"] = kind
        data, truth = render_jpeg(scene, rng)
        yield f"{i:05d}", data, truth


def progress_every(total: int, report: Callable[[str], None]) -> Callable[[int], None]:
    step = max(1, total // 20)

    def tick(done: int) -> None:
        if done % step == 0 or done == total:
            report(f"{done}/{total}")

    return tick
