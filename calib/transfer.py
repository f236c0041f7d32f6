# Calibrations as a signed file (flattened JWS, the station key): for the town's records, or for another station.
from __future__ import annotations

from typing import Any

from station.decide.calibration import Calibration, check_id, from_doc
from station.errors import CalibrationError, SignatureError
from station.protocol import signing
from station.protocol.wire import now_rfc3339

CALIBRATION_TYP = "nongan-calibration+json"
EXPORT_VERSION = 1


def export_bytes(cals: list[Calibration], *, station: str, key, kid: str) -> bytes:
    """The town checks it like a result: Ed25519 over the JWS, the station's JWK, then each id against its content."""
    payload: dict[str, Any] = {"v": EXPORT_VERSION, "kind": "calibrations", "station": station,
                               "exported_at": now_rfc3339(), "calibrations": [{"id": c.id, **c.body()} for c in cals]}
    return signing.sign_jws(payload, key, kid, CALIBRATION_TYP)


def read_export(data: bytes, public_key, where: str) -> tuple[dict[str, Any], list[Calibration]]:
    """Verify the signature, then every calibration's content hash; nothing is accepted unless all pass."""
    try:
        payload = signing.verify_jws(data, public_key, CALIBRATION_TYP)
    except SignatureError as exc:
        raise CalibrationError(f"{where}: {exc}") from None
    if payload.get("v") != EXPORT_VERSION or payload.get("kind") != "calibrations" or \
            not isinstance(payload.get("calibrations"), list):
        raise CalibrationError(f"{where}: not a v{EXPORT_VERSION} calibration export")
    cals = []
    for i, doc in enumerate(payload["calibrations"]):
        if not isinstance(doc, dict):
            raise CalibrationError(f"{where}: calibrations[{i}] is not an object")
        cal = from_doc(doc, f"{where}: calibrations[{i}]")
        check_id(cal, f"{where}: calibrations[{i}]")
        cals.append(cal)
    return payload, cals
