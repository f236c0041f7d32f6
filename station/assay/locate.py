# Find white cassettes (and square white cards that may carry QR codes) on the darker tray.
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from station.striptypes import StripType

MAX_SATURATION = 80  # HSV S (0-255) of a white body under the strongest expected cast is ~40
WORK_WIDTH = 480  # localisation runs on a small copy; geometry is refined later at full resolution


@dataclass(frozen=True)
class Blob:
    center: tuple[float, float]   # full-resolution px
    width: float                  # short side, px
    length: float                 # long side, px
    angle: float                  # degrees, clockwise from vertical, well end down
    cut_off: bool
    kind: str                     # "cassette" or "card"


def long_axis_angle(box: np.ndarray) -> tuple[float, float, float]:
    """(angle, short side, long side) of a 4-corner box; angle clockwise from vertical with the long axis down."""
    e1, e2 = box[1] - box[0], box[2] - box[1]
    l1, l2 = float(np.hypot(*e1)), float(np.hypot(*e2))
    axis, long_, short = (e1, l1, l2) if l1 >= l2 else (e2, l2, l1)
    dx, dy = float(axis[0]), float(axis[1])
    if dy < 0 or (dy == 0 and dx > 0):
        dx, dy = -dx, -dy
    # A rod turned clockwise by a has its down-pointing axis along (-sin a, cos a).
    return math.degrees(math.atan2(-dx, dy)), short, long_


def find_blobs(bgr: np.ndarray, st: StripType) -> list[Blob]:
    H, W = bgr.shape[:2]
    # Plain subsampling: area averaging would cost ~10 ms here, and the blur below removes the aliasing
    # that matters for a threshold; pose is refined later at full resolution anyway.
    f = max(1, int(round(W / WORK_WIDTH)))
    small = np.ascontiguousarray(bgr[f // 2::f, f // 2::f])
    s = 1.0 / f
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    grey = cv2.GaussianBlur(grey, (5, 5), 0)
    thr, mask = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    sat_img = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)[:, :, 1]
    k = np.ones((3, 3), np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, k)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    h, w = grey.shape
    tray_level = float(np.median(grey[mask == 0])) if np.any(mask == 0) else 0.0
    blobs: list[Blob] = []
    for cnt in contours:
        area = cv2.contourArea(cnt)
        if area < 0.002 * h * w:
            continue
        rect = cv2.minAreaRect(cnt)
        box = cv2.boxPoints(rect)
        angle, short, long_ = long_axis_angle(box)
        if short < 3:
            continue
        fill = area / max(1.0, short * long_)
        bx, by, bw, bh = cv2.boundingRect(cnt)
        cut = bx <= 1 or by <= 1 or bx + bw >= w - 1 or by + bh >= h - 1
        # A turned cassette cut by the frame edge is a trapezoid, so its box is emptier.
        if fill < (0.5 if cut else 0.8):
            continue
        # A cassette is much brighter than the tray around it (labels, shadows and tray texture are not).
        m = np.zeros((bh, bw), np.uint8)
        cv2.drawContours(m, [cnt], -1, 255, -1, offset=(-bx, -by))
        inside = float(np.median(grey[by:by + bh, bx:bx + bw][m > 0]))
        # Relative, so a dark (under-exposed) photograph still shows its cassettes and can be refused.
        if inside - tray_level < 8 or inside < 1.4 * tray_level:
            continue
        # White plastic (and a white card) is near-neutral even under a colour cast; furniture, skin and
        # wood highlights are not.
        sat = float(np.median(sat_img[by:by + bh, bx:bx + bw][m > 0]))
        if sat > MAX_SATURATION:
            continue
        aspect = short / long_
        kind = ""
        if not cut and fill >= 0.85 and 0.6 * st.aspect <= aspect <= 1.6 * st.aspect \
                and 0.15 * h <= long_ <= 0.9 * h:
            kind = "cassette"
        elif cut and 0.03 * h <= short <= 0.35 * h and long_ >= 0.08 * h \
                and aspect <= 0.75:
            kind = "cassette"
        elif not cut and fill >= 0.8 and aspect >= 0.7 and 0.05 * h <= long_ <= 0.5 * h:
            kind = "card"
        if not kind:
            continue
        (cx, cy), _, _ = rect
        # Subsample i sits at full-resolution pixel f*i + f//2.
        blobs.append(Blob(((cx + 0.5) / s - 0.5, (cy + 0.5) / s - 0.5), short / s, long_ / s, angle, cut, kind))
    blobs.sort(key=lambda b: b.center[0])
    return blobs
