# Line-level cross-checks and, for a nominal strip type on an unseen brand, where its lines really are.
from __future__ import annotations

from dataclasses import replace

import numpy as np

from station.assay.fast import robust_sd
from station.assay.lines import _smooth
from station.assay.profile import robust_baseline
from station.assay.scores import LineReading
from station.striptypes import StripType

PEAK_SNR = 6.0          # a bump this far above the membrane noise is a line
UNEXPLAINED = 0.5       # ... and one this strong against C, where no line should be, means a wrong geometry
FAINT_SNR = 3.5         # a faint test line, looked for once C is seen
SPACING_TOL = 0.06      # C-to-T distance, fraction of the window, beyond the strip type's


def net_profile(prof: np.ndarray, st: StripType) -> tuple[np.ndarray, float]:
    n = len(prof)
    sm = _smooth(prof, max(0.7, 0.5 * st.line_sigma * n))
    net = sm - robust_baseline(sm, np.zeros(n, bool))
    noise = max(1e-4, robust_sd(net))
    return net, noise


def find_peaks(net: np.ndarray, noise: float, st: StripType, snr: float = PEAK_SNR) -> list[tuple[float, float]]:
    """(position, height) of the local maxima standing `snr` noise above zero and clear of their sides,
    strongest first."""
    n = len(net)
    sep = max(2, int(3 * st.line_sigma * n))
    bump = np.zeros(n, bool)
    bump[1:-1] = (net[1:-1] >= net[:-2]) & (net[1:-1] >= net[2:])
    out: list[tuple[float, float]] = []
    for i in np.argsort(net)[::-1]:
        if net[i] < snr * noise:
            break
        pos = (i + 0.5) / n
        if not bump[i] or not 0.04 <= pos <= 0.96 or any(abs(int(i) - int(p * n)) < sep for p, _ in out):
            continue
        # A line stands clear of the profile on both sides within a few of its widths; a broad rise (a
        # shadow or the rim at the window's end, a baseline misfit) does not.
        left, right = net[max(0, i - sep):i], net[i + 1:i + sep + 1]
        floor = max(float(left.min()) if left.size else net[i], float(right.min()) if right.size else net[i])
        if net[i] - floor < snr * noise:
            continue
        out.append((pos, float(net[i])))
    return out


def adapt_lines(prof: np.ndarray, st: StripType) -> StripType | None:
    """The strip type with its lines moved to where this membrane shows them (two-line cards).

    C is the line farther from the sample well, T the other; a lone line is C past the middle and T
    before it (then C is missing and the card is invalid, as it should be). None: lines where no
    membrane reading can be trusted.
    """
    if len(st.lines) != 2:
        return st
    net, noise = net_profile(prof, st)
    found = find_peaks(net, noise, st)
    # A line hard against the window's end means the window edge was misjudged: not a placement to read.
    if any(p < 0.1 or p > 0.9 for p, _ in found[:2]):
        return None
    (t_name, t_nom), c_nom = st.test_lines[0], st.c_position
    gap = c_nom - t_nom
    if len(found) >= 2:
        a, b = sorted(p for p, _ in found[:2])
        if b - a < 6 * st.line_sigma:
            return st
        t, c = a, b
    elif len(found) == 1:
        p = found[0][0]
        t, c = (p - gap, p) if p >= 0.5 else (p, p + gap)
        # A faint test line at another maker's spacing: read where it shows, not at the default type's gap
        # (read there, the membrane gave T/C 0.12 for a true 0.53).
        faint = [f for f, _ in find_peaks(net, noise, st, FAINT_SNR) if 0.1 <= f <= p - 6 * st.line_sigma]
        if p >= 0.5 and faint:
            t = faint[0]
    else:
        return st
    try:
        return replace(st, lines=((t_name, float(np.clip(t, 0.05, 0.9))), ("C", float(np.clip(c, 0.1, 0.95)))))
    except ValueError:
        return st


def line_check(prof: np.ndarray, readings: list[LineReading], st: StripType) -> bool:
    """True when the lines seen agree with the strip type: no strong line where none belongs, spacing as typed."""
    net, noise = net_profile(prof, st)
    c = next(r for r in readings if r.name == "C")
    n = len(prof)
    c_height = float(net[min(n - 1, int(c.position * n))])
    for pos, height in find_peaks(net, noise, st):
        if all(abs(pos - r.position) > 3 * st.line_sigma for r in readings) and \
                height > UNEXPLAINED * max(c_height, PEAK_SNR * noise):
            return False
    if c.found:
        for r in readings:
            if r.name != "C" and r.found and abs((c.position - r.position) - (c.expected - r.expected)) > SPACING_TOL:
                return False
    return True


def on_peaks(prof: np.ndarray, readings: list[LineReading], st: StripType) -> bool:
    """True when each of the two strongest lines seen is read on its peak (within a line sigma), not beside it."""
    net, noise = net_profile(prof, st)
    pos = [r.position for r in readings]
    return all(min(abs(p - q) for q in pos) <= st.line_sigma for p, _ in find_peaks(net, noise, st)[:2])
