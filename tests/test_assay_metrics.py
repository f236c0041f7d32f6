# The assay-eval metrics: matching, error statistics and gate rates computed from known inputs.
import pytest

from station.lab.metrics import compute, match


def cassette(x, tc=0.5, faults=(), c_peak=0.4, visible=True):
    return {"center": [x, 500.0], "length_px": 400.0, "tc_ratio": tc, "faults": list(faults), "c_peak": c_peak,
            "fully_visible": visible}


def strip(x, tc, verdict="negative", quality=()):
    return {"center": [x, 505.0], "tc_ratio": tc, "verdict": verdict, "quality": list(quality)}


def rows(result):
    return {r.name: r for r in result["rows"]}


def test_match_pairs_nearby_centres_and_reports_misses_and_phantoms():
    truth = {"cassettes": [cassette(100), cassette(600)]}
    pairs, missed, phantoms = match(truth, [strip(110, 0.5), strip(1200, 0.5)])
    assert [(c["center"][0], s["center"][0]) for c, s in pairs] == [(100, 110)]
    assert [c["center"][0] for c in missed] == [600]
    assert [s["center"][0] for s in phantoms] == [1200]


def test_compute_reports_errors_linearity_and_gates():
    recs = []
    for i, tc in enumerate([0.1, 0.4, 0.7, 1.0, 1.3]):
        truth = {"faults": [], "cassettes": [cassette(100, tc)]}
        recs.append((truth, {"error": None, "strips": [strip(100, tc + (0.02 if i % 2 else -0.02))]}, 20.0))
    recs.append(({"faults": ["blur"], "cassettes": [cassette(100)]},
                 {"error": None, "strips": [strip(100, None, "retake", ["BLURRED"])]}, 20.0))
    recs.append(({"faults": [], "cassettes": [cassette(100, None, ["no_c"])]},
                 {"error": None, "strips": [strip(100, None, "negative")]}, 20.0))
    recs.append(({"faults": ["empty_tray"], "cassettes": []}, {"error": None, "strips": [strip(50, 0.3)]}, 20.0))
    r = rows(compute(recs))
    assert r["T/C abs error, mean"].value == pytest.approx(0.02)
    assert r["T/C abs error, mean"].ok
    assert r["linearity, Pearson r"].value > 0.99
    assert r["gated retake: blur (BLURRED)"].value == 1.0
    assert r["control line absent -> invalid"].value == 0.0 and r["control line absent -> invalid"].ok is False
    assert r["empty tray -> no strips"].ok is False
    assert r["phantom cassettes"].value == 1 and r["phantom cassettes"].ok is False
    assert r["cassette detection recall"].value == 1.0


def test_repeatability_is_the_coefficient_of_variation_per_group():
    recs = []
    for k, tc in enumerate([0.80, 0.82, 0.78, 0.80]):
        truth = {"faults": [], "group": 0, "cassettes": [cassette(100, 0.8)]}
        recs.append((truth, {"error": None, "strips": [strip(100, tc)]}, 10.0 + k))
    r = rows(compute(recs))
    cv = r["repeatability CV, mean of groups"]
    assert cv.value == pytest.approx(0.01633 / 0.80, abs=1e-5) and cv.ok is False  # just over 2 %
