# Random scene descriptions (the truth before rendering): cassettes, poses, lines, lighting, camera, faults.
from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from station.lab.photogen.cassette import GOLD_ABSORBANCE_BGR, line_area
from station.striptypes import BUILTIN_STRIP_TYPES, DEFAULT_STRIP_TYPE, StripType

RESOLUTIONS = ((1280, 960), (1640, 1232), (2028, 1520), (1600, 1200), (1920, 1440))
CASSETTE_FAULTS = ("glare", "no_c", "faint_c", "cut_off", "tilted", "face_down", "reversed")
SCENE_FAULTS = ("blur", "overexposed", "underexposed", "empty_tray")
BRANDS = ("AgriCheck", "NongJian", "SafeVeg", "QuickTest", "LvYuan")


def geometry_of(st: StripType) -> dict[str, Any]:
    return {"aspect": st.aspect, "window": list(st.window), "well": list(st.well)}


def random_lines(rng: np.random.Generator, st: StripType, *, tc: float | None = None,
                 c_peak: float | None = None) -> list[dict[str, Any]]:
    """Lines with Gaussian profiles; T/C truth is the ratio of integrated absorbance areas."""
    c_peak = float(rng.uniform(0.18, 0.7)) if c_peak is None else c_peak
    c_sigma = st.line_sigma * float(rng.uniform(0.85, 1.15))
    shift = float(rng.normal(0, 0.012))
    out = [{"name": "C", "position": st.c_position + shift, "peak": c_peak, "sigma": c_sigma}]
    c_area = line_area(c_peak, c_sigma)
    for name, pos in st.test_lines:
        ratio = float(rng.uniform(0.0, 1.5)) if tc is None else tc
        t_sigma = st.line_sigma * float(rng.uniform(0.85, 1.15))
        t_peak = ratio * c_area / line_area(1.0, t_sigma)
        out.append({"name": name, "position": pos + shift + float(rng.normal(0, 0.004)),
                    "peak": t_peak, "sigma": t_sigma})
    for ln in out:
        ln["area"] = line_area(ln["peak"], ln["sigma"])
    return out


def random_cassette(rng: np.random.Generator, st: StripType, *, faults: tuple[str, ...] = (),
                    tc: float | None = None, c_peak: float | None = None) -> dict[str, Any]:
    if "faint_c" in faults:
        c_peak = float(rng.uniform(0.06, 0.09))
    lines = random_lines(rng, st, tc=tc, c_peak=c_peak)
    if "no_c" in faults:
        lines = [dict(ln, peak=0.0, area=0.0) if ln["name"] == "C" else ln for ln in lines]
    white = float(rng.uniform(0.80, 0.90))
    tint = rng.uniform(-0.02, 0.02, 3)
    sample_palette = ((0.10, 0.35, 0.15), (0.10, 0.45, 0.55), (0.25, 0.30, 0.55), (0.30, 0.45, 0.40))
    sample = np.array(sample_palette[int(rng.integers(len(sample_palette)))]) * rng.uniform(0.7, 1.2)
    return {
        "faults": list(faults),
        "lines": lines,
        "body_bgr": [float(white + t) for t in tint],
        "membrane_bgr": [float(v) for v in rng.uniform(0.86, 0.93) + rng.uniform(-0.015, 0.015, 3)],
        "rim_shade": float(rng.uniform(0.55, 0.72)),
        "gold_bgr": [float(GOLD_ABSORBANCE_BGR[0] + rng.uniform(-0.05, 0.05)), 1.0,
                     float(GOLD_ABSORBANCE_BGR[2] + rng.uniform(-0.03, 0.03))],
        "ink_bgr": [[0.08, 0.08, 0.08], [0.35, 0.12, 0.05], [0.08, 0.08, 0.45]][int(rng.integers(3))],
        "sample_bgr": [float(v) for v in np.clip(sample, 0.02, 0.9)],
        "brand": BRANDS[int(rng.integers(len(BRANDS)))],
        "analyte_label": st.analyte.split(",")[0][:10].upper(),
        "face_down": "face_down" in faults,
        "texture_seed": int(rng.integers(2**31)),
        "background": {
            "offset": float(rng.uniform(0.0, 0.03)),
            "slope": float(rng.uniform(-0.04, 0.04)),
            "wave_amp": float(rng.uniform(0.0, 0.012)),
            "wave_period": float(rng.uniform(1.2, 3.0)),
            "wave_phase": float(rng.uniform(0, 2 * math.pi)),
            "streak": float(rng.uniform(0.002, 0.008)),
            "texture": float(rng.uniform(0.003, 0.008)),
        },
    }


def _corners(center: tuple[float, float], size: tuple[float, float], angle: float) -> np.ndarray:
    return cv2.boxPoints(((center[0], center[1]), (size[0], size[1]), angle))


def _overlaps(poly: np.ndarray, others: list[np.ndarray]) -> bool:
    for o in others:
        inter, _ = cv2.intersectConvexConvex(poly.astype(np.float32), o.astype(np.float32))
        if inter > 0:
            return True
    return False


def _inflate(center: tuple[float, float], size: tuple[float, float], angle: float, margin: float) -> np.ndarray:
    return _corners(center, (size[0] + 2 * margin, size[1] + 2 * margin), angle)


def random_scene(rng: np.random.Generator, *, strip_type: str = DEFAULT_STRIP_TYPE, n_cassettes: int | None = None,
                 resolution: tuple[int, int] | None = None, faults: tuple[str, ...] = (),
                 cassette_faults: tuple[str, ...] = (), tc: float | None = None, c_peak: float | None = None,
                 qr: bool | None = None, length_frac: float | None = None,
                 brand: dict[str, Any] | None = None) -> dict[str, Any]:
    """A complete scene description; `render` turns it into a photograph.

    faults: scene-level (blur, overexposed, underexposed, empty_tray); cassette_faults apply to the first
    cassette (glare, no_c, faint_c, cut_off, tilted, face_down, reversed: sample well away from the operator).
    """
    st = BUILTIN_STRIP_TYPES[strip_type]
    if brand is not None:
        from station.lab.photogen.brands import brand_strip_type

        st = brand_strip_type(brand)
    w, h = resolution or RESOLUTIONS[int(rng.integers(len(RESOLUTIONS)))]
    n = 0 if "empty_tray" in faults else (int(rng.integers(1, 5)) if n_cassettes is None else n_cassettes)
    want_qr = bool(rng.random() < 0.3) if qr is None else qr
    placed: list[np.ndarray] = []
    cassettes: list[dict[str, Any]] = []
    for i in range(n):
        cf = tuple(cassette_faults) if i == 0 else ()
        for attempt in range(400):
            shrink = 1.0 - 0.45 * min(1.0, attempt / 250)
            frac = (float(rng.uniform(0.25, 0.65)) if length_frac is None else length_frac)
            frac = max(0.25, frac * shrink) if length_frac is None else frac
            length = frac * h
            width = length * st.aspect
            angle = float(rng.uniform(25, 40) * rng.choice([-1, 1])) if "tilted" in cf else float(
                rng.uniform(-15, 15))
            if "cut_off" in cf:
                side = int(rng.integers(4))
                cx = float(rng.uniform(0.2 * w, 0.8 * w))
                cy = float(rng.uniform(0.3 * h, 0.7 * h))
                if side == 0:
                    cx = float(rng.uniform(-0.05, 0.35) * width)
                elif side == 1:
                    cx = float(w - rng.uniform(-0.05, 0.35) * width)
                elif side == 2:
                    cy = float(rng.uniform(0.05, 0.35) * length)
                else:
                    cy = float(h - rng.uniform(0.05, 0.35) * length)
            else:
                cx = float(rng.uniform(0, w))
                cy = float(rng.uniform(0, h))
            if "reversed" in cf:
                angle = angle + 180.0 if angle <= 0 else angle - 180.0
            poly = _corners((cx, cy), (width, length), angle)
            if "cut_off" not in cf:
                m = 0.01 * h
                if poly[:, 0].min() < m or poly[:, 1].min() < m or poly[:, 0].max() > w - m or \
                        poly[:, 1].max() > h - m:
                    continue
            if _overlaps(_inflate((cx, cy), (width, length), angle, 0.025 * h), placed):
                continue
            placed.append(_inflate((cx, cy), (width, length), angle, 0.0))
            c = random_cassette(rng, st, faults=cf, tc=tc, c_peak=c_peak)
            if brand is not None:
                from station.lab.photogen.brands import dress

                dress(c, brand, rng)
            c.update({"center": [cx, cy], "angle": angle, "length_px": length, "width_px": width})
            cassettes.append(c)
            break
    cards: list[dict[str, Any]] = []
    if want_qr and cassettes:
        for _ in range(300):
            side = float(rng.uniform(0.16, 0.22) * h)
            cx, cy = float(rng.uniform(side, w - side)), float(rng.uniform(side, h - side))
            ang = float(rng.uniform(-10, 10))
            poly = _inflate((cx, cy), (side, side), ang, 0.03 * h)
            if poly[:, 0].min() < 0 or poly[:, 1].min() < 0 or poly[:, 0].max() > w or poly[:, 1].max() > h:
                continue
            if _overlaps(poly, placed):
                continue
            near = int(np.argmin([math.dist((cx, cy), c["center"]) for c in cassettes]))
            cards.append({"center": [cx, cy], "angle": ang, "side_px": side,
                          "text": f"SAMPLE-{int(rng.integers(100000, 999999))}", "cassette": near})
            break
    tray_palette = ((0.10, 0.10, 0.10), (0.18, 0.12, 0.08), (0.08, 0.16, 0.08), (0.20, 0.20, 0.22),
                    (0.06, 0.10, 0.22), (0.25, 0.22, 0.18))
    tray = np.array(tray_palette[int(rng.integers(len(tray_palette)))]) * rng.uniform(0.7, 1.3)
    exposure = 0.72 * float(rng.uniform(0.85, 1.15))  # white membrane near 70 % of full scale
    if "overexposed" in faults:
        exposure *= float(rng.uniform(1.8, 2.6))
    if "underexposed" in faults:
        exposure *= float(rng.uniform(0.025, 0.055))
    blur = float(rng.uniform(0.0, 1.0))
    if "blur" in faults:
        blur = float(rng.uniform(0.012, 0.02) * h)  # several line widths: the lines smear into the membrane
    cast = rng.uniform(0.85, 1.15, 3)
    glare = []
    for i, c in enumerate(cassettes):
        if "glare" in c["faults"]:
            glare.append({"cassette": i, "strength": float(rng.uniform(0.8, 2.5)),
                          "radius_frac": float(rng.uniform(0.35, 0.7)), "offset": float(rng.uniform(-0.3, 0.3))})
    extra = {} if brand is None else {"brand": brand["name"], "geometry": {
        "aspect": brand["aspect"], "window": list(brand["window"]), "well": list(brand["well"])}}
    return {
        **extra,
        "version": 1,
        "strip_type": strip_type,
        "size": [w, h],
        "faults": list(faults),
        "cassettes": cassettes,
        "qr_cards": cards,
        "tray": {"bgr": [float(v) for v in np.clip(tray, 0.03, 0.35)], "texture": float(rng.uniform(0.02, 0.08))},
        "light": {
            "exposure": exposure,
            "gradient": float(rng.uniform(0.0, 0.25)),
            "gradient_dir": float(rng.uniform(0, 2 * math.pi)),
            "vignetting": float(rng.uniform(0.05, 0.3)),
            "cast_bgr": [float(v) for v in cast / cast.max()],
            "flare": float(rng.uniform(0.0, 0.008)),
            "glare": glare,
        },
        "camera": {
            "blur_sigma": blur,
            "shot_noise": float(rng.uniform(0.0001, 0.0006)),  # variance per unit signal: 1-2 % at white
            "read_noise": float(rng.uniform(0.001, 0.004)),
            "jpeg_quality": int(rng.integers(75, 96)),
        },
    }
