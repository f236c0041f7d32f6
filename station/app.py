# The station daemon: wiring and THE loop; button, socket, worker and MQTT threads only post events to it.
from __future__ import annotations

import logging
import queue
import shutil
import signal
import time
from collections.abc import Callable

from station import diskguard, diskwait, photos
from station.acquire import acquire
from station.config import StationConfig
from station.decide.catalog import daemon_catalog
from station.errors import JournalDamagedError, JournalError, StationError, StorageError
from station.events import (
    Event,
    Instrument,
    Order,
    Press,
    PublisherNote,
    Scanned,
    Scored,
    StationState,
    StatusRequest,
    Stop,
)
from station.home import Home, signing_key_path
from station.host import clock, sdnotify, update_order
from station.journal import Journal, JournalStats
from station.orders import Orders
from station.protocol import signing
from station.record import Recorder
from station.workflow.daily import Daily
from station.workflow.job import Workflow

log = logging.getLogger("station.app")

TICK_S = 1.0
STATUS_EVERY_S = 30.0


class Daemon:
    def __init__(self, cfg: StationConfig, home: Home, disk_usage: Callable = shutil.disk_usage):
        self.cfg, self.home = cfg, home
        self._disk_usage = disk_usage  # injectable so a nearly full disk can be tested without filling one
        self.events: queue.Queue[Event] = queue.Queue()
        clock.clock_synced()  # starts the first timedatectl query off the loop
        self.reserve = diskguard.Reserve(home.root / "data" / diskguard.RESERVE_NAME,
                                         diskguard.reserve_size(disk_usage(home.root).total))
        self.disk = self._disk()
        self.boot, self.boot_saved = self._boot_counter()
        self.key = signing.load_private_key(signing_key_path(home, cfg.station.key_file))
        self.journal, self.journal_problem = self._try_open_journal()
        # Learned strip types (calib learn) over the config's, then calibrations: what `station score --home` uses.
        self.strip_types, self.calibrations = daemon_catalog(cfg.strip_types, home.root)
        self.orders = Orders(home.root)  # the town's plan and roster; changed only by the loop (Order events)
        # Lots, daily control cards, re-tests (issue 11); reads the lot file and the journal on the loop.
        self.daily = Daily(home.root, lambda: self.journal, self.calibrations, cfg.assay.strip_type,
                           clock.clock_synced)
        self.camera = None
        self.panel = None
        self.publisher = None
        self.control = None
        self.workflow: Workflow | None = None
        self.instruments = None  # station.instruments.Instruments when [[readers]] are configured
        self.scanner = None  # drivers.scanner: its thread opens the device, so a missing one never stops a start
        self.printing = None  # station.printing.Printing when a [printer] is configured
        self.updates = None  # station.host.update_order.UpdateOrders: town-ordered updates
        self._last_status = 0.0
        self._refused: str | None = None  # the refusal last shown, so a change is logged and lit once

    @property
    def state(self) -> StationState:
        return self.workflow.state if self.workflow else StationState.STARTING

    # ---- start / stop -------------------------------------------------------------------------------
    def start(self) -> bool:
        """Open devices, socket and publisher; False if told to stop while waiting for disk space."""
        from drivers import registry
        from station.control import ControlServer

        self.camera = registry.open_device("camera", self.cfg.camera.driver, self.cfg.camera, self.cfg.resolve)
        # One panel driver today; gpio.pin_factory (or $GPIOZERO_PIN_FACTORY) chooses real pins or mock ones.
        self.panel = registry.open_device("panel", "gpiozero", self.cfg.gpio, lambda: self.post(Press("button")))
        # The socket comes first so `station status` answers even while a full disk keeps the journal shut.
        self.control = ControlServer(self.home.control_socket, self._control_request)
        self.control.start()
        if self.journal is None and not diskwait.wait_for_journal(self):
            return False
        # READY (below) promises systemd and `station update` a working station: the journal was opened and
        # checked in __init__, and here every device that can be asked must answer (a DeviceError stops the start).
        for device in (self.camera, self.panel):
            if hasattr(device, "probe"):
                device.probe()
        recorder = Recorder(self.cfg, self.key, self.boot, self.journal, self.home.images, self.calibrations,
                            notify=self._committed, reserve=self.reserve, orders=self.orders, daily=self.daily)
        self.printing = self._start_printing()
        self.workflow = Workflow(
            strip_types=self.strip_types, default_type=self.cfg.assay.strip_type, retakes=self.cfg.assay.retakes,
            wait_incubation=self.cfg.assay.wait_incubation, camera=self.camera, panel=self.panel,
            acquire=lambda job: acquire(self.camera, job, self.workflow.strip_type(job.strip_type_name), self.post),
            record=lambda job, frame, strips: recorder.record(job, frame, strips,
                                                              self.workflow.strip_type(job.strip_type_name)),
            refusal=self.refusal, on_done=self._publish_status,
            # tray: slots with their own deadlines; scanned producer cards are told apart by [scanner] patterns.
            slots=self.cfg.tray.slots, incubation_s=self.cfg.tray.incubation_s,
            producer_patterns=tuple(self.cfg.scanner.producer_patterns),
        )
        if self.cfg.readers:
            from station.instruments import Instruments

            self.instruments = Instruments(self.cfg, self.home.journal, recorder, self.post, self._show_instrument)
            self.instruments.start()
        self.scanner = registry.open_device("scanner", self.cfg.scanner.driver, self.cfg.scanner.target)
        if self.scanner:
            self.scanner.start(lambda code: self.post(Scanned(code, self.scanner.device)),
                               lambda fault: log.warning("%s", fault))
        if self.cfg.broker.url:
            self.publisher = self._make_publisher()
            self.publisher.start()
        else:
            log.warning("broker.url is empty: running offline; results stay queued in the journal")
        self.updates = update_order.UpdateOrders(self.home.root / "update", _broker_host(self.cfg.broker.url))
        stats = self.journal.stats()
        log.info("station %s ready: boot %d, last seq %d, town acked %d, %d unacknowledged, disk %.1f%%",
                 self.cfg.station.path, self.boot, stats.last_seq, stats.acked_seq, stats.unacked,
                 self.disk.used_pct)
        self.workflow.ready()
        self._refused = self.refusal()
        if self._refused:
            log.error(self._refused)
        sdnotify.notify("READY=1", f"STATUS={self._refused or 'idle'}, last seq {stats.last_seq}")
        return True

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
        return Publisher(settings, self.key, on_event=lambda ev: self.post(ev.order or PublisherNote(ev)),
                         clock_synced=clock.clock_synced)

    def stop(self) -> None:
        sdnotify.notify("STOPPING=1")
        if self.updates:
            self.updates.close()
        if self.control:
            self.control.close()
        if self.publisher:
            self.publisher.stop(timeout=5)
        if self.instruments:
            self.instruments.close()
        if self.scanner:
            self.scanner.close()
        if self.printing:
            self.printing.close()
        if self.panel:
            self.panel.close()
        if self.camera:
            self.camera.close()
        if self.journal:
            self.journal.close()

    # ---- events -------------------------------------------------------------------------------------
    def post(self, ev: Event) -> None:
        self.events.put(ev)

    def run(self) -> None:
        """Foreground daemon: signals post a stop, so shutdown happens between events, never inside one."""
        signal.signal(signal.SIGTERM, lambda *_: self.post(Stop()))
        signal.signal(signal.SIGINT, lambda *_: self.post(Stop()))
        try:
            if self.start():
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
            case Order():
                self.orders.apply(ev)
                self._publish_status()
            case Scanned():
                self.workflow.scanned(ev)
            case PublisherNote():
                # The publisher logs its own events; the loop counts refused orders, refreshes the town's status.
                self.orders.note(ev.event)
                if getattr(ev.event, "kind", "") in ("connected", "acked", "quarantined"):
                    self._publish_status()
                elif getattr(ev.event, "kind", "") == "update":
                    self.updates.accept(ev.event.detail)
            case StatusRequest():
                ev.reply(self.status())
            case Instrument():
                self.instruments.handle(ev)
                if self.events.empty():
                    self.instruments.flush()  # a burst is committed as one transaction, a lone reading at once

    def _tick(self) -> None:
        sdnotify.notify("WATCHDOG=1")
        now = time.monotonic()
        self.workflow.tick(now)
        self.disk = self._disk()  # one statvfs: cheap enough every second, so space coming back is seen at once
        if not self.boot_saved:
            self._save_boot_counter()
        if self.disk.level == "ok":
            self.reserve.restore(self.disk.free_bytes)
        if self.instruments:
            self.instruments.flush()
        if self.updates:
            self.updates.tick(lambda: update_order.loop_busy(str(self.state), self.journal))
        if now - self._last_status >= STATUS_EVERY_S:
            self._last_status = now
            if self.disk.level != "ok":
                self._prune()
            self._publish_status()
        refused, was = self.refusal(), self._refused
        self._refused = refused
        if bool(refused) != bool(was):
            # The red blink and the log follow the disk both ways, once per change, without waiting for a press.
            if refused:
                log.error(refused)
            else:
                log.warning("samples accepted again (disk %.1f%% used)", self.disk.used_pct)
            self.workflow.refresh_panel()
            self._publish_status()

    def _show_instrument(self, verdict: str) -> None:
        """An instrument result lights the panel only while no camera sample is being served."""
        if self.panel and self.state == StationState.IDLE and self.panel.state != verdict:
            self.panel.show(verdict)

    def refusal(self, press: Press | None = None) -> str | None:
        """Why no new sample (or this press) may be taken now, in the words the operator and the log get."""
        if self.journal is None:
            return (f"disk {self.disk.used_pct:.1f}% full: the journal cannot be opened ({self.journal_problem}); "
                    "waiting for space to be freed; no result has been lost")
        if not self.boot_saved:
            return (f"disk {self.disk.used_pct:.1f}% full: the boot counter cannot be saved, so new samples are "
                    "refused until space is freed; no result has been lost")
        if self.camera is None:
            return "this station has no camera ([camera] driver = \"none\"): results come from its instruments"
        if self.disk.level != "full":
            # The lot's gate (workflow/daily.py): expired, today's control cards not passed, Westgard 1-3s from
            # `calib qc add`; read fresh on each press and tick, so `station lot set`/`station qc` need no restart.
            return self.daily.refusal(press.strip_type if press else None, press)
        return (f"disk {self.disk.used_pct:.1f}% full (limit {self.cfg.storage.refuse_pct}%): "
                "new samples refused until space is freed; no result has been lost")

    def _boot_counter(self) -> tuple[int, bool]:
        """This boot's counter and whether it is saved: a full disk must not stop start-up, only sampling."""
        counter = clock.next_boot_counter(self.home.state)
        try:
            diskguard.with_reserve(self.reserve, "saving the boot counter",
                                   lambda: clock.save_boot_counter(self.home.state, counter))
        except StorageError as exc:
            log.error("%s; samples are refused until it is saved", exc)
            return counter, False
        return counter, True

    def _save_boot_counter(self) -> None:
        try:
            clock.save_boot_counter(self.home.state, self.boot)
        except StorageError:
            return
        self.boot_saved = True
        log.warning("boot counter %d saved now that there is disk space", self.boot)

    def _try_open_journal(self) -> tuple[Journal | None, str | None]:
        """The journal, or (None, why) when the disk is too full even to open it; other trouble stops start-up."""
        try:
            return diskguard.with_reserve(self.reserve, "opening the journal", lambda: _open_journal(self.home)), None
        except JournalDamagedError:
            raise
        except JournalError as exc:
            self.disk = self._disk()
            if self.disk.level != "full":
                raise
            return None, str(exc)

    def _prune(self) -> None:
        """Free space by deleting photographs of town-acknowledged results only; journal rows are never evicted."""
        target = max(self.cfg.storage.warn_pct - 5, 5)
        try:
            done = photos.prune_images(self.journal, self.home.images, target_pct=target, usage=self._disk_usage)
        except StationError as exc:
            # A full disk can refuse even the prune's bookkeeping; the loop must outlive it and try again later.
            log.error("disk %.1f%%: pruning photographs failed: %s", self.disk.used_pct, exc)
            return
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
        stats = self.journal.stats() if self.journal else JournalStats(0, 0, 0, 0, 0, 0)
        return {
            "station": self.cfg.station.path, "state": str(self.state), "boot": self.boot,
            "last_seq": stats.last_seq, "acked_seq": stats.acked_seq, "outbox": stats.unacked,
            "quarantined": stats.quarantined, "disk_pct": self.disk.used_pct, "disk": self.disk.level,
            "clock_synced": clock.clock_synced(), "lights": self.panel.lights() if self.panel else {},
            "panel": getattr(self.panel, "state", None),
            "connected": bool(self.publisher and self.publisher.state.connected),
            "broker_error": self.publisher.state.last_error if self.publisher else "",
            "town_key": self.cfg.resolve(self.cfg.town.trust_key).is_file(),
            "refusing": self.refusal(), "disk_reserve": self.reserve.held,
            "instruments": self.instruments.status() if self.instruments else [],
            "orders": self.orders.status(),
            **(self.daily.status() if self.journal else {}),
            **(self.workflow.status(time.monotonic()) if self.workflow else {}),  # tray: slots, scanned
            "scanner": {**self.scanner.status(), "pending": self.workflow.scans.waiting() if self.workflow else {}}
            if self.scanner else None,
            "printer": self.printing.status() if self.printing else None,
        }

    def _publish_status(self) -> None:
        if self.publisher:
            st = self.status()
            self.publisher.update_status(state=st["state"], disk_pct=st["disk_pct"], disk_level=st["disk"],
                                         clock_synced=st["clock_synced"], boot=self.boot, town_key=st["town_key"],
                                         plan_version=st["orders"]["plan_version"],
                                         roster_version=st["orders"]["roster_version"])

    def _control_request(self, req: dict) -> dict:
        """Runs on a socket thread: station/requests.py checks the request, posts it and waits for the loop."""
        from station import requests

        return requests.handle(self, req)

    # ---- receipts: after each commit, the printer worker prints; it never holds up the loop -------------
    def _committed(self) -> None:
        """The Recorder calls this after every journal commit, camera and instrument results alike."""
        if self.publisher:
            self.publisher.notify()
        if self.printing:
            self.printing.committed()

    def _start_printing(self):
        from station.printing import start_printing  # python-escpos and Pillow only where a printer is configured

        return start_printing(self.cfg, self.home, self.journal.stats().last_seq) if self.cfg.printer.device else None


def _broker_host(url: str) -> str | None:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname if url else None


def _open_journal(home: Home) -> Journal:
    """A damaged journal stops the station: starting a fresh one would restart seq at 1 and hide the damage."""
    try:
        return Journal(home.journal)
    except JournalDamagedError as exc:
        raise JournalDamagedError(
            f"{exc}; the station will not start and leaves the file untouched. Technician: see "
            "docs/technician.md, 'Damaged journal'") from None
