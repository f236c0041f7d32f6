# The daemon with an accepted calibration: results cite it and its lot, carry a concentration; a QC reject blocks.
from __future__ import annotations

import json
import shutil

import jsonschema
import pytest
from calibseries import HIDDEN, LIMIT, calib, dilution_series, photo

from station.decide.qc import QCStore
from station.journal import Journal
from station.lab.rig import StationRig
from station.protocol import signing
from station.protocol.result import load_schema

LOT = "L2026-12"
SAMPLE_CONC = 1.5 * LIMIT  # above the limit: positive, and inside the calibrated range



@pytest.fixture(scope="module")
def series(tmp_path_factory):
    return dilution_series(tmp_path_factory.mktemp("series"), seed=7)


@pytest.fixture
def rig(tmp_path, series):
    rig = StationRig(tmp_path / "rig")
    photos = rig.work / "photos"
    shutil.rmtree(photos)
    photos.mkdir()
    photo(photos / "sample.jpg", [float(HIDDEN.tc(SAMPLE_CONC))], seed=99)
    done = calib(rig.home.root, "standards", "fit", "--strip-type", "pesticide-generic", "--lot", LOT, "--series",
                 str(series["csv"]), "--limit", str(LIMIT), "--unit", "mg/kg", "--json", "--accept", "--by", "tech-li")
    assert done.returncode == 0, done.stderr
    rig.accepted = json.loads(done.stdout)
    daemon = rig.daemon().start()
    yield rig, daemon
    daemon.terminate()


def records(rig) -> list[dict]:
    with Journal(rig.home.journal, check=False) as j:
        return [signing.unverified_payload(e.message) for e in j.entries(newest_first=False)]


def test_results_cite_the_accepted_calibration_and_estimate_the_concentration(rig):
    rig, daemon = rig
    reply = daemon.press(sample="S-1")
    assert reply["ok"], reply
    assert [r["verdict"] for r in reply["results"]] == ["positive"]
    (rec,) = records(rig)
    jsonschema.validate(rec, load_schema())
    acc = rig.accepted
    assert rec["calibration"] == {"id": acc["accepted"], "cutoff": pytest.approx(acc["cutoff"], abs=1e-4),
                                  "lot": LOT, "unit": "mg/kg"}
    assert rec["strip"]["lot"] == LOT
    est = rec["estimate"]
    assert est["unit"] == "mg/kg" and est["below_lod"] is False and est["above_range"] is False
    assert abs(est["concentration"] / SAMPLE_CONC - 1) < 0.15, est
    assert est["lod"] == pytest.approx(acc["lod"], rel=1e-3) and est["range_top"] == 4 * LIMIT
    # The verdict is the cutoff's: the T/C read is below the accepted cutoff.
    assert rec["reading"]["tc_ratio"] < acc["cutoff"]


def test_a_westgard_reject_blocks_the_lot_until_a_control_card_reads_in_control(rig):
    rig, daemon = rig
    home = rig.home.root
    store = QCStore(home)  # the lot's first ten control cards: its baseline (the file `calib qc add` writes)
    for i, v in enumerate([0.62, 0.60, 0.61, 0.63, 0.59, 0.61, 0.62, 0.60, 0.61, 0.61]):
        store.add(LOT, v, f"2026-11-{i + 1:02d}T08:00:00Z")
    store.close()
    assert daemon.press(sample="S-1")["ok"]
    calib(home, "qc", "add", "--lot", LOT, "--tc", "0.50", "--at", "2026-11-20T08:00:00Z")  # -9.5 SD
    for extra in ({}, {"strip_type": "pesticide-generic"}):  # the loop's refusal, and the socket's check
        reply = daemon.press(sample="S-2", **extra)
        assert not reply["ok"] and f"lot {LOT} blocked by QC" in reply["error"] and "1-3s" in reply["error"], reply
    assert len(records(rig)) == 1  # nothing was read on a blocked lot
    calib(home, "qc", "add", "--lot", LOT, "--tc", "0.612", "--at", "2026-11-20T09:00:00Z")
    reply = daemon.press(sample="S-3")
    assert reply["ok"], reply
    assert [r["sample"] for r in reply["results"]] == ["S-3"]
