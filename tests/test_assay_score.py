# score_image on generated photographs: localisation, ratios, verdicts for each format, each quality gate.
import math

import numpy as np
import pytest

from station.assay import BUILTIN_STRIP_TYPES
from station.assay.checks import find_peaks
from station.assay.scores import LineReading, StripScore
from station.decide.verdict import interpret, read_photo
from station.lab.photogen import random_scene, render

GENERIC = BUILTIN_STRIP_TYPES["pesticide-generic"]


def shot(seed, strip_type="pesticide-generic", **kw):
    rng = np.random.default_rng(seed)
    kw.setdefault("resolution", (1280, 960))
    img, truth = render(random_scene(rng, strip_type=strip_type, **kw), rng)
    return img, truth


def match(score, truth):
    """Pairs (truth cassette, strip) by centre distance; unmatched strips are phantoms."""
    pairs, used = [], set()
    for c in truth["cassettes"]:
        best = None
        for s in score.strips:
            d = math.dist(c["center"], s.center)
            if d < 0.25 * c["length_px"] and s.slot not in used and (best is None or d < best[0]):
                best = (d, s)
        if best:
            used.add(best[1].slot)
            pairs.append((c, best[1]))
    phantoms = [s for s in score.strips if s.slot not in used]
    return pairs, phantoms


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_finds_every_cassette_left_to_right_and_reads_its_ratio(seed):
    img, truth = shot(seed)
    score = read_photo(img, GENERIC)
    pairs, phantoms = match(score, truth)
    assert len(pairs) == len(truth["cassettes"]) and not phantoms
    xs = [s.center[0] for s in score.strips]
    assert xs == sorted(xs) and [s.slot for s in score.strips] == list(range(len(xs)))
    for c, s in pairs:
        assert s.verdict in ("negative", "positive"), s.quality
        assert s.control_line
        assert abs(s.tc_ratio - c["tc_ratio"]) < 0.08
        assert abs(s.angle - c["angle"]) < 1.5


@pytest.mark.parametrize("tc, verdict", [(0.2, "positive"), (0.5, "positive"), (1.1, "negative"), (1.4, "negative")])
def test_competitive_verdict_follows_the_cutoff(tc, verdict):
    img, truth = shot(30 + int(tc * 10), n_cassettes=1, tc=tc, c_peak=0.4, length_frac=0.5)
    s = read_photo(img, GENERIC).strips[0]
    assert s.verdict == verdict and s.quality == []


def test_sandwich_card_visible_t_line_is_positive_and_absent_is_negative():
    st = BUILTIN_STRIP_TYPES["sandwich-generic"]
    pos_img, _ = shot(41, "sandwich-generic", n_cassettes=1, tc=0.5, c_peak=0.4, length_frac=0.5)
    neg_img, _ = shot(42, "sandwich-generic", n_cassettes=1, tc=0.0, c_peak=0.4, length_frac=0.5)
    assert read_photo(pos_img, st).strips[0].verdict == "positive"
    neg = read_photo(neg_img, st).strips[0]
    assert neg.verdict == "negative" and neg.control_line


def test_three_in_one_card_reads_each_test_line():
    st = BUILTIN_STRIP_TYPES["pesticide-3in1"]
    img, truth = shot(43, "pesticide-3in1", n_cassettes=1, length_frac=0.6)
    s = read_photo(img, st).strips[0]
    c = truth["cassettes"][0]
    assert set(s.tc_ratios) == {"T1", "T2", "T3"}
    for name, ratio in c["tc_ratios"].items():
        assert abs(s.tc_ratios[name] - ratio) < 0.1
        assert s.line_verdicts[name] == ("positive" if s.tc_ratios[name] < st.cutoff else "negative")
    assert s.tc_ratio == min(s.tc_ratios.values())


def test_no_control_line_is_invalid_not_retake():
    img, _ = shot(44, n_cassettes=1, cassette_faults=("no_c",))
    s = read_photo(img, GENERIC).strips[0]
    assert s.verdict == "invalid" and "NO_CONTROL_LINE" in s.quality and s.tc_ratio is None


def test_faint_control_line_is_still_read():
    img, truth = shot(45, n_cassettes=1, cassette_faults=("faint_c",), length_frac=0.5)
    s = read_photo(img, GENERIC).strips[0]
    assert s.control_line and s.verdict in ("negative", "positive")
    assert "LOW_SIGNAL" in s.quality
    assert abs(s.tc_ratio - truth["cassettes"][0]["tc_ratio"]) < 0.25


@pytest.mark.parametrize("c_snr, verdict", [(20.0, "retake"), (60.0, "negative")])
def test_a_ratio_the_noise_leaves_uncertain_is_refused_not_given(c_snr, verdict):
    """T/C 1.4 on a control line 20 times the membrane's noise: uncertain by ±0.15, so refused (IMPRECISE);
    three times cleaner, it is read. A card with no control line stays invalid whatever the noise."""
    lines = [LineReading("T", 0.35, 0.35, 0.07, 0.46, c_snr * 1.1, True),
             LineReading("C", 0.70, 0.70, 0.06, 0.33, c_snr, True)]
    strip = StripScore(slot=0, center=(0.0, 0.0), angle=0.0, size=(100.0, 300.0), lines=lines)
    interpret(strip, GENERIC)
    assert strip.verdict == verdict and ("IMPRECISE" in strip.quality) == (verdict == "retake")
    assert (strip.tc_ratio is None) == (verdict == "retake")
    no_c = StripScore(slot=0, center=(0.0, 0.0), angle=0.0, size=(100.0, 300.0),
                      lines=[lines[0], LineReading("C", 0.70, 0.70, 0.004, 0.02, 2.0, False)])
    interpret(no_c, GENERIC)
    assert no_c.verdict == "invalid" and "IMPRECISE" not in no_c.quality


@pytest.mark.parametrize("scene_fault, cassette_fault, code", [
    (None, "glare", "GLARE"),
    ("blur", None, "BLURRED"),
    ("overexposed", None, "OVEREXPOSED"),
    ("underexposed", None, "UNDEREXPOSED"),
    (None, "tilted", "TILTED"),
    (None, "cut_off", "CUT_OFF"),
    (None, "face_down", "WINDOW_NOT_FOUND"),
])
def test_each_quality_gate_gives_retake_and_no_ratio(scene_fault, cassette_fault, code):
    img, truth = shot(50, n_cassettes=1, faults=(scene_fault,) if scene_fault else (),
                      cassette_faults=(cassette_fault,) if cassette_fault else ())
    score = read_photo(img, GENERIC)
    assert len(score.strips) == 1
    s = score.strips[0]
    assert code in s.quality
    assert s.verdict == "retake" and s.tc_ratio is None and s.reason


def test_empty_tray_reports_no_strips_and_says_why():
    img, _ = shot(60, faults=("empty_tray",))
    score = read_photo(img, GENERIC)
    assert score.strips == [] and score.error is None and "no cassette" in score.reason


def test_qr_code_is_tied_to_the_nearest_cassette():
    img, truth = shot(61, n_cassettes=2, qr=True, length_frac=0.45)
    score = read_photo(img, GENERIC)
    card = truth["qr_cards"][0]
    owner = truth["cassettes"][card["cassette"]]
    strip = min(score.strips, key=lambda s: math.dist(s.center, owner["center"]))
    assert strip.qr == card["text"]
    assert [s.qr for s in score.strips].count(card["text"]) == 1


def test_json_keys_are_stable():
    img, _ = shot(62, n_cassettes=2)
    j = read_photo(img, GENERIC).to_json(image="a.jpg")
    assert {"image", "strips", "error"} <= set(j)
    for s in j["strips"]:
        assert {"slot", "center", "tc_ratio", "control_line", "quality", "verdict"} <= set(s)
        assert s["verdict"] in ("negative", "positive", "invalid", "retake")


def test_garbage_input_gives_an_error_not_an_exception():
    tiny = read_photo(np.zeros((10, 10, 3), np.uint8), GENERIC)
    assert tiny.error is None and tiny.strips == [] and "too small" in tiny.reason
    assert read_photo(np.zeros((100, 100), np.uint8), GENERIC).error
    assert read_photo(np.zeros((300, 300, 3), np.float32), GENERIC).error
    flat = np.full((480, 640, 3), 128, np.uint8)
    assert read_photo(flat, GENERIC).strips == []


def test_one_strip_rephotographed_reads_the_same():
    import copy

    from station.lab.photogen.scene import random_cassette

    strip = random_cassette(np.random.default_rng(70), GENERIC, tc=0.8, c_peak=0.4)
    ratios = []
    for k in range(6):
        rng = np.random.default_rng(700 + k)
        scene = random_scene(rng, n_cassettes=1, resolution=(1280, 960), length_frac=0.45, qr=False)
        placed = scene["cassettes"][0]
        s = copy.deepcopy(strip)
        s.update({key: placed[key] for key in ("center", "angle", "length_px", "width_px")})
        scene["cassettes"][0] = s
        img, _ = render(scene, rng)
        ratios.append(read_photo(img, GENERIC).strips[0].tc_ratio)
    assert np.std(ratios, ddof=1) / np.mean(ratios) < 0.03
    assert abs(np.mean(ratios) - 0.8) < 0.03


def test_debug_rendering_shows_the_photo_and_a_profile_per_strip():
    from station.assay.debug import render_debug

    img, _ = shot(71, n_cassettes=2)
    score = read_photo(img, GENERIC, want_debug=True)
    assert all(s.profile is not None for s in score.strips)
    out = render_debug(img, score)
    assert out.shape[1] == img.shape[1] and out.shape[0] == img.shape[0] + 160
    assert not np.array_equal(out[:img.shape[0]], img)  # boxes and labels were drawn
    assert read_photo(img, GENERIC).strips[0].profile is None  # profiles only kept when asked


def test_cassette_laid_the_wrong_way_round_is_read_without_swapping_c_and_t():
    img, truth = shot(72, n_cassettes=1, cassette_faults=("reversed",), tc=0.3, c_peak=0.4, length_frac=0.5)
    c = truth["cassettes"][0]
    s = read_photo(img, GENERIC).strips[0]
    assert abs(c["angle"]) > 150
    assert abs((s.angle - c["angle"] + 180) % 360 - 180) < 1.5
    assert s.verdict == "positive" and abs(s.tc_ratio - 0.3) < 0.08


def test_bright_coloured_objects_are_not_cassettes():
    img, _ = shot(73, faults=("empty_tray",))
    h, w = img.shape[:2]
    # A wood-coloured highlight at the frame edge and a saturated card-sized patch in the middle.
    img[int(0.6 * h):, int(0.8 * w):int(0.85 * w)] = (60, 150, 230)
    img[int(0.3 * h):int(0.6 * h), int(0.4 * w):int(0.45 * w)] = (200, 120, 40)
    assert read_photo(img, GENERIC).strips == []
    # The same shapes in neutral white are taken for cassettes: the test above is about colour.
    img[int(0.6 * h):, int(0.8 * w):int(0.85 * w)] = (235, 235, 235)
    assert [s.quality for s in read_photo(img, GENERIC).strips] == [["CUT_OFF"]]


def test_a_rise_into_the_window_end_is_not_a_line():
    """A line is a bump standing clear of the membrane on both sides; a shadow or rim rising into the window's
    end is not (it made a faint-T, no-C card a `retake` instead of `invalid`)."""
    n = 112
    x = (np.arange(n) + 0.5) / n
    net = 0.02 * np.exp(-0.5 * ((x - 0.3) / 0.02) ** 2) + np.where(x > 0.85, 0.012 * (x - 0.85) / 0.12, 0.0)
    net += np.random.default_rng(1).normal(0, 0.0004, n)
    peaks = find_peaks(net, 0.0015, GENERIC)
    assert [round(p, 1) for p, _ in peaks] == [0.3]
