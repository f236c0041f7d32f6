# Result records: built payloads match the shipped JSON Schema, and the runtime validator agrees with jsonschema.
from __future__ import annotations

import copy
import hashlib
import json
import math

import jsonschema
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from station.errors import RecordError
from station.protocol import result as records
from station.protocol.result import GENESIS_PREV, build_result_payload, validate_payload
from station.protocol.signing import sign_jws, verify_jws
from station.protocol.wire import message_hash


def make_payload(**over) -> dict:
    args = dict(
        seq=1, prev=GENESIS_PREV, station_path="d01/t02/v03/st-0001", station_id="st-0001",
        boot={"counter": 3, "monotonic_s": 1234.5}, read_at="2026-11-24T02:41:21.123Z", clock_synced=True,
        sample={"id": "S-2026-0001", "producer": "farm-17", "crop": "spinach"},
        strip={"type": "pesticide-generic", "analyte": "imidacloprid", "lot": "L2311", "slot": 0},
        reading={"tc_ratio": 0.82, "c_area": 12.5, "t_area": 10.25, "c_peak": 0.31, "t_peak": 0.25, "snr": 40.0},
        verdict="negative", quality=["ok"], calibration={"id": "cal-7", "cutoff": 0.6},
        image_sha256="ab" * 32, source="camera",
    )
    args.update(over)
    return build_result_payload(**args)


def schema_validator() -> jsonschema.Draft202012Validator:
    schema = records.load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_built_payloads_validate_against_shipped_schema():
    v = schema_validator()
    samples = [
        make_payload(),
        make_payload(seq=2, prev="cd" * 32, verdict="positive", sample={"id": "x", "producer": None}),
        make_payload(seq=3, prev="ef" * 32, verdict="invalid", image_sha256=None, source="serial",
                     strip={"type": "vet-3in1", "analyte": "clenbuterol", "lot": None, "slot": 2},
                     reading={"tc_ratio": None, "c_area": None, "t_area": None, "c_peak": None, "t_peak": None,
                              "snr": None, "lines": {"T1": {"peak": 0.1, "found": True, "verdict": "negative"}}},
                     quality=["no_control_line", "glare"], calibration={"id": None, "cutoff": 0.5},
                     clock_synced=False),
    ]
    for p in samples:
        v.validate(p)
        assert p["v"] == 1 and p["firmware"]
        assert p["id"] == f"st-0001:{p['seq']}"


def test_numpy_numbers_become_plain_json_numbers():
    p = make_payload(reading={"tc_ratio": np.float32(0.5), "c_area": np.float64(2.0), "t_area": np.int64(3),
                              "c_peak": None, "t_peak": 0.1, "snr": np.float64(9.0)},
                     strip={"type": "p", "analyte": "a", "lot": None, "slot": np.int64(1)})
    text = json.dumps(p)  # raises on numpy scalars
    assert json.loads(text)["reading"]["tc_ratio"] == 0.5
    assert type(p["strip"]["slot"]) is int
    schema_validator().validate(p)


def test_retake_is_not_a_result():
    with pytest.raises(RecordError) as err:
        make_payload(verdict="retake")
    assert err.value.field == "$.verdict" and "retake" in str(err.value)


@pytest.mark.parametrize(
    "field, value",
    [
        ("seq", 0), ("seq", "1"), ("seq", True), ("prev", "AB" * 32), ("prev", "ab" * 31),
        ("station_path", "d/t/st"), ("station_path", "d/t/v/s/x"), ("read_at", "2026-11-24 02:41:21"),
        ("read_at", "2026-11-24T02:41:21+08:00"), ("read_at", "2026-11-24T02:41:21Z\n"), ("clock_synced", 1),
        ("sample", {"producer": None}), ("sample", {"id": "", "producer": None}),
        ("strip", {"type": "t", "analyte": "a", "lot": None}),
        ("strip", {"type": "t", "analyte": "a", "lot": None, "slot": -1}),
        ("reading", {"tc_ratio": "0.5", "c_area": 1, "t_area": 1, "c_peak": 1, "t_peak": 1, "snr": 1}),
        ("reading", {"c_area": 1, "t_area": 1, "c_peak": 1, "t_peak": 1, "snr": 1}),
        ("quality", "ok"), ("quality", [""]), ("calibration", {"id": None}), ("image_sha256", "zz" * 32),
        ("source", "scanner"), ("boot", {"counter": 0, "monotonic_s": 1.0}),
    ],
)
def test_bad_fields_rejected_by_both_validators(field, value):
    good = make_payload()
    with pytest.raises(RecordError) as err:
        make_payload(**{field: value})
    assert err.value.field.startswith("$.")
    # Build the same broken payload by hand and confirm jsonschema also refuses it.
    key = {"station_path": "station", "read_at": "time", "clock_synced": "time"}.get(field, field)
    bad = copy.deepcopy(good)
    if field == "read_at":
        bad["time"]["read_at"] = value
    elif field == "clock_synced":
        bad["time"]["clock_synced"] = value
    else:
        bad[key] = value
    if field == "station_path":
        bad["id"] = f"{value.rsplit('/', 1)[1]}:1"
    if value == "2026-11-24T02:41:21Z\n":
        return  # Python's re lets '$' match before a final newline; ECMA-262 and our validator do not
    assert not schema_validator().is_valid(bad), (field, value)


def test_cross_field_rules():
    with pytest.raises(RecordError, match=r"\$\.prev"):
        make_payload(seq=2)  # seq 2 with the genesis prev
    with pytest.raises(RecordError, match=r"\$\.prev"):
        make_payload(seq=1, prev="ab" * 32)
    p = make_payload()
    p["id"] = "st-0002:1"
    with pytest.raises(RecordError, match=r"\$\.id"):
        validate_payload(p)
    p = make_payload()
    p["extra"] = 1
    with pytest.raises(RecordError, match=r"\$\.extra"):
        validate_payload(p)


@pytest.mark.parametrize("where", ["reading", "sample", "boot"])
def test_non_finite_numbers_rejected_anywhere(where):
    p = make_payload()
    key = {"reading": "snr", "sample": "weight_g", "boot": "monotonic_s"}[where]
    p[where][key] = math.nan
    with pytest.raises(RecordError, match="finite"):
        validate_payload(p)


def test_runtime_validator_agrees_with_jsonschema_on_mutations():
    """Replace every leaf with values of other types; both validators must give the same answer."""
    v = schema_validator()
    base = make_payload(seq=5, prev="12" * 32)
    pool = [None, True, 0, -1, 1.5, "x", "", [], {}, "a" * 200, 10**19]
    leaves: list[tuple] = []

    def walk(obj, path):
        if isinstance(obj, dict):
            for k, val in obj.items():
                leaves.append((*path, k))
                walk(val, (*path, k))

    walk(base, ())
    checked = disagreements = 0
    for path in leaves:
        if path in (("id",), ("seq",), ("station",), ("prev",)):
            continue  # tied together by cross-field rules that only the runtime validator knows
        for value in pool:
            p = copy.deepcopy(base)
            target = p
            for k in path[:-1]:
                target = target[k]
            target[path[-1]] = value
            try:
                validate_payload(p)
                ours = True
            except RecordError:
                ours = False
            checked += 1
            if ours != v.is_valid(p):
                disagreements += 1
                print("disagree", path, value, ours)
    assert checked > 300
    assert disagreements == 0


def test_signed_round_trip_and_message_hash():
    key = Ed25519PrivateKey.generate()
    p = make_payload()
    msg = sign_jws(p, key, "st-0001/1", records.RESULT_TYP)
    assert verify_jws(msg, key.public_key(), typ=records.RESULT_TYP) == p
    assert message_hash(msg) == hashlib.sha256(msg).hexdigest()
    assert message_hash(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert GENESIS_PREV == "0" * 64


def test_load_schema_returns_a_private_copy():
    s = records.load_schema()
    s["properties"]["verdict"]["enum"].append("retake")
    with pytest.raises(RecordError):
        make_payload(verdict="retake")
    assert records.load_schema()["properties"]["verdict"]["enum"] == list(records.RESULT_VERDICTS)
