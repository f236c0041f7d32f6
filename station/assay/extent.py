# How far a searched window reaches: runs of rows, the ends trimmed to membrane, a rim's frame, a fragment.
from __future__ import annotations

import numpy as np

from station.assay.fast import median


def run_bounds(mask: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last index of each run of True in mask, gaps of up to max_gap False bridged."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return idx, idx
    cut = np.flatnonzero(np.diff(idx) > max_gap + 1)
    return idx[np.concatenate(([0], cut + 1))], idx[np.concatenate((cut, [idx.size - 1]))]


def longest_run(ok: np.ndarray, max_gap: int) -> tuple[int, int]:
    """First and last index of the longest run of True, gaps of up to max_gap False bridged (the first longest)."""
    starts, ends = run_bounds(ok, max_gap)
    if starts.size == 0:
        return 0, 0
    k = int(np.argmax(ends - starts))
    return (int(starts[k]), int(ends[k])) if ends[k] > starts[k] else (0, 0)


def longest_runs(masks: np.ndarray, max_gap: int) -> np.ndarray:
    """longest_run of every row of masks, all at once (this runs for every pair of side columns)."""
    p, n = masks.shape
    # Rows laid end to end, apart by more than max_gap False so no run is bridged across two of them.
    flat = np.zeros((p, n + max_gap + 1), bool)
    flat[:, :n] = masks
    starts, ends = run_bounds(flat.ravel(), max_gap)
    out = np.zeros((p, 2), np.int64)
    if starts.size:
        row, start, end = starts // flat.shape[1], starts % flat.shape[1], ends % flat.shape[1]
        order = np.lexsort((start, start - end, row))
        first = order[np.r_[True, row[order][1:] != row[order][:-1]]]
        first = first[end[first] > start[first]]
        out[row[first], 0], out[row[first], 1] = start[first], end[first]
    return out


LINE_ROWS = 0.03    # of the cassette length: the most rows a line takes (a wide one a hair off horizontal)


def membrane_columns(grey: np.ndarray, a: int, b: int) -> np.ndarray:
    """The columns of a box between side columns a and b clear of the side edges' blur and shade."""
    inset = max(2, int(0.15 * (b - a)))
    return grey[:, a + inset:b - inset]


def side_step(gx: np.ndarray, c: int) -> np.ndarray:
    """Per row, the step at side column c: the strongest of it and its neighbours."""
    return gx[:, max(0, c - 1):c + 2].max(axis=1)


def end_reach(L: float) -> int:
    """Rows past a box's end looked at for more membrane: 8 % of the cassette length."""
    return max(8, int(0.08 * L))


def membrane_goes_on(grey: np.ndarray, gx: np.ndarray, a: int, b: int, ya: int, yb: int, L: float) -> bool:
    """Past an end of the box the membrane goes on: its side steps carry on there (weaker: they faded below
    what the extent asks for, beside a membrane a shade darker than the plastic) over flat rows of its tone
    (lines between them included) filling most of the next 8 % of the length. Then this is a fragment of
    the window, and reading it could take T for C. Past a true end lie plastic, print or a rim: no side
    steps in the membrane's columns, whatever the plastic's tone."""
    cols = membrane_columns(grey, a, b)
    k, n = end_reach(L), int(0.1 * (yb - ya)) + 1

    def steps(rows: slice) -> tuple[float, ...]:
        """Each side column's step, median over rows."""
        return tuple(float(median(side_step(gx[rows], c))) for c in (a, b))

    inside = steps(slice(ya, yb + 1))
    if min(inside) < 1.2:
        return False        # the box's columns are no clear edges to follow past its ends
    # Each band is read outwards from the box's end.
    for rows, near, outward in ((slice(max(0, ya - 1 - k), max(0, ya - 1)), slice(ya, ya + n), -1),
                                (slice(yb + 2, yb + 2 + k), slice(yb - n + 1, yb + 1), 1)):
        beyond = cols[rows][::outward]
        if len(beyond) < k:
            continue        # the body ends first
        ref = median(cols[near].mean(axis=1))
        # (the membrane's own level drifts a little along its length)
        level, tol = beyond.mean(axis=1), max(2.0, 0.025 * ref)
        flat = row_spread(beyond) / max(ref, 1.0) < 0.06
        like = (np.abs(level - ref) <= tol) & flat
        # A line (flat and darker) with membrane on both sides of it (the box's end being one) is membrane too.
        seen = np.flatnonzero(like)
        if seen.size:
            like[:seen[-1]] |= flat[:seen[-1]] & (level[:seen[-1]] < ref)
        if like.mean() >= 0.6 and all(o >= max(0.8, 0.3 * i) for o, i in zip(steps(rows), inside, strict=True)):
            return True
    return False


def membrane_band(ref: float) -> tuple[float, float]:
    """The levels of a membrane row next to membrane of level `ref`: not darker (a rim; plastic past the end
    of a lighter membrane), nor clearly brighter (plastic past a darker one; the membrane itself brightens
    a little towards an end)."""
    return ref - max(2.0, 0.015 * ref), ref + max(3.0, 0.03 * ref)


# Row-to-row change of level that is the membrane going on (light falling off along it), of its level.
SMOOTH_ROW = 0.005


def grow_ends(grey: np.ndarray, gx: np.ndarray, a: int, b: int, ya: int, yb: int, L: float) -> tuple[int, int]:
    """Rows ya..yb carried on past either end over rows that are still the membrane next to that end: its
    level, and both side steps standing.

    A box's ends come from where its side steps are strong and from the trim at its ends, and either can
    stop short of the membrane's end: side steps fading near the ends of a small window, light falling off
    towards one end faster than the trim allows for. A shortened window puts the lines off their places (T
    read where there was none: a false positive). Past a true end lie plastic, print or a rim: another
    level, or no side steps in the membrane's columns.

    No line lies at a window's very end: past an end that a strong line stands against, one side's step
    standing is enough. Beside a membrane close to the plastic's tone one side's step can fade for good;
    the box then ended just past T, T was read as bare membrane and a true T/C 1.17 as 0.00. Nor is more
    needed over a row that carries the membrane's level on smoothly, as falling light does (a rim or plastic
    is a step): one side's step faint there left the box short of a no-C card's far end, the card a retake.
    """
    level = membrane_columns(grey, a, b).mean(axis=1)
    sides = (side_step(gx, a), side_step(gx, b))
    step = np.minimum(*sides)
    least = 0.5 * median(step[ya:yb + 1])
    either = (sides[0] >= 0.5 * median(sides[0][ya:yb + 1])) | (sides[1] >= 0.5 * median(sides[1][ya:yb + 1]))
    most = end_reach(L)      # farther, membrane_goes_on has found a fragment
    ends = []
    for sign, start in ((-1, ya), (1, yb)):
        ref = median(level[start:start + 5] if sign < 0 else level[start - 4:start + 1])
        lo, hi = membrane_band(ref)
        reach = int(LINE_ROWS * L)
        inside = level[start:start + reach + 1] if sign < 0 else level[max(0, start - reach):start + 1]
        against = inside.size > 0 and float(inside.min()) < ref - max(6.0, 0.05 * ref)
        end = start
        for _ in range(most):
            k = end + sign
            if not 0 <= k < len(level) or not lo <= level[k] <= hi:
                break
            # A row that carries the membrane's level on smoothly, not a step onto something else.
            smooth = abs(float(level[k] - level[end])) <= max(1.0, SMOOTH_ROW * ref)
            if not (either[k] if against or smooth else step[k] >= least):
                break
            end = k
        ends.append(end)
    return ends[0], ends[1]


def row_spread(x: np.ndarray) -> np.ndarray:
    """Each row's 4th-to-96th percentile range (nearest ranks: one partition, no interpolation)."""
    n = x.shape[1]
    lo, hi = int(round(0.04 * (n - 1))), int(round(0.96 * (n - 1)))
    part = np.partition(x, (lo, hi), axis=1)
    return part[:, hi] - part[:, lo]


def bridge_lines(ok: np.ndarray, level: np.ndarray, mid: float, most: int) -> np.ndarray:
    """ok with its gaps of at most `most` rows filled where the gap is a line on the membrane: every row of
    it darker than the membrane's level `mid`, and the brightest row within `most` rows on either side at
    that level (4 %).

    Lines only darken, so past a line's flanks the brightest row is membrane again; printed text has
    plastic round it. Bridged, a label above a membrane lighter than the plastic took the plastic round it
    into the window (true T/C 0.24 read 1.29: a false negative).
    """
    out = ok.copy()
    tol = max(3.0, 0.04 * mid)
    for s0, s1 in zip(*run_bounds(~ok, 0), strict=True):
        if 0 < s0 and s1 < len(ok) - 1 and s1 - s0 < most and (level[s0:s1 + 1] < mid).all() and \
                abs(float(level[max(0, s0 - most):s0].max()) - mid) <= tol and \
                abs(float(level[s1 + 1:s1 + 1 + most].max()) - mid) <= tol:
            out[s0:s1 + 1] = True
    return out


def trim_ends(level: np.ndarray, r0: int, r1: int) -> tuple[int, int]:
    """Rows r0..r1 without the rows at either end that are not the membrane next to them.

    No line lies at a window's very end, so darker rows there are its rim or, round a membrane lighter
    than the plastic, plastic beyond its end (as flat as the membrane); clearly brighter ones are plastic
    beyond the end of a membrane a shade darker than it, and print past that plastic is no membrane either.
    Judged against the membrane near that end (lighting falls off along a cassette, and not in a straight
    line); more than a fifth is no such fringe.
    """
    most = (r1 - r0) // 5
    if most < 2:
        return r0, r1
    ends = []
    for sign, start in ((1, r0), (-1, r1)):
        near = level[start + sign * most:start + sign * 2 * most:sign]
        # Lines only darken: the brightest tenth is membrane (nearest rank: this runs for every candidate). Not
        # the upper quartile: in a small window a line can fill three quarters of these rows, and judged by
        # its flank the membrane before it looked too bright and was trimmed off, the line left at the end.
        q = (9 * (len(near) - 1)) // 10
        ref = float(np.partition(near, q)[q])
        # Three membrane rows in a row, so one blurred row between print and plastic does not stop the trim.
        lo, hi = membrane_band(ref)
        end, run = start, 0
        for i in range(most + 3):       # row by row: the walk mostly stops at once
            k = start + sign * i
            run = run + 1 if lo <= float(level[k]) <= hi else 0
            if run == 3:
                end = k - sign * 2
                break
        ends.append(end)
    return ends[0], ends[1]


def innermost(box: tuple[int, int, int, int], valid: list[tuple[int, int, int, int]], w: float,
               L: float) -> tuple[int, int, int, int]:
    """The membrane inside a recess wall: a flat window holding another one as a frame of even width is the wall.

    A rim whose tone is close to the membrane's passes for flat; the frame it draws round the membrane (the
    same width left and right, and top and bottom) is what tells it, whatever its tone.
    """
    while True:
        a, b, ya, yb = box
        inner = [f for v in valid if v != box and a < v[0] < v[1] < b and ya - 2 <= v[2] < v[3] <= yb + 2
                 and (f := inside_frame(box, v, w, L)) is not None]
        if not inner:
            return box
        box = max(inner, key=lambda v: (v[1] - v[0]) * (v[3] - v[2]))


def inside_frame(outer: tuple[int, int, int, int], inner: tuple[int, int, int, int], w: float,
                 L: float) -> tuple[int, int, int, int] | None:
    """The box inside `outer` when `inner` shows it to be a frame round the membrane, else None."""
    left, right = inner[0] - outer[0], outer[1] - inner[1]
    top, bottom = inner[2] - outer[2], outer[3] - inner[3]
    side = max(left, right)
    if not (0.01 * w <= min(left, right) and side <= 0.12 * w and abs(left - right) <= max(2.0, 0.35 * side)) \
            or max(top, bottom) > 0.05 * L:
        return None
    if abs(top - bottom) <= max(3.0, 0.5 * side + 2) and max(top, bottom) <= 2 * side + 3:
        return inner          # the same frame seen along the length
    if min(top, bottom) <= 2 and max(top, bottom) <= 1.5 * side + 2:
        # At one end the rows already end where the inner box does, so the trim of the outer box's rows
        # (against the membrane next to each end) found its ends: where the inner sides' steps begin or end
        # is the weaker evidence there (a dark rim beside a darker membrane leaves them faint at the ends).
        return inner[0], inner[1], outer[2], outer[3]
    return None
