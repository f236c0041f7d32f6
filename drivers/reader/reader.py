# The serial reader thread: opens the port, runs a dialect session, reconnects itself, and only posts.
"""Threads: one `reader-<name>` thread per instrument. It owns the port and the dialect session and
never touches station state: everything it hears goes to `post` (the station wraps it in an event
for its loop). pyserial's own ReaderThread exits on unplug; this one closes, waits for the path to
come back and reopens, asking for identity again so replay or polling resumes from the journal."""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from drivers.errors import DeviceError
from drivers.reader.base import Dialect, Fault, Heard, Identity, Link
from drivers.reader.port import open_port

log = logging.getLogger("drivers.reader")

RETRY_S = 0.2  # how often a missing port is looked for: replug is noticed well within 2 s
PATH_CHECK_S = 0.3  # a vanished by-id link means unplugged even when the tty still reads nothing
READ_CHUNK = 65536
CORRUPT_POSTED_PER_READ = 3  # with their bytes, as evidence; the rest of a noisy read is only counted


class SerialReader:
    def __init__(self, name: str, dialect: Dialect, port: str, baud: int, post: Callable[[Heard | Link], None],
                 last_record: Callable[[str | None], int | None]):
        """post runs on this thread and must only queue. last_record(serial) asks the station's journal
        for the newest record stored from this instrument (it may block briefly on the loop)."""
        self.name, self.dialect, self.port, self.baud = name, dialect, port, baud
        self._post, self._last_record = post, last_record
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reader-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        last_error = ""
        while not self._stop.is_set():
            try:
                ser = open_port(self.port, self.baud)
            except DeviceError as exc:
                if str(exc) != last_error:  # say it once, not five times a second
                    last_error = str(exc)
                    self._post(Link(False, last_error))
                self._stop.wait(RETRY_S)
                continue
            last_error = ""
            self._post(Link(True, os.path.realpath(self.port) if os.path.exists(self.port) else self.port))
            why = self._converse(ser)
            try:
                ser.close()
            except Exception:  # noqa: BLE001 - a port that vanished may fail to close; it is gone either way
                pass
            if not self._stop.is_set():
                last_error = f"{self.port}: {why}"
                self._post(Link(False, last_error))

    def _converse(self, ser) -> str:
        """Talk until the port fails or vanishes; returns why it stopped."""
        session = self.dialect.session(self._last_record(None))
        next_check = 0.0
        try:
            self._write(ser, session.start(time.monotonic()))
            while not self._stop.is_set():
                data = ser.read(max(1, min(ser.in_waiting, READ_CHUNK)))
                now = time.monotonic()
                if data:
                    self._heard(ser, session, session.feed(data, now))
                quiet = getattr(session, "quiet", None)
                if quiet:
                    self._heard(ser, session, quiet(now))
                self._write(ser, session.tick(now))
                if now >= next_check:
                    next_check = now + PATH_CHECK_S
                    if "://" not in self.port and not os.path.exists(self.port):
                        raise OSError("port path vanished (unplugged)")
        except Exception as exc:  # noqa: BLE001 - any port failure means: close, wait, reconnect
            close = getattr(session, "close", None)
            if close:
                self._heard(None, session, close())  # a report open when the cable went is incomplete
            return f"disconnected: {exc}"
        return "stopped"

    def _heard(self, ser, session, items: list[Heard]) -> None:
        garbage = corrupt = 0
        for item in items:
            if isinstance(item, Fault) and item.kind == "garbage":
                garbage += item.size  # one event per read, however noisy the line: the loop stays free
                continue
            if isinstance(item, Fault) and item.kind == "corrupt":
                corrupt += 1
                if corrupt > CORRUPT_POSTED_PER_READ:
                    continue
            self._post(item)
            if isinstance(item, Identity) and ser is not None:
                self._write(ser, session.identified(item, self._last_record(item.serial)))
        if garbage:
            self._post(Fault("garbage", f"{garbage} bytes of line noise dropped", size=garbage))
        if corrupt > CORRUPT_POSTED_PER_READ:
            n = corrupt - CORRUPT_POSTED_PER_READ
            self._post(Fault("corrupt", f"{n} more corrupt units in the same read", count=n))

    @staticmethod
    def _write(ser, data: bytes) -> None:
        if data:
            ser.write(data)
