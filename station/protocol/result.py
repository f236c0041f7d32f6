# The result record (payload of the signed result message): build it and check it against its schema.
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from station import __version__
from station.errors import RecordError

RECORD_VERSION = 1
GENESIS_PREV = "0" * 64
RESULT_TYP = "nongan-result+json"
# A retake is shown to the operator and never recorded: it is a request to photograph again, not a
# finding about the sample. Only these verdicts are journaled and published. "suspect" comes only from an
# instrument that says so (an enzyme tester's 可疑): re-test needed; never a default for a missing verdict.
RESULT_VERDICTS = ("negative", "positive", "invalid", "suspect")
SOURCES = ("camera", "serial")


@cache
def _schema_text() -> str:
    return resources.files("station.protocol").joinpath("schema/result.schema.json").read_text(encoding="utf-8")


def load_schema() -> dict:
    """The packaged JSON Schema (a fresh copy, so callers may not alter the one validation uses)."""
    return json.loads(_schema_text())


@cache
def _schema() -> dict:
    return json.loads(_schema_text())


def build_result_payload(
    *,
    seq: int,
    prev: str,
    station_path: str,
    station_id: str,
    boot: Mapping[str, Any],
    read_at: str,
    clock_synced: bool,
    sample: Mapping[str, Any],
    strip: Mapping[str, Any],
    reading: Mapping[str, Any],
    verdict: str,
    quality: list[str] | tuple[str, ...],
    calibration: Mapping[str, Any],
    image_sha256: str | None,
    source: str,
    estimate: Mapping[str, Any] | None = None,
    instrument: Mapping[str, Any] | None = None,
    task: str | None = None,
    kind: str | None = None,
    qc: Mapping[str, Any] | None = None,
    retest: Mapping[str, Any] | None = None,
) -> dict:
    """A validated v1 record. Mappings are copied, so later changes by the caller do not leak in.

    `estimate` is the semi-quantitative reading of a strip type calibrated with a fitted curve. It is an optional
    v1 field: records without it stay valid, so towns that predate it keep verifying.
    """
    payload = {
        "v": RECORD_VERSION,
        "id": f"{station_id}:{seq}",
        "station": station_path,
        "seq": seq,
        "prev": prev,
        "boot": {k: _plain(v) for k, v in boot.items()},
        "time": {"read_at": read_at, "clock_synced": clock_synced},
        "sample": _plain(sample),
        "strip": _plain(strip),
        "reading": _plain(reading),
        "verdict": verdict,
        "quality": _plain(quality),
        "calibration": _plain(calibration),
        "image_sha256": image_sha256,
        "source": source,
        "firmware": __version__,
    }
    if estimate is not None:
        payload["estimate"] = _plain(estimate)
    if instrument is not None:  # optional: serial-instrument results only; towns that ignore it keep working
        payload["instrument"] = _plain(instrument)
    if task is not None:  # optional: the plan task the result counts toward (station/orders.py)
        payload["task"] = task
    # Optional (issue 11): a daily control card (kind qc + qc) or a re-test of a positive (retest).
    for name, value in (("kind", kind), ("qc", qc), ("retest", retest)):
        if value is not None:
            payload[name] = _plain(value)
    validate_payload(payload)
    return payload


def _plain(value: Any) -> Any:
    """Copy into plain JSON types; numpy scalars (from the assay) become the Python numbers they hold."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if not isinstance(value, bool | int | float | str) and hasattr(value, "item") and hasattr(value, "dtype"):
        return value.item()
    return value


def validate_payload(payload: Any) -> None:
    """Raise RecordError naming the first bad field; checks the schema plus rules it cannot express."""
    _json_safe(payload, "$")
    _check(payload, _schema(), "$")
    station_id = payload["station"].rsplit("/", 1)[1]
    if payload["id"] != f"{station_id}:{payload['seq']}":
        raise RecordError("$.id", f"is {payload['id']!r}, expected {station_id}:{payload['seq']}")
    if (payload["seq"] == 1) != (payload["prev"] == GENESIS_PREV):
        raise RecordError("$.prev", "must be 64 zeros exactly when seq is 1")
    if "instrument" in payload and payload["source"] != "serial":
        raise RecordError("$.instrument", "only a serial-instrument result (source serial) carries it")
    _check_qc_retest(payload, station_id)


RETEST_ROUND_STATUS = {2: ("confirmed_positive", "disputed"), 3: ("resolved_positive", "resolved_negative")}
RETEST_VERDICT = {"confirmed_positive": "positive", "resolved_positive": "positive", "disputed": "negative",
                  "resolved_negative": "negative"}


def _check_qc_retest(payload: dict, station_id: str) -> None:
    """The rules between kind, qc, retest and the verdict that the schema cannot state."""
    is_qc = payload.get("kind") == "qc"
    if is_qc != ("qc" in payload):
        raise RecordError("$.qc", "a QC record (kind qc) carries qc, and only a QC record does")
    if is_qc:
        qc = payload["qc"]
        if "retest" in payload:
            raise RecordError("$.retest", "a QC record is no sample result and is never a re-test")
        if qc["passed"] != (payload["verdict"] == qc["control"]):
            raise RecordError("$.qc.passed", f"is {qc['passed']} but a {qc['control']} control read "
                              f"{payload['verdict']} (it passes exactly when it reads {qc['control']})")
        if qc["strip_type"] != payload["strip"]["type"] or qc["lot"] != payload["strip"]["lot"]:
            raise RecordError("$.qc", "strip_type and lot must be the record's strip type and lot")
    rt = payload.get("retest")
    if rt is not None:
        of_station, _, of_seq = rt["of"].rpartition(":")
        if of_station != station_id or int(of_seq) >= payload["seq"]:
            raise RecordError("$.retest.of", f"{rt['of']!r} must be an earlier result of this station")
        if rt["status"] not in RETEST_ROUND_STATUS[rt["round"]]:
            raise RecordError("$.retest.status", f"round {rt['round']} is one of "
                              f"{', '.join(RETEST_ROUND_STATUS[rt['round']])}, not {rt['status']}")
        if payload["verdict"] != RETEST_VERDICT[rt["status"]]:
            raise RecordError("$.retest.status", f"{rt['status']} needs verdict {RETEST_VERDICT[rt['status']]}, "
                              f"not {payload['verdict']}")


def _json_safe(value: Any, where: str) -> None:
    """Every value must survive canonical JSON unchanged, including fields the schema leaves open."""
    if isinstance(value, dict):
        for key, item in value.items():
            _json_safe(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _json_safe(item, f"{where}[{i}]")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise RecordError(where, f"{value!r} is not a finite number (JSON cannot carry it)")
    elif value is not None and not isinstance(value, str | int):
        raise RecordError(where, f"{type(value).__name__} is not a JSON value")


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
    "integer": (int,), "number": (int, float), "null": (type(None),),
}


def _is_type(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    if name == "integer":
        return isinstance(value, int)  # stricter than JSON Schema: 1.0 is not a sequence number
    return isinstance(value, _TYPES[name])


@cache
def _pattern(text: str) -> re.Pattern[str]:
    # ECMA-262 '$' (the JSON Schema dialect) does not match before a trailing newline; Python's does.
    return re.compile(text[:-1] + r"\Z" if text.endswith("$") else text)


def _check(value: Any, schema: Mapping[str, Any], where: str) -> None:
    """A validator for the JSON Schema keywords the record schema uses; tests pin it to jsonschema."""
    if "const" in schema and (value != schema["const"] or type(value) is not type(schema["const"])):
        raise RecordError(where, f"is {value!r}, must be {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise RecordError(where, f"is {value!r}, must be one of {', '.join(map(str, schema['enum']))}")
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, n) for n in names):
            raise RecordError(where, f"is {type(value).__name__} {value!r:.60}, must be {' or '.join(names)}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", math.inf):
            raise RecordError(where, f"length {len(value)} outside the allowed range")
        if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            raise RecordError(where, f"{value!r:.80} does not match {schema['pattern']}")
    if _is_type(value, "number"):
        if value < schema.get("minimum", -math.inf) or value > schema.get("maximum", math.inf):
            raise RecordError(where, f"{value} outside [{schema.get('minimum')}, {schema.get('maximum')}]")
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", math.inf):
            raise RecordError(where, f"has {len(value)} items, at most {schema['maxItems']} allowed")
        if "items" in schema:
            for i, item in enumerate(value):
                _check(item, schema["items"], f"{where}[{i}]")
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                raise RecordError(f"{where}.{key}", "is required")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if not isinstance(key, str):
                raise RecordError(where, f"key {key!r} is not a string")
            if key in props:
                _check(item, props[key], f"{where}.{key}")
            elif extra is False:
                raise RecordError(f"{where}.{key}", "is not a field of the v1 record")
            elif isinstance(extra, dict):
                _check(item, extra, f"{where}.{key}")
