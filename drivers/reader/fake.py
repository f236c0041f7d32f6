# The pty twin of an instrument: a real pseudo-terminal behind a by-id style link, speaking one dialect.
"""Threads: one `twin-<name>` thread reads what the host sends and answers as the dialect's Device
does. Every fault the station must survive is a method: noise, corrupt or cut sentences, silence,
unplug and replug (a new pty behind the same link, as udev does), and replaying captured bytes.
The station opens the link path with pyserial exactly as it opens a real /dev/serial/by-id port."""
from __future__ import annotations

import os
import select
import threading
import tty
from pathlib import Path

from drivers.pty_twin import write_master
from drivers.reader import dialects

WRITE_DEADLINE_S = 5.0


class Twin:
    def __init__(self, dialect: str, link: str | Path, *, power_on: bool = True, **device: object):
        self.dialect = dialect
        self.device = dialects.module(dialect).Device(**device)
        self.link = Path(link)
        self.silent = False  # a reader that never answers
        self.sent = 0  # bytes written to the host, for benchmarks and tests
        self._lock = threading.Lock()
        self._master: int | None = None
        self._slave: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.plug(power_on=power_on)

    # ---- the cable ------------------------------------------------------------------------------
    @property
    def plugged(self) -> bool:
        return self._master is not None

    @property
    def tty(self) -> str:
        return os.ttyname(self._slave) if self._slave is not None else ""

    def plug(self, power_on: bool = True) -> None:
        """A fresh pty (a new /dev/pts/N, as a USB adapter gets a new ttyUSBN) behind the same link."""
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo or line editing before the host opens it
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.link.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(slave))
        os.replace(tmp, self.link)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(master, self._stop), daemon=True,
                                        name=f"twin-{self.link.name}")
        self._thread.start()
        if power_on:
            self.send(self.device.hello())

    def unplug(self) -> None:
        """The link vanishes and the host's reads fail, as when the USB cable is pulled."""
        self.link.unlink(missing_ok=True)
        self._stop.set()
        with self._lock:
            for fd in (self._master, self._slave):
                if fd is not None:
                    os.close(fd)
            self._master = self._slave = None
        if self._thread:
            self._thread.join(1)

    def close(self) -> None:
        if self.plugged:
            self.unplug()

    # ---- what the instrument says ---------------------------------------------------------------
    def make(self, **fields: object) -> bytes:
        """The instrument makes a test. A pushing dialect sends it now (lost on the wire if unplugged,
        though gold-csv still keeps it in memory for a replay); frame-crc8 only stores it."""
        raw = self.device.make(**fields)
        if raw and self.plugged:
            self.send(raw)
        return raw

    def send(self, data: bytes) -> None:
        with self._lock:
            master = self._master
            if master is None or not data:
                return
            self.sent += write_master(master, data, WRITE_DEADLINE_S)

    def noise(self, n: int = 64, nul: bool = False) -> bytes:
        junk = bytes(n) if nul else os.urandom(n)
        self.send(junk)
        return junk

    def send_cut(self, raw: bytes, keep: int) -> None:
        """The first `keep` bytes of a sentence, frame or report, then nothing (power loss, cable moved)."""
        self.send(raw[:keep])

    @staticmethod
    def corrupted(raw: bytes) -> bytes:
        """The same unit with its checksum (gold-csv) or CRC (frame-crc8) wrong."""
        if raw.endswith(b"\r\n") and raw[-5:-4] == b"*":
            digit = raw[-3:-2]
            return raw[:-3] + (b"0" if digit != b"0" else b"1") + raw[-2:]
        return raw[:-2] + bytes([raw[-2] ^ 0x5A]) + raw[-1:]

    def replay(self, capture: bytes | str | Path, chunk: int = 64) -> None:
        """Send captured bytes (a file or bytes) as the instrument sent them, in small pieces."""
        data = capture if isinstance(capture, bytes) else Path(capture).read_bytes()
        for i in range(0, len(data), chunk):
            self.send(data[i:i + chunk])

    # ---- answering ------------------------------------------------------------------------------
    def _serve(self, master: int, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                ready, _, _ = select.select([master], [], [], 0.05)
                if not ready:
                    continue
                data = os.read(master, 4096)
            except (OSError, ValueError):
                return  # closed by unplug()
            if data and not self.silent:
                answer = self.device.answer(data)
                if answer:
                    self.send(answer)


class TwinReader:
    """The registry's `fake` reader: a twin of cfg.dialect behind cfg.port, read by the real SerialReader."""

    def __init__(self, cfg, post, last_record):
        from drivers.reader.reader import SerialReader

        self.twin = Twin(cfg.dialect, cfg.port)
        self.reader = SerialReader(cfg.name, dialects.get(cfg.dialect), cfg.port, cfg.baud, post, last_record)

    def start(self) -> None:
        self.reader.start()

    def close(self, timeout: float = 2.0) -> None:
        self.reader.close(timeout)
        self.twin.close()
