# Find and measure the C and T lines on a net absorbance profile: position, peak height, area, SNR.
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from station.assay.defocus import corrected_area
from station.assay.fast import robust_sd
from station.assay.profile import robust_baseline
from station.assay.scores import LineReading
from station.striptypes import StripType

# Integration half-width in sigmas of the widest line width this photograph shows: 98.8 % of a Gaussian
# line's area or more, the same span for every line (so their ratio holds), for 30 % less of the noise
# than 3.5 sigmas.
HALF_SPAN = 2.5
WIDTH_SNR = 8.0   # a line this far above the noise shows its own width


def _smooth(y: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 0.5:
        return y
    r = int(3 * sigma) + 1
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(y, r, mode="edge")
    return np.convolve(pad, k, mode="valid")


def _extent(net: np.ndarray, i: int, level: float, sig_px: float) -> slice:
    """The samples a line near i covers: out from its top while it stands above level and keeps falling, and a
    margin.

    Seen, not assumed: a strip type's width may be learned wide from a blurred reference, and a line's
    flank ends where the profile rises again (the next line, or the rim's shade at the window's end).
    """
    n = len(net)
    # From the line's own top: i may sit on its flank, where the strip type put it (a sigma and a half
    # away at most; farther up is another line).
    for _ in range(int(1.5 * sig_px) + 1):
        if not 0 < i < n - 1 or max(net[i - 1], net[i + 1]) <= net[i]:
            break
        i += 1 if net[i + 1] > net[i - 1] else -1
    lo, hi = i, i
    while lo > 0 and level < net[lo - 1] <= net[lo] + level:
        lo -= 1
    while hi < n - 1 and level < net[hi + 1] <= net[hi] + level:
        hi += 1
    # A faint line's flanks sink into the noise early: its zone holds 2.5 sigma each side at least.
    pad, least = max(1, int(round(0.5 * sig_px))), int(round(2.5 * sig_px))
    return slice(max(0, min(lo - pad, i - least)), min(n, max(hi + pad, i + least) + 1))


def measure_lines(prof: np.ndarray, st: StripType,
                  to_green: Callable[[np.ndarray], np.ndarray] | None = None,
                  blur: float = 0.0) -> tuple[list[LineReading], np.ndarray, float]:
    """Return line readings, the baseline, and the profile noise (absorbance units)."""
    n = len(prof)
    pos = (np.arange(n) + 0.5) / n
    sig_px = max(0.7, st.line_sigma * n)
    sm = _smooth(prof, 0.5 * sig_px)
    # First pass: a baseline that ignores nothing, to find where the lines really are.
    base = robust_baseline(sm, np.zeros(n, bool))
    net = sm - base
    # The whole strip can print a little off its nominal place; the strongest line tells by how much.
    shifts = []
    for _name, p in st.lines:
        sel = np.abs(pos - p) <= st.position_tolerance
        if sel.any():
            i = int(np.argmax(np.where(sel, net, -np.inf)))
            shifts.append((net[i], pos[i] - p))
    strongest = max(shifts)
    common = strongest[1] if strongest[0] > 0.03 else 0.0
    exclude = np.zeros(n, bool)
    centres: dict[str, float] = {}
    zones: dict[str, np.ndarray] = {}
    level = 2.0 * robust_sd(net)
    for name, p in st.lines:
        c = p + common
        sel = np.abs(pos - c) <= 0.35 * st.position_tolerance
        i = int(np.argmax(np.where(sel, net, -np.inf)))
        centres[name] = pos[i]
        zones[name] = np.zeros(n, bool)
        zones[name][_extent(net, i, max(level, 0.02 * net[i]), sig_px)] = True
        exclude |= zones[name]
    base = robust_baseline(prof, exclude)
    net = prof - base
    if to_green is not None:
        net = to_green(net)
    net_sm = _smooth(net, 0.5 * sig_px)
    # Noise from the line-free membrane on the scale the peak is read at; baseline misfit counts too,
    # since it can raise a bump just like a line can.
    resid = net_sm[~exclude]
    noise = 1.4826 * float(np.median(np.abs(resid))) if resid.size > 5 else 0.0
    noise = max(noise, 1e-4)
    tops = []
    for name, _p in st.lines:
        sel = np.abs(pos - centres[name]) <= 1.0 * st.line_sigma
        tops.append(int(np.argmax(np.where(sel, net_sm, -np.inf))))
    # The widest line seen sets the span: a test line a fifth wider than C (they are printed apart) loses
    # more of its area to C's span than C does, and the ratio then follows each photograph's width estimate.
    strong = [i for i in tops if net_sm[i] >= WIDTH_SNR * noise] or [max(tops, key=lambda i: net_sm[i])]
    span = HALF_SPAN * max(seen_sigma(net_sm, i, noise, 0.5 * sig_px, sig_px) for i in strong) / n
    readings: list[LineReading] = []
    for (name, p), i in zip(st.lines, tops, strict=True):
        peak = float(net_sm[i])
        found = peak > 0 and peak / noise >= 4.0
        centre = pos[i] if found else p + common
        # Only where the line is seen: a wide learned width must not take in the rim's shade at the end.
        win = (np.abs(pos - centre) <= span) & zones[name]
        area = float(net[win].sum()) * 100.0 / n
        if blur > 0 and found:
            area = corrected_area(area, seen_sigma(net_sm, i, noise, 0.5 * sig_px, sig_px), blur, n / 100.0)
        readings.append(LineReading(name, p, float(centre), peak, area, peak / noise, found))
    return readings, base, noise


def seen_sigma(net_sm: np.ndarray, i: int, noise: float, smoothing: float, typed: float) -> float:
    """The width (sigma, samples) of the line topping at i, from its half-height width with `smoothing` taken
    out; the strip type's `typed` width when the line is too faint to tell.

    A width learned from a blurred reference is wider than the lines (a quarter, seen), and integrating the
    typed width would take in that much more noise; held within 40 % of the typed width, as a line that
    far off its type is refused by the checks anyway.
    """
    peak = float(net_sm[i])
    if peak < WIDTH_SNR * noise:
        return typed
    half = 0.5 * peak
    lo, hi = i, i
    while lo > 0 and net_sm[lo - 1] > half:
        lo -= 1
    while hi < len(net_sm) - 1 and net_sm[hi + 1] > half:
        hi += 1
    # Where the profile crosses half height, between samples.
    left = lo - (net_sm[lo] - half) / max(net_sm[lo] - net_sm[lo - 1], 1e-9) if lo > 0 else float(lo)
    right = hi + (net_sm[hi] - half) / max(net_sm[hi] - net_sm[hi + 1], 1e-9) if hi < len(net_sm) - 1 else float(hi)
    s = (right - left) / 2.3548
    s = float(np.sqrt(max(s * s - smoothing * smoothing, (0.5 * typed) ** 2)))
    return min(max(s, 0.6 * typed), 1.4 * typed)
