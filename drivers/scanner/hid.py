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

from drivers.errors import DeviceBusy, DeviceError, DeviceNotFound, Unsupported
from drivers.scanner.base import ScannerThread
from drivers.scanner.keymap import EV_KEY, KeyDecoder

log = logging.getLogger("drivers.scanner")

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


class HidScanner(ScannerThread):
    def __init__(self, path: str):
        super().__init__(f"scanner {path}", "scanner-hid")
        self.path = path
        self.decoder = KeyDecoder()

    def probe(self) -> None:
        dev = open_input(self.path)
        dev.ungrab()
        dev.close()

    def status(self) -> dict:
        return {**super().status(), "dropped": self.decoder.dropped, "unknown_keys": self.decoder.unknown}

    def _open(self):
        return open_input(self.path)

    def _close(self, dev) -> None:
        try:
            dev.close()  # closing the fd also ends the grab
        except OSError:
            pass

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
                        self._code(code)
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
