# The synthetic photograph generator: deterministic, physically consistent truth, every fault mode renders.
import cv2
import numpy as np
import pytest

from station.lab.photogen import CASSETTE_FAULTS, SCENE_FAULTS, random_scene, render, render_jpeg
from station.lab.photogen.cassette import line_area, membrane_absorbance


def test_same_seed_same_photograph():
    a = render_jpeg(random_scene(np.random.default_rng(3), resolution=(1280, 960)), np.random.default_rng(4))
    b = render_jpeg(random_scene(np.random.default_rng(3), resolution=(1280, 960)), np.random.default_rng(4))
    assert a[0] == b[0]
    assert a[1] == b[1]


def test_truth_ratio_is_the_ratio_of_line_areas():
    rng = np.random.default_rng(5)
    img, truth = render(random_scene(rng, n_cassettes=2, resolution=(1280, 960), tc=0.6), rng)
    assert img.shape == (960, 1280, 3) and img.dtype == np.uint8
    for c in truth["cassettes"]:
        areas = {ln["name"]: ln["area"] for ln in c["lines"]}
        assert c["tc_ratio"] == pytest.approx(areas["T"] / areas["C"])
        assert c["tc_ratio"] == pytest.approx(0.6)
        assert -15 <= c["angle"] <= 15
        assert 0.25 * 960 - 1 <= c["length_px"] <= 0.65 * 960 + 1


def test_gaussian_line_area_matches_the_rendered_absorbance():
    rng = np.random.default_rng(0)
    spec = {"lines": [{"name": "C", "position": 0.6, "peak": 0.4, "sigma": 0.03}],
            "background": {"offset": 0.0, "slope": 0.0, "wave_amp": 0.0, "wave_period": 2.0, "wave_phase": 0.0,
                           "streak": 0.0, "texture": 0.0}}
    a = membrane_absorbance(spec, 400, 20, rng)
    area = a[:, 10].sum() / 400 * 100
    assert area == pytest.approx(line_area(0.4, 0.03), rel=1e-3)


def test_lines_absorb_green_most_and_red_least():
    rng = np.random.default_rng(8)
    scene = random_scene(rng, n_cassettes=1, resolution=(1280, 960), tc=1.0, c_peak=0.6, length_frac=0.6)
    scene["camera"]["blur_sigma"] = 0.0
    scene["light"]["glare"] = []
    img, truth = render(scene, rng)
    c = truth["cassettes"][0]
    assert c["fully_visible"]
    # Sample across the membrane at the C line versus a line-free spot in cassette coordinates.
    x0, y0, x1, y1 = 0.33, 0.24, 0.67, 0.48
    cpos = next(ln["position"] for ln in c["lines"] if ln["name"] == "C")

    def at(frac_v: float) -> np.ndarray:
        u = ((x0 + x1) / 2 - 0.5) * c["width_px"]
        v = (y1 - frac_v * (y1 - y0) - 0.5) * c["length_px"]
        a = np.radians(c["angle"])
        x = c["center"][0] + u * np.cos(a) - v * np.sin(a)
        y = c["center"][1] + u * np.sin(a) + v * np.cos(a)
        return img[int(y) - 1:int(y) + 2, int(x) - 2:int(x) + 3].reshape(-1, 3).mean(axis=0)

    line, bg = at(cpos), at(0.5 * (cpos + 0.35))
    drop = bg - line
    assert drop[1] > drop[0] > drop[2] >= -3


@pytest.mark.parametrize("fault", CASSETTE_FAULTS)
def test_each_cassette_fault_renders_and_is_labelled(fault):
    rng = np.random.default_rng(11)
    img, truth = render(random_scene(rng, n_cassettes=2, resolution=(1280, 960), cassette_faults=(fault,)), rng)
    assert fault in truth["cassettes"][0]["faults"]
    assert truth["cassettes"][1]["faults"] == []
    if fault == "cut_off":
        assert not truth["cassettes"][0]["fully_visible"]
    if fault == "no_c":
        assert truth["cassettes"][0]["tc_ratio"] is None
    if fault == "faint_c":
        assert 0.06 <= truth["cassettes"][0]["c_peak"] <= 0.09


@pytest.mark.parametrize("fault", SCENE_FAULTS)
def test_each_scene_fault_renders(fault):
    rng = np.random.default_rng(12)
    img, truth = render(random_scene(rng, resolution=(1280, 960), faults=(fault,)), rng)
    assert truth["faults"] == [fault]
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if fault == "empty_tray":
        assert truth["cassettes"] == []
    if fault == "overexposed":
        assert np.mean(grey >= 250) > 0.01
    if fault == "underexposed":
        assert np.percentile(grey, 99) < 110


def test_qr_card_is_tied_to_a_cassette():
    rng = np.random.default_rng(21)
    _, truth = render(random_scene(rng, n_cassettes=2, resolution=(1280, 960), qr=True), rng)
    card = truth["qr_cards"][0]
    assert truth["cassettes"][card["cassette"]]["qr"] == card["text"]
