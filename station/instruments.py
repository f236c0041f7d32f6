# The loop's side of serial instruments: one reader thread each; commit what they hear, keep faults, count.
"""Threads: each instrument's `reader-<name>` thread (drivers/reader/reader.py) only posts
`Instrument(name, heard)` events; everything here runs on the loop, except last_record(), which
reader threads call to read the journal through InstrumentLog's own connection (a read, no state)."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from station.acquire import instrument_record
from station.errors import DuplicateRecord, StationError
from station.events import Instrument
from station.host import clock
from station.journal.batch import append_batch
from station.journal.instruments import InstrumentLog, instrument_key
from station.protocol.wire import now_rfc3339
from station.record import instrument_item

log = logging.getLogger("station.app")

ALWAYS_KEPT = ("incomplete", "unreadable", "device")  # each one may be a lost result: keep every one
CORRUPT_KEPT_PER_MIN = 60  # a noisy line would otherwise fill the disk with evidence of nothing
MAX_BATCH = 64  # readings committed in one transaction when they arrive faster than one fsync each


@dataclass
class InstrumentState:
    name: str
    dialect: str
    port: str
    connected: bool = False
    since: str | None = None
    detail: str = "not opened yet"
    identity: dict | None = None
    last_record: dict | None = None
    records: int = 0
    duplicates: int = 0
    corrupt: int = 0
    incomplete: int = 0  # incomplete or unreadable reports: never results, kept as reader-fault evidence
    device_errors: int = 0
    garbage_bytes: int = 0
    not_recorded: int = 0
    _kept: list = field(default_factory=list, repr=False)  # times corrupt evidence was kept, for the rate limit

    def public(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


class Instruments:
    def __init__(self, cfg, journal_path, recorder, post: Callable[[Instrument], None],
                 show: Callable[[str], None]):
        self.cfg, self.recorder, self._post, self._show = cfg, recorder, post, show
        self.log = InstrumentLog(journal_path)
        self.state: dict[str, InstrumentState] = {}
        self._serial: dict[str, str | None] = {}
        self.readers: list = []
        self._pending: list[tuple] = []  # (reader config, state, reading, batch item) awaiting flush()

    def start(self) -> None:
        from drivers import registry

        for rc in self.cfg.readers:
            st = self.state[rc.name] = InstrumentState(rc.name, rc.dialect, rc.port)
            last = self.log.last_for(rc.name)
            if last:
                st.last_record = {"record": last[0], "seq": last[1]}
            # Until this run hears an identity, records are keyed to the unit last stored from this port.
            self._serial[rc.name] = last[2] if last else None
            reader = registry.open_device("reader", rc.dialect, rc, lambda h, n=rc.name: self._post(Instrument(n, h)),
                                          lambda serial, n=rc.name: self.last_record(n, serial))
            reader.start()
            self.readers.append(reader)
            log.info("instrument %s: %s on %s @ %d baud", rc.name, rc.dialect, rc.port, rc.baud)

    def last_record(self, name: str, serial: str | None) -> int | None:
        """Reader threads: the newest record stored from this instrument, from the journal (survives SIGKILL)."""
        try:
            return self.log.last_record(instrument_key(name, serial or self._serial.get(name)))
        except Exception:  # noqa: BLE001 - a busy journal means "replay everything": duplicates are ignored
            return None

    def close(self) -> None:
        for r in self.readers:
            r.close()
        self.flush()
        self.log.close()

    def status(self) -> list[dict]:
        return [s.public() for s in self.state.values()]

    # ---- on the loop ----------------------------------------------------------------------------
    def handle(self, ev: Instrument) -> None:
        from drivers.reader.base import Fault, Identity, Link, Reading

        st, h = self.state[ev.name], ev.heard
        rc = next(r for r in self.cfg.readers if r.name == ev.name)
        match h:
            case Reading():
                self._reading(rc, st, h)
            case Fault():
                self._fault(st, h)
            case Identity():
                st.identity = {"model": h.model, "serial": h.serial, "firmware": h.firmware}
                self._serial[rc.name] = h.serial
                log.info("instrument %s: %s serial %s firmware %s", rc.name, h.model, h.serial, h.firmware)
            case Link():
                st.connected, st.detail = h.connected, h.detail
                st.since = now_rfc3339()
                if h.connected:
                    st.identity = None  # asked again on every connection: a replugged port may hold another unit
                (log.info if h.connected else log.warning)("instrument %s: %s %s", rc.name,
                                                           "connected" if h.connected else "not connected", h.detail)

    def _reading(self, rc, st: InstrumentState, reading) -> None:
        serial = self._serial.get(rc.name) if rc.dialect != "enzyme-print" else None
        try:
            parts = instrument_record(rc, serial, reading, self.cfg.strip_types)
            item = instrument_item(self.recorder, parts, instrument_key(rc.name, serial), reading.record,
                                   reading.stamp, synced=clock.clock_synced())
        except StationError as exc:
            self._not_recorded(rc, st, reading, exc)
            return
        self._pending.append((rc, st, reading, item))
        if len(self._pending) >= MAX_BATCH:
            self.flush()

    def flush(self) -> None:
        """Commit the pending readings in one transaction. The loop calls this whenever its queue is empty
        (so a lone reading commits at once) and the batch is bounded, so a burst never waits long."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            outcomes = append_batch(self.recorder.journal, [b[3] for b in batch])
        except StationError as exc:
            for rc, st, reading, _ in batch:
                self._not_recorded(rc, st, reading, exc)
            return
        for (rc, st, reading, _), got in zip(batch, outcomes, strict=True):
            if isinstance(got, DuplicateRecord):
                st.duplicates += 1
                log.info("instrument %s record %d: already stored, ignored", rc.name, reading.record)
            elif isinstance(got, StationError):
                self._not_recorded(rc, st, reading, got)
            else:
                st.records += 1
                st.last_record = {"record": reading.record, "seq": got.seq}
                log.info("result %s: instrument %s record %d %s", got.id, rc.name, reading.record, reading.verdict)
                self._show(reading.verdict)  # after the commit, as for camera results
        self.recorder.notify()

    def _not_recorded(self, rc, st: InstrumentState, reading, exc: Exception) -> None:
        st.not_recorded += 1
        log.error("instrument %s record %d: NOT recorded: %s", rc.name, reading.record, exc)
        self._keep(st, "not-recorded", str(exc), reading.raw)

    def _fault(self, st: InstrumentState, f) -> None:
        if f.kind == "garbage":
            st.garbage_bytes += f.size
            return
        if f.kind == "corrupt":
            st.corrupt += f.count
            if not f.raw:
                return  # a count of more corrupt units in one noisy read: nothing to keep
            now = time.monotonic()
            st._kept = [t for t in st._kept if now - t < 60]
            if len(st._kept) >= CORRUPT_KEPT_PER_MIN:
                return
            st._kept.append(now)
        elif f.kind == "device":
            st.device_errors += 1
        else:
            st.incomplete += 1
        if f.kind in ALWAYS_KEPT:
            log.warning("instrument %s: reader fault (%s): %s; %d bytes kept as evidence, not a result", st.name,
                        f.kind, f.message, len(f.raw))
        self._keep(st, f.kind, f.message, f.raw)

    def _keep(self, st: InstrumentState, kind: str, message: str, raw: bytes) -> None:
        try:
            self.log.add_fault(st.name, kind, message, raw)
        except StationError as exc:
            log.error("instrument %s: %s", st.name, exc)
