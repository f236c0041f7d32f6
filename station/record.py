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


def sample_of(job, sample_id: str) -> dict[str, Any]:
    """The record's `sample`: a scanned producer card and the tray slot travel with the sample id."""
    sample: dict[str, Any] = {"id": sample_id, "producer": getattr(job, "producer", None)}
    if getattr(job, "slot", None) is not None:
        sample["slot"] = job.slot
    return sample


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
                    strip_type, image_sha256: str | None, calibration=None, task: str | None = None, mark=None
                    ) -> Callable[[int, str], bytes]:
    """The journal calls this inside its transaction, once seq and prev are fixed.

    `calibration` is the Calibration in force for the strip type (or None): the record cites its id and lot,
    and with a fitted curve carries the estimated concentration; the verdict is still the cutoff's.
    """
    lot = calibration.lot if calibration else None
    cal = record_calibration(calibration, strip_type.cutoff)
    if mark is not None and mark.lot is not None:  # the lot set with `station lot set` (workflow/daily.py)
        lot = cal["lot"] = mark.lot

    def make(seq: int, prev: str) -> bytes:
        payload = build_result_payload(
            seq=seq, prev=prev, station_path=cfg.station.path, station_id=cfg.station.id, boot=boot,
            read_at=read_at, clock_synced=clock_synced, sample=sample,
            strip={"type": strip_type.name, "analyte": strip_type.analyte, "lot": lot, "slot": strip.slot},
            reading=reading_of(strip), verdict=strip.verdict, quality=list(strip.quality),
            calibration=cal, image_sha256=image_sha256, source="camera", task=task,
            estimate=estimate(calibration, strip.tc_ratio), **(mark.fields if mark is not None else {}),
        )
        return signing.sign_jws(payload, key, cfg.station.kid, RESULT_TYP)

    return make


def summary(entry, strip, producer: str | None = None, tray_slot: int | None = None) -> dict:
    """What `station press` shows for one recorded strip: `slot` is the cassette's place in the photograph (from
    0, as in the record's strip.slot), `tray_slot` the tray position it was laid in (sample.slot), if any."""
    return {
        "seq": entry.seq, "id": entry.id, "slot": strip.slot, "tray_slot": tray_slot, "verdict": strip.verdict,
        "tc_ratio": None if strip.tc_ratio is None else round(float(strip.tc_ratio), 4),
        "quality": list(strip.quality), "sample": entry.sample_id, "producer": producer,
    }


class Recorder:
    """Commits a photograph's decided strips; the loop calls it before it shows, prints or sends anything."""

    def __init__(self, cfg, key, boot: int, journal: Journal, images: Path, calibrations: dict,
                 notify: Callable[[], None], reserve: Reserve | None = None, orders=None, daily=None):
        self.cfg, self.key, self.boot, self.journal = cfg, key, boot, journal
        self.daily = daily  # workflow/daily.Daily: lot, control cards, re-tests; None records plain results
        self.images, self.calibrations, self.notify = images, calibrations, notify
        self.reserve = reserve  # released if the disk fills between the press and the commit
        self.orders = orders  # station.orders.Orders: which plan task a result counts toward

    def record(self, job, frame, strips: list, strip_type) -> tuple[list[dict], str | None, bool]:
        """Data first: the photograph and every result are durable before anyone is shown or sent them.

        Returns (what was recorded, why not if nothing was, fault). All strips of one photograph go into
        the journal in one transaction: a crash or a full disk leaves the whole tray recorded or none of it,
        so re-testing a tray never duplicates half of it at the town. fault means storage failed: the
        operator cannot fix that by photographing again, so the panel says "call the technician".
        """
        problem = self.daily.check(job, strips) if self.daily else None
        if problem:
            return [], problem, False
        try:
            image_path, image_sha = with_reserve(self.reserve, "saving the photograph",
                                                 lambda: photos.save_image(self.images, frame.jpeg))
        except StationError as exc:
            log.error("sample %d: photograph not saved, nothing recorded: %s", job.id, exc)
            return [], f"photograph not saved ({exc}); nothing recorded", True
        read_at, synced = now_rfc3339(), clock.clock_synced()
        boot = {"counter": self.boot, "monotonic_s": round(time.monotonic(), 3)}
        pending, marks = [], []
        task, sample = self.task_of(job, strip_type.analyte)
        for strip in strips:
            sample_id = self.sample_id(job, strip, len(strips))
            mark = self.daily.mark(job, strip, sample_id, strip_type.name) if self.daily else None
            sample_id = mark.sample_id if mark else sample_id
            make = message_factory(
                cfg=self.cfg, key=self.key, boot=boot, read_at=read_at, clock_synced=synced,
                sample={**sample_of(job, sample_id), **sample}, strip=strip, strip_type=strip_type,
                image_sha256=image_sha, calibration=self.calibrations.get(strip_type.name), mark=mark,
                task=None if mark is not None and mark.fields.get("kind") == "qc" else task,
            )
            pending.append(Pending(make, strip.verdict, sample_id, str(image_path), mark.priority if mark else None))
            marks.append(mark.shown if mark else {})
        try:
            entries = with_reserve(self.reserve, "journaling the results", lambda: self.journal.append_many(pending))
        except StationError as exc:
            log.error("sample %d: NOT recorded (none of its %d cassettes): %s", job.id, len(strips), exc)
            return [], f"none of the {len(strips)} cassettes recorded: {exc}", True
        out = []
        for entry, strip, shown in zip(entries, strips, marks, strict=True):
            log.info("result %s: sample %s slot %d %s T/C=%s", entry.id, entry.sample_id, strip.slot, strip.verdict,
                     strip.tc_ratio)
            if shown.get("retest_required"):
                log.warning("result %s: sample %s must be re-tested (station press --retest-of %s)", entry.id,
                            entry.sample_id, shown.get("retest", {}).get("of", entry.id))
            shown_slot = getattr(job, "slot", None)
            out.append({**summary(entry, strip, getattr(job, "producer", None), shown_slot), "task": task, **shown})
        self.notify()
        return out, None, False

    def task_of(self, job, analyte: str) -> tuple[str | None, dict]:
        """(the plan task the results count toward or None, the sample's product field when one is known)."""
        named, product = getattr(job, "task", None), getattr(job, "product", None)
        task = self.orders.task_for(named, analyte, product) if self.orders else None
        product = product or (self.orders.product_of(task) if self.orders else None)
        return task, ({"product": product} if product else {})

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
