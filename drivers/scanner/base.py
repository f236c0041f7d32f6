# What every scanner driver shares: the interface, the line framer for serial codes, and the code check.
"""A scanner's thread hears codes and hands each one to `on_code` (which must only post to the station's
loop). Faults (unplugged, garbage, over-long lines) go to `on_fault` as one sentence naming the device;
the driver keeps reading or reconnecting by itself, so a scanner fault never holds up a result."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

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
