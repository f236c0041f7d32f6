# The printer contract and its device spec: `escpos-serial:PORT[@BAUD]`, `escpos-usb:VID:PID`, `escpos-file:PATH`,
# `fake:PATH`. Pure: parsing a spec imports no printer library, so the config can check it on any machine.
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from drivers.errors import Unsupported

DRIVERS = ("escpos-serial", "escpos-usb", "escpos-file", "fake")
WIDTHS = (384, 576)  # printable dots of a 58 mm and an 80 mm head at 203 dpi
_HEX4 = re.compile(r"(0x)?[0-9a-fA-F]{1,4}")


@dataclass(frozen=True)
class Spec:
    driver: str            # one of DRIVERS
    target: str            # port, file path, or "VID:PID" as given
    baud: int = 9600       # escpos-serial only
    vid: int = 0           # escpos-usb only
    pid: int = 0

    def __str__(self) -> str:
        return f"{self.driver}:{self.target}" + (f"@{self.baud}" if self.driver == "escpos-serial" else "")


def parse_spec(text: str) -> Spec:
    """A printer spec, or Unsupported saying what is allowed (the config and `station init` show it as is)."""
    driver, sep, rest = text.partition(":")
    if not sep or driver not in DRIVERS or not rest:
        raise Unsupported("printer", f"{text!r}: expected one of escpos-serial:PORT[@BAUD], escpos-usb:VID:PID, "
                          "escpos-file:PATH, fake:PATH")
    if driver == "escpos-serial":
        port, at, baud = rest.rpartition("@") if "@" in rest else (rest, "", "")
        if at and (not baud.isdigit() or not 1200 <= int(baud) <= 921600):
            raise Unsupported("printer", f"{text!r}: baud {baud!r} must be a number 1200..921600, e.g. @9600")
        return Spec(driver, port, int(baud) if at else 9600)
    if driver == "escpos-usb":
        vid, _, pid = rest.partition(":")
        if not (_HEX4.fullmatch(vid) and _HEX4.fullmatch(pid)):
            raise Unsupported("printer", f"{text!r}: expected escpos-usb:VID:PID in hex, e.g. escpos-usb:0416:5011 "
                              "(see lsusb)")
        return Spec(driver, rest, vid=int(vid, 16), pid=int(pid, 16))
    return Spec(driver, rest)


class Printer(Protocol):
    """One receipt printer. Every method may raise a drivers.errors.DeviceError naming the printer."""

    name: str        # e.g. "printer escpos-serial:/dev/ttyUSB0@9600", the first words of every error
    width_dots: int

    def probe(self) -> None:
        """Open the device once, so a wrong port or VID:PID is told at start, not at the first receipt."""

    def print_image(self, image: Any) -> None:
        """Print a PIL image (converted to 1-bit; black prints), at most width_dots wide."""

    def cut(self) -> None:
        """Feed past the tear bar and cut (where the printer has a cutter)."""

    def close(self) -> None: ...
