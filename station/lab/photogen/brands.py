# Cassette brands: each a seeded set of moulding and appearance parameters, and the true strip type it implies.
from __future__ import annotations

from typing import Any

import numpy as np

from station.striptypes import StripType

RIM_STYLES = ("dark", "raised", "thin", "none")
WELL_SHAPES = ("round", "oval", "square")
TONES = ("lighter", "darker")  # the membrane relative to the plastic body


def make_brand(seed: int, *, rim: str | None = None, tone: str | None = None, well_shape: str | None = None,
               window_shift: float = 0.0) -> dict[str, Any]:
    """One brand from its seed; keyword overrides pin a variation (tests pin each rim and tone)."""
    rng = np.random.default_rng([seed, 7, 7])
    aspect = float(rng.uniform(0.25, 0.36))
    win_w = float(rng.uniform(0.30, 0.48))
    x0 = 0.5 - win_w / 2 + float(rng.uniform(-0.02, 0.02))
    y0 = float(rng.uniform(0.14, 0.30)) + window_shift
    win_h = float(rng.uniform(0.18, 0.28))
    well_r = float(rng.uniform(0.20, 0.28))
    # The well (an oval one is 1.45x taller) must fit below the window and inside the body.
    top_room = 1.0 - 0.04 - 1.7 * well_r * aspect
    well_y = float(min(top_room, rng.uniform(max(y0 + win_h + 0.15, 0.72), 0.86)))
    tone = tone or TONES[int(rng.integers(2))]
    rim = rim or RIM_STYLES[int(rng.integers(len(RIM_STYLES)))]
    tints = ((0.0, 0.0, 0.0), (0.06, 0.0, -0.05), (-0.05, 0.0, 0.05), (0.04, 0.03, -0.02), (0.0, 0.02, 0.0))
    tint = np.array(tints[int(rng.integers(len(tints)))])
    if tone == "lighter":
        body = float(rng.uniform(0.62, 0.76))
        membrane = float(rng.uniform(0.86, 0.93))
    else:
        body = float(rng.uniform(0.88, 0.95))
        membrane = float(rng.uniform(0.70, 0.80))
    t_pos = float(rng.uniform(0.28, 0.42))
    c_pos = float(rng.uniform(t_pos + 0.26, min(0.85, t_pos + 0.45)))
    return {
        "seed": seed,
        "name": f"brand-{seed}",
        "aspect": aspect,
        "window": [x0, y0, x0 + win_w, y0 + win_h],
        "well": [0.5, well_y, well_r],
        "well_shape": well_shape or WELL_SHAPES[int(rng.integers(len(WELL_SHAPES)))],
        "rim_style": rim,
        "rim_shade": {"dark": float(rng.uniform(0.55, 0.72)), "raised": float(rng.uniform(1.08, 1.18)),
                      "thin": float(rng.uniform(0.62, 0.78)), "none": 1.0}[rim],
        "rim_width": {"dark": float(rng.uniform(0.04, 0.07)), "raised": float(rng.uniform(0.04, 0.07)),
                      "thin": float(rng.uniform(0.012, 0.02)), "none": 0.0}[rim],
        "tone": tone,
        "body_bgr": [float(np.clip(body + t, 0.3, 0.97)) for t in tint],
        "membrane": membrane,
        "label_side": "left" if rng.random() < 0.5 else "right",
        "arrows": bool(rng.random() < 0.5),
        "lines": [["T", t_pos], ["C", c_pos]],
        "line_sigma": float(rng.uniform(0.016, 0.028)),
    }


def brand_strip_type(brand: dict[str, Any], name: str | None = None) -> StripType:
    """The strip type a perfect technician would write for this brand (the generator's truth)."""
    return StripType(name=name or brand["name"], analyte="imidacloprid", lines=tuple((n, p) for n, p in brand["lines"]),
                     aspect=brand["aspect"], window=tuple(brand["window"]), well=tuple(brand["well"]),
                     line_sigma=brand["line_sigma"])


def dress(cassette: dict[str, Any], brand: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Give a drawn cassette its brand's moulding and appearance (small strip-to-strip variation)."""
    j = float(rng.uniform(0.97, 1.03))
    cassette.update({
        "body_bgr": [float(min(0.97, v * j)) for v in brand["body_bgr"]],
        "membrane_bgr": [float(v) for v in brand["membrane"] * float(rng.uniform(0.98, 1.02))
                         + rng.uniform(-0.01, 0.01, 3)],
        "rim_shade": brand["rim_shade"],
        "rim_style": brand["rim_style"],
        "rim_width": brand["rim_width"],
        "well_shape": brand["well_shape"],
        "label_side": brand["label_side"],
        "arrows": brand["arrows"],
        "brand": brand["name"].upper()[:10],
    })
    return cassette
