# The station daemon: one loop owns all state; button, socket, worker and MQTT threads only post events to it.
from __future__ import annotations

import logging
import queue
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from calib.store import calibrated_catalog
from station import clock, sdnotify, signing, storage, workflow
from station.config import StationConfig
from station.errors import StationError
from station.home import Home, signing_key_path
from station.journal import Journal, JournalDamagedError

log = logging.getLogger("station.daemon")

TICK_S = 1.0
STATUS_EVERY_S = 30.0
REPLY_TIMEOUT_S = 120.0  # beyond any incubation the strip type asks for
SHOW_RESULT_S = 600.0  # how long a verdict stays lit before the panel returns to idle
MAX_SAMPLE_ID = 120  # the record allows 128; room for a "/slot" suffix


@dataclass
class Event:
    kind: str  # press | scored | publisher | status_request | stop
    data: Any = None


class Daemon:
    def __init__(self, cfg: StationConfig, home: Home, disk_usage: Callable = shutil.disk_usage):
        self.cfg, self.home = cfg, home
        self._disk_usage = disk_usage  # injectable so a nearly full disk can be tested without filling one
        self.events: queue.Queue[Event] = queue.Queue()
        self.job: workflow.Job | None = None
        self.state = "starting"
        self.boot = clock.boot_counter(home.state)
        self.key = signing.load_private_key(signing_key_path(home, cfg.station.key_file))
        self.journal = _open_journal(home)
        self.strip_types, self.calibration_ids = calibrated_catalog(cfg.strip_types, home.root)
        self.disk = self._disk()
        self.camera = None
        self.panel = None
        self.publisher = None
        self.control = None
        self._last_status = 0.0
        self._incubating: tuple[float, workflow.Job] | None = None  # (monotonic deadline, job)
        self._shown_at: float | None = None  # when the panel began showing the last verdict

    # ---- start / stop -------------------------------------------------------------------------------
    def start(self) -> None:
        from drivers.camera import open_camera
        from drivers.gpio import Panel
        from station.control import ControlServer

        self.camera = open_camera(self.cfg.camera, lambda p: self.cfg.resolve(p))
        self.panel = Panel(self.cfg.gpio, lambda: self.post("press", {"origin": "button"}))
        if self.cfg.broker.url:
            self.publisher = self._make_publisher()
            self.publisher.start()
        else:
            log.warning("broker.url is empty: running offline; results stay queued in the journal")
        self.control = ControlServer(self.home.control_socket, self._control_request)
        self.control.start()
        self.state = "idle"
        stats = self.journal.stats()
        log.info("station %s ready: boot %d, last seq %d, town acked %d, %d unacknowledged, disk %.1f%%",
                 self.cfg.station.path, self.boot, stats.last_seq, stats.acked_seq, stats.unacked,
                 self.disk.used_pct)
        self._indicate_ready()
        sdnotify.notify("READY=1", f"STATUS=idle, last seq {stats.last_seq}")

    def _make_publisher(self):
        from station.publisher import Publisher, PublisherSettings

        trust = self.cfg.resolve(self.cfg.town.trust_key)
        trusted = trust.is_file()
        if not trusted:
            # Without it no town ack is ever accepted: nothing counts as delivered and no photo becomes prunable.
            log.error("town.trust_key %s not found: town acknowledgements cannot be verified and will be ignored "
                      "(copy the town's JWK there)", trust)
        settings = PublisherSettings.from_config(self.cfg.broker, self.cfg.station, self.home.journal,
                                                 trust if trusted else None, base_dir=self.cfg.home, boot=self.boot)
        return Publisher(settings, self.key, on_event=lambda ev: self.post("publisher", ev),
                         clock_synced=clock.clock_synced)

    def stop(self) -> None:
        sdnotify.notify("STOPPING=1")
        if self.control:
            self.control.close()
        if self.publisher:
            self.publisher.stop(timeout=5)
        if self.panel:
            self.panel.close()
        if self.camera:
            self.camera.close()
        self.journal.close()

    # ---- events -------------------------------------------------------------------------------------
    def post(self, kind: str, data: Any = None) -> None:
        self.events.put(Event(kind, data))

    def run(self) -> None:
        """Foreground daemon: signals post a stop, so shutdown happens between events, never inside one."""
        signal.signal(signal.SIGTERM, lambda *_: self.post("stop"))
        signal.signal(signal.SIGINT, lambda *_: self.post("stop"))
        self.start()
        try:
            self.serve()
        finally:
            self.stop()

    def serve(self) -> None:
        last_tick = 0.0
        while True:
            try:
                ev = self.events.get(timeout=TICK_S)
            except queue.Empty:
                ev = None
            if ev is not None:
                if ev.kind == "stop":
                    log.info("stopping")
                    return
                self._dispatch(ev)
            # Timed work runs even under a steady stream of events, so the watchdog is never starved.
            if time.monotonic() - last_tick >= TICK_S:
                last_tick = time.monotonic()
                self._on_tick(None)

    def _dispatch(self, ev: Event) -> None:
        handler = getattr(self, f"_on_{ev.kind}")
        handler(ev.data)

    def _on_tick(self, _: Any) -> None:
        sdnotify.notify("WATCHDOG=1")
        now = time.monotonic()
        if self._incubating and now >= self._incubating[0]:
            job = self._incubating[1]
            self._incubating = None
            self._capture(job)
        if self._shown_at is not None and now - self._shown_at >= SHOW_RESULT_S and self.job is None:
            # A verdict left lit for hours would be read as the verdict of whatever lies on the tray now.
            self._shown_at = None
            self._indicate_ready()
        if now - self._last_status >= STATUS_EVERY_S:
            self._last_status = now
            self.disk = self._disk()
            if self.disk.level != "ok":
                self._prune()
            self._publish_status()

    def _on_press(self, data: dict) -> None:
        reply = data.get("reply")
        if self.job is not None:
            log.info("press from %s ignored: sample %d is being read", data["origin"], self.job.id)
            if reply:
                reply({"ok": False, "error": "busy: a sample is being read; press again when it is shown"})
            return
        self.disk = self._disk()
        if self.disk.level == "full":
            msg = (f"disk {self.disk.used_pct:.1f}% full (limit {self.cfg.storage.refuse_pct}%): "
                   "new samples refused until space is freed; no result has been lost")
            log.error(msg)
            self.panel.show("refused")
            if reply:
                reply({"ok": False, "error": msg})
            return
        job = workflow.Job(origin=data["origin"], sample_id=data.get("sample"),
                           strip_type_name=data.get("strip_type"))
        if reply:
            job.replies.append(reply)
        self.job = job
        self.camera.new_sample()
        self._set_state("working")
        wait_s = self._incubation_s(job.strip_type_name)
        if wait_s > 0:
            log.info("sample %d: incubating %d s", job.id, wait_s)
            # A deadline the loop checks, not a timer thread: a stop during incubation is not held up.
            self._incubating = (time.monotonic() + wait_s, job)
        else:
            self._capture(job)

    def _incubation_s(self, strip_type_name: str | None) -> float:
        if not self.cfg.assay.wait_incubation:
            return 0.0
        return float(self.strip_types[strip_type_name or self.cfg.assay.strip_type].incubation_s)

    def _capture(self, job: workflow.Job) -> None:
        strip_type = self._strip_type(job)

        def work() -> None:
            from station.assay import score_image

            try:
                frame = self.camera.capture()
                img = workflow.decode_jpeg(frame.jpeg, frame.source)
                score = score_image(img, strip_type)
            except StationError as exc:
                self.post("scored", (job, None, None, exc))
            except Exception as exc:  # noqa: BLE001 - a dead worker would leave the station busy for ever
                log.exception("sample %d: reading failed", job.id)
                self.post("scored", (job, None, None, StationError(f"reading the tray failed: {exc!r}")))
            else:
                self.post("scored", (job, frame, score, None))

        threading.Thread(target=work, name=f"sample-{job.id}", daemon=True).start()

    def _on_scored(self, data: tuple) -> None:
        job, frame, score, error = data
        if error is not None:
            log.error("sample %d: %s", job.id, error)
            self._finish(job, "refused", {"ok": False, "error": str(error)})
            return
        if workflow.needs_retake(score, job.attempt, self.cfg.assay.retakes):
            job.attempt += 1
            log.info("sample %d: photographing again (%s)", job.id, workflow.problems(score))
            self._capture(job)
            return
        strips = workflow.recordable(score)
        recorded, failure = self._record(job, frame, strips) if strips else ([], None)
        problems = "; ".join(p for p in (workflow.problems(score), failure) if p)
        state = workflow.indication([s.verdict for s in strips], bool(problems))
        reply = {"ok": bool(recorded), "results": recorded, "photo": frame.source}
        if problems:
            reply["retake"] = problems
        if not recorded:
            reply["error"] = f"nothing recorded: {problems or 'no cassette could be read'}"
        self._finish(job, state, reply)

    def _record(self, job: workflow.Job, frame, strips: list) -> tuple[list[dict], str | None]:
        """Data first: the photograph and every result are durable before anyone is shown or sent them.

        Returns what was recorded and, if a write failed part-way, why the rest was not: the reply says so
        rather than the loop dying with results half-shown.
        """
        strip_type = self._strip_type(job)
        out: list[dict] = []
        try:
            image_path, image_sha = storage.save_image(self.home.images, frame.jpeg)
        except StationError as exc:
            log.error("sample %d: photograph not saved, nothing recorded: %s", job.id, exc)
            return out, f"photograph not saved ({exc}); nothing recorded"
        read_at, synced = clock.now_rfc3339(), clock.clock_synced()
        boot = {"counter": self.boot, "monotonic_s": round(time.monotonic(), 3)}
        for strip in strips:
            qr = getattr(strip, "qr", None)
            sample_id = job.sample_id or (qr if qr and not _bad_sample_id(qr) else None) or f"b{self.boot}-j{job.id}"
            if len(strips) > 1 and job.sample_id:
                sample_id = f"{job.sample_id}/{strip.slot}"
            make = workflow.message_factory(
                cfg=self.cfg, key=self.key, boot=boot, read_at=read_at, clock_synced=synced,
                sample={"id": sample_id, "producer": None}, strip=strip, strip_type=strip_type,
                image_sha256=image_sha, calibration_id=self.calibration_ids.get(strip_type.name),
            )
            try:
                entry = self.journal.append(make, verdict=strip.verdict, sample_id=sample_id,
                                            image_path=str(image_path))
            except StationError as exc:
                log.error("sample %d slot %d: NOT recorded: %s", job.id, strip.slot, exc)
                return out, f"slot {strip.slot} and after NOT recorded: {exc}"
            log.info("result %s: sample %s slot %d %s T/C=%s", entry.id, sample_id, strip.slot, strip.verdict,
                     strip.tc_ratio)
            out.append(workflow.summary(entry, strip))
            if self.publisher:
                self.publisher.notify()
        return out, None

    def _finish(self, job: workflow.Job, state: str, reply: dict) -> None:
        self.job = None
        self.panel.show(state)
        self._shown_at = time.monotonic()
        self.state = "idle"
        for send in job.replies:
            send(reply)
        self._publish_status()

    def _prune(self) -> None:
        """Free space by deleting photographs of town-acknowledged results only; journal rows are never evicted."""
        target = max(self.cfg.storage.warn_pct - 5, 5)
        done = storage.prune_images(self.journal, self.home.images, target_pct=target, usage=self._disk_usage)
        if done.deleted:
            log.warning("disk %.1f%%: pruned %d acknowledged photographs (%d bytes)", self.disk.used_pct,
                        done.deleted, done.freed_bytes)
            self.disk = self._disk()
        elif self.disk.level == "warn":
            log.warning("disk %.1f%% used (warning at %s%%); nothing prunable", self.disk.used_pct,
                        self.cfg.storage.warn_pct)

    def _on_publisher(self, ev: Any) -> None:
        # The publisher logs its own events; the loop only refreshes the status the town sees.
        if getattr(ev, "kind", "") in ("connected", "acked", "quarantined"):
            self._publish_status()

    # ---- helpers ------------------------------------------------------------------------------------
    def _strip_type(self, job: workflow.Job):
        return self.strip_types[job.strip_type_name or self.cfg.assay.strip_type]

    def _disk(self) -> storage.DiskState:
        return storage.disk_state(self.home.root, self.cfg.storage.warn_pct, self.cfg.storage.refuse_pct,
                                  usage=self._disk_usage)

    def _set_state(self, state: str) -> None:
        self.state = state
        self.panel.show(state)

    def _indicate_ready(self) -> None:
        self.panel.show("refused" if self.disk.level == "full" else "idle")

    def status(self) -> dict:
        stats = self.journal.stats()
        return {
            "station": self.cfg.station.path, "state": self.state, "boot": self.boot,
            "last_seq": stats.last_seq, "acked_seq": stats.acked_seq, "outbox": stats.unacked,
            "quarantined": stats.quarantined, "disk_pct": self.disk.used_pct, "disk": self.disk.level,
            "clock_synced": clock.clock_synced(), "lights": self.panel.lights() if self.panel else {},
            "connected": bool(self.publisher and self.publisher.state.connected),
            "town_key": self.cfg.resolve(self.cfg.town.trust_key).is_file(),
        }

    def _publish_status(self) -> None:
        if self.publisher:
            st = self.status()
            self.publisher.update_status(state=st["state"], disk_pct=st["disk_pct"], disk_level=st["disk"],
                                         clock_synced=st["clock_synced"], boot=self.boot, town_key=st["town_key"])

    def _control_request(self, req: dict) -> dict:
        """Runs on a socket thread: post to the loop and wait for its answer."""
        cmd = req.get("cmd")
        answer: queue.Queue[dict] = queue.Queue(maxsize=1)
        if cmd == "press":
            if req.get("strip_type") and req["strip_type"] not in self.strip_types:
                return {"ok": False, "error": f"strip type {req['strip_type']!r} unknown; known: "
                        f"{', '.join(sorted(self.strip_types))}"}
            data = {"origin": "socket", "sample": req.get("sample"), "strip_type": req.get("strip_type"),
                    "reply": answer.put}
            problem = _bad_sample_id(req.get("sample"))
            if problem:
                return {"ok": False, "error": problem}
            # The same event the button posts, carrying this request's sample, strip type and reply.
            self.post("press", data)
            if not req.get("wait", True):
                return {"ok": True, "queued": True}
            timeout = REPLY_TIMEOUT_S + self._incubation_s(req.get("strip_type"))
            try:
                return answer.get(timeout=timeout)
            except queue.Empty:
                return {"ok": False, "error": f"no answer from the station loop within {timeout:.0f} s"}
        if cmd == "status":
            self.post("status_request", answer.put)
            try:
                return {"ok": True, **answer.get(timeout=10)}
            except queue.Empty:
                return {"ok": False, "error": "the station loop is busy; try again"}
        return {"ok": False, "error": f"unknown command {cmd!r}; one of press, status"}

    def _on_status_request(self, reply) -> None:
        reply(self.status())


def _open_journal(home: Home) -> Journal:
    """A damaged journal stops the station: starting a fresh one would restart seq at 1 and hide the damage."""
    try:
        return Journal(home.journal)
    except JournalDamagedError as exc:
        raise JournalDamagedError(
            f"{exc}; the station will not start and leaves the file untouched. Technician: see "
            "docs/technician.md, 'Damaged journal'") from None


def _bad_sample_id(value: object) -> str | None:
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
