# Where the membrane is and which way round the cassette lies: guided finder, whole-body search, and their cross-check.
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from station.assay import quality as q
from station.assay.search import confirm_window, search_window, window_says_well_down
from station.assay.window import Upright, Window, expected_window, find_window, overlap, turned_angle, upright
from station.striptypes import StripType

# How far a learned geometry may be from what is seen: a moulding tolerance, not a different brand.
LEARNED_TOL_Y = 0.025   # of the cassette length
LEARNED_TOL_X = 0.07    # of the cassette width
AGREE = 0.012           # guided and searched windows agreeing, fraction of the cassette length


@dataclass
class Placement:
    up: Upright
    angle: float
    win: Window | None
    searched: bool          # the window came from the whole-body search, not the strip type's place
    code: str | None = None
    guided: Window | None = None   # the strip type's window, when found but not the one read
    confirmed: bool = False        # the guided window read, and the whole-body search found the same one


def _agree(a: Window, b: Window, up: Upright, tol: float) -> bool:
    L = up.length
    return max(abs(a.y0 - b.y0), abs(a.y1 - b.y1)) <= tol * L and \
        max(abs(a.x0 - b.x0), abs(a.x1 - b.x1)) <= 3 * tol * L


def _matches_learned(win: Window, up: Upright, st: StripType) -> bool:
    m, w, L = up.margin, up.width, up.length
    x0, y0, x1, y1 = st.window
    return (max(abs(win.y0 - (m + y0 * L)), abs(win.y1 - (m + y1 * L))) <= LEARNED_TOL_Y * L
            and max(abs(win.x0 - (m + x0 * w)), abs(win.x1 - (m + x1 * w))) <= LEARNED_TOL_X * w)


def _inside(a: Window, b: Window, slack: float) -> bool:
    return a.x0 >= b.x0 - slack and a.y0 >= b.y0 - slack and a.x1 <= b.x1 + slack and a.y1 <= b.y1 + slack


def place(bgr: np.ndarray, up: Upright, center: tuple[float, float], angle: float, width: float, length: float,
          st: StripType) -> Placement:
    """The membrane window and the upright view (`up`, as posed) it was found in; a refusal code on disagreement."""
    guided = find_window(up, st)
    found = search_window(up)
    if guided is not None and (found is None or _agree(guided, found, up, AGREE)):
        # The strip type's window where it said: the reading this reader has always made.
        return Placement(up, angle, guided, False, confirmed=found is not None)
    if st.geometry == "learned" and guided is not None and found is not None and _matches_learned(found, up, st):
        # Both near the learned place but not quite agreeing: the learned place, its edges found locally.
        return Placement(up, angle, guided, False)
    if st.geometry == "learned" and (found is None or not _matches_learned(found, up, st)):
        # The learned geometry guides: its window, if the evidence confirms it there (either way round).
        for view, a in ((up, angle), (upright(bgr, center, angle + 180.0, width, length), turned_angle(angle))):
            confirmed = confirm_window(view, expected_window(view, st))
            if confirmed is not None:
                return Placement(view, a, confirmed, True)
    if guided is None and found is None:
        # Laid the wrong way round: the guided finder sees it turned (C and T must not be swapped).
        turned = upright(bgr, center, angle + 180.0, width, length)
        g2 = find_window(turned, st)
        if g2 is not None:
            return Placement(turned, turned_angle(angle), g2, False)
        return Placement(up, angle, None, False)
    if found is None:
        return Placement(up, angle, guided, False)
    if guided is not None and _inside(found, guided, 0.01 * up.length) and \
            (found.y1 - found.y0) < 0.75 * (guided.y1 - guided.y0):
        # The search saw only a fragment of the guided window (a reflection or a line broke its edges).
        return Placement(up, angle, guided, False)
    if guided is not None and overlap(guided, found) > 0.6:
        # Much the same window: a reflection on it can be what pulled the two apart, so it is checked too,
        # where both saw membrane (beyond that the guided box may hold plastic brighter than a dark membrane).
        keep = Window(max(guided.x0, found.x0), max(guided.y0, found.y0), min(guided.x1, found.x1),
                      min(guided.y1, found.y1), guided.rim_contrast)
    else:
        keep = None
    exp = expected_window(up, st)
    if guided is None and _inside(found, exp, 0.02 * up.length) and \
            (found.y1 - found.y0) < 0.7 * (exp.y1 - exp.y0):
        # A fragment of where the type's window is: most likely a reflection hid the rest; checked there.
        keep = exp
    # The search saw a window the strip type did not put there (or nothing where it did).
    centre = (st.window[1] + st.window[3]) / 2 if st.geometry == "learned" else None
    if not window_says_well_down(up, found, centre):
        turned = upright(bgr, center, angle + 180.0, width, length)
        again = search_window(turned)
        if again is not None:
            up, angle, found, keep = turned, turned_angle(angle), again, None
            if not window_says_well_down(up, found, centre):
                # Each way round the window seen says the well is at the other end: which end is the
                # well is not known, and reading it the wrong way round swaps T and C.
                return Placement(up, angle, found, True, q.GEOMETRY_MISMATCH, keep)
    if st.geometry == "learned" and not _matches_learned(found, up, st):
        return Placement(up, angle, found, True, q.GEOMETRY_MISMATCH, keep)
    return Placement(up, angle, found, True, None, keep)
