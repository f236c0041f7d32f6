# Bring a cassette upright at full resolution, refine its pose from its edges, and find the result window.
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from station.striptypes import StripType

MARGIN = 0.15  # of the cassette width, kept around the body so its edges (and blur) can be measured


@dataclass
class Upright:
    patch: np.ndarray        # BGR uint8, cassette upright, sample well at the bottom
    matrix: np.ndarray       # 2x3 affine: patch (u, v) -> image (x, y)
    width: float             # cassette width in px (= patch px)
    length: float
    margin: float


@dataclass
class Window:
    x0: float
    y0: float
    x1: float
    y1: float                # membrane box in patch coordinates
    rim_contrast: float      # how much darker the recess wall is than the membrane (fraction)


def overlap(a: Window, b: Window) -> float:
    """Intersection over union of two windows."""
    iw = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    ih = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = iw * ih
    union = (a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter
    return inter / union if union > 0 else 0.0


def turned_angle(angle: float) -> float:
    """The same pose the other way round, kept within (-180, 180]."""
    return angle + 180.0 if angle <= 0 else angle - 180.0


def patch_to_image(center: tuple[float, float], angle: float, pw: float, ph: float) -> np.ndarray:
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    cx, cy = center
    return np.array([[c, -s, cx - c * pw / 2 + s * ph / 2],
                     [s, c, cy - s * pw / 2 - c * ph / 2]], np.float64)


def upright(bgr: np.ndarray, center: tuple[float, float], angle: float, width: float, length: float) -> Upright:
    m = MARGIN * width
    pw, ph = int(round(width + 2 * m)), int(round(length + 2 * m))
    mat = patch_to_image(center, angle, pw, ph)
    patch = cv2.warpAffine(bgr, mat, (pw, ph), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)
    return Upright(patch, mat, width, length, m)


def _edge(profile: np.ndarray, lo: int, hi: int, rising: bool) -> float | None:
    """Sub-pixel position of the steepest rise (or fall) of a 1-D profile inside [lo, hi)."""
    lo, hi = max(1, lo), min(len(profile) - 1, hi)
    if hi - lo < 3:
        return None
    g = np.gradient(profile)[lo:hi]
    g = g if rising else -g
    i = int(np.argmax(g))
    if g[i] <= 0:
        return None
    if 0 < i < len(g) - 1:
        d = g[i - 1] - 2 * g[i] + g[i + 1]
        off = 0.5 * (g[i - 1] - g[i + 1]) / d if d != 0 else 0.0
    else:
        off = 0.0
    return lo + i + float(np.clip(off, -1, 1))


def refine_pose(bgr: np.ndarray, center: tuple[float, float], angle: float, width: float,
                length: float) -> tuple[tuple[float, float], float, float, float]:
    """Re-measure centre, angle, width and length from the body's edges in an upright crop."""
    up = upright(bgr, center, angle, width, length)
    grey = cv2.cvtColor(up.patch, cv2.COLOR_BGR2GRAY).astype(np.float32)
    m, w, L = up.margin, width, length
    span = int(0.6 * m) + 2
    xs = {}
    for name, (r0, r1) in {"upper": (0.12, 0.35), "lower": (0.55, 0.75)}.items():
        rows = grey[int(m + r0 * L):int(m + r1 * L)]
        prof = rows.mean(axis=0)
        left = _edge(prof, int(m - span), int(m + span), rising=True)
        right = _edge(prof, int(m + w - span), int(m + w + span), rising=False)
        xs[name] = (left, right, m + (r0 + r1) / 2 * L)
    cols = grey[:, int(m + 0.3 * w):int(m + 0.7 * w)].mean(axis=1)
    top = _edge(cols, int(m - span), int(m + span), rising=True)
    bottom = _edge(cols, int(m + L - span), int(m + L + span), rising=False)
    if None in (*xs["upper"][:2], *xs["lower"][:2], top, bottom):
        return center, angle, width, length
    (lu, ru, yu), (ll, rl, yl) = xs["upper"], xs["lower"]
    mid_u, mid_l = (lu + ru) / 2, (ll + rl) / 2
    # The axis drifting right going down means the patch is turned clockwise relative to the body.
    d_angle = math.degrees(math.atan2(mid_l - mid_u, yl - yu))
    new_w = ((ru - lu) + (rl - ll)) / 2 / math.cos(math.radians(d_angle))
    new_l = (bottom - top)
    u = (mid_u + mid_l) / 2
    v = (top + bottom) / 2
    x = up.matrix[0, 0] * u + up.matrix[0, 1] * v + up.matrix[0, 2]
    y = up.matrix[1, 0] * u + up.matrix[1, 1] * v + up.matrix[1, 2]
    if abs(d_angle) > 5 or not (0.8 * w < new_w < 1.2 * w) or not (0.8 * L < new_l < 1.2 * L):
        return center, angle, width, length
    return (float(x), float(y)), angle - d_angle, float(new_w), float(new_l)


def find_window(up: Upright, st: StripType) -> Window | None:
    """Locate the membrane inside its darker recess wall near where the strip type says it is."""
    grey = cv2.cvtColor(up.patch, cv2.COLOR_BGR2GRAY).astype(np.float32)
    m, w, L = up.margin, up.width, up.length
    x0, y0, x1, y1 = st.window
    ex0, ex1, ey0, ey1 = m + x0 * w, m + x1 * w, m + y0 * L, m + y1 * L
    # Pose is refined to a pixel or so; what remains is moulding tolerance (well under 1 % of the length).
    tol_x, tol_y = 0.07 * w, 0.015 * L
    band = grey[int(ey0 + 0.2 * (ey1 - ey0)):int(ey1 - 0.2 * (ey1 - ey0))]
    if band.size == 0:
        return None
    cprof = band.mean(axis=0)
    left = _edge(cprof, int(ex0 - tol_x), int(ex0 + tol_x), rising=True)
    right = _edge(cprof, int(ex1 - tol_x), int(ex1 + tol_x), rising=False)
    if left is None or right is None or not (0.7 < (right - left) / (ex1 - ex0) < 1.3):
        return None
    cols = grey[:, int(left + 0.15 * (right - left)):int(right - 0.15 * (right - left))]
    rprof = cols.mean(axis=1)
    top = _edge(rprof, int(ey0 - tol_y), int(ey0 + tol_y), rising=True)
    bottom = _edge(rprof, int(ey1 - tol_y), int(ey1 + tol_y), rising=False)
    if top is None or bottom is None or not (0.8 < (bottom - top) / (ey1 - ey0) < 1.2):
        return None
    # Strong lines darken the mean across the band; the upper quartile is the bare membrane and wall.
    level = np.percentile(band, 75, axis=0)
    membrane = float(np.median(level[int(left + 2):int(right - 1)]))
    rim_w = max(2, int(0.05 * w))
    rim_l = float(level[max(0, int(left) - rim_w):max(1, int(left) - 1)].min())
    rim_r = float(level[int(right) + 1:int(right) + rim_w + 1].min())
    contrast = 1.0 - max(rim_l, rim_r) / max(membrane, 1.0)
    if contrast < 0.04:
        return None
    return Window(left, top, right, bottom, contrast)


def expected_window(up: Upright, st: StripType) -> Window:
    """Where the strip type puts the membrane, for checks made when its edges cannot be seen."""
    m, w, L = up.margin, up.width, up.length
    x0, y0, x1, y1 = st.window
    return Window(m + x0 * w, m + y0 * L, m + x1 * w, m + y1 * L, 0.0)
