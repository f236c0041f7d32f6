# Calibrations leave and enter a station as a file signed with its key: the town verifies it, a station imports it.
from __future__ import annotations

import json

import pytest
from calibseries import calib

from station.config import load_config
from station.decide.calibration import CalibrationStore, content_id
from station.home import Home, init_home, signing_key_path
from station.protocol import signing
from station.protocol.wire import b64url, b64url_decode


def make_home(path, station):
    h = Home(path)
    init_home(h, station=station, grid="changchun/nongan/halahai")
    cfg = load_config(h.root)
    key = signing.load_private_key(signing_key_path(h, cfg.station.key_file))
    jwk = path.parent / f"{station}.jwk"
    jwk.write_text(json.dumps(signing.public_jwk(key.public_key(), cfg.station.kid, cfg.station.path)))
    return h.root, jwk


@pytest.fixture
def homes(tmp_path):
    a, a_jwk = make_home(tmp_path / "a", "st-a")
    b, b_jwk = make_home(tmp_path / "b", "st-b")
    for cutoff, lot in ((0.7, "L1"), (0.66, "L2")):
        done = calib(a, "set", "--strip-type", "pesticide-generic", "--cutoff", str(cutoff), "--lot", lot,
                     "--reason", f"lot {lot}")
        assert done.returncode == 0, done.stderr
    return a, a_jwk, b, b_jwk


def test_export_verifies_like_a_result_and_imports_on_another_station(homes, tmp_path):
    a, a_jwk, b, _ = homes
    out = tmp_path / "cal.jws"
    assert calib(a, "export", "--out", str(out)).returncode == 0
    # What the town does: Ed25519 over the JWS with the station's JWK, then each id against its content.
    _, public = signing.load_jwk_file(a_jwk)
    payload = signing.verify_jws(out.read_bytes(), public, "nongan-calibration+json")
    assert payload["station"] == "changchun/nongan/halahai/st-a"
    assert [c["lot"] for c in payload["calibrations"]] == ["L1", "L2"]
    assert all(content_id({k: v for k, v in c.items() if k != "id"}) == c["id"] for c in payload["calibrations"])
    done = calib(b, "import", str(out), "--trust", str(a_jwk))
    assert done.returncode == 0 and "2 new" in done.stdout, done.stderr
    store = CalibrationStore(b)
    assert [c.id for c in store.history()] == [c["id"] for c in payload["calibrations"]]
    assert store.current("pesticide-generic").lot == "L2"
    store.close()
    again = calib(b, "import", str(out), "--trust", str(a_jwk))
    assert "0 new, 2 already here" in again.stdout


def test_import_refuses_a_wrong_key_and_an_edited_calibration(homes, tmp_path):
    a, a_jwk, b, b_jwk = homes
    out = tmp_path / "cal.jws"
    calib(a, "export", "--out", str(out))
    wrong = calib(b, "import", str(out))  # checked against st-b's own key by default
    assert wrong.returncode == 2 and "signature does not verify" in wrong.stderr
    # Re-signed by st-a's key after the cutoff was edited: the signature is good, the content hash is not.
    jws = json.loads(out.read_bytes())
    payload = json.loads(b64url_decode(jws["payload"]))
    payload["calibrations"][0]["cutoff"] = 0.9
    cfg = load_config(a)
    key = signing.load_private_key(signing_key_path(Home(a), cfg.station.key_file))
    forged = tmp_path / "forged.jws"
    forged.write_bytes(signing.sign_jws(payload, key, cfg.station.kid, "nongan-calibration+json"))
    edited = calib(b, "import", str(forged), "--trust", str(a_jwk))
    assert edited.returncode == 2 and "does not match its content" in edited.stderr
    assert json.loads(calib(b, "history", "--json").stdout) == []  # nothing accepted from a bad file
    garbage = tmp_path / "garbage.jws"
    garbage.write_text(json.dumps({"protected": b64url(b"{}"), "payload": "x", "signature": "y"}))
    assert calib(b, "import", str(garbage), "--trust", str(a_jwk)).returncode == 2


def test_a_store_written_before_content_ids_still_reads_and_applies(tmp_path):
    """Stores from `calib set` of earlier firmware: random ids and `note` instead of `reason`."""
    from station.decide.calibration import calibrated_catalog
    from station.striptypes import BUILTIN_STRIP_TYPES

    (tmp_path / "calib").mkdir()
    (tmp_path / "calib" / "calibration.json").write_text(json.dumps({"_default": {"1": {
        "id": "a1b2c3d4e5f6", "strip_type": "pesticide-generic", "cutoff": 0.71, "lot": "L0", "by": "li",
        "note": "first lot", "created_at": "2026-11-01T08:00:00Z"}}}))
    catalog, applied = calibrated_catalog(BUILTIN_STRIP_TYPES, tmp_path)
    assert catalog["pesticide-generic"].cutoff == 0.71
    cal = applied["pesticide-generic"]
    assert cal.id == "a1b2c3d4e5f6" and cal.reason == "first lot" and cal.lot == "L0" and cal.curve is None
    (tmp_path / "calib" / "calibration.json").write_text("{half")
    from station.errors import CalibrationError

    with pytest.raises(CalibrationError, match="damaged calibration file"):
        calibrated_catalog(BUILTIN_STRIP_TYPES, tmp_path)
