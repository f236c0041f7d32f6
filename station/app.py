# The station daemon: wiring and THE loop; button, socket, worker and MQTT threads only post events to it.
from __future__ import annotations

import logging
import queue
import shutil
import signal
import time
from collections.abc import Callable

from station import photos
from station.acquire import acquire
from station.config import StationConfig
from station.decide.catalog import daemon_catalog
from station.errors import JournalDamagedError
from station.events import Event, Press, PublisherNote, Scored, StationState, StatusRequest, Stop
from station.home import Home, signing_key_path
from station.host import clock, sdnotify
from station.journal import Journal
from station.protocol import signing
from station.record import Recorder, bad_sample_id
from station.workflow.job import Workflow

log = logging.getLogger("station.app")

TICK_S = 1.0
STATUS_EVERY_S = 30.0
REPLY_TIMEOUT_S = 120.0  # beyond any incubation the strip type asks for


class Daemon:
    def __init__(self, cfg: StationConfig, home: Home, disk_usage: Callable = shutil.disk_usage):
        self.cfg, self.home = cfg, home
        self._disk_usage = disk_usage  # injectable so a nearly full disk can be tested without filling one
        self.events: queue.Queue[Event] = queue.Queue()
        self.boot = clock.boot_counter(home.state)
        self.key = signing.load_private_key(signing_key_path(home, cfg.station.key_file))
        self.journal = _open_journal(home)
        # Learned strip types (calib learn) over the config's, then calibrations: what `station score --home` uses.
        self.strip_types, self.calibration_ids = daemon_catalog(cfg.strip_types, home.root)
        self.disk = self._disk()
        self.camera = None
        self.panel = None
        self.publisher = None
        self.control = None
        self.workflow: Workflow | None = None
        self._last_status = 0.0

    @property
    def state(self) -> StationState:
        return self.workflow.state if self.workflow else StationState.STARTING

    # ---- start / stop -------------------------------------------------------------------------------
    def start(self) -> None:
        from drivers import registry
        from station.control import ControlServer

        self.camera = registry.open_device("camera", self.cfg.camera.driver, self.cfg.camera, self.cfg.resolve)
        # One panel driver today; gpio.pin_factory (or $GPIOZERO_PIN_FACTORY) chooses real pins or mock ones.
        self.panel = registry.open_device("panel", "gpiozero", self.cfg.gpio, lambda: self.post(Press("button")))
        recorder = Recorder(self.cfg, self.key, self.boot, self.journal, self.home.images, self.calibration_ids,
                            notify=lambda: self.publisher and self.publisher.notify())
        self.workflow = Workflow(
            strip_types=self.strip_types, default_type=self.cfg.assay.strip_type, retakes=self.cfg.assay.retakes,
            wait_incubation=self.cfg.assay.wait_incubation, camera=self.camera, panel=self.panel,
            acquire=lambda job: acquire(self.camera, job, self.workflow.strip_type(job.strip_type_name), self.post),
            record=lambda job, frame, strips: recorder.record(job, frame, strips,
                                                              self.workflow.strip_type(job.strip_type_name)),
            refusal=self._refusal, on_done=self._publish_status,
        )
        if self.cfg.broker.url:
            self.publisher = self._make_publisher()
            self.publisher.start()
        else:
            log.warning("broker.url is empty: running offline; results stay queued in the journal")
        self.control = ControlServer(self.home.control_socket, self._control_request)
        self.control.start()
        stats = self.journal.stats()
        log.info("station %s ready: boot %d, last seq %d, town acked %d, %d unacknowledged, disk %.1f%%",
                 self.cfg.station.path, self.boot, stats.last_seq, stats.acked_seq, stats.unacked,
                 self.disk.used_pct)
        self.workflow.ready()
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
        return Publisher(settings, self.key, on_event=lambda ev: self.post(PublisherNote(ev)),
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
    def post(self, ev: Event) -> None:
        self.events.put(ev)

    def run(self) -> None:
        """Foreground daemon: signals post a stop, so shutdown happens between events, never inside one."""
        signal.signal(signal.SIGTERM, lambda *_: self.post(Stop()))
        signal.signal(signal.SIGINT, lambda *_: self.post(Stop()))
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
            if isinstance(ev, Stop):
                log.info("stopping")
                return
            if ev is not None:
                self._dispatch(ev)
            # Timed work runs even under a steady stream of events, so the watchdog is never starved.
            if time.monotonic() - last_tick >= TICK_S:
                last_tick = time.monotonic()
                self._tick()

    def _dispatch(self, ev: Event) -> None:
        match ev:
            case Press():
                self.disk = self._disk()
                self.workflow.press(ev)
            case Scored():
                self.workflow.scored(ev)
            case PublisherNote():
                # The publisher logs its own events; the loop only refreshes the status the town sees.
                if getattr(ev.event, "kind", "") in ("connected", "acked", "quarantined"):
                    self._publish_status()
            case StatusRequest():
                ev.reply(self.status())

    def _tick(self) -> None:
        sdnotify.notify("WATCHDOG=1")
        now = time.monotonic()
        self.workflow.tick(now)
        if now - self._last_status >= STATUS_EVERY_S:
            self._last_status = now
            self.disk = self._disk()
            if self.disk.level != "ok":
                self._prune()
            self._publish_status()

    def _refusal(self) -> str | None:
        """Why no new sample may be taken now, in the words the operator and the log get; None if it may."""
        if self.disk.level != "full":
            return None
        return (f"disk {self.disk.used_pct:.1f}% full (limit {self.cfg.storage.refuse_pct}%): "
                "new samples refused until space is freed; no result has been lost")

    def _prune(self) -> None:
        """Free space by deleting photographs of town-acknowledged results only; journal rows are never evicted."""
        target = max(self.cfg.storage.warn_pct - 5, 5)
        done = photos.prune_images(self.journal, self.home.images, target_pct=target, usage=self._disk_usage)
        if done.deleted:
            log.warning("disk %.1f%%: pruned %d acknowledged photographs (%d bytes)", self.disk.used_pct,
                        done.deleted, done.freed_bytes)
            self.disk = self._disk()
        elif self.disk.level == "warn":
            log.warning("disk %.1f%% used (warning at %s%%); nothing prunable", self.disk.used_pct,
                        self.cfg.storage.warn_pct)

    # ---- helpers ------------------------------------------------------------------------------------
    def _disk(self) -> photos.DiskState:
        return photos.disk_state(self.home.root, self.cfg.storage.warn_pct, self.cfg.storage.refuse_pct,
                                 usage=self._disk_usage)

    def status(self) -> dict:
        stats = self.journal.stats()
        return {
            "station": self.cfg.station.path, "state": str(self.state), "boot": self.boot,
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
            problem = bad_sample_id(req.get("sample"))
            if problem:
                return {"ok": False, "error": problem}
            # The same event the button posts, carrying this request's sample, strip type and reply.
            self.post(Press("socket", req.get("sample"), req.get("strip_type"), answer.put))
            if not req.get("wait", True):
                return {"ok": True, "queued": True}
            timeout = REPLY_TIMEOUT_S + self.workflow.incubation_s(req.get("strip_type"))
            try:
                return answer.get(timeout=timeout)
            except queue.Empty:
                return {"ok": False, "error": f"no answer from the station loop within {timeout:.0f} s"}
        if cmd == "status":
            self.post(StatusRequest(answer.put))
            try:
                return {"ok": True, **answer.get(timeout=10)}
            except queue.Empty:
                return {"ok": False, "error": "the station loop is busy; try again"}
        return {"ok": False, "error": f"unknown command {cmd!r}; one of press, status"}


def _open_journal(home: Home) -> Journal:
    """A damaged journal stops the station: starting a fresh one would restart seq at 1 and hide the damage."""
    try:
        return Journal(home.journal)
    except JournalDamagedError as exc:
        raise JournalDamagedError(
            f"{exc}; the station will not start and leaves the file untouched. Technician: see "
            "docs/technician.md, 'Damaged journal'") from None
