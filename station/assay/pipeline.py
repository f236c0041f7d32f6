# score_image: the whole measurement of one photograph, cassette by cassette; it stops at lines and quality
# codes, and station.decide turns those into a verdict.
from __future__ import annotations

import cv2
import numpy as np

from station.assay import quality as q
from station.assay.checks import adapt_lines, line_check, on_peaks
from station.assay.defocus import optical_blur
from station.assay.lines import measure_lines
from station.assay.locate import find_blobs
from station.assay.place import place
from station.assay.profile import absorbance_profile, luma_to_green, membrane_crop
from station.assay.qr import decode_cards, nearest
from station.assay.scores import ImageScore, StripScore
from station.assay.window import expected_window, refine_pose, upright
from station.striptypes import StripType

# Profile noise (green absorbance) above which a searched window is no clean membrane: clean membranes,
# even dim or textured ones, stay below about 0.005.
MAX_SEARCHED_NOISE = 0.010


def _to_image(mat: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ mat[:, :2].T + mat[:, 2]


def _c_seen(readings, st: StripType) -> bool:
    c = next(r for r in readings if r.name == "C")
    return c.found and c.peak >= st.c_min_peak and c.snr >= st.c_min_snr


def score_strip(bgr: np.ndarray, blob, slot: int, st: StripType) -> StripScore:
    center, angle, width, length = blob.center, blob.angle, blob.width, blob.length
    if not blob.cut_off:
        center, angle, width, length = refine_pose(bgr, center, angle, width, length)
    strip = StripScore(slot=slot, center=center, angle=angle, size=(width, length))
    box = cv2.boxPoints(((center[0], center[1]), (width, length), angle))
    strip.box = box
    if blob.cut_off:
        strip.quality.append(q.CUT_OFF)
    if abs(q.tilt_of(angle)) > q.MAX_TILT_DEG:
        strip.quality.append(q.TILTED)
    if strip.quality:
        strip.reason = q.REASONS[strip.quality[0]]
        return strip
    up = upright(bgr, center, angle, width, length)
    blur = q.edge_blur_px(up)
    strip.blur_px = blur
    # Judged against the expected line width: blur wider than a line smears it into the baseline.
    line_sigma_px = st.line_sigma * (st.window[3] - st.window[1]) * length
    if blur is not None and blur > q.blur_limit_px(line_sigma_px):
        strip.quality.append(q.BLURRED)
        strip.reason = q.REASONS[q.BLURRED]
        return strip
    placed = place(bgr, up, center, angle, width, length, st)
    up, win = placed.up, placed.win
    if placed.angle != angle:
        strip.angle = angle = placed.angle
    if win is not None and st.geometry == "nominal" and not (placed.searched or placed.confirmed):
        # A nominal type's window seen only where typed, the whole-body search finding no such membrane
        # there: its edges are doubtful (part recess wall or plastic, on another maker's card), so no ratio.
        placed.code = q.GEOMETRY_MISMATCH
    if win is None:
        # A lamp reflection or clipped white hides the window's edges; say so, it is the fixable cause.
        expected = expected_window(up, st)
        strip.quality += q.exposure_codes(membrane_crop(up.patch, expected, inset_x=0.1, inset_y=0.05), up) or [
            q.WINDOW_NOT_FOUND]
        strip.reason = q.REASONS[strip.quality[0]]
        return strip
    strip.window_poly = _to_image(up.matrix, np.array(
        [[win.x0, win.y0], [win.x1, win.y0], [win.x1, win.y1], [win.x0, win.y1]], np.float64))
    strip.quality += q.exposure_codes(membrane_crop(up.patch, win, inset_x=0.06, inset_y=0.02), up)
    if placed.searched and not strip.quality and q.glare_beyond_ends(up, win):
        strip.quality.append(q.GLARE)
    if placed.guided is not None and not strip.quality:
        strip.quality += q.exposure_codes(membrane_crop(up.patch, placed.guided, inset_x=0.06, inset_y=0.02), up)
    crop = membrane_crop(up.patch, win)
    prof = absorbance_profile(crop)
    # A nominal type on a window found by search: the lines are read where this membrane shows them.
    st_read = adapt_lines(prof, st) if placed.searched and st.geometry == "nominal" else st
    if st_read is None:
        st_read, placed.code = st, q.GEOMETRY_MISMATCH
    readings, base, noise = measure_lines(prof, st_read, luma_to_green(crop), optical_blur(blur))
    if st.geometry == "nominal" and placed.confirmed and placed.code is None and \
            not (_c_seen(readings, st) and line_check(prof, readings, st) and on_peaks(prof, readings, st)):
        # A nominal type's window where typed, and confirmed by the search, but its lines not where typed
        # (another maker's card in the same moulding): read where this membrane shows them.
        alt = adapt_lines(prof, st)
        if alt is not None and alt.lines != st.lines:
            r2, b2, n2 = measure_lines(prof, alt, luma_to_green(crop), optical_blur(blur))
            if line_check(prof, r2, alt):
                st_read, readings, base, noise = alt, r2, b2, n2
    if placed.code is None and not line_check(prof, readings, st_read):
        placed.code = q.GEOMETRY_MISMATCH
    if placed.code is None and placed.searched and noise > MAX_SEARCHED_NOISE:
        # Between its lines a membrane is flat; rows that vary this much are recess wall or plastic taken
        # in by a misjudged window edge.
        placed.code = q.GEOMETRY_MISMATCH
    # One reason is enough: glare or exposure, already a retake, also explains a doubtful placement.
    if placed.code and not any(c in q.RETAKE_CODES for c in strip.quality):
        strip.quality.append(placed.code)
    strip.profile, strip.baseline, strip.noise = prof, base, noise
    ya = win.y0 + 0.015 * (win.y1 - win.y0)
    yb = win.y1 - 0.015 * (win.y1 - win.y0)
    for r in readings:
        v = yb - r.position * (yb - ya)
        strip.line_points.append((r.name, _to_image(up.matrix, np.array([[win.x0, v], [win.x1, v]]))))
    strip.lines = readings
    return strip


def score_image(bgr: np.ndarray, strip_type: StripType, *, want_debug: bool = False) -> ImageScore:
    """Measure every cassette in a BGR photograph (no verdicts yet). Pure: no I/O; never raises on odd pictures."""
    if bgr is None or not isinstance(bgr, np.ndarray) or bgr.ndim != 3 or bgr.shape[2] != 3:
        return ImageScore([], strip_type.name, error="not a 3-channel colour photograph")
    if bgr.dtype != np.uint8:
        return ImageScore([], strip_type.name, error=f"expected 8-bit pixels, got {bgr.dtype}")
    H, W = bgr.shape[:2]
    if min(H, W) < 200:
        return ImageScore([], strip_type.name, size=(W, H), reason=(
            f"photograph too small ({W}x{H}): the tray camera must give at least 1280x960"))
    blobs = find_blobs(bgr, strip_type)
    cassettes = [b for b in blobs if b.kind == "cassette"]
    cards = [b for b in blobs if b.kind == "card"]
    strips = [score_strip(bgr, b, i, strip_type) for i, b in enumerate(cassettes)]
    if not want_debug:
        for s in strips:
            s.profile = s.baseline = None
    codes = decode_cards(bgr, cards) if cards else []
    for code in codes:
        i = nearest([s.center for s in strips], code["center"])
        code["slot"] = i
        if i is not None and strips[i].qr is None:
            strips[i].qr = code["text"]
    reason = None
    if not strips:
        reason = "no cassette found: place cassettes face up on the tray, well toward you, fully in view"
    return ImageScore(strips, strip_type.name, reason=reason, qr_codes=codes, size=(W, H))
