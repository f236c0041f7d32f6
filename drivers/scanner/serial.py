# A scanner in USB virtual-COM mode: one code per line on a serial port, read by one thread that only posts.
"""Threads: one `scanner-serial` thread owns the port. It calls `on_code` for each code and `on_fault`
for each change of health (unplugged, back, noise dropped); both must only post. pyserial's own
ReaderThread exits on unplug; this one closes, waits for the path to come back (backing off to
RETRY_MAX_S) and reopens, so a replugged scanner works again without a restart."""
from __future__ import annotations

import logging
import os
import threading
import time

from drivers.errors import DeviceError
from drivers.reader.port import open_port
from drivers.scanner.base import LineFramer, OnCode, OnFault

log = logging.getLogger("drivers.scanner")

RETRY_S, RETRY_MAX_S = 0.2, 2.0  # a missing port is looked for again, backing off: replug is seen within 2 s
NOISE_TOLD_S = 5.0  # dropped lines are told at most this often: a noisy cable must not flood the log
PATH_CHECK_S = 0.3  # a vanished by-id link means unplugged even while the tty still reads nothing
DEFAULT_BAUD = 9600  # CDC-ACM scanners ignore it; USB-serial bridges in scanners default to 9600


class SerialScanner:
    def __init__(self, port: str, baud: int = DEFAULT_BAUD):
        self.port, self.baud = port, baud
        self.device = f"scanner {port}"
        self.connected = False
        self.fault: str | None = None
        self.codes = 0
        self.framer = LineFramer()
        self._on_code: OnCode = lambda code: None
        self._on_fault: OnFault = lambda text: None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scanner-serial", daemon=True)

    def start(self, on_code: OnCode, on_fault: OnFault | None = None) -> None:
        self._on_code = on_code
        self._on_fault = on_fault or (lambda text: None)
        self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def probe(self) -> None:
        open_port(self.port, self.baud).close()

    def status(self) -> dict:
        return {"device": self.device, "connected": self.connected, "fault": self.fault, "codes": self.codes,
                "dropped": self.framer.dropped}

    def _report(self, fault: str | None) -> None:
        if fault == self.fault:
            return  # say it once, not five times a second
        self.fault = fault
        if fault:
            log.warning("%s", fault)
        self._on_fault(fault or f"{self.device}: connected")

    def _run(self) -> None:
        wait = RETRY_S
        while not self._stop.is_set():
            try:
                ser = open_port(self.port, self.baud)
            except DeviceError as exc:
                self._report(f"{self.device}: {exc.message}")
                self._stop.wait(wait)
                wait = min(wait * 2, RETRY_MAX_S)
                continue
            wait = RETRY_S
            self.connected = True
            self._report(None)
            why = self._read(ser)
            self.connected = False
            self.framer.reset()
            try:
                ser.close()
            except Exception:  # noqa: BLE001 - a port that vanished may fail to close; it is gone either way
                pass
            if not self._stop.is_set():
                self._report(f"{self.device}: {why}; reconnecting")

    def _read(self, ser) -> str:
        next_check = told = 0.0
        dropped = self.framer.dropped
        try:
            while not self._stop.is_set():
                data = ser.read(max(1, min(ser.in_waiting, 4096)))
                for code in self.framer.feed(data) if data else ():
                    self.codes += 1
                    self._on_code(code)
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
