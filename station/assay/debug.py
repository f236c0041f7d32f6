# Annotated picture of what the reader saw: boxes, windows, line positions and each strip's profile.
from __future__ import annotations

import cv2
import numpy as np

from station.assay.scores import ImageScore, StripScore

COLOURS = {"negative": (60, 180, 60), "positive": (40, 40, 230), "invalid": (0, 160, 255), "retake": (200, 60, 200)}


def _plot(strip: StripScore, w: int, h: int) -> np.ndarray:
    panel = np.full((h, w, 3), 255, np.uint8)
    cv2.putText(panel, f"slot {strip.slot}: {strip.verdict}", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                COLOURS.get(strip.verdict, (0, 0, 0)), 1, cv2.LINE_AA)
    if strip.profile is None or strip.baseline is None or len(strip.profile) < 2:
        cv2.putText(panel, (strip.quality or ["no profile"])[0], (6, 36), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
        return panel
    prof, base = strip.profile, strip.baseline
    lo, hi = float(min(prof.min(), base.min())), float(prof.max())
    span = max(hi - lo, 0.05)
    n = len(prof)

    def pts(y: np.ndarray) -> np.ndarray:
        xs = 8 + (w - 16) * np.arange(n) / (n - 1)
        ys = h - 8 - (h - 30) * (y - lo) / span
        return np.stack([xs, ys], axis=1).astype(np.int32)

    cv2.polylines(panel, [pts(base)], False, (160, 160, 160), 1, cv2.LINE_AA)
    cv2.polylines(panel, [pts(prof)], False, (40, 40, 40), 1, cv2.LINE_AA)
    for ln in strip.lines:
        x = int(8 + (w - 16) * ln.position)
        cv2.line(panel, (x, 22), (x, h - 8), (0, 140, 0) if ln.found else (0, 0, 200), 1)
        cv2.putText(panel, f"{ln.name} {ln.area:.2f}", (min(x + 2, w - 60), 32), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (0, 0, 0), 1, cv2.LINE_AA)
    ratio = "-" if strip.tc_ratio is None else f"{strip.tc_ratio:.3f}"
    cv2.putText(panel, f"T/C {ratio}  well -> far", (6, h - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1,
                cv2.LINE_AA)
    return panel


def render_debug(bgr: np.ndarray, score: ImageScore, max_width: int = 1280) -> np.ndarray:
    """Return a BGR image; the caller decides where (or whether) to write it."""
    s = min(1.0, max_width / bgr.shape[1])
    # An explicit size of at least 1×1: a 1-pixel-high photograph scaled by s would round to 0 and crash resize.
    size = (max(1, round(bgr.shape[1] * s)), max(1, round(bgr.shape[0] * s)))
    img = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA) if s < 1 else bgr.copy()
    for st in score.strips:
        col = COLOURS.get(st.verdict, (255, 255, 255))
        if st.box is not None:
            cv2.polylines(img, [(st.box * s).astype(np.int32)], True, col, 2, cv2.LINE_AA)
        if st.window_poly is not None:
            cv2.polylines(img, [(st.window_poly * s).astype(np.int32)], True, (255, 200, 0), 1, cv2.LINE_AA)
        for _name, seg in st.line_points:
            p = (seg * s).astype(np.int32)
            cv2.line(img, tuple(p[0]), tuple(p[1]), (0, 255, 255), 1, cv2.LINE_AA)
        label = f"{st.slot}:{st.verdict}" + ("" if st.tc_ratio is None else f" {st.tc_ratio:.2f}")
        if st.quality:
            label += " " + ",".join(st.quality)
        x, y = int(st.center[0] * s), int(st.center[1] * s)
        cv2.putText(img, label, (x - 40, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, label, (x - 40, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, col, 1, cv2.LINE_AA)
    if score.reason:
        cv2.putText(img, score.reason[:110], (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1, cv2.LINE_AA)
    if not score.strips:
        return img
    pw = img.shape[1] // max(1, min(4, len(score.strips)))
    panels = [_plot(st, pw, 160) for st in score.strips[:4]]
    row = np.hstack(panels)
    if row.shape[1] < img.shape[1]:
        row = np.hstack([row, np.full((160, img.shape[1] - row.shape[1], 3), 255, np.uint8)])
    return np.vstack([img, row[:, :img.shape[1]]])
