# measure_lines on synthetic membrane profiles: the window's ends and a wide learned line width leave T/C right.
import numpy as np
import pytest

from station.assay.lines import measure_lines
from station.striptypes import StripType


def profile(n, lines, *, slope=0.01, curve=0.0, seed=0, noise=0.0004):
    """A membrane absorbance profile (row 0 at the well end) with Gaussian lines: (position, peak, sigma)."""
    pos = (np.arange(n) + 0.5) / n
    y = 0.30 + slope * (pos - 0.5) + curve * (pos - 0.5) ** 2
    for p, peak, sigma in lines:
        y = y + peak * np.exp(-0.5 * ((pos - p) / sigma) ** 2)
    return y + np.random.default_rng(seed).normal(0, noise, n)


def true_ratio(lines):
    (_, pt, st_), (_, pc, sc) = lines
    return (pt * st_) / (pc * sc)


def ratio(prof, st):
    got = {r.name: r for r in measure_lines(prof, st)[0]}
    return got["T"].area / got["C"].area


TYPE = StripType(name="x", analyte="x", lines=(("T", 0.40), ("C", 0.84)), line_sigma=0.022)


@pytest.mark.parametrize("seed", range(4))
def test_a_rim_shade_at_the_windows_end_does_not_lift_the_baseline_under_c(seed):
    # Learned from a blurred reference, the type's lines are twice as wide as they are: their zones would
    # leave the baseline only the last two rows past C, which are the rim's shade.
    lines = [(0.40, 0.15, 0.020), (0.85, 0.10, 0.026)]
    n = 52
    y = profile(n, lines, seed=seed)
    y[-2:] += 0.03
    wide = StripType(name="x", analyte="x", lines=(("T", 0.40), ("C", 0.85)), line_sigma=0.04)
    assert ratio(y, wide) == pytest.approx(true_ratio(lines), rel=0.05)


@pytest.mark.parametrize("seed", range(4))
def test_a_bright_rim_at_both_ends_does_not_sag_the_baseline_under_the_lines(seed):
    # A white rim blurred into the first and last rows: lighter than any membrane, so no baseline.
    lines = [(0.29, 0.030, 0.026), (0.67, 0.045, 0.022)]
    n = 71
    y = profile(n, lines, seed=seed)
    y[0] -= 0.015
    y[-1] -= 0.03
    st = StripType(name="x", analyte="x", lines=(("T", 0.29), ("C", 0.67)), line_sigma=0.022)
    assert ratio(y, st) == pytest.approx(true_ratio(lines), rel=0.05)


def test_lines_clear_of_the_ends_read_their_true_ratio():
    lines = [(0.40, 0.20, 0.020), (0.84, 0.30, 0.024)]
    assert ratio(profile(80, lines, curve=0.02), TYPE) == pytest.approx(true_ratio(lines), rel=0.02)
