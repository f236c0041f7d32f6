# Defocus: the absorbance area a blurred camera takes from strong, narrow lines, and the reading's correction.
import math

import cv2
import numpy as np
import pytest

from station.assay.defocus import corrected_area, kept_fraction, optical_blur
from station.decide.verdict import read_photo
from station.lab.photogen.dataset import make_one
from station.striptypes import BUILTIN_STRIP_TYPES


def test_blur_takes_area_from_strong_narrow_lines_and_hardly_any_from_faint_ones():
    assert kept_fraction(0.6, 1.4, 0.0) == 1.0
    assert kept_fraction(0.6, 1.4, 0.9) < kept_fraction(0.6, 1.4, 0.5) < 0.99
    assert kept_fraction(0.01, 1.4, 0.9) > 0.998
    assert kept_fraction(0.6, 4.0, 0.9) > kept_fraction(0.6, 1.4, 0.9)


@pytest.mark.parametrize("peak, sigma, blur", [(0.58, 1.43, 0.9), (0.55, 0.96, 0.9), (0.3, 2.0, 0.6)])
def test_the_area_in_focus_is_recovered_from_the_blurred_line(peak, sigma, blur):
    true = peak * sigma * math.sqrt(2 * math.pi)
    read = true * kept_fraction(peak, sigma, blur)
    # The blurred line looks about this wide (Jensen flattens its top a little more).
    seen = math.hypot(sigma, blur)
    assert abs(corrected_area(read, seen, blur, 1.0) / true - 1) < 0.015
    assert abs(corrected_area(read, seen, 0.0, 1.0) - read) < 1e-12


def test_optical_blur_is_what_the_edges_show_beyond_an_edge_in_focus():
    assert optical_blur(None) == 0.0 and optical_blur(0.7) == 0.0
    assert abs(optical_blur(1.22) - 0.92) < 0.01


def _repeat_photo(i):
    # One strip (C peak 0.58, sigma 1.4 px) of the seed-22222222 set, brand 22000, photographed again and again.
    _, data, truth = make_one((i, "repeat", 22222222, 0, "pesticide-generic", 22000))
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), truth


def test_a_strip_photographed_in_and_out_of_focus_keeps_its_ratio():
    """Defocus up to 1 px read T/C up to 6.5 % high on a strong, narrow C line: the group's CV was 2.5 %."""
    blur, ratios = [], []
    for i in range(30, 42):
        img, truth = _repeat_photo(i)
        blur.append(truth["camera"]["blur_sigma"])
        ratios.append(read_photo(img, BUILTIN_STRIP_TYPES["pesticide-generic"]).strips[0].tc_ratio)
    assert max(blur) > 0.9 and min(blur) < 0.1
    assert np.std(ratios, ddof=1) / np.mean(ratios) < 0.015, ratios
