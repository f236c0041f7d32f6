# Scene description -> photograph: tray, placed cassettes, QR cards, light, optics, sensor noise, sRGB, JPEG.
from __future__ import annotations

import copy
import math
from typing import Any

import cv2
import numpy as np

from station.lab.photogen.cassette import render_cassette
from station.lab.photogen.scene import geometry_of
from station.striptypes import BUILTIN_STRIP_TYPES


def _low_freq_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    small = rng.normal(0, 1, (cells, max(2, int(cells * w / h)))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _paste(scene: np.ndarray, patch: np.ndarray, alpha: np.ndarray, center: tuple[float, float],
           angle: float) -> None:
    """Rotate an upright patch about its centre onto the scene (only its bounding box is touched)."""
    h, w = alpha.shape
    H, W = scene.shape[:2]
    # cv2 angles are counter-clockwise in image coordinates; ours are clockwise like minAreaRect.
    m = cv2.getRotationMatrix2D((w / 2, h / 2), -angle, 1.0)
    m[0, 2] += center[0] - w / 2
    m[1, 2] += center[1] - h / 2
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ m.T
    x0, y0 = max(0, int(corners[:, 0].min()) - 2), max(0, int(corners[:, 1].min()) - 2)
    x1, y1 = min(W, int(corners[:, 0].max()) + 3), min(H, int(corners[:, 1].max()) + 3)
    if x1 <= x0 or y1 <= y0:
        return
    m[0, 2] -= x0
    m[1, 2] -= y0
    rgba = np.dstack([patch * alpha[:, :, None], alpha])
    warped = cv2.warpAffine(rgba, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    roi = scene[y0:y1, x0:x1]
    roi *= 1 - warped[:, :, 3:4]
    roi += warped[:, :, :3]


def _qr_patch(text: str, side: int) -> np.ndarray:
    enc = cv2.QRCodeEncoder.create()
    code = enc.encode(text)
    if code.ndim == 3:
        code = code[:, :, 0]
    card = np.full((side, side), 0.85, np.float32)
    inner = int(side * 0.78)
    q = cv2.resize((code > 127).astype(np.float32), (inner, inner), interpolation=cv2.INTER_NEAREST)
    off = (side - inner) // 2
    card[off:off + inner, off:off + inner] = np.where(q > 0.5, 0.85, 0.05)
    return np.repeat(card[:, :, None], 3, axis=2)


def _srgb_lut(n: int = 65536) -> np.ndarray:
    x = np.arange(n, dtype=np.float64) / (n - 1)
    s = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.clip(np.round(s * 255), 0, 255).astype(np.uint8)


_SRGB_LUT = _srgb_lut()


def _srgb_encode_u8(lin: np.ndarray) -> np.ndarray:
    # A 16-bit lookup is exact to well under one 8-bit code and ~10x faster than pow() per pixel.
    idx = np.clip(lin, 0.0, 1.0) * 65535.0 + 0.5
    return _SRGB_LUT[idx.astype(np.uint16)]


def render_jpeg(truth: dict[str, Any], rng: np.random.Generator) -> tuple[bytes, dict[str, Any]]:
    """Render a scene description (from random_scene) to JPEG bytes and its completed truth."""
    truth = copy.deepcopy(truth)
    W, H = truth["size"]
    st = BUILTIN_STRIP_TYPES[truth["strip_type"]]
    geom = truth.get("geometry") or geometry_of(st)
    tray = truth["tray"]
    scene = np.empty((H, W, 3), np.float32)
    scene[:] = np.array(tray["bgr"], np.float32)
    tex = 1 + tray["texture"] * _low_freq_noise(rng, H, W, 6) + 0.5 * tray["texture"] * rng.standard_normal(
        (H, W), dtype=np.float32)
    scene *= tex[:, :, None]
    for c in truth["cassettes"]:
        patch, alpha = render_cassette(c, geom, c["length_px"], rng)
        c["width_px"] = float(alpha.shape[1])
        c["length_px"] = float(alpha.shape[0])
        # Soft drop shadow first, offset away from the light; it is smooth, so a quarter-size copy will do.
        q = 4
        m = cv2.getRotationMatrix2D((alpha.shape[1] / 2, alpha.shape[0] / 2), -c["angle"], 1.0)
        m[0, 2] += c["center"][0] - alpha.shape[1] / 2 + 0.01 * H
        m[1, 2] += c["center"][1] - alpha.shape[0] / 2 + 0.012 * H
        m /= q
        shadow = cv2.warpAffine(alpha, m, (W // q + 1, H // q + 1))
        shadow = cv2.GaussianBlur(shadow, (0, 0), 0.008 * H / q)
        shadow = cv2.resize(shadow, (W, H), interpolation=cv2.INTER_LINEAR)
        scene *= (1 - 0.45 * shadow)[:, :, None]
        _paste(scene, patch, alpha, c["center"], c["angle"])
    for card in truth["qr_cards"]:
        side = int(card["side_px"])
        patch = _qr_patch(card["text"], side)
        _paste(scene, patch, np.ones((side, side), np.float32), card["center"], card["angle"])
        truth["cassettes"][card["cassette"]]["qr"] = card["text"]

    light = truth["light"]
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    nx, ny = (xx - W / 2) / (W / 2), (yy - H / 2) / (H / 2)
    illum = (1 + light["gradient"] * (math.cos(light["gradient_dir"]) * nx + math.sin(light["gradient_dir"]) * ny)
             / 2) * (1 - light["vignetting"] * (nx * nx + ny * ny) / 2)
    illum *= light["exposure"]
    scene *= illum[:, :, None]
    scene *= np.array(light["cast_bgr"], np.float32)[None, None, :]
    for g in light["glare"]:
        c = truth["cassettes"][g["cassette"]]
        x0, y0, x1, y1 = geom["window"]
        # Window centre in the cassette frame, then rotated into the image.
        u = ((x0 + x1) / 2 - 0.5) * c["width_px"]
        v = ((y0 + y1) / 2 + g["offset"] * (y1 - y0) - 0.5) * c["length_px"]
        a = math.radians(c["angle"])
        gx = c["center"][0] + u * math.cos(a) - v * math.sin(a)
        gy = c["center"][1] + u * math.sin(a) + v * math.cos(a)
        r = g["radius_frac"] * (x1 - x0) * c["width_px"]
        # The spot is negligible beyond 4 radii; only that box is touched.
        bx0, by0 = max(0, int(gx - 4 * r)), max(0, int(gy - 4 * r))
        bx1, by1 = min(W, int(gx + 4 * r) + 1), min(H, int(gy + 4 * r) + 1)
        if bx1 > bx0 and by1 > by0:
            sx, sy = xx[by0:by1, bx0:bx1], yy[by0:by1, bx0:bx1]
            spot = np.exp(-((sx - gx) ** 2 + (sy - gy) ** 2) / (2 * r * r)).astype(np.float32)
            scene[by0:by1, bx0:bx1] += (g["strength"] * spot)[:, :, None]
        g["center"] = [gx, gy]
    scene += light["flare"]
    cam = truth["camera"]
    if cam["blur_sigma"] > 0.3:
        scene = cv2.GaussianBlur(scene, (0, 0), cam["blur_sigma"])
    noise_sd = np.sqrt(np.clip(scene, 0, None) * cam["shot_noise"] + cam["read_noise"] ** 2)
    scene += noise_sd * rng.standard_normal(scene.shape, dtype=np.float32)
    img8 = _srgb_encode_u8(scene)
    ok, buf = cv2.imencode(".jpg", img8, [cv2.IMWRITE_JPEG_QUALITY, cam["jpeg_quality"]])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    for c in truth["cassettes"]:
        areas = {ln["name"]: ln["area"] for ln in c["lines"]}
        c_area = areas.get("C", 0.0)
        c["tc_ratios"] = {n: (a / c_area if c_area > 0 else None) for n, a in areas.items() if n != "C"}
        first_t = next(n for n, _ in st.test_lines)
        c["tc_ratio"] = c["tc_ratios"][first_t]
        c["c_peak"] = next(ln["peak"] for ln in c["lines"] if ln["name"] == "C")
        poly = cv2.boxPoints(((c["center"][0], c["center"][1]), (c["width_px"], c["length_px"]), c["angle"]))
        c["fully_visible"] = bool(poly[:, 0].min() >= 0 and poly[:, 1].min() >= 0 and poly[:, 0].max() < W
                                  and poly[:, 1].max() < H)
    return buf.tobytes(), truth


def render(truth: dict[str, Any], rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """Render a scene description to a decoded BGR photograph (JPEG artefacts included) and its truth."""
    data, truth = render_jpeg(truth, rng)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return img, truth
