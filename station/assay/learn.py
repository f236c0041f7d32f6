# Learn a cassette brand from one photograph of one clean cassette: everything a strip type needs, measured.
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from station.assay import quality as q
from station.assay.checks import find_peaks, net_profile
from station.assay.locate import find_blobs
from station.assay.profile import absorbance_profile, membrane_crop
from station.assay.search import search_windows, window_says_well_down
from station.assay.window import Upright, Window, overlap, refine_pose, turned_angle, upright
from station.striptypes import BUILTIN_STRIP_TYPES, DEFAULT_STRIP_TYPE, StripType

MAX_LEARN_TILT = 15.0   # degrees: a reference photograph must be nearly upright to measure a geometry from
LEARN_CANDIDATES = 3    # windows of the search tried, best first, until one shows the lines
MIN_LINE_GAP = 0.12     # of the window: printed lines closer than this are a misjudged window, not a card


@dataclass
class Learned:
    strip_type: StripType | None
    refused: str | None = None                      # why the photograph cannot teach a strip type
    measured: list[tuple[str, str]] = field(default_factory=list)   # (quantity, value with unit) for printing
    box: np.ndarray | None = None                   # cassette and window corners, image px, for the debug image
    window_poly: np.ndarray | None = None
    line_points: list[tuple[str, np.ndarray]] = field(default_factory=list)


def _sigma(net: np.ndarray, pos: float) -> float:
    """Gaussian sigma (window fraction) of the peak at pos, from its width at half height."""
    n = len(net)
    i = min(n - 1, max(0, int(pos * n)))
    half = net[i] / 2
    lo, hi = i, i
    while lo > 0 and net[lo] > half:
        lo -= 1
    while hi < n - 1 and net[hi] > half:
        hi += 1
    return float(np.clip((hi - lo) / 2.355 / n, 0.008, 0.07))


def _well(up: Upright, win: Window) -> tuple[float, float, float]:
    """Centre (x, y fractions) and radius (width fraction) of the biggest non-plastic patch below the window."""
    m, w, L = up.margin, up.width, up.length
    y0, y1, x0, x1 = int(win.y1 + 0.03 * L), int(m + 0.97 * L), int(m + 0.08 * w), int(m + 0.92 * w)
    region = up.patch[y0:y1, x0:x1].astype(np.float32)
    body = np.median(up.patch[int(m + 0.03 * L):int(m + 0.97 * L):4, x0:x1:4].reshape(-1, 3), axis=0)
    if region.size == 0:
        return 0.5, 0.8, 0.25
    far = (np.abs(region - body[None, None, :]).max(axis=2) > 0.3 * (float(body.max()) + 1)).astype(np.uint8)
    far = cv2.morphologyEx(far, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    n, labels, stats, cents = cv2.connectedComponentsWithStats(far)
    if n < 2:
        return 0.5, 0.8, 0.25
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    cx, cy = cents[k]
    r = float(np.sqrt(stats[k, cv2.CC_STAT_AREA] / np.pi)) / 1.15
    return (float((x0 + cx - m) / w), float((y0 + cy - m) / L), float(np.clip(r / w, 0.05, 0.45)))


def _windows(bgr: np.ndarray, center: tuple[float, float], angle: float, width: float,
             length: float) -> list[tuple[Upright, float, Window]]:
    """The search's best windows, each with the view (and its angle) that has the sample well at the bottom."""
    up = upright(bgr, center, angle, width, length)
    turned: Upright | None = None
    out = []
    for win in search_windows(up, LEARN_CANDIDATES):
        if window_says_well_down(up, win):
            out.append((up, angle, win))
            continue
        # Searched again the other way round, not mirrored: the edges are refined from the well end.
        turned = turned or upright(bgr, center, turned_angle(angle), width, length)
        ph, pw = up.patch.shape[:2]
        mirrored = Window(pw - win.x1, ph - win.y1, pw - win.x0, ph - win.y0, win.rim_contrast)
        same = [t for t in search_windows(turned, LEARN_CANDIDATES) if overlap(t, mirrored) > 0.5]
        out.append((turned, turned_angle(angle), same[0] if same else mirrored))
    return out


def _lines_seen(up: Upright, win: Window, wanted: int) -> str | tuple[np.ndarray, float, list, StripType]:
    """The window's net profile, noise, peaks and the probe type that found them; or why it cannot teach."""
    blur = q.edge_blur_px(up)
    if blur is not None and blur > q.blur_limit_px(0.015 * (win.y1 - win.y0)):
        return q.REASONS[q.BLURRED]
    codes = q.exposure_codes(membrane_crop(up.patch, win, inset_x=0.06, inset_y=0.02), up)
    if codes:
        return q.REASONS[codes[0]]
    prof = absorbance_profile(membrane_crop(up.patch, win))
    probe = StripType(name="probe", analyte="x", line_sigma=0.015, lines=(("T", 0.3), ("C", 0.8)))
    net, noise = net_profile(prof, probe)
    peaks = find_peaks(net, noise, probe)
    if len(peaks) < wanted:
        return (f"{len(peaks)} of {wanted} lines visible: photograph a clean cassette showing every line "
                "(a negative competitive card or a control card)")
    return net, noise, peaks, probe


def _to_image(mat: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ mat[:, :2].T + mat[:, 2]


def learn(bgr: np.ndarray, *, name: str, analyte: str, fmt: str = "competitive",
          line_names: tuple[str, ...] = ("T", "C"), incubation_s: int | None = None,
          cutoff: float | None = None) -> Learned:
    """Measure a reference photograph (one clean, sharp, upright cassette with all its lines visible)."""
    if bgr is None or not isinstance(bgr, np.ndarray) or bgr.ndim != 3 or bgr.dtype != np.uint8:
        return Learned(None, "not an 8-bit colour photograph")
    if line_names[-1] != "C" or len(set(line_names)) != len(line_names):
        return Learned(None, f"--lines must name each line once, from the sample well out, C last: {line_names}")
    nominal = BUILTIN_STRIP_TYPES[DEFAULT_STRIP_TYPE]
    blobs = [b for b in find_blobs(bgr, nominal) if b.kind == "cassette"]
    if len(blobs) != 1:
        return Learned(None, f"found {len(blobs)} cassettes: photograph exactly one, whole, face up on the tray")
    b = blobs[0]
    if b.cut_off:
        return Learned(None, q.REASONS[q.CUT_OFF])
    center, angle, width, length = refine_pose(bgr, b.center, b.angle, b.width, b.length)
    if abs(q.tilt_of(angle)) > MAX_LEARN_TILT:
        return Learned(None, f"the cassette is turned {abs(q.tilt_of(angle)):.0f} degrees: lay it within "
                             f"{MAX_LEARN_TILT:.0f} degrees of upright for a reference photograph")
    found = _windows(bgr, center, angle, width, length)
    if not found:
        return Learned(None, "no membrane window found on the cassette: is it face up, sharp and evenly lit?")
    # The best-scoring window first; a runner-up only when the better one shows too few lines (a flat,
    # neutral square sample well can outscore a pale membrane).
    refusals, pick = [], None
    for cand in found:
        seen = _lines_seen(cand[0], cand[2], len(line_names))
        if not isinstance(seen, str):
            pick = cand
            break
        refusals.append(seen)
    if pick is None:
        return Learned(None, refusals[0])
    up, angle, win = pick
    net, noise, peaks, probe = seen
    chosen = sorted(peaks[:len(line_names)])
    c_pos = chosen[-1][0]
    # The profile was smoothed before the width was read: take that back out, in quadrature.
    raw = _sigma(net, c_pos)
    sigma = float(np.clip(np.sqrt(max(raw ** 2 - (0.5 * probe.line_sigma) ** 2, (0.6 * raw) ** 2)), 0.008, 0.07))
    # Half-height widths of blurred photographs run wide; lines this close must still be separable.
    gaps = [b[0] - a[0] for a, b in zip(chosen, chosen[1:], strict=False)]
    if gaps and min(gaps) < MIN_LINE_GAP:
        return Learned(None, f"two lines only {min(gaps):.2f} of the window apart: the window or the lines were "
                             "misjudged (see --debug-dir); photograph the cassette again, evenly lit")
    sigma = float(min(sigma, min(gaps) / 6.2)) if gaps else sigma
    m, w, L = up.margin, up.width, up.length
    window = ((win.x0 - m) / w, (win.y0 - m) / L, (win.x1 - m) / w, (win.y1 - m) / L)
    window = tuple(float(np.clip(v, 0.0, 1.0)) for v in window)
    kw: dict = {"name": name, "analyte": analyte, "format": fmt, "aspect": float(width / length),
                "window": window, "well": _well(up, win), "line_sigma": sigma, "geometry": "learned",
                "lines": tuple((n, round(float(p), 4)) for n, (p, _) in zip(line_names, chosen, strict=True)),
                "description": f"learned by calib learn from one photograph ({int(length)} px long)"}
    if incubation_s is not None:
        kw["incubation_s"] = incubation_s
    if cutoff is not None:
        kw["cutoff"] = cutoff
    try:
        st = StripType(**kw)
    except ValueError as exc:
        return Learned(None, f"the measured geometry is not a usable strip type: {exc}")
    out = Learned(st)
    out.measured = [
        ("aspect (width/length)", f"{st.aspect:.3f}"),
        ("window x0,y0,x1,y1 (fractions of width, length)", ", ".join(f"{v:.3f}" for v in st.window)),
        ("well x,y,radius", ", ".join(f"{v:.3f}" for v in st.well)),
        ("well end", "bottom of the photograph" if abs(q.tilt_of(angle) - angle) < 90 else "top of the photograph"),
        *[(f"line {n} position (from the well end)", f"{p:.3f}") for n, p in st.lines],
        ("line width sigma (window fraction)", f"{st.line_sigma:.4f}"),
        ("C line peak absorbance (luma) / noise", f"{chosen[-1][1]:.3f} / {noise:.4f}"),
        ("cassette length in this photograph", f"{length:.0f} px"),
    ]
    out.box = cv2.boxPoints(((center[0], center[1]), (width, length), angle))
    out.window_poly = _to_image(up.matrix, np.array([[win.x0, win.y0], [win.x1, win.y0], [win.x1, win.y1],
                                                     [win.x0, win.y1]], np.float64))
    for n, p in st.lines:
        v = win.y1 - p * (win.y1 - win.y0)
        out.line_points.append((n, _to_image(up.matrix, np.array([[win.x0, v], [win.x1, v]]))))
    return out
