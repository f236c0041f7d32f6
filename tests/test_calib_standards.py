# Calibration from standards: generated dilution series from a hidden 4PL, read by the station's own reader.
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from calibseries import HIDDEN, LEVELS, LIMIT, calib, dilution_series, photo, true_tcs, write_series

from calib.standards import Replicate, analyse
from station.decide.fourpl import Curve, fit_4pl
from station.errors import SeriesRefused
from station.home import Home, init_home

UNIT = "mg/kg"



@pytest.fixture(scope="module")
def series(tmp_path_factory):
    return dilution_series(tmp_path_factory.mktemp("series"), seed=7)


@pytest.fixture
def home(tmp_path):
    h = Home(tmp_path / "home")
    init_home(h, station="st-0012", grid="changchun/nongan/halahai")
    return h.root


def fit(home: Path, csv: Path, *extra: str) -> subprocess.CompletedProcess:
    return calib(home, "standards", "fit", "--strip-type", "pesticide-generic", "--lot", "L2026-12", "--series",
                 str(csv), "--limit", str(LIMIT), "--unit", UNIT, "--json", *extra)


def test_fit_recovers_the_hidden_curve_and_down_weights_the_spoiled_replicate(series, home, tmp_path):
    done = fit(home, series["csv"], "--plot", str(tmp_path / "curve.png"))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert abs(out["tc_at_limit"] - HIDDEN.tc(LIMIT)) < 0.03
    curve = Curve.from_json(out["curve"])
    for conc in LEVELS[1:]:  # every standard above zero: the quantifiable range
        assert abs(curve.conc(HIDDEN.tc(conc)) / conc - 1) < 0.15, conc
    assert [(d["photo"], d["slot"]) for d in out["downweighted"]] == [series["outlier"]]
    assert out["downweighted"][0]["weight"] < 0.1
    # The LOD lies below the limit, the cutoff between the T/C at the limit and the blanks, with its error rates.
    assert 0 < out["lod"] < LIMIT
    assert out["tc_at_limit"] < out["cutoff"] < out["blank_mean"] - 3 * out["blank_sd"]
    assert out["false_negative_at_limit"] <= 0.051 and out["false_positive_blank"] < 0.01
    assert out["fit"]["r2"] > 0.99 and out["fit"]["points"] == 36 and out["fit"]["levels"] == 6
    assert out["accepted"] is None
    png = (tmp_path / "curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_a_worse_spoiled_replicate_does_not_move_the_curve_though_it_moves_the_mean(series, home):
    """The down-weighting is what keeps the curve: the same readings' plain level mean moves a lot."""
    out = json.loads(fit(home, series["csv"]).stdout)
    reps = out["replicates"]
    x = np.array([r["concentration"] for r in reps])
    y = np.array([r["tc"] for r in reps])
    robust = fit_4pl(x, y).curve
    spoiled = [i for i, r in enumerate(reps) if (r["photo"], r["slot"]) == series["outlier"]]
    y[spoiled] += 0.6  # a worse spoil: the plain mean of that level moves by 0.1
    assert abs(fit_4pl(x, y).curve.tc(2 * LIMIT) - robust.tc(2 * LIMIT)) < 0.01
    level = x == 2 * LIMIT
    assert abs(np.mean(y[level]) - robust.tc(2 * LIMIT)) > 0.09


@pytest.mark.parametrize("case, reason", [
    ("shuffled", "non-monotonic"), ("few_levels", "too few levels"), ("no_blank", "no blanks"),
    ("limit_outside", "does not bracket the limit"),
])
def test_a_series_that_cannot_support_a_cutoff_is_refused_with_its_reason(series, home, tmp_path, case, reason):
    rows = [(str(series["csv"].parent / p), c) for p, c in series["rows"]]
    if case == "shuffled":  # the 2 × and ½ × limit standards swapped on the bench
        swap = {2 * LIMIT: LIMIT / 2, LIMIT / 2: 2 * LIMIT}
        rows = [(p, swap.get(c, c)) for p, c in rows]
    elif case == "few_levels":
        rows = [(p, c) for p, c in rows if c in (0.0, LIMIT / 2, LIMIT, 2 * LIMIT)]
    elif case == "no_blank":
        rows = [(p, c) for p, c in rows if c > 0]
    csv = write_series(tmp_path, rows, "bad.csv")
    limit = ["--limit", str(10 * LIMIT)] if case == "limit_outside" else []
    done = fit(home, csv, "--accept", *limit)
    assert done.returncode == 3, done.stderr
    assert reason in json.loads(done.stdout)["refused"]
    assert reason in done.stderr
    assert json.loads(calib(home, "history", "--json").stdout) == []  # --accept stored nothing


def test_lod_above_the_limit_is_refused(home, tmp_path):
    """Blanks that scatter widely put blank mean − 3 SD low on the curve: the LOD lands above the limit."""
    rng = np.random.default_rng(3)
    rows = []
    for k, conc in enumerate(LEVELS):
        tcs = [1.25, 0.86, 1.45] if conc == 0 else true_tcs(conc, rng)
        photo(tmp_path / f"n{k}.jpg", tcs, 500 + k)
        rows.append((f"n{k}.jpg", conc))
    done = fit(home, write_series(tmp_path, rows), "--accept")
    assert done.returncode == 3, done.stderr
    refused = json.loads(done.stdout)["refused"]
    assert refused.startswith("LOD ") and "above the limit 0.5 mg/kg" in refused


def test_analysis_refuses_a_sandwich_strip_thin_levels_and_a_flat_series():
    from station.striptypes import BUILTIN_STRIP_TYPES

    reps = [Replicate("p", i % 3, c, float(HIDDEN.tc(c))) for c in LEVELS for i in range(3)]
    with pytest.raises(SeriesRefused, match="sandwich"):
        analyse(reps, LIMIT, UNIT, BUILTIN_STRIP_TYPES["sandwich-generic"])
    thin = [r for r in reps if not (r.concentration == LIMIT and r.slot == 2)]
    with pytest.raises(SeriesRefused, match=r"too few replicates at 0.5 \(2\)"):
        analyse(thin, LIMIT, UNIT)
    flat = [Replicate("p", i % 3, c, 0.9 + 0.01 * (i % 3)) for c in LEVELS for i in range(3)]
    with pytest.raises(SeriesRefused, match="no response"):
        analyse(flat, LIMIT, UNIT)


def test_accepted_calibration_is_stored_with_its_series_and_a_content_hash_id(series, home):
    done = fit(home, series["csv"], "--accept", "--by", "tech-li", "--reason", "new lot L2026-12")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    cal = json.loads(calib(home, "show", "--id", out["accepted"]).stdout)
    assert cal["id"] == out["accepted"] and cal["lot"] == "L2026-12" and cal["by"] == "tech-li"
    assert cal["reason"] == "new lot L2026-12" and cal["source"] == "standards" and cal["unit"] == UNIT
    assert cal["cutoff"] == pytest.approx(out["cutoff"], abs=1e-4) and cal["curve"] == pytest.approx(out["curve"],
                                                                                                      rel=1e-3)
    assert len(cal["series"]["replicates"]) == 36 and len(cal["series"]["sha256"]) == 64
    assert all(len(r["image_sha256"]) == 64 for r in cal["series"]["replicates"])
    from station.decide.calibration import content_id

    body = {k: v for k, v in cal.items() if k != "id"}
    assert content_id(body) == cal["id"]
    shown = calib(home, "show").stdout
    assert f"calibration {cal['id']} lot L2026-12" in shown
    assert calib(home, "history", "--lot", "L2026-12").stdout.count(cal["id"]) == 1


def test_guided_run_photographs_each_standard_then_fits_and_accepts(series, tmp_path):
    """The station's own camera (the folder twin here, serving the standards in order) and typed answers."""
    photos = tmp_path / "camera"
    photos.mkdir()
    for i, (name, _) in enumerate(r for r in series["rows"] if r[0].endswith("-0.jpg")):
        (photos / f"{i:02d}.jpg").write_bytes((series["csv"].parent / name).read_bytes())
    h = Home(tmp_path / "home")
    init_home(h, station="st-0012", grid="changchun/nongan/halahai", sim_images=str(photos))
    # Per level: Enter when laid, Enter to keep the reading; the blanks once retaken; then accept.
    answers = "\n".join(["", "r", ""] + ["", ""] * 5 + ["y"]) + "\n"
    done = subprocess.run([sys.executable, "-m", "calib.cli", "--home", str(h.root), "standards", "run", "--strip-type",
                           "pesticide-generic", "--lot", "L9", "--limit", str(LIMIT), "--by", "tech-wu"],
                          input=answers, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("keep? [Y/r=retake]") == 7 and "accepted as calibration" in done.stdout
    (kept,) = list((h.root / "calib" / "series").iterdir())
    assert sorted(p.name for p in kept.glob("*.jpg")) == [f"level{k}-0.jpg" for k in range(6)]
    assert (kept / "curve.png").is_file() and (kept / "series.csv").read_text().startswith("photo,concentration\n")
    (cal,) = json.loads(calib(h.root, "history", "--json").stdout)
    assert cal["lot"] == "L9" and cal["by"] == "tech-wu" and len(cal["series"]["replicates"]) == 18
