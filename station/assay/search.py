# Search the whole cassette body for its membrane window by the window's own evidence, whatever its tone or rim.
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from station.assay.extent import (
    LINE_ROWS,
    bridge_lines,
    grow_ends,
    innermost,
    longest_run,
    longest_runs,
    membrane_columns,
    membrane_goes_on,
    row_spread,
    trim_ends,
)
from station.assay.fast import median, quantiles
from station.assay.window import Upright, Window, overlap

MIN_W, MAX_W = 0.15, 0.85     # window width as a fraction of the cassette width
MIN_H, MAX_H = 0.06, 0.60     # window height as a fraction of the cassette length
MIN_LONG = 0.8                # window length over its width, in pixels, at least


def _peaks(e: np.ndarray, floor: float, gap: int, most: int) -> list[int]:
    order = np.argsort(e)[::-1]
    out: list[int] = []
    for i in order:
        if e[i] < floor or len(out) >= most:
            break
        if all(abs(int(i) - j) > gap for j in out):
            out.append(int(i))
    return sorted(out)


def _side_runs(strong: tuple[int, int], weak: tuple[int, int]) -> list[tuple[int, int]]:
    """Row runs where both side columns step: at half each column's strongest step (strong), and at a
    fifth (weak).

    A dark membrane beside a dark rim steps weakly, and the same column may hold a far stronger edge
    elsewhere (the well's): the weak run is then another feature, and both are candidates. A weak run
    holding the strong one is the same feature crept past the window's end onto a rim: taken instead
    only when the strong one is a fragment of it.
    """
    if weak == strong:
        return [strong]
    if weak[0] <= strong[0] and strong[1] <= weak[1]:
        return [weak if strong[1] - strong[0] < 0.6 * (weak[1] - weak[0]) else strong]
    return [strong, weak]


def _refine(prof: np.ndarray, y: int, reach: int, inward: int) -> float:
    """Sub-pixel position of the membrane's own step in a row profile near y (either sign: tone is unknown).

    Of the clear steps near y the one nearest the inside (`inward` +1: larger y) wins: a rim has an
    outer step too, often the stronger one.
    """
    g = np.abs(np.gradient(prof))
    lo, hi = max(1, y - reach), min(len(g) - 1, y + reach + 1)
    if hi - lo < 3:
        return float(y)
    seg = g[lo:hi]
    top = float(seg.max())
    cands = [lo + i for i in range(len(seg)) if seg[i] >= 0.4 * top
             and (i == 0 or seg[i] >= seg[i - 1]) and (i == len(seg) - 1 or seg[i] >= seg[i + 1])]
    i = max(cands) if inward > 0 else min(cands)
    return _peak(g, i, 0)


def _peak(g: np.ndarray, y: int, reach: int) -> float:
    lo, hi = max(1, y - reach), min(len(g) - 1, y + reach + 1)
    i = lo + int(np.argmax(g[lo:hi]))
    if not 0 < i < len(g) - 1:
        return float(i)
    d = g[i - 1] - 2 * g[i] + g[i + 1]
    off = 0.5 * (g[i - 1] - g[i + 1]) / d if d != 0 else 0.0
    return i + float(np.clip(off, -1, 1))


def _evidence(up: Upright) -> tuple | None:
    """Grey body crop, its column steps, lasting-step strength per column, and the bridged step map."""
    m, w, L = up.margin, up.width, up.length
    bx0, bx1 = int(m + 0.05 * w), int(m + 0.95 * w)
    by0, by1 = int(m + 0.03 * L), int(m + 0.97 * L)
    if bx1 - bx0 < 12 or by1 - by0 < 30:
        return None
    grey = cv2.cvtColor(up.patch[by0:by1, bx0:bx1], cv2.COLOR_BGR2GRAY).astype(np.float32)
    sm = cv2.GaussianBlur(grey, (0, 0), 1.0)
    gx = np.abs(np.diff(sm, axis=1))               # column j: the step between columns j and j+1
    k = max(5, int(0.05 * L))
    # An edge is evidence only where it lasts: the weakest step over k rows (bridging a line crossing it
    # and a pixel of residual tilt), so letters and the well's curve, however contrasted, count for little.
    short = cv2.dilate(gx, np.ones((5, 3), np.uint8))
    lasting = cv2.erode(short, np.ones((k, 1), np.uint8))
    e = lasting.max(axis=0)
    # Where a dark line crosses a membrane lighter than the plastic the side step changes sign and
    # vanishes for a few rows: bridged for the extent, which must not stop at a line.
    bridge = max(5, int(0.02 * L)) | 1
    runs = cv2.dilate(gx, np.ones((bridge, 5), np.uint8))
    return grey, gx, e, runs, bridge, bx0, by0, lasting


def confirm_window(up: Upright, near: Window) -> Window | None:
    """The window where a learned geometry puts it, if the evidence is there: side edges along its whole
    height that end where it ends (a window seen elsewhere, even 4 % of the length away, is not confirmed).
    """
    ev = _evidence(up)
    if ev is None:
        return None
    grey, gx, e, runs, bridge, bx0, by0, _ = ev
    w, L = up.width, up.length
    reach_x = max(2, int(0.04 * w))
    sides = []
    for x in (near.x0, near.x1):
        c = int(round(x - bx0 - 0.5))
        lo, hi = max(0, c - reach_x), min(len(e), c + reach_x + 1)
        if hi - lo < 2:
            return None
        sides.append(lo + int(np.argmax(e[lo:hi])))
    a, b = sides
    y0, y1 = int(near.y0 - by0), int(near.y1 - by0)
    pad, band = bridge // 2 + 2, max(3, int(0.03 * L))
    if e[a] < 1.5 or e[b] < 1.5 or b - a < 8 or y0 - pad - band < 0 or y1 + pad + band >= len(runs) \
            or y1 - y0 <= 2 * pad:
        return None
    # Each side's strength along the window itself: a column's strongest step may be print beside it.
    sa, sb = median(runs[y0 + pad:y1 - pad, a]), median(runs[y0 + pad:y1 - pad, b])
    if min(sa, sb) < 1.5:
        return None
    ok = (runs[:, a] >= 0.5 * sa) & (runs[:, b] >= 0.5 * sb)
    inside = ok[y0 + pad:y1 - pad]
    above, below = ok[y0 - pad - band:y0 - pad], ok[y1 + pad:y1 + pad + band]
    if inside.mean() < 0.85 or above.mean() > 0.4 or below.mean() > 0.4:
        return None
    # A moulded window has straight sides; a round or oval sample well where the window would be has not.
    if not (_straight(gx, a, y0 + pad, y1 - pad) and _straight(gx, b, y0 + pad, y1 - pad)):
        return None
    side = gx[y0:y1 + 1].mean(axis=0)
    fa, fb = _peak(side, a, 2), _peak(side, b, 2)
    rows = grey[:, int(fa + 1 + 0.15 * (fb - fa)):int(fb + 1 - 0.15 * (fb - fa))].mean(axis=1)
    reach = max(2, int(0.008 * L))
    return Window(bx0 + fa + 0.5, by0 + _refine(rows, y0, reach, +1), bx0 + fb + 0.5,
                  by0 + _refine(rows, y1, reach, -1), 0.0)


def search_window(up: Upright) -> Window | None:
    """The membrane: the largest flat, near-neutral rectangle inside the body bounded by long straight side edges.

    Side edges are sought as vertical steps (the lines are horizontal, so they make none) lasting many
    rows; of the candidate pairs the one whose inside is flat across every row wins, which picks the
    membrane rather than the recess wall around it, a printed frame, or a square sample well.
    """
    found = search_windows(up, 1)
    return found[0] if found else None


def search_windows(up: Upright, most: int) -> list[Window]:
    """The best `most` distinct windows of the search, best first (see `search_window`).

    A pale membrane barely darker than tinted plastic can score below a flat, neutral square sample well;
    a caller that can tell the membrane by its lines (learning a brand) looks at the runners-up too.
    A candidate whose membrane goes on past its box is dropped, not replaced by a piece of it.
    """
    w, L = up.width, up.length
    ev = _evidence(up)
    if ev is None:
        return []
    grey, gx, e, runs, bridge, bx0, by0, lasting = ev
    by1, bx1 = by0 + grey.shape[0], bx0 + grey.shape[1]
    if float(e.max()) < 1.5:
        return []
    gap = max(2, int(0.025 * w))
    cols = _peaks(e, max(1.5, 0.12 * float(e.max())), gap, 22)
    # A column's strongest step may be the well's or the label's: the window's own, weaker side beside it is
    # looked for again in each end of the body alone.
    n = lasting.shape[0]
    for r0, r1 in ((0, int(0.62 * n)), (int(0.38 * n), n)):
        band = lasting[r0:r1].max(axis=0)
        cols = sorted(set(cols) | set(_peaks(band, max(1.5, 0.12 * float(band.max())), gap, 12)))
    body = _Body(up.patch, grey, gx, runs, bridge, bx0, by0, L,
                 np.median(up.patch[by0:by1, bx0:bx1].reshape(-1, 3), axis=0).astype(np.float64) + 1.0,
                 float(np.median(grey)))
    # Each column's stepping rows at both thresholds; every pair's runs at once.
    strong = np.stack([runs[:, c] >= max(1.5, 0.5 * e[c]) for c in cols], axis=1)
    weak = np.stack([runs[:, c] >= max(1.5, 0.2 * e[c]) for c in cols], axis=1)
    pairs = [(ia, ib) for ia in range(len(cols)) for ib in range(ia + 1, len(cols))
             if MIN_W * w <= cols[ib] - cols[ia] <= MAX_W * w]
    valid: list[tuple[float, tuple[int, int, int, int]]] = []
    if pairs:
        ia, ib = np.array(pairs).T
        s_runs = longest_runs((strong[:, ia] & strong[:, ib]).T, 2)
        w_runs = longest_runs((weak[:, ia] & weak[:, ib]).T, 2)
        for k, (i, j) in enumerate(pairs):
            for ya, yb in _side_runs(tuple(s_runs[k]), tuple(w_runs[k])):
                cand = _candidate(body, cols[i], cols[j], int(ya) + bridge // 2, int(yb) - bridge // 2)
                if cand is not None:
                    valid.append(cand)
    boxes = [v for _, v in valid]
    out: list[Window] = []
    seen: list[tuple[int, int, int, int]] = []
    for _, box in sorted(valid, reverse=True):
        if len(seen) == most:
            break
        # Variants of one window (a column or a run apart) are one candidate.
        if any(overlap(_as_window(box), _as_window(s)) > 0.3 for s in seen):
            continue
        seen.append(box)
        a, b, ya, yb = innermost(box, boxes, w, L)
        if membrane_goes_on(grey, gx, a, b, ya, yb, L):
            continue
        ya, yb = grow_ends(grey, gx, a, b, ya, yb, L)
        # The dilation above leaves a 3-column plateau; the raw steps over the run place each side exactly.
        side = gx[ya:yb + 1].mean(axis=0)
        fa, fb = _peak(side, a, 2), _peak(side, b, 2)
        rows = grey[:, int(fa + 1 + 0.15 * (fb - fa)):int(fb + 1 - 0.15 * (fb - fa))].mean(axis=1)
        reach = max(3, int(0.012 * L))
        top = _refine(rows, ya, reach, +1)
        bottom = _refine(rows, yb, reach, -1)
        # Column j's step sits between pixels j and j+1 of the body crop.
        out.append(Window(bx0 + fa + 0.5, by0 + top, bx0 + fb + 0.5, by0 + bottom, 0.0))
    return out


def _as_window(box: tuple[int, int, int, int]) -> Window:
    a, b, ya, yb = box
    return Window(a, ya, b, yb, 0.0)


@dataclass(frozen=True)
class _Body:
    """The search's evidence on one cassette body, shared by every candidate window."""
    patch: np.ndarray        # the upright BGR patch
    grey: np.ndarray         # grey body crop, from (bx0, by0) of the patch
    gx: np.ndarray           # its column steps
    runs: np.ndarray         # the column steps bridged over `bridge` rows
    bridge: int
    bx0: int
    by0: int
    L: float                 # cassette length, px
    bgr: np.ndarray          # the body's median colour (+1)
    level: float             # the body's median grey


def _candidate(body: _Body, a: int, b: int, ya: int, yb: int) -> tuple[float, tuple[int, int, int, int]] | None:
    """(score, box) of the window between side columns a and b over rows ya..yb (the bridging dilation
    already taken off), or None when what lies between is no membrane."""
    grey, gx, runs, L = body.grey, body.gx, body.runs, body.L
    # The rows only shrink below: a box already too short, or wider than long, is none.
    if not MIN_H * L <= yb - ya <= MAX_H * L or yb - ya < MIN_LONG * (b - a):
        return None
    inner = membrane_columns(grey, a, b)[ya:yb + 1]
    if inner.size == 0 or b - a < 8:
        return None
    # Flat across every row: the membrane (lines run across it); a rim, a frame or print is not.
    # (Ranges and levels from every other pixel: a row's range and a membrane's median need no more, and
    # this runs for every pair.)
    spread = row_spread(inner[:, ::2]) / max(median(inner[::2, ::2]), 1.0)
    level = inner.mean(axis=1)
    mid = median(level)
    # Side edges may run on past the membrane into print beside it; the rows that stay flat are it
    # (in code values: a dark line row is as flat as any other). Lines only darken the membrane: a row
    # clearly brighter than it is plastic beyond its end.
    flat_rows = (spread < max(0.06, 3 * median(spread))) & (level <= 1.05 * mid + 2.0)
    # A strong line, a hair off horizontal, leaves its rows uneven: a short darker gap is a line, not an end.
    # A wide one (sigma 3.7 px) left 11 uneven rows, and the window ended at C: T was read as C, T/C 0.00.
    r0, r1 = longest_run(bridge_lines(flat_rows, level, mid, max(body.bridge, int(LINE_ROWS * L))), 2)
    r0, r1 = trim_ends(level, r0, r1)
    ya, yb = ya + r0, ya + r1
    # The lines need room: a result window runs along the strip, longer than it is wide. A shorter one is
    # a fragment (a reflection or a line cut it) or a frame's end, not the membrane.
    if not MIN_H * L <= yb - ya <= MAX_H * L or yb - ya < MIN_LONG * (b - a):
        return None
    # Across the full width (rim columns included) to tell the membrane from the recess around it.
    full = grey[ya:yb + 1:2, a + 3:b - 1]      # every other row: a median over rows needs no more
    flat = median(row_spread(full) / np.maximum(full.mean(axis=1), 1.0))
    if flat > 0.10 or not (_straight(gx, a, ya, yb) and _straight(gx, b, ya, yb)):
        return None
    # Near-neutral against the body: a coloured sample pad is not a membrane.
    by0, bx0 = body.by0, body.bx0
    tint = np.median(body.patch[by0 + ya + 2:by0 + yb - 1:2, bx0 + a + 3:bx0 + b - 1:2].reshape(-1, 3), axis=0)
    rel = (tint + 1.0) / body.bgr
    if float(rel.max() / rel.min()) > 1.3 or float(inner.mean()) < 0.4 * body.level:
        return None
    # The sides' own steps over these rows (not the column's strongest, which may be the well's).
    strength = min(median(runs[ya:yb + 1, a]), median(runs[ya:yb + 1, b]))
    # Flatness and neutrality weigh most: a sample pad's rim is often the stronger edge.
    tinted = float(rel.max() / rel.min()) - 1.0
    score = (yb - ya) * (b - a) * strength / (1.0 + flat / 0.01) / (1.0 + tinted / 0.03)
    return score, (a, b, ya, yb)


def _straight(gx: np.ndarray, col: int, ya: int, yb: int) -> bool:
    """A moulded window's side is a straight edge: its column stays put along the rows (a round pad's does not)."""
    lo, hi = max(0, col - 3), min(gx.shape[1], col + 4)
    q1, q3 = quantiles(np.argmax(gx[ya:yb + 1, lo:hi], axis=1), (0.25, 0.75))
    return q3 - q1 <= 1.5


def window_says_well_down(up: Upright, win: Window, learned_centre: float | None = None) -> bool:
    """Which end is the well, from where the window sits along the body; the well's own look decides a tie.

    A learned cassette's window centre is known; otherwise the window sits toward the far end, because
    the sample well needs the room at the other.
    """
    cy = ((win.y0 + win.y1) / 2 - up.margin) / up.length
    if learned_centre is not None and abs(learned_centre - 0.5) > 0.03:
        return abs(cy - learned_centre) <= abs((1 - cy) - learned_centre)
    if abs(cy - 0.5) > 0.06:
        return cy < 0.5
    return well_end_down(up, win)


def well_end_down(up: Upright, win: Window) -> bool:
    """True when the sample well lies below the window: that end holds more pixels far from the plastic's colour.

    Counts, not means: the well (a dark ring round a coloured pad) is a large patch of such pixels while
    printed text is a thin one, whatever the share of bare plastic around either.
    """
    m, w, L = up.margin, up.width, up.length
    x0, x1 = int(m + 0.1 * w), int(m + 0.9 * w)
    body = np.median(up.patch[int(m + 0.03 * L):int(m + 0.97 * L):4, x0:x1:4].reshape(-1, 3), axis=0)
    ref = float(body.max()) + 1.0

    def count(y0: float, y1: float) -> int:
        region = up.patch[max(0, int(y0)):max(0, int(y1)), x0:x1].astype(np.float32)
        if region.size == 0:
            return 0
        far = np.abs(region - body[None, None, :]).max(axis=2) > 0.3 * ref
        # Thin strokes (letters, arrows) vanish under an opening; a well does not.
        far = cv2.morphologyEx(far.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
        return int(far.sum())

    return count(win.y1 + 0.03 * L, m + 0.97 * L) >= count(m + 0.03 * L, win.y0 - 0.03 * L)
