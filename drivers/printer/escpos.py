# ESC/POS printers through python-escpos: it builds the raster bytes (GS v 0) and owns the serial/USB/file transport.
# python-escpos is imported on first use only, so a station without a printer never loads it (or Pillow).
from __future__ import annotations

import copy
from typing import Any

from drivers.errors import DeviceError, DeviceNotFound, Unsupported
from drivers.printer.base import Spec

# GS v 0 (bitImageRaster) is the raster command every ESC/POS receipt printer we know of accepts; the tallest
# block some cheap 58 mm heads buffer is about 1000 rows, so long receipts go out in slices of this height.
FRAGMENT_ROWS = 960


def encode(image: Any, width_dots: int, *, cut: bool = False) -> bytes:
    """The ESC/POS bytes python-escpos emits for image (and a cut): what every driver here sends."""
    from escpos.printer import Dummy

    d = Dummy()
    # The library prints a warning to stdout when the profile has no paper width; give it ours instead, on a copy:
    # profile data is shared between instances.
    d.profile.profile_data = copy.deepcopy(d.profile.profile_data)
    d.profile.profile_data.setdefault("media", {}).setdefault("width", {})["pixels"] = width_dots
    if image is not None:
        if image.width > width_dots:
            raise Unsupported("printer", f"image is {image.width} dots wide; the paper takes {width_dots}")
        d.image(image.convert("1"), impl="bitImageRaster", fragment_height=FRAGMENT_ROWS, center=False)
    if cut:
        d.cut()
    return d.output


class EscposPrinter:
    """A real printer: each job opens the device if needed, and any fault closes it so the next job reopens."""

    def __init__(self, spec: Spec, width_dots: int):
        self.spec, self.width_dots = spec, width_dots
        self.name = f"printer {spec}"
        self._backend: Any = None

    def _open(self) -> Any:
        if self._backend is None:
            from escpos import printer

            if self.spec.driver == "escpos-serial":
                backend = printer.Serial(self.spec.target, baudrate=self.spec.baud, timeout=5)
            elif self.spec.driver == "escpos-usb":
                backend = printer.Usb(self.spec.vid, self.spec.pid, timeout=5000)
            else:
                backend = printer.File(self.spec.target)
            try:
                backend.open()
            except Exception as exc:  # python-escpos wraps each transport's own error; name ours instead
                raise DeviceNotFound(self.name, f"cannot open: {_why(exc)} (is it plugged in and powered?)") from None
            self._backend = backend
        return self._backend

    def _send(self, data: bytes) -> None:
        backend = self._open()
        if self.spec.driver == "escpos-serial":
            # pyserial writes block forever by default: a printer holding DSR low (paper out, cover open, with
            # python-escpos's DTR/DSR flow control) would wedge the worker. Twice the time the bytes need, plus 5 s.
            backend.device.write_timeout = 5 + 2 * len(data) * 10 / self.spec.baud
        try:
            backend._raw(data)  # the one write path of every python-escpos transport
            flush = getattr(backend, "flush", None)
            if flush:
                flush()
        except Exception as exc:  # serial.SerialException, usb.core.USBError, OSError: all mean the job is lost
            self.close()
            raise DeviceError(self.name, f"write failed after the device opened: {_why(exc)}") from None

    def probe(self) -> None:
        self._open()

    def print_image(self, image: Any) -> None:
        self._send(encode(image, self.width_dots))

    def cut(self) -> None:
        self._send(encode(None, self.width_dots, cut=True))

    def close(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            try:
                backend.close()
            except Exception:  # closing a device that has gone away must not hide why it went
                pass


def _why(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
