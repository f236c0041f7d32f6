# A scanner in keyboard-wedge mode, read through python-evdev and grabbed so its keys never reach a console.
"""Threads: one `scanner-hid` thread owns the input device. It grabs it exclusively (EVIOCGRAB: the
codes must not also be typed into a login prompt), decodes key events with keymap.KeyDecoder, calls
`on_code` for each Enter-terminated code and `on_fault` on each change of health; both must only post.
An unplugged scanner (ENODEV) is closed and looked for again, backing off to RETRY_MAX_S. evdev is
imported only here, when a hid scanner is configured. Keyboard mode cannot carry Chinese text: use the
serial (virtual-COM) mode for QR codes with Chinese in them."""
from __future__ import annotations

import errno
import logging
import os
import select
import threading

from drivers.errors import DeviceBusy, DeviceError, DeviceNotFound, Unsupported
from drivers.scanner.base import OnCode, OnFault
from drivers.scanner.keymap import EV_KEY, KeyDecoder

log = logging.getLogger("drivers.scanner")

RETRY_S, RETRY_MAX_S = 0.2, 2.0
POLL_S = 0.2  # select timeout: close() is noticed within this


def open_input(path: str):
    """An evdev InputDevice at path, grabbed exclusively; errors name the device and the fix."""
    device = f"scanner {path}"
    try:
        import evdev
    except ImportError:
        raise Unsupported(device, "python-evdev is not installed (pip install 'nongan-station[pi]'); "
                          "or set the scanner to virtual-COM mode and use serial:PORT") from None
    try:
        dev = evdev.InputDevice(path)
    except FileNotFoundError:
        raise DeviceNotFound(device, "no such input device (unplugged? see ls -l /dev/input/by-id)") from None
    except PermissionError:
        raise DeviceError(device, "permission denied: add the station user to the 'input' group") from None
    except OSError as exc:
        raise DeviceError(device, f"cannot open: {exc.strerror or exc}") from None
    try:
        dev.grab()
    except OSError as exc:
        dev.close()
        if exc.errno == errno.EBUSY:
            raise DeviceBusy(device, "grabbed by another program (a second station? a kiosk?)") from None
        raise DeviceError(device, f"cannot grab: {exc.strerror or exc}") from None
    return dev


class HidScanner:
    def __init__(self, path: str):
        self.path = path
        self.device = f"scanner {path}"
        self.connected = False
        self.fault: str | None = None
        self.codes = 0
        self.decoder = KeyDecoder()
        self._on_code: OnCode = lambda code: None
        self._on_fault: OnFault = lambda text: None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scanner-hid", daemon=True)

    def start(self, on_code: OnCode, on_fault: OnFault | None = None) -> None:
        self._on_code = on_code
        self._on_fault = on_fault or (lambda text: None)
        self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def probe(self) -> None:
        dev = open_input(self.path)
        dev.ungrab()
        dev.close()

    def status(self) -> dict:
        return {"device": self.device, "connected": self.connected, "fault": self.fault, "codes": self.codes,
                "dropped": self.decoder.dropped, "unknown_keys": self.decoder.unknown}

    def _report(self, fault: str | None) -> None:
        if fault == self.fault:
            return
        self.fault = fault
        if fault:
            log.warning("%s", fault)
        self._on_fault(fault or f"{self.device}: connected")

    def _run(self) -> None:
        wait = RETRY_S
        while not self._stop.is_set():
            try:
                dev = open_input(self.path)
            except DeviceError as exc:
                self._report(str(exc))
                self._stop.wait(wait)
                wait = min(wait * 2, RETRY_MAX_S)
                continue
            wait = RETRY_S
            self.connected = True
            self._report(None)
            why = self._read(dev)
            self.connected = False
            try:
                dev.close()  # closing the fd also ends the grab
            except OSError:
                pass
            if not self._stop.is_set():
                self._report(f"{self.device}: {why}; reconnecting")

    def _read(self, dev) -> str:
        try:
            while not self._stop.is_set():
                if not select.select([dev.fd], [], [], POLL_S)[0]:
                    continue
                try:
                    events = list(dev.read())
                except BlockingIOError:
                    continue
                for ev in events:
                    if ev.type == EV_KEY and (code := self.decoder.feed(ev.code, ev.value)) is not None:
                        self.codes += 1
                        self._on_code(code)
        except OSError as exc:  # ENODEV: unplugged
            return f"disconnected: {exc.strerror or exc}"
        except Exception as exc:  # noqa: BLE001 - whatever the device did, close, wait, reconnect
            return f"disconnected: {exc}"
        return "stopped"


def listed(by_id: str = "/dev/input/by-id") -> list[str]:
    """Keyboard-like input devices by stable name: where a wedge scanner shows up."""
    try:
        return sorted(os.path.join(by_id, n) for n in os.listdir(by_id) if n.endswith("-event-kbd"))
    except OSError:
        return []
