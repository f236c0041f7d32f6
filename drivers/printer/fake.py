# The printer twin: the very bytes python-escpos would send, appended to a file, with faults on request.
"""Faults are switched in-process (`fault` attribute) or, for a daemon in another process, by a switch
file beside the output, `<PATH>.fault`, read at the start of each write: `unplugged`, `paper-out`,
`fail-after N` (N bytes of the job reach the file, then the cable is pulled), or `hold` (the write waits
until the switch changes: a printer busy with the job when the power is cut)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from drivers.errors import DeviceNotFound, NotReady, Unsupported
from drivers.printer.base import Spec
from drivers.printer.escpos import encode


class FakePrinter:
    def __init__(self, spec: Spec, width_dots: int):
        self.spec, self.width_dots = spec, width_dots
        self.path = Path(spec.target)
        self.name = f"printer {spec}"
        self.fault: str | None = None  # as in the switch file; the file wins when present
        self.jobs = 0                   # writes completed, for tests

    @property
    def switch(self) -> Path:
        return self.path.with_name(self.path.name + ".fault")

    def _fault(self) -> str | None:
        try:
            return self.switch.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return self.fault

    def _send(self, data: bytes) -> None:
        fault = self._fault()
        while fault == "hold":
            time.sleep(0.05)
            fault = self._fault()
        if fault == "unplugged":
            raise DeviceNotFound(self.name, "not connected (cable unplugged)")
        if fault == "paper-out":
            raise NotReady(self.name, "paper out: load a new roll and reprint")
        limit = len(data)
        if fault and fault.startswith("fail-after "):
            count = fault.removeprefix("fail-after ")
            if not count.isdigit():
                raise Unsupported(self.name, f"{self.switch}: {fault!r}; expected fail-after N")
            limit = min(limit, int(count))
        elif fault:
            raise Unsupported(self.name, f"{self.switch}: fault {fault!r}; one of unplugged, paper-out, fail-after N")
        try:
            with self.path.open("ab") as out:
                out.write(data[:limit])
        except OSError as exc:
            raise DeviceNotFound(self.name, f"cannot write {self.path}: {exc.strerror or exc}") from None
        if limit < len(data):
            raise DeviceNotFound(self.name, f"unplugged after {limit} of {len(data)} bytes of the job")
        self.jobs += 1

    def probe(self) -> None:
        if self._fault() == "unplugged":
            raise DeviceNotFound(self.name, "not connected (cable unplugged)")
        if not self.path.parent.is_dir():
            raise DeviceNotFound(self.name, f"folder {self.path.parent} does not exist")

    def print_image(self, image: Any) -> None:
        self._send(encode(image, self.width_dots))

    def cut(self) -> None:
        self._send(encode(None, self.width_dots, cut=True))

    def close(self) -> None:
        pass
