# What every scanner driver shares: the interface, the line framer for serial codes, and the code check.
"""A scanner's thread hears codes and hands each one to `on_code` (which must only post to the station's
loop). Faults (unplugged, garbage, over-long lines) go to `on_fault` as one sentence naming the device;
the driver keeps reading or reconnecting by itself, so a scanner fault never holds up a result."""
from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any, Protocol

from drivers.errors import DeviceError

log = logging.getLogger("drivers.scanner")

MAX_CODE_BYTES = 1024  # a QR holds ~3 KB at most; station sample ids are far shorter (record.MAX_SAMPLE_ID)
MAX_CODE_CHARS = 512
ENCODINGS = ("utf-8", "gb18030")  # most scanners send UTF-8; some Chinese models send GBK/GB18030 bytes

_TERMINATOR = re.compile(rb"(\r|\n)")

OnCode = Callable[[str], None]
OnFault = Callable[[str], None]


class Scanner(Protocol):
    device: str  # what errors, logs and Scanned events name it by

    def start(self, on_code: OnCode, on_fault: OnFault | None = None) -> None: ...

    def close(self, timeout: float = 2.0) -> None: ...

    def probe(self) -> None:
        """Raise a drivers.errors.DeviceError naming the device if it cannot be opened now."""

    def status(self) -> dict: ...


def decode_code(raw: bytes) -> str | None:
    """The text of one scanned line, or None when it is not a code (noise, control bytes, undecodable).

    UTF-8 is tried first: a GB18030 reading of valid UTF-8 Chinese would be mojibake, while GB18030 bytes
    are almost never valid UTF-8, so the order tells the two apart.
    """
    for enc in ENCODINGS:
        try:
            text = raw.decode(enc)
        except UnicodeDecodeError:
            continue
        text = text.strip(" \t")
        if text and len(text) <= MAX_CODE_CHARS and text.isprintable():
            return text
        return None
    return None


class LineFramer:
    """Bytes from a virtual-COM scanner → codes. One code per line, ended by CR, LF or CR LF; the empty
    line between CR and LF is not a code. A line longer than MAX_CODE_BYTES is dropped up to its end, so a
    stream without terminators cannot grow memory."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skipping = False  # inside an over-long line: drop until its terminator
        self.dropped = 0  # lines that were not codes (noise, over-long, undecodable)

    def feed(self, data: bytes) -> list[str]:
        codes = []
        for chunk in _split_keep(data):
            if chunk in (b"\r", b"\n"):
                if self._skipping:
                    self._skipping = False
                elif self._buf:
                    code = decode_code(bytes(self._buf))
                    if code is None:
                        self.dropped += 1
                    else:
                        codes.append(code)
                self._buf.clear()
                continue
            if self._skipping:
                continue
            self._buf += chunk
            if len(self._buf) > MAX_CODE_BYTES:
                self._buf.clear()
                self._skipping = True
                self.dropped += 1
        return codes

    def reset(self) -> None:
        """A reconnect: the half line from before the cable went is not the start of the next code."""
        if self._buf:
            self.dropped += 1
        self._buf.clear()
        self._skipping = False


def _split_keep(data: bytes) -> list[bytes]:
    """data split into runs of non-terminator bytes and single CR / LF bytes, in order."""
    return [part for part in _TERMINATOR.split(data) if part]


def split_spec(spec: str, drivers: tuple[str, ...]) -> tuple[str, str]:
    """`serial:PORT[@BAUD]`, `hid:EVDEV_PATH`, `fake:FILE` or `none` (also "") → (driver, target)."""
    from drivers.errors import Unsupported

    spec = spec.strip()
    if spec in ("", "none"):
        return "none", ""
    driver, sep, target = spec.partition(":")
    if not sep or driver not in drivers or driver == "none":
        raise Unsupported("scanner", f"{spec[:60]!r} is not a scanner; give serial:PORT[@BAUD], hid:EVDEV_PATH, "
                          "fake:FILE or none")
    if not target:
        raise Unsupported("scanner", f"{spec[:60]!r}: {driver}: needs a path after the colon")
    return driver, target


def port_baud(target: str, default: int) -> tuple[str, int]:
    """PORT@BAUD → (PORT, BAUD); a target without a numeric @ suffix is all port."""
    port, sep, baud = target.rpartition("@")
    return (port, int(baud)) if sep and port and baud.isdigit() and 0 < int(baud) <= 4_000_000 else (target, default)


class ScannerThread:
    """The shape both real scanners share: one thread that opens the device, reads codes until it fails, says
    each change of health once, and looks for the device again, backing off to RETRY_MAX_S, so a replugged
    scanner works without a restart. Subclasses give _open, _read (returns why it stopped) and _close."""

    RETRY_S, RETRY_MAX_S = 0.2, 2.0

    def __init__(self, device: str, thread_name: str):
        self.device = device
        self.connected = False
        self.fault: str | None = None
        self.codes = 0
        self._on_code: OnCode = lambda code: None
        self._on_fault: OnFault = lambda text: None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    def start(self, on_code: OnCode, on_fault: OnFault | None = None) -> None:
        self._on_code = on_code
        self._on_fault = on_fault or (lambda text: None)
        self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def status(self) -> dict:
        return {"device": self.device, "connected": self.connected, "fault": self.fault, "codes": self.codes}

    def _code(self, code: str) -> None:
        self.codes += 1
        self._on_code(code)

    def _report(self, fault: str | None) -> None:
        if fault == self.fault:
            return  # say it once, not five times a second
        self.fault = fault
        if fault:
            log.warning("%s", fault)
        self._on_fault(fault or f"{self.device}: connected")

    def _run(self) -> None:
        wait = self.RETRY_S
        while not self._stop.is_set():
            try:
                dev = self._open()
            except DeviceError as exc:
                self._report(str(exc))
                self._stop.wait(wait)
                wait = min(wait * 2, self.RETRY_MAX_S)
                continue
            wait = self.RETRY_S
            self.connected = True
            self._report(None)
            why = self._read(dev)
            self.connected = False
            self._close(dev)
            if not self._stop.is_set():
                self._report(f"{self.device}: {why}; reconnecting")

    def _open(self) -> Any:
        raise NotImplementedError

    def _read(self, dev: Any) -> str:
        raise NotImplementedError

    def _close(self, dev: Any) -> None:
        raise NotImplementedError
