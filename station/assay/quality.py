# Quality gates: photographs the reader must refuse (retake) rather than guess from.
from __future__ import annotations

import math

import cv2
import numpy as np

from station.assay.profile import SRGB_TO_LINEAR
from station.assay.window import Upright, Window

GLARE = "GLARE"
OVEREXPOSED = "OVEREXPOSED"
UNDEREXPOSED = "UNDEREXPOSED"
BLURRED = "BLURRED"
TILTED = "TILTED"
WINDOW_NOT_FOUND = "WINDOW_NOT_FOUND"
CUT_OFF = "CUT_OFF"
NO_CONTROL_LINE = "NO_CONTROL_LINE"
LOW_SIGNAL = "LOW_SIGNAL"
GEOMETRY_MISMATCH = "GEOMETRY_MISMATCH"
IMPRECISE = "IMPRECISE"

# Codes that make a reading untrustworthy: verdict "retake", no ratio.
RETAKE_CODES = frozenset({GLARE, OVEREXPOSED, UNDEREXPOSED, BLURRED, TILTED, WINDOW_NOT_FOUND, CUT_OFF,
                          GEOMETRY_MISMATCH, IMPRECISE})

MAX_TILT_DEG = 20.0
SATURATED = 250          # sRGB code treated as clipped
GLARE_RISE = 1.25        # membrane pixels this much brighter than its clean background are specular
GLARE_FRACTION = 0.01
OVER_FRACTION = 0.25
# A ratio's standard uncertainty is about RATIO_NOISE_GAIN * sqrt(1 + ratio^2) / (C's peak SNR): T and C are
# read over the same span of the same membrane, so each area carries about the same error. The gain is the
# 85th percentile of the scatter of 17 faint-C cassettes (other makers' mouldings) photographed 12 times
# each; a 0.2 error is then 2.5 standard uncertainties away at MAX_RATIO_SD.
RATIO_NOISE_GAIN = 1.7
MAX_RATIO_SD = 0.08
UNDER_LINEAR = 0.05      # membrane below 5 % of full scale (sRGB code ~63): too few code values per line

REASONS = {
    GLARE: "specular glare on the result window: tilt the lamp or shade the tray and photograph again",
    OVEREXPOSED: "the window is over-exposed (white clipped): reduce exposure or lamp brightness and retake",
    UNDEREXPOSED: "the photograph is too dark to read the lines: switch the lamp on or raise exposure",
    BLURRED: "the photograph is out of focus: check the camera focus, keep the tray still and retake",
    TILTED: f"the cassette is turned more than {MAX_TILT_DEG:.0f} degrees: lay it straight, well toward you",
    WINDOW_NOT_FOUND: "the result window was not found: is the cassette face up and is it this strip type?",
    CUT_OFF: "the cassette is cut off by the frame edge: move it toward the middle of the tray",
    NO_CONTROL_LINE: "no control line: the test did not run; repeat with a new cassette",
    LOW_SIGNAL: "the control line is faint: the reading is kept, but check the cassette lot and timing",
    IMPRECISE: "the lines are too faint against the membrane's noise for a trustworthy ratio: "
               "photograph it again, evenly lit; if this repeats, test again with a new cassette",
    GEOMETRY_MISMATCH: "the window or lines are not where this strip type puts them: is it this strip type? "
                       "(a new brand: `calib learn`); not read, retake",
}


def body_overexposed(up: Upright) -> bool:
    """Most of the white body clipped means the exposure, not a local reflection, is at fault."""
    m, w, L = up.margin, up.width, up.length
    # Every third pixel of the green channel is plenty to judge a fraction, at a tenth of the cost.
    body = up.patch[int(m + 0.05 * L):int(m + 0.95 * L):3, int(m + 0.05 * w):int(m + 0.95 * w):3, 1]
    return body.size > 0 and float(np.count_nonzero(body >= SATURATED)) / body.size >= OVER_FRACTION


def _reflects(lin: np.ndarray, limit: float) -> bool:
    """More than GLARE_FRACTION of this linear-light area above limit (3x3 means: a lone hot pixel is noise)."""
    return float(np.mean(cv2.blur(lin, (3, 3)) > limit)) > GLARE_FRACTION


def exposure_codes(window_bgr: np.ndarray, up: Upright) -> list[str]:
    """Exposure and glare over the whole visible membrane."""
    if window_bgr.size == 0:
        return [WINDOW_NOT_FOUND]
    if body_overexposed(up):
        return [OVEREXPOSED]
    green = window_bgr[:, :, 1]
    clipped = float(np.mean(window_bgr.max(axis=2) >= SATURATED))
    lin = SRGB_TO_LINEAR[green]
    lin_med = float(np.median(lin))
    if lin_med < UNDER_LINEAR:
        return [UNDEREXPOSED]
    # Lines only darken the membrane, so its upper quartile is clean background; a patch well above
    # that is a reflection of the lamp.
    ref = float(np.percentile(lin, 75))
    if _reflects(lin, GLARE_RISE * ref) or clipped > 0.002:
        return [GLARE]
    return []


def glare_beyond_ends(up: Upright, win: Window) -> bool:
    """A lamp reflection just past either end of a window the search found: it may have cut the window short.

    Past its ends lies membrane or plastic, either of which may be the lighter surface: only pixels well
    above both (or nearly clipped) are a reflection.
    """
    m, w, L = up.margin, up.width, up.length
    h, wd = win.y1 - win.y0, win.x1 - win.x0
    xa, xb = int(win.x0 + 0.06 * wd), int(win.x1 - 0.06 * wd)
    body = SRGB_TO_LINEAR[up.patch[int(m + 0.03 * L):int(m + 0.97 * L):3, int(m + 0.05 * w):int(m + 0.95 * w):3, 1]]
    window = SRGB_TO_LINEAR[up.patch[int(win.y0):int(win.y1), xa:xb, 1]]
    if body.size == 0 or window.size == 0:
        return False
    limit = min(0.98, GLARE_RISE * max(float(np.percentile(window, 75)), float(np.median(body))))
    top, bottom = max(int(m), int(win.y0 - 0.5 * h)), min(int(m + L), int(win.y1 + 0.5 * h))
    for zone in (up.patch[top:int(win.y0), xa:xb, 1], up.patch[int(win.y1) + 1:bottom, xa:xb, 1]):
        if zone.size and _reflects(SRGB_TO_LINEAR[zone], limit):
            return True
    return False


def edge_blur_px(up: Upright) -> float | None:
    """Gaussian sigma (px) of the cassette's long edges: a blurred step of height h peaks at h/(sigma*sqrt(2pi))."""
    grey = cv2.cvtColor(up.patch, cv2.COLOR_BGR2GRAY).astype(np.float32)
    m, w, L = up.margin, up.width, up.length
    sig = []
    for r0, r1 in ((0.1, 0.22), (0.55, 0.7)):
        rows = grey[int(m + r0 * L):int(m + r1 * L)]
        if rows.size == 0:
            continue
        prof = rows.mean(axis=0)
        for centre, sign in ((m, 1.0), (m + w, -1.0)):
            a, b = int(centre - 0.9 * m), int(centre + 0.9 * m)
            a, b = max(0, a), min(len(prof), b)
            seg = prof[a:b] * sign
            if len(seg) < 6:
                continue
            k = max(2, len(seg) // 5)
            outer, inner = (seg[:k], seg[-k:]) if sign > 0 else (seg[-k:], seg[:k])
            step = abs(float(np.median(inner)) - float(np.median(outer)))
            g = float(np.max(np.abs(np.gradient(seg))))
            if step < 20 or g <= 0:
                continue
            sig.append(step / (g * math.sqrt(2 * math.pi)))
    if not sig:
        return None
    return float(np.median(sig))


def ratio_sd(ratio: float, c_snr: float) -> float:
    """The standard uncertainty of a T/C ratio read with a control line `c_snr` times the membrane's noise."""
    return RATIO_NOISE_GAIN * math.sqrt(1.0 + ratio * ratio) / max(c_snr, 1e-6)


def tilt_of(angle: float) -> float:
    """Deviation of the cassette's long axis from the tray's, whichever way round it lies."""
    return (angle + 90.0) % 180.0 - 90.0


def blur_limit_px(line_sigma_px: float) -> float:
    # A blur wider than the lines themselves smears them into the baseline.
    return max(3.0, 1.0 * line_sigma_px)
