# Data first: the photograph, then each decided strip as a signed, chained v1 record; and the sample-id rules.
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from station import photos
from station.decide.calibration import estimate, record_calibration
from station.diskguard import Reserve, with_reserve
from station.errors import StationError
from station.host import clock
from station.journal import Journal, Pending
from station.protocol import signing
from station.protocol.result import RESULT_TYP, build_result_payload
from station.protocol.wire import now_rfc3339

log = logging.getLogger("station.app")

MAX_SAMPLE_ID = 120  # the record allows 128; room for a "/slot" suffix


def bad_sample_id(value: object) -> str | None:
    """Why a sample id (from the operator or a QR code) cannot go into a record, or None if it can."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        return "sample id must be non-empty text"
    if len(value) > MAX_SAMPLE_ID:
        return f"sample id is {len(value)} characters; at most {MAX_SAMPLE_ID}"
    if not value.isprintable():
        return "sample id must be printable text (no control characters)"
    return None


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
                    strip_type, image_sha256: str | None, calibration=None
                    ) -> Callable[[int, str], bytes]:
    """The journal calls this inside its transaction, once seq and prev are fixed.

    `calibration` is the Calibration in force for the strip type (or None): the record cites its id and lot,
    and with a fitted curve carries the estimated concentration; the verdict is still the cutoff's.
    """
    lot = calibration.lot if calibration else None

    def make(seq: int, prev: str) -> bytes:
        payload = build_result_payload(
            seq=seq, prev=prev, station_path=cfg.station.path, station_id=cfg.station.id, boot=boot,
            read_at=read_at, clock_synced=clock_synced, sample=sample,
            strip={"type": strip_type.name, "analyte": strip_type.analyte, "lot": lot, "slot": strip.slot},
            reading=reading_of(strip), verdict=strip.verdict, quality=list(strip.quality),
            calibration=record_calibration(calibration, strip_type.cutoff),
            image_sha256=image_sha256, source="camera", estimate=estimate(calibration, strip.tc_ratio),
        )
        return signing.sign_jws(payload, key, cfg.station.kid, RESULT_TYP)

    return make


def summary(entry, strip, producer: str | None = None) -> dict:
    """What `station press` shows for one recorded strip."""
    return {
        "seq": entry.seq, "id": entry.id, "slot": strip.slot, "verdict": strip.verdict,
        "tc_ratio": None if strip.tc_ratio is None else round(float(strip.tc_ratio), 4),
        "quality": list(strip.quality), "sample": entry.sample_id, "producer": producer,
    }


class Recorder:
    """Commits a photograph's decided strips; the loop calls it before it shows, prints or sends anything."""

    def __init__(self, cfg, key, boot: int, journal: Journal, images: Path, calibrations: dict,
                 notify: Callable[[], None], reserve: Reserve | None = None):
        self.cfg, self.key, self.boot, self.journal = cfg, key, boot, journal
        self.images, self.calibrations, self.notify = images, calibrations, notify
        self.reserve = reserve  # released if the disk fills between the press and the commit

    def record(self, job, frame, strips: list, strip_type) -> tuple[list[dict], str | None, bool]:
        """Data first: the photograph and every result are durable before anyone is shown or sent them.

        Returns (what was recorded, why not if nothing was, fault). All strips of one photograph go into
        the journal in one transaction: a crash or a full disk leaves the whole tray recorded or none of it,
        so re-testing a tray never duplicates half of it at the town. fault means storage failed: the
        operator cannot fix that by photographing again, so the panel says "call the technician".
        """
        try:
            image_path, image_sha = with_reserve(self.reserve, "saving the photograph",
                                                 lambda: photos.save_image(self.images, frame.jpeg))
        except StationError as exc:
            log.error("sample %d: photograph not saved, nothing recorded: %s", job.id, exc)
            return [], f"photograph not saved ({exc}); nothing recorded", True
        read_at, synced = now_rfc3339(), clock.clock_synced()
        boot = {"counter": self.boot, "monotonic_s": round(time.monotonic(), 3)}
        pending = []
        for strip in strips:
            sample_id = self.sample_id(job, strip, len(strips))
            make = message_factory(
                cfg=self.cfg, key=self.key, boot=boot, read_at=read_at, clock_synced=synced,
                sample={"id": sample_id, "producer": getattr(job, "producer", None)}, strip=strip,
                strip_type=strip_type,
                image_sha256=image_sha, calibration=self.calibrations.get(strip_type.name),
            )
            pending.append(Pending(make, strip.verdict, sample_id, str(image_path)))
        try:
            entries = with_reserve(self.reserve, "journaling the results", lambda: self.journal.append_many(pending))
        except StationError as exc:
            log.error("sample %d: NOT recorded (none of its %d cassettes): %s", job.id, len(strips), exc)
            return [], f"none of the {len(strips)} cassettes recorded: {exc}", True
        out = []
        for entry, strip in zip(entries, strips, strict=True):
            log.info("result %s: sample %s slot %d %s T/C=%s", entry.id, entry.sample_id, strip.slot, strip.verdict,
                     strip.tc_ratio)
            out.append(summary(entry, strip, getattr(job, "producer", None)))
        self.notify()
        return out, None, False

    def sample_id(self, job, strip, n_strips: int) -> str:
        """Operator's id (with /slot on a tray), else the cassette's own QR, else one generated per cassette."""
        if job.sample_id:
            return f"{job.sample_id}/{strip.slot}" if n_strips > 1 else job.sample_id
        qr = getattr(strip, "qr", None)
        if qr and not bad_sample_id(qr):
            return qr
        generated = f"b{self.boot}-j{job.id}"
        # Two cassettes of one tray are two samples: they must not share an id at the town.
        return f"{generated}/{strip.slot}" if n_strips > 1 else generated


def instrument_item(recorder: Recorder, parts: dict, key: str, record: int, stamp: str, *, synced: bool):
    """One instrument record as a journal batch item: the signed v1 message plus its duplicate key, which
    station/journal/batch.py writes in the same transaction. synced is clock_synced(), which answers from its
    cache, so a burst of records costs no timedatectl run each."""
    from station.journal.batch import Item
    from station.journal.instruments import claim

    read_at = now_rfc3339()
    boot = {"counter": recorder.boot, "monotonic_s": round(time.monotonic(), 3)}
    cfg = recorder.cfg

    def make(seq: int, prev: str) -> bytes:
        payload = build_result_payload(
            seq=seq, prev=prev, station_path=cfg.station.path, station_id=cfg.station.id, boot=boot,
            read_at=read_at, clock_synced=synced, sample=parts["sample"], strip=parts["strip"],
            reading=parts["reading"], verdict=parts["verdict"], quality=[], calibration=parts["calibration"],
            image_sha256=None, source="serial", instrument=parts["instrument"])
        return signing.sign_jws(payload, recorder.key, cfg.station.kid, RESULT_TYP)

    return Item(make, parts["verdict"], parts["sample"]["id"], claim(key, record, stamp))
