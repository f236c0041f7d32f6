# The pty twin of a virtual-COM scanner: a real pseudo-terminal behind a by-id style link that "scans" codes.
"""Threads: none of its own for a test's twin (scan() writes from the caller's thread). The registry's
`fake:FILE` scanner adds one `scanner-twin` thread that tails FILE and scans each new line, so
`echo S-001 >> FILE` stands in for a scan. Every fault the station must survive is a switch: unplug
and replug (a new pty behind the same link, as udev does), garbage bytes, a line cut short, CR-only or
LF-only endings, GB18030 instead of UTF-8. The station opens the link with pyserial as it opens a real
/dev/serial/by-id port."""
from __future__ import annotations

import os
import select
import threading
import tty
from pathlib import Path

from drivers.pty_twin import write_master

WRITE_DEADLINE_S = 2.0


class ScannerTwin:
    def __init__(self, link: str | Path, *, ending: bytes = b"\r\n", encoding: str = "utf-8"):
        self.link = Path(link)
        self.ending = ending  # b"\r" for the many scanners that send CR only
        self.encoding = encoding  # "gb18030" for models that send Chinese as GB bytes
        self.sent = 0
        self._lock = threading.Lock()
        self._master: int | None = None
        self._slave: int | None = None
        self.plug()

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def plug(self) -> None:
        """A fresh pty (a new /dev/pts/N, as a USB scanner gets a new ttyACMN) behind the same link."""
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo or line editing, as on a real CDC-ACM port
        os.set_blocking(master, False)
        with self._lock:
            self._master, self._slave = master, slave
        self.link.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(slave))
        os.replace(tmp, self.link)

    def unplug(self) -> None:
        """The link vanishes and the host's reads fail, as when the USB cable is pulled."""
        self.link.unlink(missing_ok=True)
        with self._lock:
            for fd in (self._master, self._slave):
                if fd is not None:
                    os.close(fd)
            self._master = self._slave = None

    def close(self) -> None:
        if self.plugged:
            self.unplug()

    def scan(self, code: str) -> bytes:
        """One code as the scanner sends it: the text, then its line ending. Lost if unplugged, as on a cable."""
        raw = code.encode(self.encoding) + self.ending
        self.send(raw)
        return raw

    def garbage(self, n: int = 64, *, nul: bool = False) -> bytes:
        junk = bytes(n) if nul else os.urandom(n)
        self.send(junk)
        return junk

    def send(self, data: bytes) -> None:
        with self._lock:
            master = self._master
            if master is None:
                return
            n = write_master(master, data, WRITE_DEADLINE_S)
            self.sent += n
            if n == len(data):
                self._drain(master)

    @staticmethod
    def _drain(master: int) -> None:
        # The host writes nothing to a scanner; whatever a terminal sent is read away so the pty never fills.
        try:
            while select.select([master], [], [], 0)[0] and os.read(master, 4096):
                pass
        except OSError:
            pass


class FakeScanner:
    """The registry's `fake:FILE` scanner: a twin whose codes are the lines appended to FILE, read by the
    real SerialScanner through the pty, so the whole serial path runs on a station without hardware."""

    def __init__(self, codes_file: str | Path):
        from drivers.scanner.serial import SerialScanner

        self.codes_file = Path(codes_file)
        self.twin = ScannerTwin(self.codes_file.with_name(self.codes_file.name + ".tty"))
        self.scanner = SerialScanner(str(self.twin.link))
        self.device = f"scanner fake:{codes_file}"
        self._offset = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tail, name="scanner-twin", daemon=True)

    def start(self, on_code, on_fault=None) -> None:
        # Only lines appended after the start are scans: old ones were scanned by an earlier run. Measured
        # here, not on the thread, so a line written right after start() is never taken for an old one.
        self._offset = self.codes_file.stat().st_size if self.codes_file.exists() else 0
        self.scanner.start(on_code, on_fault)
        self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self.scanner.close(timeout)
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.twin.close()

    def probe(self) -> None:
        self.scanner.probe()

    def status(self) -> dict:
        return {**self.scanner.status(), "device": self.device}

    def _tail(self) -> None:
        offset = self._offset
        while not self._stop.wait(0.1):
            try:
                with self.codes_file.open("rb") as f:
                    f.seek(offset)
                    data = f.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1
            offset += end
            for line in data[:end].splitlines():
                if line.strip():
                    self.twin.send(line.strip() + self.twin.ending)
