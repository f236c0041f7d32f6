# One sample, from a press to recorded results: what to photograph again, what to record, what to show.
from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from station import records, signing
from station.errors import ImageError

_job_ids = itertools.count(1)


@dataclass
class Job:
    """A press being served. Lives in the daemon loop only; workers get the fields they need."""

    origin: str  # "button" or "socket"
    sample_id: str | None = None
    strip_type_name: str | None = None
    replies: list[Callable[[dict], None]] = field(default_factory=list)
    attempt: int = 0
    id: int = field(default_factory=lambda: next(_job_ids))


def decode_jpeg(jpeg: bytes, source: str) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f"{source}: not a decodable image")
    return img


def needs_retake(score, attempt: int, retakes: int) -> bool:
    """Photograph again while attempts remain and the picture as a whole, or any cassette, asked for it."""
    if attempt >= retakes:
        return False
    return bool(score.error) or not score.strips or any(s.verdict == "retake" for s in score.strips)


def problems(score) -> str:
    """What kept the photograph, or some cassettes on it, from being read, in words the operator can act on."""
    parts = [p for p in (score.error, None if score.strips else score.reason) if p]
    parts += [f"slot {s.slot}: {s.reason or ', '.join(s.quality) or 'unreadable'}"
              for s in score.strips if s.verdict == "retake"]
    return "; ".join(parts)


def recordable(score) -> list:
    """Strips whose verdict is a finding about the sample; a retake is a request, never a result."""
    return [s for s in score.strips if s.verdict in records.RESULT_VERDICTS]


def indication(verdicts: list[str], had_problem: bool) -> str:
    """The panel state for a press: the most consequential verdict wins."""
    for v in ("positive", "invalid", "negative"):
        if v in verdicts:
            return "retake" if had_problem and v == "negative" else v
    return "retake"


def reading_of(strip) -> dict[str, Any]:
    """The record's `reading`: headline numbers plus every line of multi-line cards, keyed by name."""
    j = strip.to_json()
    reading = {k: j.get(k) for k in ("tc_ratio", "c_area", "t_area", "c_peak", "t_peak")}
    reading["snr"] = j.get("c_snr")
    reading["lines"] = {ln["name"]: {"peak": ln["peak"], "area": ln["area"], "snr": ln["snr"],
                                     "found": ln["found"], "tc_ratio": j["tc_ratios"].get(ln["name"]),
                                     "verdict": j["line_verdicts"].get(ln["name"])} for ln in j["lines"]}
    return reading


def message_factory(*, cfg, key, boot: dict, read_at: str, clock_synced: bool, sample: dict, strip,
                    strip_type, image_sha256: str | None, calibration_id: str | None = None
                    ) -> Callable[[int, str], bytes]:
    """The journal calls this inside its transaction, once seq and prev are fixed."""

    def make(seq: int, prev: str) -> bytes:
        payload = records.build_result_payload(
            seq=seq, prev=prev, station_path=cfg.station.path, station_id=cfg.station.id, boot=boot,
            read_at=read_at, clock_synced=clock_synced, sample=sample,
            strip={"type": strip_type.name, "analyte": strip_type.analyte, "lot": None, "slot": strip.slot},
            reading=reading_of(strip), verdict=strip.verdict, quality=list(strip.quality),
            calibration={"id": calibration_id, "cutoff": strip_type.cutoff},
            image_sha256=image_sha256, source="camera",
        )
        return signing.sign_jws(payload, key, cfg.station.kid, records.RESULT_TYP)

    return make


def summary(entry, strip) -> dict:
    """What `station press` shows for one recorded strip."""
    return {
        "seq": entry.seq, "id": entry.id, "slot": strip.slot, "verdict": strip.verdict,
        "tc_ratio": None if strip.tc_ratio is None else round(float(strip.tc_ratio), 4),
        "quality": list(strip.quality), "sample": entry.sample_id,
    }
