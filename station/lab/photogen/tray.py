# Tray photographs for the slot tests and the demo: one cassette upright in the middle of each occupied slot.
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from station.lab.photogen.render import render_jpeg
from station.lab.photogen.scene import random_cassette, random_scene
from station.striptypes import BUILTIN_STRIP_TYPES, DEFAULT_STRIP_TYPE


def tray_scene(rng: np.random.Generator, slots: int, occupied: tuple[int, ...], *, tc: float = 1.1,
               resolution: tuple[int, int] = (1280, 960)) -> dict[str, Any]:
    """A clean scene (no faults, no QR card) with a cassette in each occupied slot (1-based), slot k being the
    k-th of `slots` equal regions along the photograph's long side, as station.workflow.tray divides it."""
    w, h = resolution
    st = BUILTIN_STRIP_TYPES[DEFAULT_STRIP_TYPE]
    scene = random_scene(rng, n_cassettes=0, resolution=resolution, qr=False)
    long_x = w >= h
    length = 0.45 * h
    for k in occupied:
        along = (k - 0.5) * (w if long_x else h) / slots
        c = random_cassette(rng, st, tc=tc)
        c.update({"center": [along, h / 2] if long_x else [w / 2, along], "angle": float(rng.uniform(-3, 3)),
                  "length_px": length, "width_px": length * st.aspect})
        scene["cassettes"].append(c)
    return scene


def write_tray_photo(path: Path, slots: int, occupied: tuple[int, ...], seed: int = 7, tc: float = 1.1) -> Path:
    """Render one tray photograph to path (JPEG); tc 1.1 reads negative on the default competitive card."""
    rng = np.random.default_rng(seed)
    data, _truth = render_jpeg(tray_scene(rng, slots, occupied, tc=tc), rng)
    path.write_bytes(data)
    return path
