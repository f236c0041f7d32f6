# A scanner in USB virtual-COM mode: one code per line on a serial port, read by one thread that only posts.
"""Threads: one `scanner-serial` thread owns the port. It calls `on_code` for each code and `on_fault`
for each change of health (unplugged, back, noise dropped); both must only post. pyserial's own
ReaderThread exits on unplug; this one closes, waits for the path to come back (backing off to
RETRY_MAX_S) and reopens, so a replugged scanner works again without a restart."""
from __future__ import annotations

import logging
import os
import time

from drivers.errors import DeviceError
from drivers.reader.port import open_port
from drivers.scanner.base import LineFramer, ScannerThread

log = logging.getLogger("drivers.scanner")

NOISE_TOLD_S = 5.0  # dropped lines are told at most this often: a noisy cable must not flood the log
PATH_CHECK_S = 0.3  # a vanished by-id link means unplugged even while the tty still reads nothing
DEFAULT_BAUD = 9600  # CDC-ACM scanners ignore it; USB-serial bridges in scanners default to 9600


class SerialScanner(ScannerThread):
    def __init__(self, port: str, baud: int = DEFAULT_BAUD):
        super().__init__(f"scanner {port}", "scanner-serial")
        self.port, self.baud = port, baud
        self.framer = LineFramer()

    def probe(self) -> None:
        open_port(self.port, self.baud).close()

    def status(self) -> dict:
        return {**super().status(), "dropped": self.framer.dropped}

    def _open(self):
        try:
            return open_port(self.port, self.baud)
        except DeviceError as exc:
            raise DeviceError(self.device, exc.message) from None

    def _close(self, ser) -> None:
        self.framer.reset()
        try:
            ser.close()
        except Exception:  # noqa: BLE001 - a port that vanished may fail to close; it is gone either way
            pass

    def _read(self, ser) -> str:
        next_check = told = 0.0
        dropped = self.framer.dropped
        try:
            while not self._stop.is_set():
                data = ser.read(max(1, min(ser.in_waiting, 4096)))
                for code in self.framer.feed(data) if data else ():
                    self._code(code)
                now = time.monotonic()
                if self.framer.dropped != dropped and now - told >= NOISE_TOLD_S:
                    # Noise is told, not fatal: the next good line is read as usual.
                    self._on_fault(f"{self.device}: {self.framer.dropped - dropped} unreadable line(s) dropped")
                    dropped, told = self.framer.dropped, now
                if now >= next_check:
                    next_check = now + PATH_CHECK_S
                    if "://" not in self.port and not os.path.exists(self.port):
                        raise OSError("port path vanished (unplugged)")
        except Exception as exc:  # noqa: BLE001 - any port failure means: close, wait, reconnect
            return f"disconnected: {exc}"
        return "stopped"
