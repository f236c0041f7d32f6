# One cassette drawn upright in linear reflectance: body, recessed window, membrane with gold lines, labels, well.
from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

# Colloidal gold absorbs around 520-530 nm: strongly in green, about half as much in blue, little in red.
GOLD_ABSORBANCE_BGR = np.array([0.50, 1.00, 0.12], np.float32)


def line_area(peak: float, sigma: float) -> float:
    """Integrated absorbance of a Gaussian line in A·% of window length (sigma as a window fraction)."""
    return float(peak * sigma * math.sqrt(2 * math.pi) * 100.0)


def _rounded_mask(h: int, w: int, radius: float) -> np.ndarray:
    # Supersample so the edge is anti-aliased like a real optical edge.
    s = 4
    m = np.zeros((h * s, w * s), np.uint8)
    r = max(1, int(radius * s))
    cv2.rectangle(m, (r, 0), (w * s - 1 - r, h * s - 1), 255, -1)
    cv2.rectangle(m, (0, r), (w * s - 1, h * s - 1 - r), 255, -1)
    for cx, cy in ((r, r), (w * s - 1 - r, r), (r, h * s - 1 - r), (w * s - 1 - r, h * s - 1 - r)):
        cv2.circle(m, (cx, cy), r, 255, -1)
    return cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _put_text(mask: np.ndarray, text: str, center: tuple[float, float], height_px: float) -> None:
    # Text drawn as coverage (0..1) so callers can blend any ink colour.
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, 2)
    scale = max(0.2, height_px / max(th, 1))
    thick = max(1, int(round(scale * 2)))
    (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    org = (int(center[0] - tw / 2), int(center[1] + th / 2))
    tmp = np.zeros(mask.shape, np.uint8)
    cv2.putText(tmp, text, org, font, scale, 255, thick, cv2.LINE_AA)
    np.maximum(mask, tmp.astype(np.float32) / 255.0, out=mask)


def membrane_absorbance(spec: dict[str, Any], n_rows: int, n_cols: int, rng: np.random.Generator) -> np.ndarray:
    """Absorbance (at the gold peak) over the membrane; row 0 is the far end, the last row the well end."""
    p = 1.0 - (np.arange(n_rows, dtype=np.float32) + 0.5) / n_rows  # position from the well end
    bg = spec["background"]
    a = (bg["offset"] + bg["slope"] * (p - 0.5) + bg["wave_amp"] * np.sin(2 * np.pi * p / bg["wave_period"]
                                                                          + bg["wave_phase"]))
    for ln in spec["lines"]:
        a = a + ln["peak"] * np.exp(-0.5 * ((p - ln["position"]) / ln["sigma"]) ** 2)
    img = np.repeat(a[:, None], n_cols, axis=1).astype(np.float32)
    # Flow streaks run along the strip and fibres make a fine texture; both average out across a row.
    streaks = cv2.GaussianBlur(rng.normal(0, bg["streak"], (1, n_cols)).astype(np.float32), (0, 0), 2.0)
    img += streaks
    img += rng.normal(0, bg["texture"], img.shape).astype(np.float32)
    # Lines fade out at the membrane's side edges, where the recess wall meets it.
    edge = np.minimum(np.arange(n_cols) + 0.5, n_cols - np.arange(n_cols) - 0.5) / max(1.0, 0.06 * n_cols)
    fade = np.clip(edge, 0, 1).astype(np.float32)
    lines_only = img - a[:, None]
    return (a[:, None] * fade[None, :] + lines_only).astype(np.float32)


def render_cassette(spec: dict[str, Any], geom: dict[str, Any], length_px: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return (linear BGR reflectance, alpha) of an upright cassette, sample well at the bottom."""
    h = int(round(length_px))
    w = int(round(length_px * geom["aspect"]))
    alpha = _rounded_mask(h, w, 0.08 * w)
    body = np.array(spec["body_bgr"], np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = body
    # Moulded bevel: the rim of the body curves away from the light.
    dist = cv2.distanceTransform((alpha > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    bevel = 1.0 - 0.12 * np.exp(-dist / max(1.5, 0.03 * w))
    img *= bevel[:, :, None]

    if spec.get("face_down"):
        return img, alpha

    x0, y0, x1, y1 = geom["window"]
    wx0, wx1 = x0 * w, x1 * w
    wy0, wy1 = y0 * h, y1 * h
    style = spec.get("rim_style", "dark")
    rim = max(2.0, 0.05 * w) if "rim_width" not in spec else max(1.0, spec["rim_width"] * w)
    # Recess wall: a darker frame around the visible membrane (lighter when the rim is a raised ridge).
    rx0, ry0 = int(round(wx0 - rim)), int(round(wy0 - rim))
    rx1, ry1 = int(round(wx1 + rim)), int(round(wy1 + rim))
    ix0, iy0, ix1, iy1 = int(round(wx0)), int(round(wy0)), int(round(wx1)), int(round(wy1))
    if style != "none":
        img[ry0:ry1, rx0:rx1] *= np.float32(spec["rim_shade"])
    if style == "raised":
        # The ridge's inner face drops into the recess and shades the membrane's border.
        s = max(1, int(round(0.012 * w)))
        img[iy0 - s:iy1 + s, ix0 - s:ix1 + s] *= np.float32(0.78)
    mh, mw = iy1 - iy0, ix1 - ix0
    # The membrane's fibres and streaks belong to this strip: a re-photograph shows the same ones.
    tex_rng = np.random.default_rng(spec["texture_seed"]) if "texture_seed" in spec else rng
    absorb = membrane_absorbance(spec, mh, mw, tex_rng)
    k = np.array(spec["gold_bgr"], np.float32)
    membrane = np.array(spec["membrane_bgr"], np.float32)[None, None, :] * np.power(
        10.0, -absorb[:, :, None] * k[None, None, :]).astype(np.float32)
    img[iy0:iy1, ix0:ix1] = membrane

    # Printed labels beside the window and the brand above it.
    ink = np.zeros((h, w), np.float32)
    lab_x = (rx0) / 2.0 if spec.get("label_side", "left") == "left" else (rx1 + w) / 2.0
    for ln in spec["lines"]:
        y = wy1 - ln["position"] * (wy1 - wy0)
        _put_text(ink, ln["name"], (lab_x, y), min(0.045 * h, 0.18 * w))
    # A brand prints its name and analyte in the room above its window, wherever that is.
    ty = (0.08 * h, 0.15 * h) if "rim_style" not in spec else (0.4 * (wy0 - rim), 0.78 * (wy0 - rim))
    _put_text(ink, spec["brand"], (w / 2, ty[0]), min(0.04 * h, 0.9 * w / max(4, len(spec["brand"]))))
    label = spec["analyte_label"]
    _put_text(ink, label, (w / 2, ty[1]), min(0.03 * h, 0.8 * w / max(4, len(label)), 0.3 * (wy0 - rim)))
    wx, wy, wr = geom["well"]
    cx, cy, r = wx * w, wy * h, wr * w
    _put_text(ink, "S", (max(r * 0.35, (cx - r) / 2), cy - r * 1.1), min(0.04 * h, 0.16 * w))
    if spec.get("arrows"):
        # Printed chevrons between window and well, pointing at the well: edges a window finder must ignore.
        ay = (wy1 + rim + (wy - geom["well"][2] * 1.3 * w / h) * h) / 2
        for k in (-1, 1):
            yk = int(ay + k * 0.02 * h)
            cv2.polylines(ink, [np.array([[int(0.38 * w), yk - int(0.012 * h)], [int(0.5 * w), yk],
                                          [int(0.62 * w), yk - int(0.012 * h)]], np.int32)], False, 1.0,
                          max(1, int(0.012 * w)), cv2.LINE_AA)
    ink_col = np.array(spec["ink_bgr"], np.float32)
    img = img * (1 - ink[:, :, None]) + ink[:, :, None] * ink_col

    # Sample well: a dark recessed ring with the coloured sample soaking the pad.
    well = np.zeros((h, w), np.uint8)
    pad = np.zeros((h, w), np.uint8)
    shape = spec.get("well_shape", "round")
    for mask, k in ((well, 1.15), (pad, 0.9)):
        if shape == "oval":
            cv2.ellipse(mask, (int(cx), int(cy)), (int(r * k), int(r * k * 1.45)), 0, 0, 360, 255, -1, cv2.LINE_AA)
        elif shape == "square":
            cv2.rectangle(mask, (int(cx - r * k), int(cy - r * k)), (int(cx + r * k), int(cy + r * k)), 255, -1)
        else:
            cv2.circle(mask, (int(cx), int(cy)), int(r * k), 255, -1, cv2.LINE_AA)
    wm = well.astype(np.float32)[:, :, None] / 255.0
    img = img * (1 - wm) + wm * (img * 0.55)
    pm = pad.astype(np.float32)[:, :, None] / 255.0
    sample = np.array(spec["sample_bgr"], np.float32)
    img = img * (1 - pm) + pm * sample
    return img.astype(np.float32), alpha
